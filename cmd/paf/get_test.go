package main

import (
	"bytes"
	"compress/gzip"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	pafclient "github.com/pafhq/paf/client"
	"github.com/pafhq/paf/internal/testpeer"
)

// getFixture is what every server in these tests serves: a small page, a
// large random binary, a large compressible text, and a redirect to the
// small page.
type getFixture struct {
	dir                  string
	small, large, prose  []byte
	caFile, cert, keyPEM string // a private CA and a localhost certificate it signed
	leaf                 *x509.Certificate
}

func newGetFixture(t *testing.T) *getFixture {
	t.Helper()
	f := &getFixture{dir: t.TempDir()}
	f.small = []byte("<h1>small</h1>\n")
	f.large = make([]byte, 3<<20+17)
	rand.Read(f.large)
	var prose bytes.Buffer
	for i := 0; prose.Len() < 1<<20; i++ {
		fmt.Fprintf(&prose, "line %d of a text that compresses well\n", i)
	}
	f.prose = prose.Bytes()
	site := filepath.Join(f.dir, "site")
	os.MkdirAll(site, 0o755)
	for name, b := range map[string][]byte{"index.html": f.small, "small.html": f.small, "large.bin": f.large, "prose.txt": f.prose} {
		if err := os.WriteFile(filepath.Join(site, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	os.Chmod(f.dir, 0o755)
	f.makeCerts(t)
	return f
}

func (f *getFixture) site() string { return filepath.Join(f.dir, "site") }

// makeCerts writes a CA and a certificate for localhost and 127.0.0.1.
func (f *getFixture) makeCerts(t *testing.T) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "paf get test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "localhost"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	f.leaf, _ = x509.ParseCertificate(der)
	keyDER, _ := x509.MarshalECPrivateKey(key)
	f.caFile = filepath.Join(f.dir, "ca.pem")
	f.cert = filepath.Join(f.dir, "cert.pem")
	f.keyPEM = filepath.Join(f.dir, "key.pem")
	os.WriteFile(f.caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}), 0o644)
	os.WriteFile(f.cert, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644)
	os.WriteFile(f.keyPEM, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: keyDER}), 0o644)
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// startNginx serves the fixture over HTTPS with HTTP/2 and gzip, and
// returns its base URL.
func startNginx(t *testing.T, f *getFixture) string {
	t.Helper()
	bin := testpeer.Need(t, "nginx")
	dir := t.TempDir()
	os.Chmod(dir, 0o755)
	addr := freeAddr(t)
	user := ""
	if os.Geteuid() == 0 {
		user = "user root;"
	}
	cfg := fmt.Sprintf(`%s
worker_processes 1;
pid %[2]s/nginx.pid;
error_log %[2]s/error.log;
events { worker_connections 64; }
http {
	include /etc/nginx/mime.types;
	access_log off;
	client_body_temp_path %[2]s/body;
	proxy_temp_path %[2]s/proxy;
	fastcgi_temp_path %[2]s/fastcgi;
	uwsgi_temp_path %[2]s/uwsgi;
	scgi_temp_path %[2]s/scgi;
	gzip on;
	gzip_types text/plain;
	gzip_min_length 100;
	server {
		listen %[3]s ssl http2;
		server_name localhost;
		ssl_certificate %[4]s;
		ssl_certificate_key %[5]s;
		root %[6]s;
		location = /redirect { return 302 /small.html; }
	}
}
`, user, dir, addr, f.cert, f.keyPEM, f.site())
	conf := filepath.Join(dir, "nginx.conf")
	os.WriteFile(conf, []byte(cfg), 0o644)
	// Output to a file, not a pipe: Wait must not hang on a worker that
	// inherited it. Its own process group lets Cleanup stop the workers too.
	logf, err := os.Create(filepath.Join(dir, "stderr.log"))
	if err != nil {
		t.Fatal(err)
	}
	defer logf.Close()
	cmd := exec.Command(bin, "-c", conf, "-g", "daemon off;")
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	t.Cleanup(func() {
		pgid := cmd.Process.Pid
		syscall.Kill(-pgid, syscall.SIGTERM) // nginx's fast shutdown
		select {
		case <-done:
		case <-time.After(10 * time.Second):
		}
		syscall.Kill(-pgid, syscall.SIGKILL) // any worker left behind
		<-done
	})
	for i := 0; ; i++ {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			break
		}
		select {
		case <-done:
			log, _ := os.ReadFile(filepath.Join(dir, "error.log"))
			out, _ := os.ReadFile(logf.Name())
			t.Fatalf("nginx exited: %s\n%s", out, log)
		case <-time.After(50 * time.Millisecond):
		}
		if i > 400 {
			t.Fatal("nginx did not listen within 20s")
		}
	}
	return "https://localhost:" + port(t, addr)
}

