package server

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/pafhq/paf/internal/acceptq"
)

// cipherSuites are the TLS 1.2 suites offered: forward-secret key exchange
// (ECDHE) with AEAD ciphers only. TLS 1.3 suites are not configurable and
// all qualify.
var cipherSuites = []uint16{
	tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
	tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
	tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256,
	tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
}

// nextProtos returns the ALPN list: h2 and http/1.1 first, then extras
// without duplicates.
func nextProtos(extra []string) []string {
	protos := []string{"h2", "http/1.1"}
	for _, p := range extra {
		if p != "" && !slices.Contains(protos, p) {
			protos = append(protos, p)
		}
	}
	return protos
}

// tlsConfig returns the TLS settings of the HTTPS listener.
func (s *Server) tlsConfig() *tls.Config {
	cfg := &tls.Config{
		MinVersion:     tls.VersionTLS12,
		CipherSuites:   slices.Clone(cipherSuites),
		NextProtos:     slices.Clone(s.cfg.NextProtos),
		GetCertificate: s.cfg.Certificates.GetCertificate,
	}
	if s.cfg.NextProtosForName != nil {
		cfg.GetConfigForClient = alpnByName(cfg, s.cfg.NextProtosForName)
	}
	return cfg
}

// alpnByName returns a GetConfigForClient offering the protocols choose
// picks for the ClientHello's server name. The variants of base are made
// once per distinct protocol list and kept (there are only a few), so a
// handshake costs a map lookup.
func alpnByName(base *tls.Config, choose func(string) []string) func(*tls.ClientHelloInfo) (*tls.Config, error) {
	extra := base.NextProtos[min(2, len(base.NextProtos)):] // after h2, http/1.1
	// Joined protocols -> *tls.Config.
	var variants sync.Map
	return func(hello *tls.ClientHelloInfo) (*tls.Config, error) {
		protos := choose(hello.ServerName)
		if protos == nil {
			return nil, nil
		}
		key := strings.Join(protos, ",")
		if c, ok := variants.Load(key); ok {
			return c.(*tls.Config), nil
		}
		c := base.Clone()
		c.GetConfigForClient = nil
		c.NextProtos = append(slices.Clone(protos), extra...)
		v, _ := variants.LoadOrStore(key, c)
		return v.(*tls.Config), nil
	}
}

// handshakeListener accepts TCP connections and hands out *tls.Conn whose
// handshake is complete. Each handshake runs in its own goroutine under its
// own deadline (TLSHandshakeTimeout counted from accept), so silent or slow
// clients neither block others nor hold a connection past the timeout;
// net/http would otherwise bound the handshake by its read timeouts.
// net/http then sees an already-handshaken *tls.Conn and proceeds with ALPN
// as usual, except that a connection that chose HTTP/1.1 (or no protocol)
// comes wrapped in an h1Conn, which checks its requests before net/http
// parses them; net/http takes Request.TLS from the wrapper's
// ConnectionState.
type handshakeListener struct {
	inner   net.Listener
	config  *tls.Config
	timeout time.Duration
	lim     h1Limits
	log     *slog.Logger

	ctx    context.Context
	cancel context.CancelFunc
	q      *acceptq.Queue // of *tls.Conn, or an h1Conn around one
	wg     sync.WaitGroup
	once   sync.Once
}

// newHandshakeListener starts accepting on inner.
func newHandshakeListener(inner net.Listener, config *tls.Config, timeout time.Duration, lim h1Limits, log *slog.Logger) *handshakeListener {
	ctx, cancel := context.WithCancel(context.Background())
	l := &handshakeListener{
		inner:   inner,
		config:  config,
		timeout: timeout,
		lim:     lim,
		log:     log,
		ctx:     ctx,
		cancel:  cancel,
		q:       acceptq.New(ctx),
	}
	l.wg.Add(1)
	go l.acceptLoop()
	return l
}

// acceptLoop accepts until the inner listener fails for good, logging
// the temporary errors it backs off on.
func (l *handshakeListener) acceptLoop() {
	defer l.wg.Done()
	retry := func(err error, delay time.Duration) {
		l.log.LogAttrs(l.ctx, slog.LevelError, "accept error", slog.String("error", err.Error()), slog.Duration("retry", delay))
	}
	l.q.Loop(l.inner, retry, func(c net.Conn) {
		l.wg.Add(1)
		go l.handshake(c)
	})
}

// handshake completes the TLS handshake of c and queues it for Accept.
func (l *handshakeListener) handshake(c net.Conn) {
	defer l.wg.Done()
	if l.timeout > 0 {
		c.SetDeadline(time.Now().Add(l.timeout))
	}
	tc := tls.Server(c, l.config)
	if err := tc.HandshakeContext(l.ctx); err != nil {
		var re tls.RecordHeaderError
		if errors.As(err, &re) && re.Conn != nil && looksLikeHTTP(re.RecordHeader) {
			io.WriteString(re.Conn, "HTTP/1.0 400 Bad Request\r\n\r\nClient sent an HTTP request to an HTTPS server.\n")
		}
		l.log.LogAttrs(l.ctx, slog.LevelDebug, "TLS handshake error",
			slog.String("remote", c.RemoteAddr().String()), slog.String("error", err.Error()))
		c.Close()
		return
	}
	c.SetDeadline(time.Time{})
	var conn net.Conn = tc
	if p := tc.ConnectionState().NegotiatedProtocol; p == "" || p == "http/1.1" {
		conn = newH1Conn(tc, l.lim)
	}
	l.q.Deliver(conn)
}

// looksLikeHTTP reports whether a TLS record header is the start of a plain
// HTTP request, as net/http checks.
func looksLikeHTTP(hdr [5]byte) bool {
	switch string(hdr[:]) {
	case "GET /", "HEAD ", "POST ", "PUT /", "OPTIO":
		return true
	}
	return false
}

// Accept returns the next connection whose handshake succeeded.
func (l *handshakeListener) Accept() (net.Conn, error) { return l.q.Accept() }

// Close stops accepting and aborts handshakes in progress.
func (l *handshakeListener) Close() error {
	var err error
	l.once.Do(func() {
		l.cancel()
		err = l.inner.Close()
	})
	return err
}

// Addr returns the inner listener's address.
func (l *handshakeListener) Addr() net.Addr { return l.inner.Addr() }

// wait blocks until the accept loop and every handshake goroutine ended;
// call after Close.
func (l *handshakeListener) wait() { l.wg.Wait() }
