package client

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pafhq/paf/stack"
)

// countingStack is the host's stack with names it resolves itself and
// addresses that never answer, counting every call so tests can prove the
// client reaches the network only through it.
type countingStack struct {
	host    stack.Host
	names   map[string][]string // host name → addresses
	hang    map[string]bool     // IP → dials block until cancelled
	lookups atomic.Int64
	dials   atomic.Int64

	mu       sync.Mutex
	dialed   []string
	canceled []string
}

func (s *countingStack) Listen(ctx context.Context, network, address string) (net.Listener, error) {
	return s.host.Listen(ctx, network, address)
}

func (s *countingStack) Dial(ctx context.Context, network, address string) (net.Conn, error) {
	s.dials.Add(1)
	s.mu.Lock()
	s.dialed = append(s.dialed, address)
	s.mu.Unlock()
	if h, _, err := net.SplitHostPort(address); err == nil && s.hang[h] {
		<-ctx.Done()
		s.mu.Lock()
		s.canceled = append(s.canceled, address)
		s.mu.Unlock()
		return nil, ctx.Err()
	}
	return s.host.Dial(ctx, network, address)
}

func (s *countingStack) LookupHost(ctx context.Context, host string) ([]string, error) {
	s.lookups.Add(1)
	if a, ok := s.names[host]; ok {
		return a, nil
	}
	return s.host.LookupHost(ctx, host)
}

func listen(t *testing.T, network, addr string) net.Listener {
	t.Helper()
	ln, err := net.Listen(network, addr)
	if err != nil {
		if strings.Contains(addr, "::1") {
			t.Skipf("IPv6 loopback unavailable: %v", err)
		}
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Write([]byte(ln.Addr().String()))
			c.Close()
		}
	}()
	return ln
}

// freePort returns a port free on both loopbacks at the time of the call.
func freePort(t *testing.T) string {
	t.Helper()
	for range 20 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		_, p, _ := net.SplitHostPort(ln.Addr().String())
		ln.Close()
		if ln6, err := net.Listen("tcp", "[::1]:"+p); err == nil {
			ln6.Close()
			return p
		} else if !strings.Contains(err.Error(), "address already in use") {
			t.Skipf("IPv6 loopback unavailable: %v", err)
		}
	}
	t.Fatal("no port free on both loopbacks")
	return ""
}

func TestHappyEyeballs(t *testing.T) {
	tests := []struct {
		name   string
		listen string // the only family with a listener
		hang   string // an address whose dials never complete
		want   string
	}{
		{"v6 only listening", "[::1]", "", "[::1]"},
		{"v4 only listening", "127.0.0.1", "", "127.0.0.1"},
		{"v6 black hole, v4 wins after the delay", "127.0.0.1", "::1", "127.0.0.1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := freePort(t)
			ln := listen(t, "tcp", tt.listen+":"+p)
			st := &countingStack{
				names: map[string][]string{"dual.test": {"127.0.0.1", "::1"}},
				hang:  map[string]bool{tt.hang: true},
			}
			d := &Dialer{Stack: st, AttemptDelay: 10 * time.Millisecond}
			var mu sync.Mutex
			var order []string
			ctx := WithTrace(context.Background(), &Trace{
				Resolved: func(_ string, addrs []string) { mu.Lock(); order = addrs; mu.Unlock() },
			})
			c, err := d.DialContext(ctx, "tcp", "dual.test:"+p)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			got, _ := io.ReadAll(c)
			if string(got) != ln.Addr().String() || !strings.HasPrefix(string(got), tt.want) {
				t.Fatalf("connected to %q, want the listener %s", got, ln.Addr())
			}
			mu.Lock()
			if fmt.Sprint(order) != "[::1 127.0.0.1]" {
				t.Errorf("attempt order %v, want IPv6 first", order)
			}
			mu.Unlock()
			if st.lookups.Load() != 1 {
				t.Errorf("%d lookups through the stack, want 1", st.lookups.Load())
			}
			if st.dials.Load() < 1 {
				t.Errorf("no dial through the stack")
			}
			if tt.hang != "" {
				// The hung attempt is cancelled once v4 wins.
				deadline := time.Now().Add(10 * time.Second)
				for {
					st.mu.Lock()
					n := len(st.canceled)
					st.mu.Unlock()
					if n == 1 {
						break
					}
					if time.Now().After(deadline) {
						t.Fatal("the losing attempt was never cancelled")
					}
					time.Sleep(5 * time.Millisecond)
				}
			}
		})
	}
}

