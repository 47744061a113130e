package proxy

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/websocket"

	"github.com/pafhq/paf/certs"
	"github.com/pafhq/paf/route"
)

// backend runs h on 127.0.0.1 (HTTP/1.1, and h2c when h2c is set) until
// the test ends and returns its address.
func backend(t *testing.T, h http.Handler, h2c bool) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return serveOn(t, ln, h, h2c)
}

func serveOn(t *testing.T, ln net.Listener, h http.Handler, h2c bool) string {
	t.Helper()
	srv := &http.Server{Handler: h, Protocols: new(http.Protocols)}
	srv.Protocols.SetHTTP1(true)
	srv.Protocols.SetUnencryptedHTTP2(h2c)
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

// front serves p over plain HTTP/1.1 and h2c and returns its address.
func front(t *testing.T, p *Proxy) string {
	t.Helper()
	return backend(t, p, true)
}

// apply gives p routes from file contents keyed by hostname.
func apply(t *testing.T, p *Proxy, files map[string]string) {
	t.Helper()
	m := map[string][]byte{}
	for h, src := range files {
		m[h+".toml"] = []byte(src)
	}
	tb, err := route.FromFiles("test", "", m)
	if err != nil {
		t.Fatal(err)
	}
	if err := p.Apply(tb); err != nil {
		t.Fatal(err)
	}
}

func newProxy(t *testing.T, cfg Config) *Proxy {
	p := New(cfg)
	t.Cleanup(func() { p.Close() })
	return p
}

// client returns an HTTP/1.1 client that sends every request to addr.
func client(addr string, h2c bool) *http.Client {
	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		},
		DisableCompression: true,
		Protocols:          new(http.Protocols),
	}
	if h2c {
		tr.Protocols.SetUnencryptedHTTP2(true)
	} else {
		tr.Protocols.SetHTTP1(true)
	}
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}

func get(t *testing.T, c *http.Client, url string) (int, string) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func text(s string) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, s) })
}

func TestHostsReachOwnBackends(t *testing.T) {
	a := backend(t, text("site A"), false)
	b := backend(t, text("site B"), false)
	p := newProxy(t, Config{})
	apply(t, p, map[string]string{
		"a.test": fmt.Sprintf("backends = [%q]", "http://"+a),
		"b.test": fmt.Sprintf("backends = [%q]", "http://"+b),
	})
	addr := front(t, p)
	for _, h2 := range []bool{false, true} {
		c := client(addr, h2)
		for _, tc := range []struct {
			url  string
			code int
			body string
		}{
			{"http://a.test/", 200, "site A"},
			{"http://B.TEST./x", 200, "site B"},
			{"http://a.test:8080/", 200, "site A"},
			{"http://c.test/", 421, "No site is served under this name"},
			{"http://127.0.0.1/", 421, "No site is served under this name"},
		} {
			code, body := get(t, c, tc.url)
			if code != tc.code || !strings.Contains(body, tc.body) {
				t.Errorf("h2=%v %s: %d %q, want %d %q", h2, tc.url, code, body, tc.code, tc.body)
			}
			if tc.code == 421 && (strings.Contains(body, "site A") || strings.Contains(body, "site B")) {
				t.Errorf("unknown host got a site's content: %q", body)
			}
		}
	}
}

// echoHeaders answers the request's headers and protocol as JSON.
func echoHeaders() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Powered-By", "backend")
		json.NewEncoder(w).Encode(map[string]any{"headers": r.Header, "host": r.Host, "proto": r.Proto})
	})
}

type echoed struct {
	Headers http.Header
	Host    string
	Proto   string
}

