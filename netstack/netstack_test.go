package netstack

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pafhq/paf/certs"
	"github.com/pafhq/paf/client"
	"github.com/pafhq/paf/server"
)

// body is what the test handler serves: large enough to span many
// segments at any MTU, so loss, reordering or truncation on the userspace
// path shows as wrong bytes.
var body = func() []byte {
	b := make([]byte, 300<<10)
	rand.Read(b)
	return b
}()

// handler answers /proto with the request's protocol and anything else
// with body.
var handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	if r.URL.Path == "/proto" {
		io.WriteString(w, r.Proto)
		return
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(body)))
	w.Write(body)
})

// newStack starts a Stack on link with one address, closed at cleanup.
func newStack(t *testing.T, link Config) *Stack {
	t.Helper()
	st, err := New(link)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// serve runs paf's server assembly on st: HTTPS on port 443 with a
// certificate for host from a fresh local CA, whose certificate it returns, and
// plain HTTP with h2c on port 80 (a second server: with HTTPS, the plain
// port only redirects).
func serve(t *testing.T, st *Stack, host string) *x509.Certificate {
	t.Helper()
	ca, err := certs.OpenLocalCA(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	is, err := ca.Issuer([]string{host})
	if err != nil {
		t.Fatal(err)
	}
	run(t, server.Config{Stack: st, HTTPSAddr: net.JoinHostPort(host, "443"), Certificates: is})
	run(t, server.Config{Stack: st, HTTPAddr: net.JoinHostPort(host, "80"), H2C: true})
	return ca.Certificate()
}

// run starts a server for cfg, with the test handler unless cfg has one,
// stopped at cleanup (after the cleanups registered later, such as a
// client's), and returns it.
func run(t testing.TB, cfg server.Config) *server.Server {
	t.Helper()
	if cfg.Handler == nil {
		cfg.Handler = handler
	}
	cfg.Logger = slog.New(slog.DiscardHandler)
	srv, err := server.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := srv.Listen(ctx); err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-done:
		case <-time.After(time.Minute):
			t.Error("Serve did not return")
		}
	})
	return srv
}

// get fetches url with paf's client over st and returns the body and the
// protocol of the response.
func get(t *testing.T, st *Stack, ca *x509.Certificate, mode client.Mode, url string) ([]byte, string) {
	t.Helper()
	roots := x509.NewCertPool()
	if ca != nil {
		roots.AddCert(ca)
	}
	tr := &client.Transport{
		Dialer: &client.Dialer{Stack: st, Authenticator: &client.CertPool{Roots: roots}},
		Mode:   mode,
	}
	defer tr.CloseIdleConnections()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := tr.RoundTrip(req)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: reading the body: %v", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: status %d", url, resp.StatusCode)
	}
	return b, resp.Proto
}

// urlHost is host as a URL's authority spells it.
func urlHost(host string) string {
	if strings.Contains(host, ":") {
		return "[" + host + "]"
	}
	return host
}

// TestPipeServesHTTP runs paf's server on one userspace stack and paf's
// client on another, joined by a Pipe, over IPv4 and IPv6 and each way of
// speaking HTTP the server offers.
func TestPipeServesHTTP(t *testing.T) {
	families := []struct {
		name         string
		server, peer netip.Prefix
		mtu          uint32
	}{
		{"ipv4", netip.MustParsePrefix("10.0.0.1/24"), netip.MustParsePrefix("10.0.0.2/24"), 1500},
		{"ipv6", netip.MustParsePrefix("fd00::1/64"), netip.MustParsePrefix("fd00::2/64"), 1500},
		{"ipv4-jumbo", netip.MustParsePrefix("10.0.1.1/24"), netip.MustParsePrefix("10.0.1.2/24"), 9000},
	}
	modes := []struct {
		name      string
		scheme    string
		mode      client.Mode
		wantProto string
	}{
		{"http1", "http", client.ModeHTTP1, "HTTP/1.1"},
		{"h2c", "http", client.ModeHTTP2PriorKnowledge, "HTTP/2.0"},
		{"https-alpn-h2", "https", client.ModeAuto, "HTTP/2.0"},
		{"https-http1", "https", client.ModeHTTP1, "HTTP/1.1"},
	}
	for _, f := range families {
		t.Run(f.name, func(t *testing.T) {
			a, b := Pipe(f.mtu)
			srv := newStack(t, Config{Link: a, Addresses: []netip.Prefix{f.server}})
			cli := newStack(t, Config{Link: b, Addresses: []netip.Prefix{f.peer}})
			host := f.server.Addr().String()
			ca := serve(t, srv, host)
			for _, m := range modes {
				t.Run(m.name, func(t *testing.T) {
					base := m.scheme + "://" + urlHost(host)
					got, proto := get(t, cli, ca, m.mode, base+"/file")
					if proto != m.wantProto {
						t.Errorf("protocol %s, want %s", proto, m.wantProto)
					}
					if !bytes.Equal(got, body) {
						t.Errorf("body: %d bytes, sha256 %x; want %d bytes, sha256 %x",
							len(got), sha256.Sum256(got), len(body), sha256.Sum256(body))
					}
					p, _ := get(t, cli, ca, m.mode, base+"/proto")
					if string(p) != m.wantProto {
						t.Errorf("the handler saw %q, want %q", p, m.wantProto)
					}
				})
			}
		})
	}
}

