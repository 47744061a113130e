package server

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pafhq/paf/internal/testpeer"
)

func TestCurlHTTPVersions(t *testing.T) {
	r := start(t, Config{}, false, true)
	tests := []struct {
		flag, want string
	}{
		{"--http1.1", "1.1"},
		{"--http2", "2"},
	}
	for _, tt := range tests {
		t.Run(tt.flag, func(t *testing.T) {
			out, err := curl(t, append([]string{tt.flag, "-w", "\n%{http_version}"}, r.httpsArgs("/x")...)...)
			if err != nil {
				t.Fatal(err)
			}
			i := strings.LastIndexByte(out, '\n')
			body, version := strings.TrimSuffix(out[:i], "\n"), out[i+1:]
			if version != tt.want {
				t.Errorf("http_version %q, want %q", version, tt.want)
			}
			if want := "hello HTTP/" + map[string]string{"1.1": "1.1", "2": "2.0"}[tt.want] + " /x"; body != want {
				t.Errorf("body %q, want %q", body, want)
			}
		})
	}
}

func TestNghttpNegotiatesH2(t *testing.T) {
	bin := testpeer.Need(t, "nghttp")
	r := start(t, Config{}, false, true)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, "-nv", "https://localhost:"+strconv.Itoa(r.httpsPort())+"/")
	cmd.Env = append(cmd.Environ(), "SSL_CERT_FILE="+r.caFile)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("nghttp: %v\n%s", err, out)
	}
	for _, want := range []string{"The negotiated protocol: h2", ":status: 200"} {
		if !strings.Contains(string(out), want) {
			t.Errorf("nghttp output lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(string(out), "verif") {
		t.Errorf("nghttp reports a verification problem:\n%s", out)
	}
}

// sClient runs openssl s_client against the HTTPS listener and returns its
// combined output.
func sClient(t *testing.T, r *running, args ...string) (string, error) {
	t.Helper()
	bin := testpeer.Need(t, "openssl")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, append([]string{"s_client",
		"-connect", "127.0.0.1:" + strconv.Itoa(r.httpsPort()),
		"-servername", "localhost", "-verify_hostname", "localhost",
		"-CAfile", r.caFile, "-verify_return_error"}, args...)...)
	out, err := cmd.CombinedOutput() // stdin is /dev/null: s_client quits after the handshake
	return string(out), err
}

func TestOpenSSLVersionsAndALPN(t *testing.T) {
	r := start(t, Config{NextProtos: []string{"acme-tls/1"}}, false, true)
	tests := []struct {
		name string
		args []string
		ok   bool
		want string // in the output
	}{
		{"TLS 1.1 refused", []string{"-tls1_1", "-cipher", "DEFAULT@SECLEVEL=0"}, false, "alert protocol version"},
		{"TLS 1.2", []string{"-tls1_2"}, true, "Protocol  : TLSv1.2"},
		{"TLS 1.3", []string{"-tls1_3"}, true, "TLSv1.3"},
		{"TLS 1.2 CBC refused", []string{"-tls1_2", "-cipher", "ECDHE-ECDSA-AES128-SHA:ECDHE-RSA-AES128-SHA"}, false, "alert handshake failure"},
		{"TLS 1.2 ChaCha20", []string{"-tls1_2", "-cipher", "ECDHE-ECDSA-CHACHA20-POLY1305"}, true, "ECDHE-ECDSA-CHACHA20-POLY1305"},
		{"ALPN h2", []string{"-alpn", "h2,http/1.1"}, true, "ALPN protocol: h2"},
		{"ALPN http/1.1", []string{"-alpn", "http/1.1"}, true, "ALPN protocol: http/1.1"},
		{"ALPN extra", []string{"-alpn", "acme-tls/1"}, true, "ALPN protocol: acme-tls/1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := sClient(t, r, tt.args...)
			if !tt.ok {
				if err == nil {
					t.Fatalf("handshake succeeded:\n%s", out)
				}
				if !strings.Contains(out, tt.want) {
					t.Errorf("output lacks %q (the server must be the one refusing):\n%s", tt.want, out)
				}
				return
			}
			if err != nil {
				t.Fatalf("s_client: %v\n%s", err, out)
			}
			if !strings.Contains(out, "Verify return code: 0 (ok)") {
				t.Errorf("certificate not verified:\n%s", out)
			}
			if !strings.Contains(out, tt.want) {
				t.Errorf("output lacks %q:\n%s", tt.want, out)
			}
		})
	}
}