func TestForwardedHeaders(t *testing.T) {
	be := backend(t, echoHeaders(), false)
	routeSrc := fmt.Sprintf(`backends = [%q]
[request_headers]
X-Added = "yes"
X-Secret = ""
[response_headers]
X-Powered-By = ""
X-Frame-Options = "DENY"
`, "http://"+be)
	for _, tc := range []struct {
		name     string
		trusted  []netip.Prefix
		wantXFF  string
		wantXFH  string
		wantFwd  string
		wantXFP  string
		wantHost string
	}{
		{"untrusted", nil, "127.0.0.1", "a.test", "for=127.0.0.1;host=a.test;proto=http", "http", "a.test"},
		{"trusted", []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, "203.0.113.9, 127.0.0.1", "public.example",
			"for=203.0.113.9, for=127.0.0.1;host=a.test;proto=http", "https", "a.test"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newProxy(t, Config{TrustedProxies: tc.trusted})
			apply(t, p, map[string]string{"a.test": routeSrc})
			c := client(front(t, p), false)
			req, _ := http.NewRequest("GET", "http://a.test/", nil)
			req.Header.Set("X-Forwarded-For", "203.0.113.9")
			req.Header.Set("X-Forwarded-Host", "public.example")
			req.Header.Set("X-Forwarded-Proto", "https")
			req.Header.Set("Forwarded", "for=203.0.113.9")
			req.Header.Set("X-Secret", "s3cret")
			req.Header.Set("Connection", "X-Hop")
			req.Header.Set("X-Hop", "1")
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			var e echoed
			if err := json.NewDecoder(resp.Body).Decode(&e); err != nil {
				t.Fatal(err)
			}
			h := e.Headers
			check := func(name, got, want string) {
				if got != want {
					t.Errorf("%s = %q, want %q", name, got, want)
				}
			}
			check("X-Forwarded-For", h.Get("X-Forwarded-For"), tc.wantXFF)
			check("X-Forwarded-Host", h.Get("X-Forwarded-Host"), tc.wantXFH)
			check("X-Forwarded-Proto", h.Get("X-Forwarded-Proto"), tc.wantXFP)
			check("Forwarded", strings.Join(h.Values("Forwarded"), ", "), tc.wantFwd)
			check("Host", e.Host, tc.wantHost)
			check("X-Added", h.Get("X-Added"), "yes")
			check("X-Secret (removed)", h.Get("X-Secret"), "")
			check("X-Hop (hop-by-hop)", h.Get("X-Hop"), "")
			check("response X-Powered-By (removed)", resp.Header.Get("X-Powered-By"), "")
			check("response X-Frame-Options", resp.Header.Get("X-Frame-Options"), "DENY")
		})
	}
}

// restartable is a backend that can be stopped and started on one port.
type restartable struct {
	t    *testing.T
	addr string
	h    http.Handler
	srv  *http.Server
}

