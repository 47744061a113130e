// Package pebbletest runs Pebble, Let's Encrypt's ACME test server, and its
// DNS companion pebble-challtestsrv for tests, on free loopback ports.
//
// Both programs are pinned as tool lines in go.mod, so `go tool -n` builds
// them and returns their paths: tests need nothing installed. Every name
// resolves to 127.0.0.1 (challtestsrv answers every A query with it and no
// AAAA query), and Pebble validates challenges on the ports the test gives,
// so a paf listening on 127.0.0.1 can answer HTTP-01 and TLS-ALPN-01 for
// any host name.
//
// The ACME directory is reached through a TCP relay that the test can
// Pause and Resume, which makes the CA unreachable to clients while Pebble
// keeps its state (accounts, orders, the issuing chain), as a real CA that
// is briefly down does. Stopping Pebble itself would lose all of that.
package pebbletest

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Config says how the Pebble under test behaves. The zero value validates
// challenges on the standard ports 80 and 443, which tests never use: set
// HTTPPort and TLSPort.
type Config struct {
	// HTTPPort is where Pebble sends HTTP-01 validation requests (on
	// 127.0.0.1): the HTTP listener of the server under test.
	HTTPPort int
	// TLSPort is where Pebble connects for TLS-ALPN-01 validation: the
	// HTTPS listener of the server under test.
	TLSPort int
	// Validity is the lifetime of issued certificates, rounded down to
	// whole seconds; zero means Pebble's default (90 days). Short values
	// make renewal testable.
	Validity time.Duration
	// EAB maps key ids to base64url HMAC keys; when set, Pebble requires
	// external account binding.
	EAB map[string]string
}

// Pebble is a running Pebble and challtestsrv pair. Its methods are safe for
// concurrent use.
type Pebble struct {
	// DirectoryURL is the ACME directory, through the pausable relay.
	DirectoryURL string
	// RootFile is a PEM file with the CA that signed Pebble's own HTTPS
	// certificate: the root to trust for the ACME API (--acme-ca-root).
	// It is not the root of the certificates Pebble issues; see IssuerRoot.
	RootFile string

	t        testing.TB
	mgmtURL  string
	apiPool  *x509.CertPool
	relay    *relay
	pebble   *process
	challsrv *process
}

var (
	toolOnce  sync.Once
	toolPaths map[string]string
	toolErr   error
)

// tools returns the paths of the pebble and pebble-challtestsrv binaries,
// built by the go command once per test process.
func tools() (map[string]string, error) {
	toolOnce.Do(func() {
		toolPaths = make(map[string]string)
		for _, name := range []string{"pebble", "pebble-challtestsrv"} {
			out, err := exec.Command("go", "tool", "-n", name).Output()
			if err != nil {
				var stderr []byte
				if ee, ok := err.(*exec.ExitError); ok {
					stderr = ee.Stderr
				}
				toolErr = fmt.Errorf("pebbletest: go tool -n %s: %v\n%s", name, err, stderr)
				return
			}
			toolPaths[name] = strings.TrimSpace(string(out))
		}
	})
	return toolPaths, toolErr
}