// startGoServer serves the fixture from net/http over TLS (h2 and
// http/1.1), with its own gzip for Accept-Encoding and a redirect.
func startGoServer(t *testing.T, f *getFixture) string {
	t.Helper()
	files := http.FileServer(http.Dir(f.site()))
	mux := http.NewServeMux()
	mux.HandleFunc("/redirect", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/small.html", http.StatusFound)
	})
	mux.HandleFunc("/echo", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s %s %q %q\n", r.Method, r.Header.Get("Content-Type"), r.Header.Get("X-Test"), b)
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, ".txt") && strings.Contains(r.Header.Get("Accept-Encoding"), "gzip") {
			w.Header().Set("Content-Encoding", "gzip")
			w.Header().Set("Content-Type", "text/plain")
			zw := gzip.NewWriter(w)
			b, _ := os.ReadFile(filepath.Join(f.site(), filepath.Clean("/"+r.URL.Path)))
			zw.Write(b)
			zw.Close()
			return
		}
		files.ServeHTTP(w, r)
	})
	srv := httptest.NewUnstartedServer(mux)
	cert, err := tls.LoadX509KeyPair(f.cert, f.keyPEM)
	if err != nil {
		t.Fatal(err)
	}
	srv.EnableHTTP2 = true
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"h2", "http/1.1"}}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // rejected handshakes are the point of some tests
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return "https://localhost:" + port(t, srv.Listener.Addr().String())
}

// startPafServe serves the fixture with paf serve over HTTPS from its
// local CA, and returns the base URL and the CA file.
func startPafServe(t *testing.T, f *getFixture) (base, ca string) {
	t.Helper()
	data := t.TempDir()
	p := startPaf(t, nil, "--root", f.site(), "--data-dir", data, "--http", "127.0.0.1:0", "--https", "127.0.0.1:0")
	ca, _ = p.waitLog("no --tls-cert given: serving certificates from paf's local CA; trust it to avoid browser warnings", time.Second)["ca"].(string)
	if ca == "" {
		t.Fatal("paf serve logged no CA file")
	}
	return "https://localhost:" + port(t, p.addr("https")), ca
}

func pafGet(t *testing.T, args ...string) (code int, stdout, stderr string) {
	t.Helper()
	return runPaf(t, nil, append([]string{"get"}, args...)...)
}