// TestGatewayRoute checks that a peer off the link is reached through the
// gateway: the peer's address is outside the server's prefix, and the only
// route to it is the default one.
func TestGatewayRoute(t *testing.T) {
	a, b := Pipe(1500)
	// The pipe has no link layer: "via the gateway" and "on the link" send
	// the same packets, so what is tested is the route table's choice.
	srv := newStack(t, Config{Link: a, Addresses: []netip.Prefix{netip.MustParsePrefix("10.1.0.1/24")}, Gateways: []netip.Addr{netip.MustParseAddr("10.1.0.254")}})
	cli := newStack(t, Config{Link: b, Addresses: []netip.Prefix{netip.MustParsePrefix("10.2.0.1/24")}, Gateways: []netip.Addr{netip.MustParseAddr("10.2.0.254")}})
	serve(t, srv, "10.1.0.1")
	got, _ := get(t, cli, nil, client.ModeHTTP1, "http://10.1.0.1/file")
	if !bytes.Equal(got, body) {
		t.Fatalf("body through the gateway: %d bytes, want %d", len(got), len(body))
	}

	// Without a gateway the same peer is unreachable, and Dial says so.
	c, d := Pipe(1500)
	lone := newStack(t, Config{Link: c, Addresses: []netip.Prefix{netip.MustParsePrefix("10.3.0.1/24")}})
	newStack(t, Config{Link: d, Addresses: []netip.Prefix{netip.MustParsePrefix("10.1.0.1/24")}})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if conn, err := lone.Dial(ctx, "tcp", "10.1.0.1:80"); err == nil {
		conn.Close()
		t.Fatal("dial off-link without a gateway succeeded")
	} else if !errors.Is(err, syscall.ENETUNREACH) {
		t.Fatalf("dial off-link without a gateway: %v, want network is unreachable", err)
	}
}

// TestDialRefused checks that a port nobody listens on is refused at once
// (the peer's stack answers RST), not left to time out.
func TestDialRefused(t *testing.T) {
	a, b := Pipe(1500)
	newStack(t, Config{Link: a, Addresses: []netip.Prefix{netip.MustParsePrefix("10.0.0.1/24")}})
	cli := newStack(t, Config{Link: b, Addresses: []netip.Prefix{netip.MustParsePrefix("10.0.0.2/24")}})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := cli.Dial(ctx, "tcp", "10.0.0.1:81")
	if err == nil {
		c.Close()
		t.Fatal("dial to a closed port succeeded")
	}
	if ctx.Err() != nil || !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("dial to a closed port: %v, want connection refused before the deadline", err)
	}
}