// freePort returns a TCP port on 127.0.0.1 that was free a moment ago.
func freePort(t testing.TB) int {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// FreePort returns a TCP port on 127.0.0.1 that was free a moment ago, for
// the listeners of the server under test that Config must name before the
// server starts.
func FreePort(t testing.TB) int { return freePort(t) }

// Start runs challtestsrv and Pebble with cfg and waits until the ACME
// directory answers. Both are stopped in t.Cleanup.
func Start(t testing.TB, cfg Config) *Pebble {
	t.Helper()
	paths, err := tools()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	rootFile, certFile, keyFile, pool := writeAPICerts(t, dir)

	dnsPort := freePort(t)
	challMgmtPort := freePort(t)
	chall := startProcess(t, "pebble-challtestsrv", paths["pebble-challtestsrv"], nil,
		"-http01", "", "-https01", "", "-doh", "", "-tlsalpn01", "",
		"-dnsserver", "127.0.0.1:"+strconv.Itoa(dnsPort),
		"-management", "127.0.0.1:"+strconv.Itoa(challMgmtPort),
		"-defaultIPv4", "127.0.0.1", "-defaultIPv6", "")

	acmePort := freePort(t)
	mgmtPort := freePort(t)
	pc := map[string]any{
		"listenAddress":                  "127.0.0.1:" + strconv.Itoa(acmePort),
		"managementListenAddress":        "127.0.0.1:" + strconv.Itoa(mgmtPort),
		"certificate":                    certFile,
		"privateKey":                     keyFile,
		"httpPort":                       cfg.HTTPPort,
		"tlsPort":                        cfg.TLSPort,
		"ocspResponderURL":               "",
		"externalAccountBindingRequired": len(cfg.EAB) > 0,
		"externalAccountMACKeys":         cfg.EAB,
		"retryAfter":                     map[string]int{"authz": 1, "order": 1},
		"keyAlgorithm":                   "ecdsa",
	}
	if cfg.Validity > 0 {
		pc["profiles"] = map[string]any{
			"default": map[string]any{"description": "test", "validityPeriod": int64(cfg.Validity / time.Second)},
		}
	}
	confJSON, err := json.Marshal(map[string]any{"pebble": pc})
	if err != nil {
		t.Fatal(err)
	}
	confFile := filepath.Join(dir, "pebble-config.json")
	if err := os.WriteFile(confFile, confJSON, 0o600); err != nil {
		t.Fatal(err)
	}
	env := []string{"PEBBLE_VA_NOSLEEP=1", "PEBBLE_WFE_NONCEREJECT=0"}
	peb := startProcess(t, "pebble", paths["pebble"], env,
		"-config", confFile, "-dnsserver", "127.0.0.1:"+strconv.Itoa(dnsPort))

	p := &Pebble{
		RootFile: rootFile,
		t:        t,
		mgmtURL:  "https://127.0.0.1:" + strconv.Itoa(mgmtPort),
		apiPool:  pool,
		pebble:   peb,
		challsrv: chall,
	}
	p.relay = startRelay(t, "127.0.0.1:"+strconv.Itoa(acmePort))
	p.DirectoryURL = "https://" + p.relay.addr + "/dir"

	// Wait for both of Pebble's listeners.
	deadline := time.Now().Add(60 * time.Second)
	for {
		_, err1 := p.get(p.DirectoryURL)
		_, err2 := p.get(p.mgmtURL + "/roots/0")
		if err1 == nil && err2 == nil {
			break
		}
		if time.Now().After(deadline) || peb.exited() || chall.exited() {
			t.Fatalf("pebbletest: Pebble not ready: %v; %v\npebble output:\n%s\nchalltestsrv output:\n%s",
				err1, err2, peb.output(), chall.output())
		}
		time.Sleep(50 * time.Millisecond)
	}
	return p
}

// get fetches url over HTTPS trusting Pebble's API root.
func (p *Pebble) get(url string) ([]byte, error) {
	c := &http.Client{
		Timeout:   10 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: p.apiPool}},
	}
	defer c.CloseIdleConnections()
	resp, err := c.Get(url)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: %s", url, resp.Status)
	}
	return b, nil
}

// IssuerRoot returns the PEM root certificate of the chain Pebble issues
// certificates under (from its management API), for clients verifying the
// certificates a server obtained. Pebble makes a new one at each start.
func (p *Pebble) IssuerRoot() []byte {
	p.t.Helper()
	b, err := p.get(p.mgmtURL + "/roots/0")
	if err != nil {
		p.t.Fatalf("pebbletest: fetch issuer root: %v", err)
	}
	return b
}

// WriteIssuerRoot writes IssuerRoot to a file in a temporary directory and
// returns its name, for curl --cacert and openssl -CAfile.
func (p *Pebble) WriteIssuerRoot() string {
	p.t.Helper()
	name := filepath.Join(p.t.TempDir(), "pebble-issuer-root.pem")
	if err := os.WriteFile(name, p.IssuerRoot(), 0o600); err != nil {
		p.t.Fatal(err)
	}
	return name
}

// Orders returns how many orders Pebble has accepted so far (new-order
// requests that created an order), counted in its log.
func (p *Pebble) Orders() int {
	return strings.Count(p.pebble.output(), "Added order ")
}

// Log returns Pebble's output so far, for failure messages.
func (p *Pebble) Log() string { return p.pebble.output() }

// Pause makes the ACME directory unreachable: connections are refused and
// open ones are cut. Pebble keeps running with its state.
func (p *Pebble) Pause() { p.relay.pause(p.t) }

// Resume makes the ACME directory reachable again, at the same URL.
func (p *Pebble) Resume() { p.relay.resume(p.t) }

// process is a child process whose combined output is kept.
type process struct {
	name string
	cmd  *exec.Cmd
	done chan struct{}

	mu  sync.Mutex
	out bytes.Buffer
}

