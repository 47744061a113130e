package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pafhq/paf/hook"
	"github.com/pafhq/paf/internal/pebbletest"
	"github.com/pafhq/paf/internal/testpeer"
)

// pxBackend runs `paf serve --root` over plain HTTP serving one page that
// says name, and returns the process and its address.
func pxBackend(t *testing.T, name string) (*proc, string) {
	t.Helper()
	dir := t.TempDir()
	root := filepath.Join(dir, "www")
	os.MkdirAll(root, 0o755)
	os.WriteFile(filepath.Join(root, "index.html"), []byte(name+"\n"), 0o644)
	p := startPaf(t, nil, "serve", "--root", root, "--http", "127.0.0.1:0", "--https", "off", "--data-dir", filepath.Join(dir, "data"), "--poll", "0")
	return p, p.addr("http")
}

// pxClient returns a client trusting caFile that connects every request to
// addr, so URLs can name any host.
func pxClient(t *testing.T, caFile, addr string, h2 bool) *http.Client {
	t.Helper()
	pem, err := os.ReadFile(caFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	tr := &http.Transport{
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		},
		TLSClientConfig:    &tls.Config{RootCAs: pool},
		DisableCompression: true,
		Protocols:          new(http.Protocols),
	}
	tr.Protocols.SetHTTP1(!h2)
	tr.Protocols.SetHTTP2(h2)
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: 30 * time.Second}
}