func (r *restartable) start() {
	r.t.Helper()
	var ln net.Listener
	var err error
	for i := 0; i < 100; i++ { // the port may linger briefly after close
		if ln, err = net.Listen("tcp", r.addr); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if err != nil {
		r.t.Fatal(err)
	}
	r.addr = ln.Addr().String()
	r.srv = &http.Server{Handler: r.h}
	go r.srv.Serve(ln)
	r.t.Cleanup(func() { r.srv.Close() })
}

func (r *restartable) stop() { r.srv.Close() }

func TestBackendDownThenBack(t *testing.T) {
	be := &restartable{t: t, addr: "127.0.0.1:0", h: text("up")}
	be.start()
	p := newProxy(t, Config{})
	apply(t, p, map[string]string{"a.test": fmt.Sprintf("backends = [%q]\n[health]\nfails = 1\nfail_duration = \"100ms\"\n", "http://"+be.addr)})
	c := client(front(t, p), false)
	if code, _ := get(t, c, "http://a.test/"); code != 200 {
		t.Fatalf("before: %d", code)
	}
	be.stop()
	code, body := get(t, c, "http://a.test/")
	if code != 502 || !strings.Contains(body, "refused") {
		t.Fatalf("backend down: %d %q", code, body)
	}
	// Marked down: 502 at once, without trying.
	code, body = get(t, c, "http://a.test/")
	if code != 502 || !strings.Contains(body, "all down") {
		t.Fatalf("backend marked down: %d %q", code, body)
	}
	be.start()
	for i := 0; ; i++ {
		if code, _ = get(t, c, "http://a.test/"); code == 200 {
			break
		}
		if i == 200 {
			t.Fatalf("backend back: still %d", code)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestActiveHealthCheck(t *testing.T) {
	var healthy atomic.Bool
	healthy.Store(true)
	mux := http.NewServeMux()
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		if !healthy.Load() {
			w.WriteHeader(503)
		}
	})
	mux.Handle("/", text("one"))
	one := backend(t, mux, false)
	two := backend(t, text("two"), false)
	p := newProxy(t, Config{})
	apply(t, p, map[string]string{"a.test": fmt.Sprintf("backends = [%q, %q]\nlb = \"first\"\n[health]\npath = \"/healthz\"\ninterval = \"20ms\"\n", "http://"+one, "http://"+two)})
	c := client(front(t, p), false)
	waitBody := func(want string) {
		t.Helper()
		for i := 0; ; i++ {
			if _, body := get(t, c, "http://a.test/"); body == want {
				return
			}
			if i == 300 {
				t.Fatalf("never got %q", want)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitBody("one")
	healthy.Store(false)
	waitBody("two")
	healthy.Store(true)
	waitBody("one")
}

func TestSlowBackend504(t *testing.T) {
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	be := backend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}), false)
	p := newProxy(t, Config{})
	apply(t, p, map[string]string{"a.test": fmt.Sprintf("backends = [%q]\n[timeouts]\nresponse_header = \"100ms\"\n", "http://"+be)})
	code, body := get(t, client(front(t, p), false), "http://a.test/")
	if code != 504 || !strings.Contains(body, "too long") {
		t.Fatalf("%d %q", code, body)
	}
}

func TestLoadBalancing(t *testing.T) {
	one := backend(t, text("1"), false)
	two := backend(t, text("2"), false)
	dead, _ := net.Listen("tcp", "127.0.0.1:0")
	deadAddr := dead.Addr().String()
	dead.Close()
	for _, tc := range []struct {
		lb, backends string
		want         string
	}{
		{"round_robin", fmt.Sprintf("%q, %q", "http://"+one, "http://"+two), "1212"},
		{"first", fmt.Sprintf("%q, %q", "http://"+one, "http://"+two), "1111"},
		{"least_conn", fmt.Sprintf("%q, %q", "http://"+one, "http://"+two), "1111"}, // sequential: always tied
		// A refused backend is skipped within the same request.
		{"first", fmt.Sprintf("%q, %q", "http://"+deadAddr, "http://"+two), "2222"},
	} {
		p := newProxy(t, Config{})
		apply(t, p, map[string]string{"a.test": fmt.Sprintf("backends = [%s]\nlb = %q\n", tc.backends, tc.lb)})
		c := client(front(t, p), false)
		var got string
		for range 4 {
			code, body := get(t, c, "http://a.test/")
			if code != 200 {
				t.Fatalf("%s: %d %s", tc.lb, code, body)
			}
			got += body
		}
		// Round robin may start on either backend.
		if got != tc.want && !(tc.lb == "round_robin" && got == "2121") {
			t.Errorf("%s [%s]: sequence %s, want %s", tc.lb, tc.backends, got, tc.want)
		}
	}
}

func TestMaxBody(t *testing.T) {
	be := backend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, err := io.Copy(io.Discard, r.Body)
		if err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		fmt.Fprint(w, n)
	}), false)
	p := newProxy(t, Config{})
	apply(t, p, map[string]string{"a.test": fmt.Sprintf("backends = [%q]\nmax_body = \"1KiB\"\n", "http://"+be)})
	c := client(front(t, p), false)
	for _, tc := range []struct {
		name    string
		size    int
		chunked bool
		code    int
	}{
		{"small", 1024, false, 200},
		{"large", 2048, false, 413},
		{"large chunked", 4096, true, 413},
		// Oversized uploads are the client's fault: repeated, they must
		// not mark the backend down (3 failures would).
		{"large chunked again", 4096, true, 413},
		{"large chunked a third time", 4096, true, 413},
		{"large chunked a fourth time", 4096, true, 413},
		{"small after", 10, false, 200},
	} {
		var body io.Reader = bytes.NewReader(make([]byte, tc.size))
		if tc.chunked {
			body = io.MultiReader(body) // hides the length
		}
		resp, err := c.Post("http://a.test/", "application/octet-stream", body)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.code {
			t.Errorf("%s: %d, want %d", tc.name, resp.StatusCode, tc.code)
		}
	}
}

