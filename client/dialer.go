package client

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/pafhq/paf/stack"
)

// DefaultAttemptDelay is how long Happy Eyeballs waits for an attempt
// before starting the next address: RFC 8305's recommended Connection
// Attempt Delay.
const DefaultAttemptDelay = 250 * time.Millisecond

// minAttemptDelay is RFC 8305's lower bound for the delay.
const minAttemptDelay = 10 * time.Millisecond

// Dialer opens the connection a URL names. Its zero value dials through the
// host's stack, trusts the system roots and offers h2 and http/1.1 by ALPN.
// A Dialer is safe for concurrent use and must not be modified while in
// use.
type Dialer struct {
	// Stack resolves and dials; nil means &stack.Host{}. The Dialer never
	// touches the network any other way.
	Stack stack.Stack

	// Authenticator decides which TLS servers are trusted; nil means
	// SystemRoots.
	Authenticator Authenticator

	// NextProtos is the ALPN list offered over TLS; nil means
	// ["h2", "http/1.1"].
	NextProtos []string

	// TLSConfig, if set, is cloned for every handshake before the
	// Authenticator, NextProtos and ServerName are applied: a way to set
	// client certificates, versions or key logging. nil means TLS 1.2 or
	// later with Go's defaults.
	TLSConfig *tls.Config

	// ConnectTimeout bounds resolving, connecting and the TLS handshake
	// together; zero means only the context's deadline applies.
	ConnectTimeout time.Duration

	// AttemptDelay is Happy Eyeballs' delay between starting connection
	// attempts to successive addresses; zero means DefaultAttemptDelay.
	// Values below 10ms are raised to 10ms, RFC 8305's floor.
	AttemptDelay time.Duration
}

func (d *Dialer) stack() stack.Stack {
	if d.Stack == nil {
		return &stack.Host{}
	}
	return d.Stack
}

// DialURL connects to the server u names, by scheme: http and h2c over TCP
// (port 80 by default), https over TLS (port 443), and unix, whose path is
// the socket (unix:///run/paf.sock). The caller speaks the protocol; for
// https the negotiated ALPN protocol is in the returned *tls.Conn's
// ConnectionState.
func (d *Dialer) DialURL(ctx context.Context, u *url.URL) (net.Conn, error) {
	switch u.Scheme {
	case "http", "h2c":
		return d.DialContext(ctx, "tcp", hostPort(u, "80"))
	case "https":
		return d.DialTLSContext(ctx, "tcp", hostPort(u, "443"))
	case "unix":
		if u.Path == "" {
			return nil, fmt.Errorf("client: %s: unix URL has no socket path", u)
		}
		return d.DialContext(ctx, "unix", u.Path)
	default:
		return nil, fmt.Errorf("client: %s: unsupported scheme %q (want http, https, h2c or unix)", u.Redacted(), u.Scheme)
	}
}

func hostPort(u *url.URL, def string) string {
	p := u.Port()
	if p == "" {
		p = def
	}
	return net.JoinHostPort(u.Hostname(), p)
}

// DialContext connects to address on network: "tcp", "tcp4" or "tcp6" with
// a host:port address, whose name is resolved through the Stack and whose
// addresses are raced with Happy Eyeballs, or "unix" with a socket path.
// Its signature is net/http's Transport.DialContext.
func (d *Dialer) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	ctx, cancel := d.connectBudget(ctx)
	defer cancel()
	return d.dial(ctx, network, address)
}

// connectBudget bounds ctx by ConnectTimeout, which covers resolving,
// connecting and the TLS handshake together.
func (d *Dialer) connectBudget(ctx context.Context) (context.Context, context.CancelFunc) {
	if d.ConnectTimeout > 0 {
		return context.WithTimeout(ctx, d.ConnectTimeout)
	}
	return ctx, func() {}
}