func runCurl(t *testing.T, args ...string) (int, []byte) {
	t.Helper()
	curl := testpeer.Need(t, "curl")
	cmd := exec.Command(curl, append([]string{"-sS"}, args...)...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	if _, ok := err.(*exec.ExitError); err != nil && !ok {
		t.Fatal(err)
	}
	return cmd.ProcessState.ExitCode(), out.Bytes()
}

// TestGetMatchesCurl checks that paf get writes the same bytes as curl
// for the same URLs and flags, against paf serve, nginx and net/http.
func TestGetMatchesCurl(t *testing.T) {
	f := newGetFixture(t)
	pafURL, pafCA := startPafServe(t, f)
	servers := []struct {
		name, base, ca string
	}{
		{"paf serve", pafURL, pafCA},
		{"nginx", startNginx(t, f), f.caFile},
		{"net/http", startGoServer(t, f), f.caFile},
	}
	cases := []struct {
		name string
		path string
		args []string
		want []byte
	}{
		{"small", "/small.html", nil, f.small},
		{"large", "/large.bin", nil, f.large},
		{"large over http1.1", "/large.bin", []string{"--http1.1"}, f.large},
		{"compressed", "/prose.txt", []string{"--compressed"}, f.prose},
		{"range", "/large.bin", []string{"-H", "Range: bytes=1000-1999"}, f.large[1000:2000]},
		{"suffix range", "/prose.txt", []string{"-H", "Range: bytes=-100"}, f.prose[len(f.prose)-100:]},
		{"head", "/small.html", []string{"-I", "-o", "/dev/null", "-w", "%{http_code}"}, []byte("200")},
	}
	for _, s := range servers {
		for _, c := range cases {
			t.Run(s.name+"/"+c.name, func(t *testing.T) {
				args := append([]string{"--cacert", s.ca, s.base + c.path}, c.args...)
				code, out, errOut := pafGet(t, args...)
				if code != 0 {
					t.Fatalf("paf get %v: exit %d: %s", args, code, errOut)
				}
				ccode, cout := runCurl(t, args...)
				if ccode != 0 {
					t.Fatalf("curl %v: exit %d", args, ccode)
				}
				if !bytes.Equal([]byte(out), cout) {
					t.Errorf("paf get and curl differ: %d bytes vs %d", len(out), len(cout))
				}
				if !bytes.Equal([]byte(out), c.want) {
					t.Errorf("paf get wrote %d bytes, want the %d expected ones", len(out), len(c.want))
				}
			})
		}
	}
}

// TestGetRedirects follows redirects as curl does, and stops at
// --max-redirs.
func TestGetRedirects(t *testing.T) {
	f := newGetFixture(t)
	data := t.TempDir()
	p := startPaf(t, nil, "--root", f.site(), "--data-dir", data, "--http", "127.0.0.1:0", "--https", "127.0.0.1:0")
	ca, _ := p.waitLog("no --tls-cert given: serving certificates from paf's local CA; trust it to avoid browser warnings", time.Second)["ca"].(string)
	goURL := startGoServer(t, f)
	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"paf serve: http to https", []string{"-L", "--cacert", ca, "http://localhost:" + port(t, p.addr("http")) + "/index.html"}, 0, string(f.small)},
		{"net/http: 302", []string{"-L", "--cacert", f.caFile, goURL + "/redirect"}, 0, string(f.small)},
		{"without -L", []string{"--cacert", f.caFile, goURL + "/redirect", "-w", "%{http_code}"}, 0, ""},
		{"max-redirs 0", []string{"-L", "--max-redirs", "0", "--cacert", f.caFile, goURL + "/redirect"}, 47, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := pafGet(t, tt.args...)
			if code != tt.code {
				t.Fatalf("exit %d, want %d: %s", code, tt.code, errOut)
			}
			ccode, cout := runCurl(t, tt.args...)
			if ccode != tt.code {
				t.Errorf("curl exits %d, want %d", ccode, tt.code)
			}
			if out != string(cout) {
				t.Errorf("paf get wrote %q, curl %q", out, cout)
			}
			if tt.want != "" && out != tt.want {
				t.Errorf("paf get wrote %q, want %q", out, tt.want)
			}
		})
	}
}