// startProcess runs path with args; it is stopped (SIGTERM, then SIGKILL)
// in t.Cleanup.
func startProcess(t testing.TB, name, path string, env []string, args ...string) *process {
	t.Helper()
	p := &process{name: name, done: make(chan struct{})}
	p.cmd = exec.Command(path, args...)
	p.cmd.Env = append(os.Environ(), env...)
	pr, pw := io.Pipe()
	p.cmd.Stdout, p.cmd.Stderr = pw, pw
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("pebbletest: start %s: %v", name, err)
	}
	copied := make(chan struct{})
	go func() {
		defer close(copied)
		sc := bufio.NewScanner(pr)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		for sc.Scan() {
			p.mu.Lock()
			p.out.Write(sc.Bytes())
			p.out.WriteByte('\n')
			p.mu.Unlock()
		}
		io.Copy(io.Discard, pr)
	}()
	go func() {
		p.cmd.Wait()
		pw.Close()
		<-copied
		close(p.done)
	}()
	t.Cleanup(func() {
		p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(5 * time.Second):
			p.cmd.Process.Kill()
			<-p.done
		}
	})
	return p
}

func (p *process) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

func (p *process) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

// writeAPICerts creates a throwaway CA and a certificate for 127.0.0.1 and
// localhost signed by it, for Pebble's HTTPS listeners.
func writeAPICerts(t testing.TB, dir string) (rootFile, certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	caTmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "pebbletest API root"},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, caKey.Public(), caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		t.Fatal(err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "localhost"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{"localhost", "pebble"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, key.Public(), caKey)
	if err != nil {
		t.Fatal(err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	rootFile = filepath.Join(dir, "api-root.pem")
	certFile = filepath.Join(dir, "api-cert.pem")
	keyFile = filepath.Join(dir, "api-key.pem")
	for name, b := range map[string]*pem.Block{
		rootFile: {Type: "CERTIFICATE", Bytes: caDER},
		certFile: {Type: "CERTIFICATE", Bytes: der},
		keyFile:  {Type: "PRIVATE KEY", Bytes: keyDER},
	} {
		if err := os.WriteFile(name, pem.EncodeToMemory(b), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	pool = x509.NewCertPool()
	pool.AddCert(caCert)
	return rootFile, certFile, keyFile, pool
}

// relay forwards TCP connections from addr to target until paused.
type relay struct {
	addr, target string

	mu     sync.Mutex
	ln     net.Listener
	conns  map[net.Conn]struct{}
	wg     sync.WaitGroup
	closed bool
}

func startRelay(t testing.TB, target string) *relay {
	t.Helper()
	r := &relay{target: target, conns: make(map[net.Conn]struct{})}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r.addr = ln.Addr().String()
	r.serve(ln)
	t.Cleanup(func() {
		r.mu.Lock()
		r.closed = true
		r.mu.Unlock()
		r.pause(t)
		r.wg.Wait()
	})
	return r
}

func (r *relay) serve(ln net.Listener) {
	r.mu.Lock()
	r.ln = ln
	r.mu.Unlock()
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			r.wg.Add(1)
			go func() {
				defer r.wg.Done()
				r.forward(c)
			}()
		}
	}()
}

// forward copies between c and a new connection to the target.
func (r *relay) forward(c net.Conn) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	u, err := (&net.Dialer{}).DialContext(ctx, "tcp", r.target)
	cancel()
	if err != nil {
		c.Close()
		return
	}
	r.mu.Lock()
	if r.ln == nil {
		r.mu.Unlock()
		c.Close()
		u.Close()
		return
	}
	r.conns[c] = struct{}{}
	r.conns[u] = struct{}{}
	r.mu.Unlock()
	done := make(chan struct{}, 2)
	go func() { io.Copy(u, c); u.Close(); done <- struct{}{} }()
	go func() { io.Copy(c, u); c.Close(); done <- struct{}{} }()
	<-done
	<-done
	r.mu.Lock()
	delete(r.conns, c)
	delete(r.conns, u)
	r.mu.Unlock()
}

// pause closes the listener and every relayed connection.
func (r *relay) pause(t testing.TB) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.ln != nil {
		r.ln.Close()
		r.ln = nil
	}
	for c := range r.conns {
		c.Close()
	}
}

// resume listens again on the same address.
func (r *relay) resume(t testing.TB) {
	t.Helper()
	r.mu.Lock()
	if r.ln != nil || r.closed {
		r.mu.Unlock()
		return
	}
	r.mu.Unlock()
	var ln net.Listener
	var err error
	for range 50 { // the port was ours a moment ago; retry briefly if the OS lags
		if ln, err = net.Listen("tcp", r.addr); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("pebbletest: resume relay on %s: %v", r.addr, err)
	}
	r.serve(ln)
}