// TestNonWebSocketUpgradeIsPlain: an Upgrade other than websocket (h2c
// smuggling) reaches the backend as a plain request, never a 101 splice
// that would bypass the proxy's per-request rules.
func TestNonWebSocketUpgradeIsPlain(t *testing.T) {
	be := backend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != "" {
			w.Header().Set("Connection", "Upgrade")
			w.Header().Set("Upgrade", r.Header.Get("Upgrade"))
			w.WriteHeader(http.StatusSwitchingProtocols)
			return
		}
		fmt.Fprint(w, "plain")
	}), false)
	p := newProxy(t, Config{})
	apply(t, p, map[string]string{"a.test": fmt.Sprintf("backends = [%q]\n", "http://"+be)})
	c, err := net.Dial("tcp", front(t, p))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprint(c, "GET / HTTP/1.1\r\nHost: a.test\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n")
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(io.LimitReader(resp.Body, 100))
	if resp.StatusCode != 200 || string(b) != "plain" {
		t.Fatalf("Upgrade: h2c through the proxy: %d %q, want 200 \"plain\"", resp.StatusCode, b)
	}
}

func TestWebSocket(t *testing.T) {
	be := backend(t, websocket.Handler(func(ws *websocket.Conn) { io.Copy(ws, ws) }), false)
	p := newProxy(t, Config{})
	apply(t, p, map[string]string{
		"ws.test":   fmt.Sprintf("backends = [%q]", "http://"+be),
		"nows.test": fmt.Sprintf("backends = [%q]\nwebsocket = false\n", "http://"+be),
	})
	addr := front(t, p)
	dial := func(host string) (*websocket.Conn, error) {
		cfg, err := websocket.NewConfig("ws://"+host+"/echo", "http://"+host+"/")
		if err != nil {
			t.Fatal(err)
		}
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		return websocket.NewClient(cfg, conn)
	}
	ws, err := dial("ws.test")
	if err != nil {
		t.Fatal(err)
	}
	for _, msg := range []string{"hello", "through the proxy"} {
		if err := websocket.Message.Send(ws, msg); err != nil {
			t.Fatal(err)
		}
		var got string
		if err := websocket.Message.Receive(ws, &got); err != nil {
			t.Fatal(err)
		}
		if got != msg {
			t.Fatalf("echo %q, want %q", got, msg)
		}
	}
	if _, err := dial("nows.test"); err == nil || !strings.Contains(err.Error(), "bad status") {
		t.Fatalf("websocket=false: %v", err)
	}
	// The 101 keeps the connection: the server's Connection: close for
	// upgrade requests it does not take over is withdrawn on hijack.
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	io.WriteString(conn, "GET /echo HTTP/1.1\r\nHost: ws.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\nOrigin: http://ws.test/\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusSwitchingProtocols || strings.Contains(strings.ToLower(strings.Join(resp.Header["Connection"], ",")), "close") {
		t.Fatalf("raw upgrade: %d, Connection %q; want 101 without close", resp.StatusCode, resp.Header["Connection"])
	}
}