func pxGet(c *http.Client, url string) (int, string, error) {
	resp, err := c.Get(url)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// pxCurl runs curl against the proxy with host resolved to 127.0.0.1 and
// returns the body and "status version".
func pxCurl(t *testing.T, curl, caFile, host, httpsAddr string, args ...string) (string, string, error) {
	t.Helper()
	_, p, _ := net.SplitHostPort(httpsAddr)
	a := append([]string{"-sS", "--max-time", "20", "--cacert", caFile, "--resolve", host + ":" + p + ":127.0.0.1",
		"-w", "\n%{http_code} %{http_version}"}, args...)
	a = append(a, "https://"+host+":"+p+"/")
	out, err := exec.Command(curl, a...).CombinedOutput()
	s := string(out)
	i := strings.LastIndexByte(s, '\n')
	if i < 0 {
		return s, "", err
	}
	return strings.TrimSpace(s[:i]), s[i+1:], err
}

func TestProxyRoutesEndToEnd(t *testing.T) {
	curl := testpeer.Need(t, "curl")
	nghttp := testpeer.Need(t, "nghttp")
	backA, addrA := pxBackend(t, "site A")
	_, addrB := pxBackend(t, "site B")
	dir := t.TempDir()
	routes := filepath.Join(dir, "routes")
	for _, r := range [][]string{{"a.test", addrA}, {"b.test", addrB}} {
		if code, out, errOut := runPaf(t, nil, "route", "add", r[0], "--backend", "http://"+r[1], "--routes", routes,
			"--health-fails", "1", "--fail-duration", "100ms", "--response-header", "X-Route: "+r[0]); code != 0 {
			t.Fatalf("route add: %d %s %s", code, out, errOut)
		}
	}
	data := filepath.Join(dir, "data")
	px := startPaf(t, nil, "proxy", "--routes", routes, "--http", "127.0.0.1:0", "--https", "127.0.0.1:0",
		"--data-dir", data, "--poll", "50ms", "--default-cert", "a.test")
	httpsAddr := px.addr("https")
	caFile := filepath.Join(data, "ca", "ca.pem")

	// curl over HTTP/1.1 and HTTP/2: each host its own backend.
	for _, v := range []struct{ flag, want string }{{"--http1.1", "1.1"}, {"--http2", "2"}} {
		for _, h := range []struct{ host, body string }{{"a.test", "site A"}, {"b.test", "site B"}} {
			body, status, err := pxCurl(t, curl, caFile, h.host, httpsAddr, v.flag)
			if err != nil || body != h.body || status != "200 "+v.want {
				t.Errorf("curl %s %s: %v %q %q, want %q 200 %s", v.flag, h.host, err, body, status, h.body, v.want)
			}
		}
	}
	// A Host that no route names gets 421, not another site.
	body, status, _ := pxCurl(t, curl, caFile, "a.test", httpsAddr, "-H", "Host: c.test")
	if !strings.HasPrefix(status, "421") || strings.Contains(body, "site ") && !strings.Contains(body, "No site") {
		t.Errorf("unknown Host: %q %q", status, body)
	}
	// nghttp: the route follows :authority, not the TLS name (the
	// default certificate answers a ClientHello without SNI).
	out, err := exec.Command(nghttp, "-H", ":authority: b.test", "https://"+httpsAddr+"/").Output()
	if err != nil || strings.TrimSpace(string(out)) != "site B" {
		t.Errorf("nghttp :authority b.test: %v %q", err, out)
	}
	// The HTTP listener redirects to HTTPS.
	resp, err := (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).
		Get("http://" + px.addr("http") + "/x")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 301 || !strings.HasPrefix(resp.Header.Get("Location"), "https://") {
		t.Errorf("http listener: %d %s", resp.StatusCode, resp.Header.Get("Location"))
	}

	// Routes change while load runs on a.test: none of its requests fail.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var fails, total atomic.Int64
	var firstFail atomic.Pointer[string]
	for i := range 3 {
		wg.Go(func() {
			c := pxClient(t, caFile, httpsAddr, i%2 == 0)
			for {
				select {
				case <-stop:
					return
				default:
				}
				code, body, err := pxGet(c, "https://a.test/")
				total.Add(1)
				if err != nil || code != 200 || body != "site A\n" {
					fails.Add(1)
					s := strings.TrimSpace(body)
					if err != nil {
						s = err.Error()
					}
					firstFail.CompareAndSwap(nil, &s)
				}
			}
		})
	}
	c := pxClient(t, caFile, httpsAddr, true)
	waitFor := func(url, want string, code int) {
		t.Helper()
		for i := 0; ; i++ {
			got, body, err := pxGet(c, url)
			if err == nil && got == code && strings.Contains(body, want) {
				return
			}
			if i == 400 {
				t.Fatalf("%s: never got %d %q (last %d %q %v)", url, code, want, got, body, err)
			}
			time.Sleep(25 * time.Millisecond)
		}
	}
	add := func(args ...string) {
		t.Helper()
		if code, out, errOut := runPaf(t, nil, append([]string{"route"}, append(args, "--routes", routes)...)...); code != 0 {
			t.Fatalf("paf route %v: %d %s %s", args, code, out, errOut)
		}
	}
	add("add", "c.test", "--backend", "http://"+addrA)
	waitFor("https://c.test/", "site A", 200)
	add("add", "c.test", "--backend", "http://"+addrB)
	waitFor("https://c.test/", "site B", 200)
	add("add", "b.test", "--backend", "http://"+addrA)
	waitFor("https://b.test/", "site A", 200)
	add("rm", "c.test")
	// c.test is gone: its name has no certificate of its own any more
	// (the handshake gets the default one, a.test's), and its requests
	// get 421.
	cInsecure := pxClient(t, caFile, httpsAddr, true)
	cInsecure.Transport.(*http.Transport).TLSClientConfig.InsecureSkipVerify = true
	for i := 0; ; i++ {
		code, _, err := pxGet(cInsecure, "https://c.test/")
		if err == nil && code == 421 {
			break
		}
		if i == 400 {
			t.Fatalf("removed route still served: %d %v", code, err)
		}
		time.Sleep(25 * time.Millisecond)
	}
	// A broken route file is reported; routing stays as it was.
	os.WriteFile(filepath.Join(routes, "d.test.toml"), []byte("backends = [\"http://127.0.0.1:1\"]\nbogus = 1\n"), 0o644)
	px.waitLog("routes not reloaded: keeping the previous routing", 30*time.Second)
	waitFor("https://b.test/", "site A", 200)
	os.Remove(filepath.Join(routes, "d.test.toml"))
	close(stop)
	wg.Wait()
	if fails.Load() > 0 {
		t.Fatalf("%d of %d requests to the unchanged host failed; first: %s", fails.Load(), total.Load(), *firstFail.Load())
	}

	// The backend dies: 502; it comes back: 200.
	backA.cmd.Process.Kill()
	<-backA.done
	code, body, err := pxGet(c, "https://a.test/")
	if err != nil || code != 502 {
		t.Fatalf("backend killed: %d %q %v", code, body, err)
	}
	ln, err := net.Listen("tcp", addrA)
	if err != nil {
		t.Skipf("cannot rebind %s to bring the backend back: %v", addrA, err)
	}
	go http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "site A again\n") }))
	t.Cleanup(func() { ln.Close() })
	waitFor("https://a.test/", "site A again", 200)
	resp, err = c.Get("https://a.test/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if got := resp.Header.Get("X-Route"); got != "a.test" {
		t.Errorf("response header from the route file: %q", got)
	}
}