// TestGetProtocols checks the HTTP version each flag negotiates.
func TestGetProtocols(t *testing.T) {
	f := newGetFixture(t)
	pafURL, pafCA := startPafServe(t, f)
	nginxURL := startNginx(t, f)
	clear := startPaf(t, nil, "--root", f.site(), "--data-dir", t.TempDir(), "--http", "127.0.0.1:0", "--https", "off", "--h2c")
	clearURL := "http://" + clear.addr("http")
	tests := []struct {
		url, ca string
		flags   []string
		want    string
	}{
		{pafURL, pafCA, nil, "2"},
		{pafURL, pafCA, []string{"--http2"}, "2"},
		{pafURL, pafCA, []string{"--http1.1"}, "1.1"},
		{pafURL, pafCA, []string{"--http2-prior-knowledge"}, "2"},
		{nginxURL, f.caFile, nil, "2"},
		{nginxURL, f.caFile, []string{"--http1.1"}, "1.1"},
		{clearURL, "", nil, "1.1"},
		{clearURL, "", []string{"--http1.1"}, "1.1"},
		{clearURL, "", []string{"--http2-prior-knowledge"}, "2"},
		{"h2c://" + clear.addr("http"), "", nil, "2"},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s %v", tt.url, tt.flags), func(t *testing.T) {
			args := append([]string{"-o", "/dev/null", "-w", "%{http_code} %{http_version}\\n"}, tt.flags...)
			if tt.ca != "" {
				args = append(args, "--cacert", tt.ca)
			}
			args = append(args, tt.url+"/index.html")
			code, out, errOut := pafGet(t, args...)
			if want := "200 " + tt.want + "\n"; code != 0 || out != want {
				t.Fatalf("paf get %v: exit %d, %q, want %q: %s", args, code, out, want, errOut)
			}
			if strings.HasPrefix(tt.url, "h2c:") {
				return
			}
			if _, cout := runCurl(t, args...); string(cout) != out {
				t.Errorf("curl says %q, paf get %q", cout, out)
			}
		})
	}
}

// TestGetAuthentication checks the authenticators and their exit codes.
func TestGetAuthentication(t *testing.T) {
	f := newGetFixture(t)
	url := startGoServer(t, f) + "/small.html"
	ipURL := strings.Replace(url, "localhost", "127.0.0.1", 1)
	keyPin := pafclient.PinOf(pafclient.PinKey, f.leaf)
	certPin := pafclient.PinOf(pafclient.PinCert, f.leaf)
	otherPin := "key:sha256:" + strings.Repeat("A", 43) + "="
	tests := []struct {
		name string
		args []string
		code int
		msg  string
	}{
		{"CA file", []string{"--cacert", f.caFile, url}, 0, ""},
		{"CA file, IP address", []string{"--cacert", f.caFile, ipURL}, 0, ""},
		{"unknown CA", []string{url}, 60, "certificate"},
		{"key pin", []string{"--pin", keyPin, url}, 0, ""},
		{"cert pin", []string{"--pin", certPin, ipURL}, 0, ""},
		{"pin mismatch", []string{"--pin", otherPin, url}, 90, "does not match"},
		{"bad pin", []string{"--pin", "sha256//abc", url}, 2, "--pin"},
		{"insecure", []string{"-k", url}, 0, ""},
		{"missing CA file", []string{"--cacert", filepath.Join(t.TempDir(), "none.pem"), url}, 77, "none.pem"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := pafGet(t, tt.args...)
			if code != tt.code {
				t.Fatalf("exit %d, want %d: %s", code, tt.code, errOut)
			}
			if code == 0 && out != string(f.small) {
				t.Errorf("body %q", out)
			}
			if tt.msg != "" {
				oneLine(t, errOut)
				if !strings.Contains(errOut, tt.msg) {
					t.Errorf("message %q lacks %q", errOut, tt.msg)
				}
			}
		})
	}
}