func TestDialErrors(t *testing.T) {
	refused := freePort(t)
	tests := []struct {
		name string
		d    Dialer
		addr string
		want Kind
	}{
		{"unresolvable", Dialer{}, "nothing.invalid:80", KindResolve},
		{"refused on both families", Dialer{Stack: &countingStack{names: map[string][]string{"dual.test": {"127.0.0.1", "::1"}}}},
			"dual.test:" + refused, KindConnect},
		{"connect timeout", Dialer{ConnectTimeout: 50 * time.Millisecond,
			Stack: &countingStack{hang: map[string]bool{"127.0.0.1": true}}}, "127.0.0.1:" + refused, KindTimeout},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := tt.d.DialContext(context.Background(), "tcp", tt.addr)
			if err == nil {
				c.Close()
				t.Fatal("dial succeeded")
			}
			if k := KindOf(err); k != tt.want {
				t.Fatalf("KindOf(%v) = %v, want %v", err, k, tt.want)
			}
			var e *Error
			if !errors.As(err, &e) || !strings.Contains(err.Error(), strings.Split(tt.addr, ":")[0]) {
				t.Errorf("error %q is not a *Error naming the target", err)
			}
		})
	}
}

func tlsServer(t *testing.T) *httptest.Server {
	t.Helper()
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s %s", r.Proto, r.URL.Path)
	}))
	srv.EnableHTTP2 = true
	srv.TLS = &tls.Config{NextProtos: []string{"h2", "http/1.1"}}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // rejected handshakes are the point of some cases
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv
}

func TestTransportTLS(t *testing.T) {
	srv := tlsServer(t)
	cert := srv.Certificate()
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	keyPin, _ := ParsePin(PinOf(PinKey, cert))
	certPin, _ := ParsePin(PinOf(PinCert, cert))
	otherPin, _ := ParsePin("key:sha256:" + strings.Repeat("A", 43) + "=")
	tests := []struct {
		name  string
		auth  Authenticator
		mode  Mode
		proto string // "" when the request must fail
		kind  Kind
	}{
		{"system roots reject a private CA", nil, ModeAuto, "", KindCertificate},
		{"CA pool, ALPN picks h2", &CertPool{Roots: pool}, ModeAuto, "HTTP/2.0", 0},
		{"CA pool, http1.1 only", &CertPool{Roots: pool}, ModeHTTP1, "HTTP/1.1", 0},
		{"CA pool, h2 prior knowledge", &CertPool{Roots: pool}, ModeHTTP2PriorKnowledge, "HTTP/2.0", 0},
		{"key pin", keyPin, ModeAuto, "HTTP/2.0", 0},
		{"cert pin", certPin, ModeHTTP1, "HTTP/1.1", 0},
		{"pin mismatch", otherPin, ModeAuto, "", KindPin},
		{"insecure", Insecure{}, ModeAuto, "HTTP/2.0", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st := &countingStack{}
			tr := &Transport{Dialer: &Dialer{Stack: st, Authenticator: tt.auth}, Mode: tt.mode}
			defer tr.CloseIdleConnections()
			var state tls.ConnectionState
			ctx := WithTrace(context.Background(), &Trace{TLSHandshakeDone: func(cs tls.ConnectionState, err error) { state = cs }})
			req, _ := http.NewRequestWithContext(ctx, "GET", srv.URL+"/x", nil)
			resp, err := (&http.Client{Transport: tr}).Do(req)
			if tt.proto == "" {
				if err == nil {
					resp.Body.Close()
					t.Fatal("request succeeded")
				}
				if k := KindOf(err); k != tt.kind {
					t.Fatalf("KindOf(%v) = %v, want %v", err, k, tt.kind)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if want := tt.proto + " /x"; string(body) != want || resp.Proto != tt.proto {
				t.Errorf("got %s %q, want %q", resp.Proto, body, want)
			}
			if wantALPN := map[string]string{"HTTP/2.0": "h2", "HTTP/1.1": "http/1.1"}[tt.proto]; state.NegotiatedProtocol != wantALPN {
				t.Errorf("ALPN %q, want %q", state.NegotiatedProtocol, wantALPN)
			}
			if st.dials.Load() == 0 {
				t.Error("the transport did not dial through the stack")
			}
		})
	}
}

// h2cServer serves HTTP/1.1 and cleartext HTTP/2 with prior knowledge on l.
func h2cServer(t *testing.T, l net.Listener) {
	t.Helper()
	var p http.Protocols
	p.SetHTTP1(true)
	p.SetUnencryptedHTTP2(true)
	srv := &http.Server{Protocols: &p, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s %s %s", r.Proto, r.Host, r.URL.Path)
	})}
	go srv.Serve(l)
	t.Cleanup(func() { srv.Close() })
}