// passthroughBackend runs a `paf serve` over HTTPS for pt.test, with its
// own local CA in beData, serving page, and a routes directory in dir
// holding a passthrough route for pt.test to it.
func passthroughBackend(t *testing.T, page string) (dir, beData, routes string) {
	t.Helper()
	dir = t.TempDir()
	root := filepath.Join(dir, "www")
	os.MkdirAll(root, 0o755)
	os.WriteFile(filepath.Join(root, "index.html"), []byte(page), 0o644)
	beData = filepath.Join(dir, "be-data")
	be := startPaf(t, nil, "serve", "--root", root, "--http", "off", "--https", "127.0.0.1:0", "--hostname", "pt.test",
		"--data-dir", beData, "--poll", "0")
	routes = filepath.Join(dir, "routes")
	if code, out, errOut := runPaf(t, nil, "route", "add", "pt.test", "--passthrough", "--backend", "tcp://"+be.addr("https"), "--routes", routes); code != 0 {
		t.Fatalf("route add: %d %s %s", code, out, errOut)
	}
	return dir, beData, routes
}

// TestProxyPassthroughEndToEnd: a passthrough route sends the TLS
// connection to a `paf serve` that terminates it with its own CA's
// certificate, which curl then sees and verifies.
func TestProxyPassthroughEndToEnd(t *testing.T) {
	curl := testpeer.Need(t, "curl")
	dir, beData, routes := passthroughBackend(t, "end to end TLS\n")
	pxData := filepath.Join(dir, "px-data")
	px := startPaf(t, nil, "proxy", "--routes", routes, "--http", "off", "--https", "127.0.0.1:0", "--data-dir", pxData, "--poll", "0")
	httpsAddr := px.addr("https")
	for _, v := range []struct{ flag, want string }{{"--http1.1", "1.1"}, {"--http2", "2"}} {
		body, status, err := pxCurl(t, curl, filepath.Join(beData, "ca", "ca.pem"), "pt.test", httpsAddr, v.flag)
		if err != nil || body != "end to end TLS" || status != "200 "+v.want {
			t.Errorf("curl %s via passthrough: %v %q %q", v.flag, err, body, status)
		}
	}
	// The proxy's own CA does not verify it: the certificate is the
	// backend's.
	if _, _, err := pxCurl(t, curl, filepath.Join(pxData, "ca", "ca.pem"), "pt.test", httpsAddr); err == nil {
		t.Error("the proxy's CA verified the passthrough certificate")
	}
	// A name without a route: no --default-cert, so the handshake fails.
	if _, _, err := pxCurl(t, curl, filepath.Join(pxData, "ca", "ca.pem"), "other.test", httpsAddr); err == nil {
		t.Error("handshake for an unrouted name succeeded")
	}
}