// DialTLSContext connects like DialContext, then runs a TLS handshake with
// the server named by address's host, offering NextProtos by ALPN and
// checking the server with the Authenticator. Its signature is net/http's
// Transport.DialTLSContext.
func (d *Dialer) DialTLSContext(ctx context.Context, network, address string) (net.Conn, error) {
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return nil, &Error{Kind: KindConnect, Op: "connect", Addr: address, Err: err}
	}
	return d.dialTLS(ctx, network, address, host, address)
}

// dialTLS connects to address and runs the TLS handshake with serverName,
// within one ConnectTimeout; addr names the server in handshake errors.
func (d *Dialer) dialTLS(ctx context.Context, network, address, serverName, addr string) (net.Conn, error) {
	ctx, cancel := d.connectBudget(ctx)
	defer cancel()
	conn, err := d.dial(ctx, network, address)
	if err != nil {
		return nil, err
	}
	return d.handshake(ctx, conn, serverName, addr)
}

// Handshake runs a TLS client handshake over conn, an already connected
// transport (a unix socket, say), authenticating serverName. conn is closed
// when the handshake fails.
func (d *Dialer) Handshake(ctx context.Context, conn net.Conn, serverName string) (*tls.Conn, error) {
	ctx, cancel := d.connectBudget(ctx)
	defer cancel()
	return d.handshake(ctx, conn, serverName, serverName)
}