func TestServerSentEventsStream(t *testing.T) {
	next := make(chan struct{})
	be := backend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		for i := range 3 {
			fmt.Fprintf(w, "data: event %d\n\n", i)
			w.(http.Flusher).Flush()
			select {
			case <-next:
			case <-r.Context().Done():
				return
			}
		}
	}), false)
	p := newProxy(t, Config{})
	apply(t, p, map[string]string{"a.test": fmt.Sprintf("backends = [%q]", "http://"+be)})
	for _, h2 := range []bool{false, true} {
		resp, err := client(front(t, p), h2).Get("http://a.test/events")
		if err != nil {
			t.Fatal(err)
		}
		br := bufio.NewReader(resp.Body)
		// Each event arrives while the backend is still waiting to send
		// the next one: nothing is buffered until the end.
		for i := range 3 {
			line, err := br.ReadString('\n')
			if err != nil {
				t.Fatal(err)
			}
			if want := fmt.Sprintf("data: event %d\n", i); line != want {
				t.Fatalf("h2=%v: %q, want %q", h2, line, want)
			}
			br.ReadString('\n')
			next <- struct{}{}
		}
		resp.Body.Close()
	}
}

// localCA returns a CA in a temp dir and a pool trusting it.
func localCA(t *testing.T) (*certs.LocalCA, *x509.CertPool) {
	ca, err := certs.OpenLocalCA(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(ca.Certificate())
	return ca, pool
}

func TestHTTP2Backends(t *testing.T) {
	proto := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, r.Proto) })
	h2c := backend(t, proto, true)

	ca, _ := localCA(t)
	issued, err := ca.Issuer([]string{"backend.internal"})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tlsLn := tls.NewListener(ln, &tls.Config{GetCertificate: issued.GetCertificate, NextProtos: []string{"h2", "http/1.1"}})
	srv := &http.Server{Handler: proto}
	go srv.Serve(tlsLn)
	t.Cleanup(func() { srv.Close() })
	caFile := ca.CertFile()

	p := newProxy(t, Config{})
	apply(t, p, map[string]string{
		"h2c.test":   fmt.Sprintf("backends = [%q]", "h2c://"+h2c),
		"tls.test":   fmt.Sprintf("backends = [%q]\n[tls]\nca = %q\nserver_name = \"backend.internal\"\n", "https://"+ln.Addr().String(), caFile),
		"wrong.test": fmt.Sprintf("backends = [%q]\n", "https://"+ln.Addr().String()),
	})
	addr := front(t, p)
	for _, h2 := range []bool{false, true} {
		c := client(addr, h2)
		for _, host := range []string{"h2c.test", "tls.test"} {
			if code, body := get(t, c, "http://"+host+"/"); code != 200 || body != "HTTP/2.0" {
				t.Errorf("client h2=%v → %s: %d %q, want HTTP/2.0 at the backend", h2, host, code, body)
			}
		}
		// A backend whose certificate does not verify is not used.
		if code, _ := get(t, c, "http://wrong.test/"); code != 502 {
			t.Errorf("unverified backend: %d, want 502", code)
		}
	}
}