// TestProxyACME: with --acme the proxy obtains a certificate from Pebble
// for every routed name, answering the challenge on its own listeners
// (HTTP-01 before the redirect, TLS-ALPN-01 on HTTPS); curl trusting only
// Pebble's root reaches each backend over HTTP/2; a route added later gets
// its certificate without a restart, and a removed one stops being
// managed.
func TestProxyACME(t *testing.T) {
	curl := testpeer.Need(t, "curl")
	for _, challenge := range []string{"http-01", "tls-alpn-01"} {
		t.Run(challenge, func(t *testing.T) {
			_, addrA := pxBackend(t, "site A")
			_, addrB := pxBackend(t, "site B")
			httpPort, httpsPort := pebbletest.FreePort(t), pebbletest.FreePort(t)
			peb := pebbletest.Start(t, pebbletest.Config{HTTPPort: httpPort, TLSPort: httpsPort})
			dir := t.TempDir()
			routes := filepath.Join(dir, "routes")
			add := func(host, addr string) {
				t.Helper()
				if code, out, errOut := runPaf(t, nil, "route", "add", host, "--backend", "http://"+addr, "--routes", routes); code != 0 {
					t.Fatalf("route add: %d %s %s", code, out, errOut)
				}
			}
			add("a.example", addrA)
			add("b.example", addrB)
			px := startPaf(t, nil, "proxy", "--routes", routes, "--data-dir", filepath.Join(dir, "data"), "--poll", "100ms",
				"--http", "127.0.0.1:"+strconv.Itoa(httpPort), "--https", "127.0.0.1:"+strconv.Itoa(httpsPort),
				"--acme", "--acme-ca", peb.DirectoryURL, "--acme-ca-root", peb.RootFile, "--acme-challenge", challenge)
			httpsAddr := px.addr("https")
			px.waitCount(1, 90*time.Second, "certificate obtained", "name", "a.example")
			px.waitCount(1, 90*time.Second, "certificate obtained", "name", "b.example")
			root := peb.WriteIssuerRoot()
			for _, h := range []struct{ host, body string }{{"a.example", "site A"}, {"b.example", "site B"}} {
				body, status, err := pxCurl(t, curl, root, h.host, httpsAddr, "--http2")
				if err != nil || body != h.body || status != "200 2" {
					t.Errorf("curl %s: %v %q %q, want %q 200 2", h.host, err, body, status, h.body)
				}
			}
			add("c.example", addrA)
			px.waitCount(1, 90*time.Second, "certificate obtained", "name", "c.example")
			if body, status, err := pxCurl(t, curl, root, "c.example", httpsAddr, "--http2"); err != nil || body != "site A" || status != "200 2" {
				t.Errorf("curl c.example (route added while running): %v %q %q", err, body, status)
			}
			if n := peb.Orders(); n != 3 {
				t.Errorf("Pebble got %d orders, want 3", n)
			}
			if code, out, errOut := runPaf(t, nil, "route", "rm", "c.example", "--routes", routes); code != 0 {
				t.Fatalf("route rm: %d %s %s", code, out, errOut)
			}
			px.waitCount(1, 30*time.Second, "ACME: name no longer routed: certificate not renewed any more", "name", "c.example")
			px.stop()
		})
	}
}

// TestProxyGitSite: a route with site = "file://...#main" is served by the
// proxy itself from a bare repository, and a push followed by the signed
// webhook (on the site's own hostname) is served at once.
func TestProxyGitSite(t *testing.T) {
	repo := newGitRepo(t)
	repo.commit(map[string]string{"index.html": "version 1\n"})
	dir := t.TempDir()
	routes := filepath.Join(dir, "routes")
	if code, out, errOut := runPaf(t, nil, "route", "add", "site.test", "--site", "file://"+repo.bare+"#main", "--routes", routes); code != 0 {
		t.Fatalf("route add: %d %s %s", code, out, errOut)
	}
	secret := "proxy hook secret"
	px := startPaf(t, []string{"PAF_HOOK_SECRET=" + secret}, "proxy", "--routes", routes, "--http", "127.0.0.1:0", "--https", "off",
		"--data-dir", filepath.Join(dir, "data"), "--poll", "0")
	addr := px.addr("http")
	c := &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		DialContext: func(ctx context.Context, network, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, network, addr)
		},
	}}
	t.Cleanup(c.CloseIdleConnections)
	// The first fetch runs in the background: 503 until it is done.
	for i := 0; ; i++ {
		code, body, err := pxGet(c, "http://site.test/")
		if err == nil && code == 200 {
			if body != "version 1\n" {
				t.Fatalf("site: %q", body)
			}
			break
		}
		if i == 400 || err == nil && code != 503 {
			t.Fatalf("site never served: %d %q %v", code, body, err)
		}
		time.Sleep(25 * time.Millisecond)
	}
	repo.commit(map[string]string{"index.html": "version 2\n"})
	body := []byte(`{"ref":"refs/heads/main"}`)
	req, _ := http.NewRequest("POST", "http://site.test/.paf/hook", bytes.NewReader(body))
	req.Header.Set("X-Hub-Signature-256", hook.Sign([]byte(secret), body))
	resp, msg := doBody(t, c, req)
	if resp.StatusCode != 200 || !strings.Contains(msg, "1 site(s) updated") {
		t.Fatalf("hook: %d %q", resp.StatusCode, msg)
	}
	if code, got, err := pxGet(c, "http://site.test/"); err != nil || code != 200 || got != "version 2\n" {
		t.Fatalf("after the hook: %d %q %v, want version 2", code, got, err)
	}
	px.stop()
}