func TestRedirectToHTTPS(t *testing.T) {
	challenge := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "token "+r.URL.Path)
	})
	r := start(t, Config{ChallengeHandler: challenge}, true, true)
	base := "http://localhost:" + strconv.Itoa(r.httpPort())
	resolve := "localhost:" + strconv.Itoa(r.httpPort()) + ":127.0.0.1"
	httpsBase := "https://localhost:" + strconv.Itoa(r.httpsPort())
	tests := []struct {
		name     string
		args     []string
		code     string
		location string
		body     string
	}{
		{"GET with query", []string{base + "/a/b%20c?x=1&y=2"}, "301", httpsBase + "/a/b%20c?x=1&y=2", ""},
		{"root", []string{base + "/"}, "301", httpsBase + "/", ""},
		{"HEAD", []string{"-I", base + "/p"}, "301", httpsBase + "/p", ""},
		{"POST", []string{"-d", "x", base + "/form"}, "308", httpsBase + "/form", ""},
		{"Host port stripped", []string{"-H", "Host: Example.ORG:8080", base + "/q?z"}, "301", "https://example.org:" + strconv.Itoa(r.httpsPort()) + "/q?z", ""},
		{"IPv6 host", []string{"-H", "Host: [::1]:80", base + "/"}, "301", "https://[::1]:" + strconv.Itoa(r.httpsPort()) + "/", ""},
		{"ACME challenge", []string{base + "/.well-known/acme-challenge/x"}, "200", "", "token /.well-known/acme-challenge/x"},
		{"bad Host", []string{"-H", "Host: a!b", base + "/"}, "400", "", "400 Bad Request: invalid Host header\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"--resolve", resolve, "-o", "-", "-w", "\n%{http_code} %{redirect_url}"}, tt.args...)
			out, err := curl(t, args...)
			if err != nil {
				t.Fatal(err)
			}
			i := strings.LastIndexByte(out, '\n')
			body, tail := out[:i], out[i+1:]
			code, location, _ := strings.Cut(tail, " ")
			if code != tt.code || location != tt.location {
				t.Errorf("got %s %q, want %s %q", code, location, tt.code, tt.location)
			}
			if tt.body != "" && body != tt.body {
				t.Errorf("body %q, want %q", body, tt.body)
			}
		})
	}
}

func TestRedirectFollowed(t *testing.T) {
	r := start(t, Config{}, true, true)
	hp, sp := strconv.Itoa(r.httpPort()), strconv.Itoa(r.httpsPort())
	out, err := curl(t, "-L", "--cacert", r.caFile, "--resolve", "localhost:"+hp+":127.0.0.1",
		"--resolve", "localhost:"+sp+":127.0.0.1", "http://localhost:"+hp+"/page?q=1")
	if err != nil {
		t.Fatal(err)
	}
	if out != "hello HTTP/2.0 /page\n" {
		t.Errorf("followed redirect gave %q", out)
	}
}

func TestChallengeWithoutHandler(t *testing.T) {
	r := start(t, Config{}, true, true)
	out, err := curl(t, "-o", "/dev/null", "-w", "%{http_code}", "http://127.0.0.1:"+strconv.Itoa(r.httpPort())+"/.well-known/acme-challenge/x")
	if err != nil {
		t.Fatal(err)
	}
	if out != "404" {
		t.Errorf("status %s, want 404", out)
	}
}

func TestHSTS(t *testing.T) {
	tests := []struct {
		name string
		hsts time.Duration
		want string
	}{
		{"off", 0, ""},
		{"one year", 365 * 24 * time.Hour, "max-age=31536000"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := start(t, Config{HSTS: tt.hsts}, true, true)
			out, err := curl(t, append([]string{"-o", "/dev/null", "-w", "%header{strict-transport-security}"}, r.httpsArgs("/")...)...)
			if err != nil {
				t.Fatal(err)
			}
			if out != tt.want {
				t.Errorf("HTTPS Strict-Transport-Security %q, want %q", out, tt.want)
			}
			// Never on plain HTTP (RFC 6797 section 7.2).
			out, err = curl(t, "-o", "/dev/null", "-w", "%header{strict-transport-security}", "http://127.0.0.1:"+strconv.Itoa(r.httpPort())+"/")
			if err != nil {
				t.Fatal(err)
			}
			if out != "" {
				t.Errorf("HTTP response carries Strict-Transport-Security %q", out)
			}
		})
	}
}