// TestReloadUnderLoad swaps tables while clients hammer an unchanged host:
// none of its requests may fail, and changed routes take effect.
func TestReloadUnderLoad(t *testing.T) {
	a := backend(t, text("A"), false)
	b1 := backend(t, text("B1"), false)
	b2 := backend(t, text("B2"), false)
	aSrc := fmt.Sprintf("backends = [%q]", "http://"+a)
	p := newProxy(t, Config{})
	apply(t, p, map[string]string{"a.test": aSrc})
	addr := front(t, p)

	stop := make(chan struct{})
	var wg sync.WaitGroup
	var failures, requests atomic.Int64
	for i := range 4 {
		wg.Go(func() {
			c := client(addr, i%2 == 0)
			for {
				select {
				case <-stop:
					return
				default:
				}
				resp, err := c.Get("http://a.test/")
				requests.Add(1)
				if err != nil {
					failures.Add(1)
					continue
				}
				body, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 || string(body) != "A" {
					failures.Add(1)
				}
			}
		})
	}
	c := client(addr, false)
	for i := range 30 {
		switch i % 3 {
		case 0:
			apply(t, p, map[string]string{"a.test": aSrc, "b.test": fmt.Sprintf("backends = [%q]", "http://"+b1)})
			if _, body := get(t, c, "http://b.test/"); body != "B1" {
				t.Errorf("added b.test: %q", body)
			}
		case 1:
			apply(t, p, map[string]string{"a.test": aSrc, "b.test": fmt.Sprintf("backends = [%q]", "http://"+b2)})
			if _, body := get(t, c, "http://b.test/"); body != "B2" {
				t.Errorf("changed b.test: %q", body)
			}
		case 2:
			apply(t, p, map[string]string{"a.test": aSrc})
			if code, _ := get(t, c, "http://b.test/"); code != 421 {
				t.Errorf("removed b.test: %d", code)
			}
		}
	}
	close(stop)
	wg.Wait()
	if failures.Load() != 0 {
		t.Fatalf("%d of %d requests to the unchanged host failed", failures.Load(), requests.Load())
	}
	if requests.Load() == 0 {
		t.Fatal("no load ran")
	}
}

// TestBrokenReloadKeepsRouting checks Reload keeps the last good table.
func TestBrokenReloadKeepsRouting(t *testing.T) {
	a := backend(t, text("A"), false)
	files := map[string][]byte{"a.test.toml": []byte(fmt.Sprintf("backends = [%q]", "http://"+a))}
	loader := route.LoaderFunc(func(ctx context.Context) (*route.Table, error) {
		return route.FromFiles("test", "", files)
	})
	p := newProxy(t, Config{})
	if changed, err := p.Reload(context.Background(), loader); err != nil || !changed {
		t.Fatalf("first reload: %v %v", changed, err)
	}
	files["b.test.toml"] = []byte("backends = [\"http://x\"]\nbogus = true\n")
	if _, err := p.Reload(context.Background(), loader); err == nil || !strings.Contains(err.Error(), "b.test.toml:2: bogus") {
		t.Fatalf("broken reload: %v", err)
	}
	if code, body := get(t, client(front(t, p), false), "http://a.test/"); code != 200 || body != "A" {
		t.Fatalf("after broken reload: %d %q", code, body)
	}
	if changed, err := p.Reload(context.Background(), route.LoaderFunc(func(ctx context.Context) (*route.Table, error) {
		delete(files, "b.test.toml")
		return route.FromFiles("test", "", files)
	})); err != nil || changed {
		t.Fatalf("same revision again: changed=%v err=%v", changed, err)
	}
}