// TestListenAndDialErrors checks the errors for addresses the stack cannot
// take: each names the cause.
func TestListenAndDialErrors(t *testing.T) {
	a, b := Pipe(1500)
	st := newStack(t, Config{Link: a, Addresses: []netip.Prefix{netip.MustParsePrefix("10.0.0.1/24")}})
	newStack(t, Config{Link: b, Addresses: []netip.Prefix{netip.MustParsePrefix("10.0.0.2/24")}})
	ln, err := st.Listen(context.Background(), "tcp", "10.0.0.1:8080")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if got := ln.Addr().String(); got != "10.0.0.1:8080" {
		t.Errorf("listener address %s, want 10.0.0.1:8080", got)
	}
	any, err := st.Listen(context.Background(), "tcp", ":0")
	if err != nil {
		t.Fatalf("listen on a free port: %v", err)
	}
	if p := any.Addr().(*net.TCPAddr).Port; p == 0 {
		t.Errorf("port 0 listener reports port 0")
	}
	any.Close()

	cases := []struct {
		op, network, address, want string
	}{
		{"listen", "tcp", "10.0.0.1:8080", "in use"},
		{"listen", "tcp", "10.0.0.9:80", "not an address of the userspace stack"},
		{"listen", "udp", "10.0.0.1:53", "unknown network"},
		{"listen", "tcp", "10.0.0.1", "missing port"},
		{"listen", "tcp", "10.0.0.1:http", "invalid port"},
		{"listen", "tcp", "10.0.0.1:70000", "invalid port"},
		{"listen", "tcp6", "10.0.0.1:80", "wrong family"},
		{"listen", "tcp", "example.org:80", "not an IP address"},
		{"dial", "tcp", "example.org:80", "not an IP address"},
		{"dial", "tcp", ":80", "no host"},
		{"dial", "tcp4", "[fd00::1]:80", "wrong family"},
	}
	for _, c := range cases {
		t.Run(c.op+" "+c.network+" "+c.address, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			var err error
			if c.op == "listen" {
				var l net.Listener
				if l, err = st.Listen(ctx, c.network, c.address); err == nil {
					l.Close()
				}
			} else {
				var conn net.Conn
				if conn, err = st.Dial(ctx, c.network, c.address); err == nil {
					conn.Close()
				}
			}
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("%s %s %s: %v, want an error containing %q", c.op, c.network, c.address, err, c.want)
			}
			if c.want == "in use" && !errors.Is(err, syscall.EADDRINUSE) {
				t.Errorf("port in use: %v is not EADDRINUSE", err)
			}
		})
	}

	if _, err := st.LookupHost(context.Background(), "example.org"); err == nil || !strings.Contains(err.Error(), "resolves no names") {
		t.Errorf("LookupHost of a name: %v", err)
	}
	if got, err := st.LookupHost(context.Background(), "fd00::0001"); err != nil || len(got) != 1 || got[0] != "fd00::1" {
		t.Errorf("LookupHost of an IP literal: %v, %v", got, err)
	}
}

// TestConfigErrors checks that New refuses what it cannot run, naming it,
// and closes the link it was given.
func TestConfigErrors(t *testing.T) {
	p := netip.MustParsePrefix
	cases := []struct {
		name string
		cfg  Config
		want string
	}{
		{"no address", Config{}, "no address"},
		{"unspecified", Config{Addresses: []netip.Prefix{p("0.0.0.0/0")}}, "invalid address"},
		{"duplicate", Config{Addresses: []netip.Prefix{p("10.0.0.1/24"), p("10.0.0.1/16")}}, "given twice"},
		{"gateway off-link", Config{Addresses: []netip.Prefix{p("10.0.0.1/24")}, Gateways: []netip.Addr{netip.MustParseAddr("10.9.0.1")}}, "on the link of none"},
		{"two gateways", Config{Addresses: []netip.Prefix{p("10.0.0.1/24")}, Gateways: []netip.Addr{netip.MustParseAddr("10.0.0.253"), netip.MustParseAddr("10.0.0.254")}}, "second default router"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			a, b := Pipe(1500)
			defer b.Close()
			c.cfg.Link = a
			st, err := New(c.cfg)
			if err == nil {
				st.Close()
				t.Fatalf("New accepted %+v", c.cfg)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Fatalf("New: %v, want an error containing %q", err, c.want)
			}
			if a.IsAttached() {
				t.Error("link left attached")
			}
		})
	}
	if _, err := New(Config{Addresses: []netip.Prefix{p("10.0.0.1/24")}}); err == nil || !strings.Contains(err.Error(), "no link") {
		t.Errorf("New without a link: %v", err)
	}
}