func TestH2C(t *testing.T) {
	tests := []struct {
		name string
		h2c  bool
	}{
		{"on", true},
		{"off", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := start(t, Config{H2C: tt.h2c}, true, false)
			url := "http://127.0.0.1:" + strconv.Itoa(r.httpPort()) + "/h"
			out, err := curl(t, "--http2-prior-knowledge", "-w", "\n%{http_version}", url)
			if tt.h2c {
				if err != nil {
					t.Fatal(err)
				}
				if out != "hello HTTP/2.0 /h\n\n2" {
					t.Errorf("got %q", out)
				}
			} else if err == nil && strings.HasSuffix(out, "\n2") {
				t.Errorf("HTTP/2 with prior knowledge accepted without H2C: %q", out)
			}
			// HTTP/1.1 keeps working either way.
			out, err = curl(t, "--http1.1", "-w", "\n%{http_version}", url)
			if err != nil {
				t.Fatal(err)
			}
			if out != "hello HTTP/1.1 /h\n\n1.1" {
				t.Errorf("HTTP/1.1 got %q", out)
			}
		})
	}
}

func TestHTTPOnlyServesHandler(t *testing.T) {
	r := start(t, Config{}, true, false)
	if r.srv.HTTPSAddr() != nil {
		t.Error("HTTPS listener without HTTPSAddr")
	}
	out, err := curl(t, "http://127.0.0.1:"+strconv.Itoa(r.httpPort())+"/only")
	if err != nil {
		t.Fatal(err)
	}
	if out != "hello HTTP/1.1 /only\n" {
		t.Errorf("got %q", out)
	}
}

func TestPlainHTTPOnHTTPSPort(t *testing.T) {
	r := start(t, Config{}, false, true)
	out, err := curl(t, "-w", "\n%{http_code}", "http://127.0.0.1:"+strconv.Itoa(r.httpsPort())+"/")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasSuffix(out, "\n400") || !strings.Contains(out, "HTTPS server") {
		t.Errorf("got %q", out)
	}
}

func TestPortInUse(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	addr := busy.Addr().String()
	tests := []struct {
		name string
		cfg  Config
		flag string
	}{
		{"https", Config{HTTPAddr: "127.0.0.1:0", HTTPSAddr: addr}, "--https"},
		{"http", Config{HTTPAddr: addr}, "--http"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.cfg.Handler = http.NotFoundHandler()
			if tt.cfg.HTTPSAddr != "" {
				r := start(t, Config{}, false, true) // only for a Getter
				tt.cfg.Certificates = r.srv.cfg.Certificates
			}
			s, err := New(tt.cfg)
			if err != nil {
				t.Fatal(err)
			}
			err = s.Listen(context.Background())
			if err == nil {
				s.Close()
				t.Fatal("Listen on a busy port succeeded")
			}
			want := "listen " + tt.flag + " " + addr + ": "
			if !strings.HasPrefix(err.Error(), want) || !errors.Is(err, syscall.EADDRINUSE) {
				t.Errorf("error %q, want prefix %q and EADDRINUSE", err, want)
			}
			if s.HTTPAddr() != nil || s.HTTPSAddr() != nil {
				t.Error("a listener stayed bound after Listen failed")
			}
		})
	}
}

func TestConfigErrors(t *testing.T) {
	h := http.NotFoundHandler()
	tests := []struct {
		name string
		cfg  Config
	}{
		{"no handler", Config{HTTPAddr: ":0"}},
		{"no address", Config{Handler: h}},
		{"https without certificates", Config{Handler: h, HTTPSAddr: ":0"}},
		{"h2c without http", Config{Handler: h, HTTPSAddr: ":0", H2C: true}},
		{"frame size", Config{Handler: h, HTTPAddr: ":0", MaxReadFrameSize: 100}},
		{"negative timeout", Config{Handler: h, HTTPAddr: ":0", IdleTimeout: -1}},
	}
	for _, tt := range tests {
		if _, err := New(tt.cfg); err == nil {
			t.Errorf("%s: New succeeded", tt.name)
		}
	}
}