// TestPassthrough sends TLS for pt.test raw to a backend that terminates
// it with its own certificate, while other names are terminated by the
// proxy's TLS server on the same listener.
func TestPassthrough(t *testing.T) {
	ca, pool := localCA(t)
	beCert, err := ca.Issuer([]string{"pt.test"})
	if err != nil {
		t.Fatal(err)
	}
	beLn, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	beSrv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "terminated by the backend over "+r.Proto)
	})}
	go beSrv.Serve(tls.NewListener(beLn, &tls.Config{GetCertificate: beCert.GetCertificate, NextProtos: []string{"h2", "http/1.1"}}))
	t.Cleanup(func() { beSrv.Close() })
	plain := backend(t, text("terminated by the proxy"), false)

	p := newProxy(t, Config{})
	apply(t, p, map[string]string{
		"pt.test": fmt.Sprintf("passthrough = true\nbackends = [%q]\n", "tcp://"+beLn.Addr().String()),
		"a.test":  fmt.Sprintf("backends = [%q]", "http://"+plain),
	})
	proxyCert, err := ca.Issuer([]string{"a.test"})
	if err != nil {
		t.Fatal(err)
	}
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	frontLn := tls.NewListener(p.Listener(raw, ListenerConfig{}), &tls.Config{
		GetCertificate: (&Certificates{Proxy: p, Default: &PerHost{New: func(string) (certs.Getter, error) { return proxyCert, nil }}}).GetCertificate,
		NextProtos:     []string{"h2", "http/1.1"},
	})
	srv := &http.Server{Handler: p}
	go srv.Serve(frontLn)
	t.Cleanup(func() { srv.Close() })

	for _, tc := range []struct {
		host, body string
		cert       *tls.Certificate
	}{
		{"pt.test", "terminated by the backend over HTTP/2.0", mustCert(t, beCert)},
		{"a.test", "terminated by the proxy", mustCert(t, proxyCert)},
	} {
		var peer *x509.Certificate
		tr := &http.Transport{
			DialTLSContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
				c, err := tls.Dial(network, raw.Addr().String(), &tls.Config{ServerName: tc.host, RootCAs: pool, NextProtos: []string{"h2", "http/1.1"}})
				if err == nil {
					peer = c.ConnectionState().PeerCertificates[0]
				}
				return c, err
			},
			ForceAttemptHTTP2: true,
		}
		resp, err := (&http.Client{Transport: tr}).Get("https://" + tc.host + "/")
		if err != nil {
			t.Fatalf("%s: %v", tc.host, err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		tr.CloseIdleConnections()
		if string(body) != tc.body {
			t.Errorf("%s: body %q, want %q", tc.host, body, tc.body)
		}
		if !peer.Equal(tc.cert.Leaf) {
			t.Errorf("%s: served certificate %v, want %v", tc.host, peer.SerialNumber, tc.cert.Leaf.SerialNumber)
		}
	}
	// An unrouted name fails the handshake: no certificate, no content.
	if _, err := tls.Dial("tcp", raw.Addr().String(), &tls.Config{ServerName: "other.test", RootCAs: pool}); err == nil {
		t.Error("handshake for an unrouted name succeeded")
	}
}

func mustCert(t *testing.T, g certs.Getter) *tls.Certificate {
	c, err := g.GetCertificate(&tls.ClientHelloInfo{})
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// TestWebSocketIdle checks that an HTTP/1.1 WebSocket through the proxy
// lives as long as either side talks, and is closed after the route's
// idle timeout of silence from both.
func TestWebSocketIdle(t *testing.T) {
	be := backend(t, websocket.Handler(func(ws *websocket.Conn) { io.Copy(ws, ws) }), false)
	p := newProxy(t, Config{})
	apply(t, p, map[string]string{
		"ws.test": fmt.Sprintf("backends = [%q]\n[timeouts]\nidle = \"300ms\"\n", "http://"+be),
	})
	cfg, err := websocket.NewConfig("ws://ws.test/echo", "http://ws.test/")
	if err != nil {
		t.Fatal(err)
	}
	conn, err := net.Dial("tcp", front(t, p))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(30 * time.Second)) // bounds the test, far beyond the idle timeout
	ws, err := websocket.NewClient(cfg, conn)
	if err != nil {
		t.Fatal(err)
	}
	// Traffic for three times the idle timeout keeps it open.
	for i := range 20 {
		msg := fmt.Sprint("ping ", i)
		if err := websocket.Message.Send(ws, msg); err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		var got string
		if err := websocket.Message.Receive(ws, &got); err != nil || got != msg {
			t.Fatalf("message %d: %q, %v", i, got, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	// Silence: the proxy closes it.
	var got string
	err = websocket.Message.Receive(ws, &got)
	var ne net.Error
	if err == nil || (errors.As(err, &ne) && ne.Timeout()) {
		t.Fatalf("idle WebSocket: %q, %v; want it closed by the proxy", got, err)
	}
}