// TestCloseEndsConnections checks that closing a stack fails what is
// blocked on it, and Listen afterwards.
func TestCloseEndsConnections(t *testing.T) {
	a, b := Pipe(1500)
	srv, err := New(Config{Link: a, Addresses: []netip.Prefix{netip.MustParsePrefix("10.0.0.1/24")}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close() })
	cli := newStack(t, Config{Link: b, Addresses: []netip.Prefix{netip.MustParsePrefix("10.0.0.2/24")}})
	ln, err := srv.Listen(context.Background(), "tcp", "10.0.0.1:80")
	if err != nil {
		t.Fatal(err)
	}
	accepted := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err == nil {
			_, err = c.Read(make([]byte, 1)) // blocks: the client sends nothing
		}
		accepted <- err
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := cli.Dial(ctx, "tcp", "10.0.0.1:80")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	time.Sleep(50 * time.Millisecond) // let the server block in Read
	srv.Close()
	select {
	case err := <-accepted:
		if err == nil {
			t.Fatal("a read on a closed stack succeeded")
		}
	case <-time.After(30 * time.Second):
		t.Fatal("a read blocked on the stack did not end when it closed")
	}
	for _, addr := range []string{"10.0.0.1:81", ":81"} {
		if l, err := srv.Listen(context.Background(), "tcp", addr); !errors.Is(err, net.ErrClosed) {
			if l != nil {
				l.Close()
			}
			t.Errorf("Listen %s on a closed stack: %v, want net.ErrClosed", addr, err)
		}
	}
	if c, err := srv.Dial(context.Background(), "tcp", "10.0.0.2:80"); !errors.Is(err, net.ErrClosed) {
		if c != nil {
			c.Close()
		}
		t.Errorf("Dial on a closed stack: %v, want net.ErrClosed", err)
	}
}

// TestDualStackListen checks listening on every address as net.Listen
// does on the host: "tcp" takes IPv4 and IPv6 on one listener, "tcp6" and
// "tcp4" one family each; the listener's address names the unspecified
// address, not a nil IP.
func TestDualStackListen(t *testing.T) {
	a, b := Pipe(1500)
	p := netip.MustParsePrefix
	srv := newStack(t, Config{Link: a, Addresses: []netip.Prefix{p("10.0.0.1/24"), p("fd00::1/64")}})
	cli := newStack(t, Config{Link: b, Addresses: []netip.Prefix{p("10.0.0.2/24"), p("fd00::2/64")}})
	cases := []struct {
		network, address, wantAddr string
		v4, v6                     bool
	}{
		{"tcp", ":7000", "[::]:7000", true, true},
		{"tcp", "0.0.0.0:7001", "0.0.0.0:7001", true, false},
		{"tcp6", ":7002", "[::]:7002", false, true},
		{"tcp4", ":7003", "0.0.0.0:7003", true, false},
		{"tcp", "[fd00::1]:7004", "[fd00::1]:7004", false, true},
	}
	for _, c := range cases {
		t.Run(c.network+" "+c.address, func(t *testing.T) {
			ln, err := srv.Listen(context.Background(), c.network, c.address)
			if err != nil {
				t.Fatal(err)
			}
			defer ln.Close()
			if got := ln.Addr().String(); got != c.wantAddr {
				t.Errorf("Addr() = %s, want %s", got, c.wantAddr)
			}
			go func() {
				for {
					conn, err := ln.Accept()
					if err != nil {
						return
					}
					io.WriteString(conn, conn.RemoteAddr().String())
					conn.Close()
				}
			}()
			_, port, _ := net.SplitHostPort(c.address)
			for _, d := range []struct {
				to, from string
				want     bool
			}{{"10.0.0.1", "10.0.0.2", c.v4}, {"fd00::1", "fd00::2", c.v6}} {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				conn, err := cli.Dial(ctx, "tcp", net.JoinHostPort(d.to, port))
				cancel()
				if !d.want {
					if err == nil {
						conn.Close()
						t.Errorf("dial %s: accepted, want refused", d.to)
					}
					continue
				}
				if err != nil {
					t.Errorf("dial %s: %v", d.to, err)
					continue
				}
				got, _ := io.ReadAll(conn)
				conn.Close()
				if host, _, _ := net.SplitHostPort(string(got)); host != d.from {
					t.Errorf("dial %s: the server saw the peer as %q, want %s", d.to, got, d.from)
				}
			}
		})
	}
}