func TestURLs(t *testing.T) {
	r := start(t, Config{}, true, true)
	want := []string{
		"http://localhost:" + strconv.Itoa(r.httpPort()) + "/",
		"https://localhost:" + strconv.Itoa(r.httpsPort()) + "/",
	}
	if got := r.srv.URLs(); strings.Join(got, " ") != strings.Join(want, " ") {
		t.Errorf("URLs %v, want %v", got, want)
	}
}

// readUntilClosed reads c until the server closes it and reports what ended
// the read; the deadline only bounds a broken test.
func readUntilClosed(t *testing.T, c net.Conn) (string, error) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	b, err := io.ReadAll(c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("connection still open after 30s (read %q)", b)
	}
	return string(b), err
}

func TestTLSHandshakeTimeout(t *testing.T) {
	r := start(t, Config{TLSHandshakeTimeout: 500 * time.Millisecond}, false, true)
	addr := r.srv.HTTPSAddr().String()
	tests := []struct {
		name string
		send []byte
	}{
		{"silent", nil},
		{"partial ClientHello", []byte{0x16, 0x03, 0x01, 0x02, 0x00, 0x01, 0x00}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if _, err := c.Write(tt.send); err != nil {
				t.Fatal(err)
			}
			// Another client is served while this one stalls.
			out, err := curl(t, r.httpsArgs("/other")...)
			if err != nil {
				t.Fatal(err)
			}
			if out != "hello HTTP/2.0 /other\n" {
				t.Errorf("concurrent client got %q", out)
			}
			got, err := readUntilClosed(t, c)
			if got != "" {
				t.Errorf("stalled client received %q", got)
			}
			t.Logf("stalled client closed: %v", err)
		})
	}
}

func TestReadHeaderTimeout(t *testing.T) {
	for _, https := range []bool{false, true} {
		t.Run("https="+strconv.FormatBool(https), func(t *testing.T) {
			r := start(t, Config{ReadHeaderTimeout: 500 * time.Millisecond}, !https, https)
			var c net.Conn
			var err error
			if https {
				addr := r.srv.HTTPSAddr().String()
				c, err = tlsDial(t, r, addr)
			} else {
				c, err = net.Dial("tcp", r.srv.HTTPAddr().String())
			}
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: localhost\r\n"); err != nil {
				t.Fatal(err)
			}
			got, err := readUntilClosed(t, c)
			if got != "" && !strings.HasPrefix(got, "HTTP/1.1 408") {
				t.Errorf("slow client received %q", got)
			}
			t.Logf("slow client closed: %q %v", got, err)
		})
	}
}

func TestMaxHeaderBytes(t *testing.T) {
	r := start(t, Config{MaxHeaderBytes: 8 << 10}, true, true)
	big := "X-Big: " + strings.Repeat("a", 64<<10)
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"HTTP/1.1", []string{"--http1.1", "-H", big, "http://127.0.0.1:" + strconv.Itoa(r.httpPort()) + "/"}, "431"},
		{"HTTPS HTTP/1.1", append([]string{"--http1.1", "-H", big}, r.httpsArgs("/")...), "431"},
		{"small header", append([]string{"--http1.1", "-H", "X-Small: a"}, r.httpsArgs("/")...), "200"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := curl(t, append([]string{"-o", "/dev/null", "-w", "%{http_code}"}, tt.args...)...)
			if err != nil {
				t.Fatal(err)
			}
			if out != tt.want {
				t.Errorf("status %s, want %s", out, tt.want)
			}
		})
	}
}