// TestGetExitCodes checks curl's exit codes for failures before, during
// and after the connection.
func TestGetExitCodes(t *testing.T) {
	f := newGetFixture(t)
	url := startGoServer(t, f)
	// A server that accepts connections and never says a word.
	mute, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	held := make(chan net.Conn, 100)
	go func() {
		for {
			c, err := mute.Accept()
			if err != nil {
				close(held)
				return
			}
			held <- c
		}
	}()
	t.Cleanup(func() {
		mute.Close()
		for c := range held {
			c.Close()
		}
	})
	refused := freeAddr(t)
	tests := []struct {
		name string
		args []string
		code int
		msg  string
	}{
		{"refused", []string{"http://" + refused + "/"}, 7, "couldn't connect"},
		{"unresolvable", []string{"http://nothing-here.invalid/"}, 6, "nothing-here.invalid"},
		{"max-time, no response", []string{"--max-time", "0.5", "http://" + mute.Addr().String() + "/"}, 28, "timed out"},
		{"connect-timeout, no TLS handshake", []string{"--connect-timeout", "0.5", "https://" + mute.Addr().String() + "/"}, 28, "timed out"},
		{"fail on 404", []string{"-f", "--cacert", f.caFile, url + "/nope"}, 22, "404"},
		{"404 without -f", []string{"--cacert", f.caFile, url + "/nope", "-w", "%{http_code}"}, 0, ""},
		{"unknown option", []string{"--frobnicate", url}, 2, "--frobnicate"},
		{"no URL", []string{"-s"}, 2, "no URL"},
		{"unsupported scheme", []string{"foo://localhost/"}, 1, "foo"},
		{"silent", []string{"-s", "http://" + refused + "/"}, 7, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, out, errOut := pafGet(t, tt.args...)
			if code != tt.code {
				t.Fatalf("exit %d, want %d: %s", code, tt.code, errOut)
			}
			if tt.msg != "" {
				oneLine(t, errOut)
				if !strings.Contains(errOut, tt.msg) {
					t.Errorf("message %q lacks %q", errOut, tt.msg)
				}
			}
			if tt.name == "silent" && errOut != "" {
				t.Errorf("-s printed %q", errOut)
			}
			if tt.name == "404 without -f" && !strings.HasSuffix(out, "404") {
				t.Errorf("output %q does not end with the 404 status", out)
			}
			if tt.code != 2 {
				if ccode, _ := runCurl(t, append([]string{"--cacert", f.caFile}, tt.args...)...); ccode != tt.code {
					t.Errorf("curl exits %d, paf get %d", ccode, tt.code)
				}
			}
		})
	}
}

// TestGetResume resumes downloads with -C - from the -o file's size.
func TestGetResume(t *testing.T) {
	f := newGetFixture(t)
	servers := map[string]string{"nginx": startNginx(t, f), "net/http": startGoServer(t, f)}
	pafURL, pafCA := startPafServe(t, f)
	for name, base := range servers {
		for _, tool := range []string{"paf", "curl"} {
			t.Run(name+"/"+tool, func(t *testing.T) {
				out := filepath.Join(t.TempDir(), "large.bin")
				os.WriteFile(out, f.large[:123457], 0o644)
				args := []string{"-C", "-", "-o", out, "--cacert", f.caFile, base + "/large.bin"}
				var code int
				if tool == "paf" {
					var errOut string
					code, _, errOut = pafGet(t, args...)
					if code != 0 {
						t.Fatal(errOut)
					}
				} else if code, _ = runCurl(t, args...); code != 0 {
					t.Fatalf("curl exit %d", code)
				}
				if got, _ := os.ReadFile(out); !bytes.Equal(got, f.large) {
					t.Fatalf("resumed file has %d bytes, not the %d of the original", len(got), len(f.large))
				}
				// Resuming a complete file changes nothing and succeeds.
				if tool == "paf" {
					if code, _, errOut := pafGet(t, args...); code != 0 {
						t.Fatalf("resuming a complete file: exit %d: %s", code, errOut)
					}
					if got, _ := os.ReadFile(out); !bytes.Equal(got, f.large) {
						t.Fatal("resuming a complete file changed it")
					}
				}
			})
		}
	}
	t.Run("paf serve", func(t *testing.T) {
		out := filepath.Join(t.TempDir(), "prose.txt")
		os.WriteFile(out, f.prose[:5000], 0o644)
		if code, _, errOut := pafGet(t, "-sS", "-C", "-", "-o", out, "--cacert", pafCA, pafURL+"/prose.txt"); code != 0 {
			t.Fatal(errOut)
		}
		if got, _ := os.ReadFile(out); !bytes.Equal(got, f.prose) {
			t.Fatalf("resumed file has %d bytes, want %d", len(got), len(f.prose))
		}
	})
}