func (d *Dialer) handshake(ctx context.Context, conn net.Conn, serverName, addr string) (*tls.Conn, error) {
	var cfg *tls.Config
	if d.TLSConfig != nil {
		cfg = d.TLSConfig.Clone()
	} else {
		cfg = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	cfg.ServerName = serverName
	cfg.NextProtos = d.NextProtos
	if cfg.NextProtos == nil {
		cfg.NextProtos = []string{"h2", "http/1.1"}
	}
	auth := d.Authenticator
	if auth == nil {
		auth = SystemRoots{}
	}
	auth.Configure(cfg)
	tc := tls.Client(conn, cfg)
	err := tc.HandshakeContext(ctx)
	traceFrom(ctx).handshakeDone(tc, err)
	if err != nil {
		conn.Close()
		kind := KindTLS
		switch k := KindOf(err); {
		case ctx.Err() != nil || k == KindTimeout:
			kind = KindTimeout
		case k == KindPin || k == KindCertificate:
			kind = k
		}
		return nil, &Error{Kind: kind, Op: "tls handshake with", Addr: addr, Err: err}
	}
	return tc, nil
}

func (t *Trace) handshakeDone(tc *tls.Conn, err error) {
	if t.TLSHandshakeDone != nil {
		t.TLSHandshakeDone(tc.ConnectionState(), err)
	}
}

// dial resolves and races. ctx carries the whole connect deadline.
func (d *Dialer) dial(ctx context.Context, network, address string) (net.Conn, error) {
	tr := traceFrom(ctx)
	if network == "unix" {
		if tr.ConnectStart != nil {
			tr.ConnectStart(network, address)
		}
		c, err := d.stack().Dial(ctx, network, address)
		if tr.ConnectDone != nil {
			tr.ConnectDone(network, address, err)
		}
		if err != nil {
			return nil, connectError(ctx, address, err)
		}
		return c, nil
	}
	switch network {
	case "tcp", "tcp4", "tcp6":
	default:
		return nil, fmt.Errorf("client: dial %s: unsupported network %q", address, network)
	}
	host, port, err := net.SplitHostPort(address)
	if err != nil {
		return nil, &Error{Kind: KindConnect, Op: "connect", Addr: address, Err: err}
	}
	addrs, err := d.resolve(ctx, network, host)
	if err != nil {
		return nil, err
	}
	if tr.Resolved != nil {
		tr.Resolved(host, addrs)
	}
	return d.race(ctx, network, address, addrs, port, tr)
}

// resolve returns host's addresses in RFC 8305 order: families
// interleaved, IPv6 first. IP literals skip the resolver.
func (d *Dialer) resolve(ctx context.Context, network, host string) ([]string, error) {
	if ip, err := netip.ParseAddr(strings.TrimSuffix(strings.TrimPrefix(host, "["), "]")); err == nil {
		return []string{ip.String()}, nil
	}
	raw, err := d.stack().LookupHost(ctx, host)
	if err != nil {
		kind := KindResolve
		if ctx.Err() != nil {
			kind = KindTimeout
		}
		return nil, &Error{Kind: kind, Op: "resolve", Addr: host, Err: err}
	}
	var v6, v4 []string
	for _, a := range raw {
		ip, err := netip.ParseAddr(a)
		if err != nil {
			continue
		}
		switch {
		case ip.Is4() || ip.Is4In6():
			if network != "tcp6" {
				v4 = append(v4, ip.Unmap().String())
			}
		default:
			if network != "tcp4" {
				v6 = append(v6, ip.String())
			}
		}
	}
	addrs := make([]string, 0, len(v6)+len(v4))
	for i := 0; i < len(v6) || i < len(v4); i++ {
		if i < len(v6) {
			addrs = append(addrs, v6[i])
		}
		if i < len(v4) {
			addrs = append(addrs, v4[i])
		}
	}
	if len(addrs) == 0 {
		return nil, &Error{Kind: KindResolve, Op: "resolve", Addr: host,
			Err: fmt.Errorf("no %s address among %v", network, raw)}
	}
	return addrs, nil
}

type attempt struct {
	conn net.Conn
	err  error
}

// race runs Happy Eyeballs: an attempt per address, each started when the
// previous one failed or AttemptDelay after it began, the first success
// winning and the others cancelled (late winners are closed).
func (d *Dialer) race(ctx context.Context, network, address string, addrs []string, port string, tr *Trace) (net.Conn, error) {
	delay := d.AttemptDelay
	if delay == 0 {
		delay = DefaultAttemptDelay
	}
	delay = max(delay, minAttemptDelay)
	raceCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	results := make(chan attempt, len(addrs))
	next, inflight := 0, 0
	start := func() {
		a := net.JoinHostPort(addrs[next], port)
		next++
		inflight++
		if tr.ConnectStart != nil {
			tr.ConnectStart(network, a)
		}
		go func() {
			c, err := d.stack().Dial(raceCtx, network, a)
			if tr.ConnectDone != nil {
				tr.ConnectDone(network, a, err)
			}
			results <- attempt{c, err}
		}()
	}
	// closeLate closes connections that win after the race is decided;
	// results is buffered, so the attempts never block.
	closeLate := func(n int) {
		go func() {
			for range n {
				if r := <-results; r.conn != nil {
					r.conn.Close()
				}
			}
		}()
	}
	var errs []error
	start()
	for {
		var timer *time.Timer
		var tick <-chan time.Time
		if next < len(addrs) {
			timer = time.NewTimer(delay)
			tick = timer.C
		}
		select {
		case r := <-results:
			inflight--
			if r.err == nil {
				cancel()
				closeLate(inflight)
				stopTimer(timer)
				return r.conn, nil
			}
			errs = append(errs, r.err)
			if next < len(addrs) {
				start()
			} else if inflight == 0 {
				stopTimer(timer)
				return nil, connectError(ctx, address, errors.Join(errs...))
			}
		case <-tick:
			start()
		case <-ctx.Done():
			cancel()
			closeLate(inflight)
			stopTimer(timer)
			return nil, &Error{Kind: KindTimeout, Op: "connect to", Addr: address, Err: ctx.Err()}
		}
		stopTimer(timer)
	}
}

func stopTimer(t *time.Timer) {
	if t != nil {
		t.Stop()
	}
}

func connectError(ctx context.Context, address string, err error) error {
	kind := KindConnect
	if ctx.Err() != nil || isTimeout(err) {
		kind = KindTimeout
	}
	return &Error{Kind: kind, Op: "connect to", Addr: address, Err: err}
}