func TestGracefulShutdown(t *testing.T) {
	r := start(t, Config{Grace: time.Minute}, true, true)
	bin := testpeer.Need(t, "curl")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, append([]string{"-sS", "-w", "\n%{http_code}"}, r.httpsArgs("/slow")...)...)
	var out strings.Builder
	cmd.Stdout = &out
	cmd.Stderr = &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	select {
	case <-r.site.started:
	case <-time.After(30 * time.Second):
		t.Fatal("slow request did not reach the handler")
	}
	r.cancel()

	// New connections get refused once the listeners are closed.
	for _, addr := range []string{r.srv.HTTPAddr().String(), r.srv.HTTPSAddr().String()} {
		refused := false
		var last error
		for range 500 {
			c, err := net.Dial("tcp", addr)
			if errors.Is(err, syscall.ECONNRESET) {
				continue // accepted by the kernel as the listener closed
			}
			if err != nil {
				refused, last = errors.Is(err, syscall.ECONNREFUSED), err
				break
			}
			c.Close()
			time.Sleep(10 * time.Millisecond)
		}
		if !refused {
			t.Errorf("%s still accepts connections after shutdown began (%v)", addr, last)
		}
	}
	select {
	case err := <-r.done:
		t.Fatalf("Serve returned %v while a request was in flight", err)
	default:
	}

	close(r.site.release)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("in-flight request failed: %v\n%s", err, out.String())
	}
	if got := out.String(); got != "slow done\n\n200" {
		t.Errorf("in-flight request got %q", got)
	}
	select {
	case err := <-r.done:
		if err != nil {
			t.Errorf("Serve: %v", err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("Serve did not return after the last request")
	}
	r.done <- nil // for the cleanup
}

func TestGraceExpires(t *testing.T) {
	r := start(t, Config{Grace: 200 * time.Millisecond}, true, false)
	c, err := net.Dial("tcp", r.srv.HTTPAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "GET /slow HTTP/1.1\r\nHost: localhost\r\n\r\n")
	<-r.site.started
	err = r.stop(t)
	if err == nil || !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Serve returned %v, want a grace-exceeded error", err)
	}
	r.done <- nil
	if _, err := readUntilClosed(t, c); err != nil {
		t.Logf("connection closed: %v", err)
	}
}

func TestAccessLog(t *testing.T) {
	r := start(t, Config{}, true, true)
	if _, err := curl(t, append([]string{"--http2"}, r.httpsArgs("/logged?secret=1")...)...); err != nil {
		t.Fatal(err)
	}
	if _, err := curl(t, "http://127.0.0.1:"+strconv.Itoa(r.httpPort())+"/redir"); err != nil {
		t.Fatal(err)
	}
	if err := r.stop(t); err != nil {
		t.Fatal(err)
	}
	r.done <- nil
	var reqs []map[string]any
	for _, rec := range r.log.records(t) {
		if rec["msg"] == "request" {
			reqs = append(reqs, rec)
		}
	}
	if len(reqs) != 2 {
		t.Fatalf("%d request records, want 2:\n%s", len(reqs), r.log.String())
	}
	want := []map[string]any{
		{"level": "INFO", "method": "GET", "host": "localhost:" + strconv.Itoa(r.httpsPort()), "path": "/logged", "status": 200.0, "bytes": float64(len("hello HTTP/2.0 /logged\n")), "proto": "HTTP/2.0"},
		{"level": "INFO", "method": "GET", "host": "127.0.0.1:" + strconv.Itoa(r.httpPort()), "path": "/redir", "status": 301.0, "bytes": 0.0, "proto": "HTTP/1.1"},
	}
	for i, rec := range reqs {
		for k, v := range want[i] {
			if rec[k] != v {
				t.Errorf("record %d: %s = %v, want %v", i, k, rec[k], v)
			}
		}
		if _, ok := rec["duration"].(float64); !ok {
			t.Errorf("record %d: no duration: %v", i, rec)
		}
		if s, _ := rec["remote"].(string); !strings.HasPrefix(s, "127.0.0.1:") {
			t.Errorf("record %d: remote %v", i, rec["remote"])
		}
	}
}

// TestAccessLogKeepsInterfaces checks that the logging writer passes
// sendfile (io.ReaderFrom), flushing and ResponseController through.
func TestAccessLogKeepsInterfaces(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if _, ok := w.(io.ReaderFrom); !ok {
			t.Error("ResponseWriter lost io.ReaderFrom")
		}
		rc := http.NewResponseController(w)
		if err := rc.SetWriteDeadline(time.Now().Add(time.Minute)); err != nil {
			t.Errorf("SetWriteDeadline through the wrapper: %v", err)
		}
		io.WriteString(w, "part1\n")
		if err := rc.Flush(); err != nil {
			t.Errorf("Flush: %v", err)
		}
		io.Copy(w, strings.NewReader("part2\n"))
	})
	r := start(t, Config{Handler: h}, true, false)
	c, err := net.Dial("tcp", r.srv.HTTPAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	if string(body) != "part1\npart2\n" {
		t.Errorf("body %q", body)
	}
}