// TestGetOutputAndRequest covers -o, -O, -i, -d, --data-binary, -X, -H
// and -v against net/http, with curl's output as the reference.
func TestGetOutputAndRequest(t *testing.T) {
	f := newGetFixture(t)
	url := startGoServer(t, f)
	dataFile := filepath.Join(t.TempDir(), "data")
	os.WriteFile(dataFile, []byte("a=1\nb=2\r\n\x00end"), 0o644)
	textFile := filepath.Join(t.TempDir(), "text")
	os.WriteFile(textFile, []byte("a=1\nb=2\r\nend\n"), 0o644)
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"-d", []string{"-d", "x=1", "-d", "y=2", url + "/echo"}, "POST application/x-www-form-urlencoded \"\" \"x=1&y=2\"\n"},
		{"-d @file strips newlines", []string{"-d", "@" + textFile, url + "/echo"}, "POST application/x-www-form-urlencoded \"\" \"a=1b=2end\"\n"},
		{"--data-binary @file", []string{"--data-binary", "@" + dataFile, url + "/echo"}, "POST application/x-www-form-urlencoded \"\" \"a=1\\nb=2\\r\\n\\x00end\"\n"},
		{"-X -H", []string{"-X", "PUT", "-H", "X-Test: yes", "-H", "Content-Type: text/plain", "-d", "z", url + "/echo"}, "PUT text/plain \"yes\" \"z\"\n"},
		{"clustered -sSf", []string{"-sSf", url + "/echo"}, "GET  \"\" \"\"\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			args := append([]string{"--cacert", f.caFile}, tt.args...)
			code, out, errOut := pafGet(t, args...)
			if code != 0 || out != tt.want {
				t.Fatalf("exit %d, %q, want %q: %s", code, out, tt.want, errOut)
			}
			if _, cout := runCurl(t, args...); string(cout) != out {
				t.Errorf("curl wrote %q", cout)
			}
		})
	}

	t.Run("-o and -O", func(t *testing.T) {
		dir := t.TempDir()
		out := filepath.Join(dir, "copy.bin")
		if code, _, errOut := pafGet(t, "-s", "-o", out, "--cacert", f.caFile, url+"/large.bin"); code != 0 {
			t.Fatal(errOut)
		}
		if got, _ := os.ReadFile(out); !bytes.Equal(got, f.large) {
			t.Errorf("-o wrote %d bytes, want %d", len(got), len(f.large))
		}
		cmd := exec.Command(pafBin, "get", "-O", "--cacert", f.caFile, url+"/prose.txt")
		cmd.Dir = dir
		if b, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("-O: %v: %s", err, b)
		}
		if got, _ := os.ReadFile(filepath.Join(dir, "prose.txt")); !bytes.Equal(got, f.prose) {
			t.Errorf("-O wrote %d bytes, want %d", len(got), len(f.prose))
		}
		entries, _ := os.ReadDir(dir)
		if len(entries) != 2 {
			t.Errorf("temporary files left behind: %v", entries)
		}
	})

	t.Run("-i and -v", func(t *testing.T) {
		code, out, errOut := pafGet(t, "-i", "-v", "--cacert", f.caFile, url+"/small.html")
		if code != 0 {
			t.Fatal(errOut)
		}
		if !strings.HasPrefix(out, "HTTP/2 200") || !strings.Contains(out, "\r\ncontent-length: 15\r\n") || !strings.HasSuffix(out, "\r\n\r\n"+string(f.small)) {
			t.Errorf("-i output:\n%s", out)
		}
		for _, want := range []string{"Trying 127.0.0.1:", "TLS 1.3", "ALPN: server accepted h2", "subject: CN=localhost", "issuer: CN=paf get test CA",
			"> GET /small.html HTTP/2", "> accept: */*", "< HTTP/2 200", "< content-type: text/html"} {
			if !strings.Contains(errOut, want) {
				t.Errorf("-v output lacks %q:\n%s", want, errOut)
			}
		}
	})
}