// TestProxyALPNAndProxyProtocol: a route with alpn = ["http/1.1"] gets
// HTTP/1.1 from curl --http2 while another name gets HTTP/2; with
// --proxy-protocol-from, curl --haproxy-protocol from a trusted address is
// served, from an untrusted one its connection is closed.
func TestProxyALPNAndProxyProtocol(t *testing.T) {
	curl := testpeer.Need(t, "curl")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "backend") })}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	dir := t.TempDir()
	routes := filepath.Join(dir, "routes")
	for _, args := range [][]string{{"h1.test", "--alpn", "http/1.1"}, {"h2.test"}} {
		a := append([]string{"route", "add"}, args...)
		if code, out, errOut := runPaf(t, nil, append(a, "--backend", "http://"+ln.Addr().String(), "--routes", routes)...); code != 0 {
			t.Fatalf("route add: %d %s %s", code, out, errOut)
		}
	}
	for _, tt := range []struct {
		from    string
		trusted bool
	}{{"127.0.0.1/32", true}, {"10.0.0.0/8,192.0.2.1", false}} {
		t.Run(tt.from, func(t *testing.T) {
			data := filepath.Join(t.TempDir(), "data")
			px := startPaf(t, nil, "proxy", "--routes", routes, "--http", "off", "--https", "127.0.0.1:0",
				"--data-dir", data, "--poll", "0", "--proxy-protocol-from", tt.from)
			httpsAddr := px.addr("https")
			caFile := filepath.Join(data, "ca", "ca.pem")
			for _, c := range []struct{ host, version string }{{"h1.test", "1.1"}, {"h2.test", "2"}} {
				body, status, err := pxCurl(t, curl, caFile, c.host, httpsAddr, "--http2")
				if err != nil || body != "backend" || status != "200 "+c.version {
					t.Errorf("curl --http2 %s without PROXY header: %v %q %q, want 200 %s", c.host, err, body, status, c.version)
				}
				body, status, err = pxCurl(t, curl, caFile, c.host, httpsAddr, "--http2", "--haproxy-protocol")
				switch {
				case tt.trusted && (err != nil || body != "backend" || status != "200 "+c.version):
					t.Errorf("curl --haproxy-protocol %s from a trusted address: %v %q %q", c.host, err, body, status)
				case !tt.trusted && err == nil:
					t.Errorf("curl --haproxy-protocol %s from an untrusted address: served %q %q", c.host, body, status)
				}
			}
			px.stop()
		})
	}
}

// TestProxyMaxConnsCountsPassthrough: --max-conns counts the connections
// the proxy splices to a passthrough backend, so that a flood of them is
// refused like any other, and a closed one frees its place.
func TestProxyMaxConnsCountsPassthrough(t *testing.T) {
	dir, beData, routes := passthroughBackend(t, "spliced\n")
	px := startPaf(t, nil, "proxy", "--routes", routes, "--http", "off", "--https", "127.0.0.1:0",
		"--data-dir", filepath.Join(dir, "px-data"), "--poll", "0", "--max-conns", "2")
	caPEM, err := os.ReadFile(filepath.Join(beData, "ca", "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(caPEM)
	dial := func() (*tls.Conn, error) {
		d := &net.Dialer{Timeout: 5 * time.Second}
		c, err := tls.DialWithDialer(d, "tcp", px.addr("https"), &tls.Config{ServerName: "pt.test", RootCAs: pool})
		if err == nil {
			t.Cleanup(func() { c.Close() })
		}
		return c, err
	}
	held := make([]*tls.Conn, 2)
	for i := range held {
		if held[i], err = dial(); err != nil {
			t.Fatalf("passthrough connection %d of 2: %v", i+1, err)
		}
	}
	if _, err := dial(); err == nil {
		t.Fatal("a third connection was spliced with --max-conns 2 and two open")
	}
	// A closed passthrough connection gives its place back once the
	// proxy sees the close.
	held[0].Close()
	var ok bool
	for range 50 {
		if c, err := dial(); err == nil {
			c.Close()
			ok = true
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if !ok {
		t.Fatal("no connection accepted after one of the two closed")
	}
}