func TestTransportCleartext(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	h2cServer(t, ln)
	_, port, _ := net.SplitHostPort(ln.Addr().String())
	tests := []struct {
		mode Mode
		url  string
		want string
	}{
		{ModeAuto, "http://localhost:" + port + "/a", "HTTP/1.1 localhost:" + port + " /a"},
		{ModeHTTP1, "http://localhost:" + port + "/a", "HTTP/1.1 localhost:" + port + " /a"},
		{ModeHTTP2PriorKnowledge, "http://localhost:" + port + "/a", "HTTP/2.0 localhost:" + port + " /a"},
		{ModeAuto, "h2c://localhost:" + port + "/b", "HTTP/2.0 localhost:" + port + " /b"},
	}
	for _, tt := range tests {
		t.Run(tt.mode.String()+" "+tt.url, func(t *testing.T) {
			st := &countingStack{names: map[string][]string{"localhost": {"127.0.0.1"}}}
			tr := &Transport{Dialer: &Dialer{Stack: st}, Mode: tt.mode}
			defer tr.CloseIdleConnections()
			resp, err := (&http.Client{Transport: tr}).Get(tt.url)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if string(body) != tt.want {
				t.Errorf("got %q, want %q", body, tt.want)
			}
			if st.lookups.Load() != 1 || st.dials.Load() != 1 {
				t.Errorf("%d lookups and %d dials through the stack, want 1 and 1", st.lookups.Load(), st.dials.Load())
			}
		})
	}
}

func TestUnixSocket(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "paf.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	h2cServer(t, ln)
	st := &countingStack{}
	for _, mode := range []Mode{ModeHTTP1, ModeHTTP2PriorKnowledge} {
		tr := &Transport{Dialer: &Dialer{Stack: st}, Mode: mode, UnixSocket: sock}
		resp, err := (&http.Client{Transport: tr}).Get("http://site.example/p")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		tr.CloseIdleConnections()
		want := map[Mode]string{ModeHTTP1: "HTTP/1.1", ModeHTTP2PriorKnowledge: "HTTP/2.0"}[mode] + " site.example /p"
		if string(body) != want {
			t.Errorf("%v: got %q, want %q", mode, body, want)
		}
	}
	c, err := (&Dialer{Stack: st}).DialURL(context.Background(), &url.URL{Scheme: "unix", Path: sock})
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(c, "GET /raw HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	raw, _ := io.ReadAll(c)
	c.Close()
	if !strings.HasSuffix(string(raw), "HTTP/1.1 x /raw") {
		t.Errorf("raw exchange over unix:// got %q", raw)
	}
	if st.lookups.Load() != 0 || st.dials.Load() != 3 {
		t.Errorf("%d lookups and %d dials, want 0 and 3", st.lookups.Load(), st.dials.Load())
	}
}

func TestParsePin(t *testing.T) {
	digest := strings.Repeat("A", 43) + "="
	tests := []struct {
		spec, err string
	}{
		{"key:sha256:" + digest, ""},
		{"cert:sha256:" + digest, ""},
		{"cert:sha256:" + strings.TrimSuffix(digest, "="), ""},
		{"key:sha256:" + digest + ",key:sha256:" + digest, ""},
		{"sha256//" + digest, "want cert:sha256"},
		{"spki:sha256:" + digest, `unknown kind "spki"`},
		{"key:sha1:" + digest, `unsupported hash "sha1"`},
		{"key:sha256:not*base64", "not base64"},
		{"key:sha256:AAAA", "digest is 3 bytes"},
		{"key:sha256:" + digest + ",cert:sha256:" + digest, "mixes cert and key"},
	}
	for _, tt := range tests {
		p, err := ParsePin(tt.spec)
		switch {
		case tt.err == "" && err != nil:
			t.Errorf("ParsePin(%q): %v", tt.spec, err)
		case tt.err == "" && strings.HasSuffix(tt.spec, "=") && p.String() != tt.spec:
			t.Errorf("ParsePin(%q).String() = %q", tt.spec, p.String())
		case tt.err != "" && (err == nil || !strings.Contains(err.Error(), tt.err)):
			t.Errorf("ParsePin(%q) error %v, want one containing %q", tt.spec, err, tt.err)
		}
	}
}

func TestDialURLSchemes(t *testing.T) {
	_, err := (&Dialer{}).DialURL(context.Background(), &url.URL{Scheme: "ftp", Host: "x"})
	if err == nil || !strings.Contains(err.Error(), `unsupported scheme "ftp"`) {
		t.Errorf("ftp: %v", err)
	}
	if _, err := CAFile(filepath.Join(t.TempDir(), "none.pem")); err == nil {
		t.Error("CAFile of a missing file succeeded")
	}
}