// TestGetUnixSocket talks HTTP over a unix socket, as curl --unix-socket.
func TestGetUnixSocket(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "s.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatal(err)
	}
	var p http.Protocols
	p.SetHTTP1(true)
	p.SetUnencryptedHTTP2(true)
	srv := &http.Server{Protocols: &p, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s %s %s\n", r.Proto, r.Host, r.URL.Path)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	for _, flags := range [][]string{nil, {"--http2-prior-knowledge"}} {
		args := append([]string{"--unix-socket", sock, "http://site.test/a/b"}, flags...)
		code, out, errOut := pafGet(t, args...)
		want := "HTTP/1.1 site.test /a/b\n"
		if flags != nil {
			want = "HTTP/2.0 site.test /a/b\n"
		}
		if code != 0 || out != want {
			t.Fatalf("paf get %v: exit %d %q, want %q: %s", args, code, out, want, errOut)
		}
		if _, cout := runCurl(t, args...); string(cout) != out {
			t.Errorf("curl wrote %q", cout)
		}
	}
}

// TestGetStress runs paf stress, paf's own stress test, at a modest size
// against paf serve over HTTPS (HTTP/2 and HTTP/1.1) and cleartext, small
// and large bodies: any failed request fails it.
func TestGetStress(t *testing.T) {
	f := newGetFixture(t)
	data := t.TempDir()
	p := startPaf(t, nil, "--root", f.site(), "--data-dir", data, "--http", "127.0.0.1:0", "--https", "127.0.0.1:0")
	ca, _ := p.waitLog("no --tls-cert given: serving certificates from paf's local CA; trust it to avoid browser warnings", time.Second)["ca"].(string)
	httpsURL := "https://localhost:" + port(t, p.addr("https"))
	clear := startPaf(t, nil, "--root", f.site(), "--data-dir", t.TempDir(), "--http", "127.0.0.1:0", "--https", "off", "--h2c")
	clearURL := "http://" + clear.addr("http")
	tests := [][]string{
		{"--cacert", ca, httpsURL + "/small.html", httpsURL + "/prose.txt"},
		{"--cacert", ca, "--http1.1", "--new-conn", httpsURL + "/small.html", httpsURL + "/large.bin"},
		{clearURL + "/small.html", clearURL + "/large.bin"},
		{"--http2-prior-knowledge", clearURL + "/small.html", clearURL + "/prose.txt"},
	}
	// The original's size, 50 workers of 200 requests, on the first
	// (HTTPS, h2) run; the others at a smaller one.
	size := [][3]string{{"50", "200", "10000"}, {"8", "20", "160"}, {"8", "20", "160"}, {"8", "20", "160"}}
	for i, args := range tests {
		n, m, total := size[i][0], size[i][1], size[i][2]
		t.Run(strings.Join(args[:len(args)-2], " "), func(t *testing.T) {
			code, out, errOut := runPaf(t, nil, append([]string{"stress", "-n", n, "-m", m, "-c", "8"}, args...)...)
			if code != 0 {
				t.Fatalf("paf stress: exit %d\n%s\n%s", code, out, errOut)
			}
			for _, want := range []string{total + " requests ok of " + total, "Slowest:", "Fastest:", "Average:", "Latency histogram:"} {
				if !strings.Contains(out, want) {
					t.Errorf("report lacks %q:\n%s", want, out)
				}
			}
		})
	}
	// A failing URL fails the run.
	code, _, errOut := runPaf(t, nil, "stress", "-n", "2", "-m", "3", "-c", "2", clearURL+"/nope")
	if code != 1 || !strings.Contains(errOut, "404") || !strings.Contains(errOut, "FAILED: 6 of 6") {
		t.Errorf("stress against a 404: exit %d: %s", code, errOut)
	}
}

func TestGetProgressBar(t *testing.T) {
	tests := []struct {
		total int64
		want  string
	}{
		{2048, "[##############################] 100% 2.0 KiB / 2.0 KiB"},
		{-1, "\r2.0 KiB "},
	}
	for _, tt := range tests {
		var buf bytes.Buffer
		p := &progressBar{w: &buf, total: tt.total, start: time.Now()}
		io.Copy(p, bytes.NewReader(make([]byte, 2048)))
		p.finish()
		if !strings.Contains(buf.String(), tt.want) || !strings.HasSuffix(buf.String(), "\n") {
			t.Errorf("total %d: progress %q lacks %q", tt.total, buf.String(), tt.want)
		}
	}
	if isTerminal(&bytes.Buffer{}) {
		t.Error("a buffer is not a terminal")
	}
}
