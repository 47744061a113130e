package main

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pafhq/paf/internal/pebbletest"
	"github.com/pafhq/paf/internal/testpeer"
)

// acmePaf starts paf serve --acme against peb on the given ports, with the
// demo site, for names.
func acmePaf(t *testing.T, peb *pebbletest.Pebble, dataDir string, httpPort, httpsPort int, extra ...string) *proc {
	t.Helper()
	args := []string{"serve", "--data-dir", dataDir,
		"--http", "127.0.0.1:" + strconv.Itoa(httpPort), "--https", "127.0.0.1:" + strconv.Itoa(httpsPort),
		"--acme", "--acme-ca", peb.DirectoryURL, "--poll", "0"}
	return startPaf(t, nil, append(args, extra...)...)
}

// countLog counts log lines whose msg is msg and whose attributes include
// every key/value pair of kv.
func (p *proc) countLog(msg string, kv ...any) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := 0
next:
	for _, l := range p.lines {
		if l["msg"] != msg {
			continue
		}
		for i := 0; i+1 < len(kv); i += 2 {
			if l[kv[i].(string)] != kv[i+1] {
				continue next
			}
		}
		n++
	}
	return n
}

// waitCount waits until countLog(msg, kv...) reaches n.
func (p *proc) waitCount(n int, timeout time.Duration, msg string, kv ...any) {
	p.t.Helper()
	deadline := time.Now().Add(timeout)
	for p.countLog(msg, kv...) < n {
		if time.Now().After(deadline) {
			p.t.Fatalf("paf did not log %q %v %d times within %v:\n%s", msg, kv, n, timeout, p.log())
		}
		select {
		case <-p.done:
			p.t.Fatalf("paf exited:\n%s", p.log())
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// leafOf handshakes with addr for name and returns the leaf served,
// verified against roots (nil: not verified).
func leafOf(addr, name string, roots *x509.CertPool) (*x509.Certificate, error) {
	conf := &tls.Config{ServerName: name, RootCAs: roots, InsecureSkipVerify: roots == nil}
	d := &net.Dialer{Timeout: 10 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", addr, conf)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0], nil
}

func rootPool(t *testing.T, pemBytes []byte) *x509.CertPool {
	t.Helper()
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pemBytes) {
		t.Fatal("no certificate in the issuer root")
	}
	return pool
}

// curlCheck fetches https://name:port/ through curl trusting only caFile and
// returns the HTTP status.
func curlCheck(t *testing.T, curl, caFile, name string, port int) string {
	t.Helper()
	p := strconv.Itoa(port)
	out, err := exec.Command(curl, "-sS", "--max-time", "20", "--cacert", caFile,
		"--resolve", name+":"+p+":127.0.0.1", "-o", "/dev/null", "-w", "%{http_code}",
		"https://"+name+":"+p+"/").CombinedOutput()
	if err != nil {
		t.Fatalf("curl https://%s:%s/: %v\n%s", name, p, err, out)
	}
	return strings.TrimSpace(string(out))
}

// opensslVerify runs openssl s_client with -verify_return_error, which
// fails the handshake unless the chain verifies against caFile and name.
func opensslVerify(t *testing.T, openssl, caFile, name string, port int) {
	t.Helper()
	cmd := exec.Command(openssl, "s_client", "-connect", "127.0.0.1:"+strconv.Itoa(port),
		"-servername", name, "-verify_hostname", name, "-CAfile", caFile, "-verify_return_error")
	cmd.Stdin = strings.NewReader("")
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "Verify return code: 0 (ok)") {
		t.Fatalf("openssl s_client %s: %v\n%s", name, err, out)
	}
}

// TestACMEChallenges obtains a certificate from Pebble with each challenge
// type, serves it to curl and openssl, and checks that one order was
// placed and the forced challenge was the one answered. The HTTP-01 run
// then restarts paf without the CA's root and with a second name: the
// stored certificate is served at once, and the failure to order the new
// one is logged with a hint.
func TestACMEChallenges(t *testing.T) {
	curl := testpeer.Need(t, "curl")
	openssl := testpeer.Need(t, "openssl")
	for _, tt := range []struct {
		challenge string
		served    string // certmagic's log message when answering
	}{
		{"http-01", "served key authentication"},
		{"tls-alpn-01", "served key authentication certificate"},
	} {
		t.Run(tt.challenge, func(t *testing.T) {
			httpPort, httpsPort := pebbletest.FreePort(t), pebbletest.FreePort(t)
			peb := pebbletest.Start(t, pebbletest.Config{HTTPPort: httpPort, TLSPort: httpsPort})
			dataDir := t.TempDir()
			p := acmePaf(t, peb, dataDir, httpPort, httpsPort,
				"--hostname", "site.example", "--acme-ca-root", peb.RootFile, "--acme-challenge", tt.challenge)
			p.waitLog("certificate obtained", 90*time.Second)
			p.waitLog("serving certificate", 30*time.Second)
			if n := p.countLog(tt.served, "challenge", tt.challenge); n == 0 {
				t.Errorf("no %q log line for %s", tt.served, tt.challenge)
			}
			root := peb.WriteIssuerRoot()
			if code := curlCheck(t, curl, root, "site.example", httpsPort); code != "200" {
				t.Errorf("curl: status %s, want 200", code)
			}
			opensslVerify(t, openssl, root, "site.example", httpsPort)
			if n := peb.Orders(); n != 1 {
				t.Errorf("Pebble got %d orders, want 1", n)
			}
			if _, err := os.Stat(filepath.Join(dataDir, "certs", "certificates")); err != nil {
				t.Errorf("certificate not in the default --certs directory: %v", err)
			}
			if tt.challenge != "http-01" {
				return
			}

			// Restart without --acme-ca-root: what is stored is served,
			// the new name fails with a clear error, and paf stays up.
			p.stop()
			p = acmePaf(t, peb, dataDir, httpPort, httpsPort,
				"--hostname", "site.example", "--hostname", "new.example")
			p.waitCount(1, 90*time.Second, "certificate not obtained", "name", "new.example")
			if code := curlCheck(t, curl, root, "site.example", httpsPort); code != "200" {
				t.Errorf("curl after restart: status %s, want 200", code)
			}
			l := p.waitLog("certificate not obtained", time.Second)
			if hint, _ := l["hint"].(string); !strings.Contains(hint, "--acme-ca-root") {
				t.Errorf("failure log line has no hint about --acme-ca-root: %v", l)
			}
			if _, ok := l["retry_in"]; !ok {
				t.Errorf("failure log line does not say when it retries: %v", l)
			}
			if n := peb.Orders(); n != 1 {
				t.Errorf("Pebble got %d orders after the restart, want still 1", n)
			}

			code, out, errOut := runPaf(t, nil, "certs", "ls", "--data-dir", dataDir)
			if code != 0 || !strings.Contains(out, "site.example") || !strings.Contains(out, "acme") ||
				!strings.Contains(out, "Pebble") || !strings.Contains(out, filepath.Join(dataDir, "certs")) {
				t.Errorf("paf certs ls: exit %d\n%s%s", code, out, errOut)
			}
		})
	}
}

// TestACMERenewal has Pebble issue 30-second certificates: paf renews
// before expiry and new handshakes get the new certificate without a
// restart; with the CA unreachable paf keeps serving and logs when it
// retries; with the CA back the renewal completes.
func TestACMERenewal(t *testing.T) {
	httpPort, httpsPort := pebbletest.FreePort(t), pebbletest.FreePort(t)
	const validity = 30 * time.Second
	peb := pebbletest.Start(t, pebbletest.Config{HTTPPort: httpPort, TLSPort: httpsPort, Validity: validity})
	p := acmePaf(t, peb, t.TempDir(), httpPort, httpsPort,
		"--hostname", "renew.example", "--acme-ca-root", peb.RootFile, "--acme-renew-check", "1s")
	p.waitLog("certificate obtained", 90*time.Second)
	p.waitLog("serving certificate", 30*time.Second)
	roots := rootPool(t, peb.IssuerRoot())
	addr := "127.0.0.1:" + strconv.Itoa(httpsPort)
	first, err := leafOf(addr, "renew.example", roots)
	if err != nil {
		t.Fatal(err)
	}
	if life := first.NotAfter.Sub(first.NotBefore); life > validity {
		t.Fatalf("certificate lives %v, want at most %v", life, validity)
	}
	pid := p.cmd.Process.Pid

	// waitNewSerial polls handshakes until the served serial differs from
	// old's, within bound.
	waitNewSerial := func(old *x509.Certificate, bound time.Duration, verify bool) *x509.Certificate {
		t.Helper()
		deadline := time.Now().Add(bound)
		for {
			pool := roots
			if !verify {
				pool = nil
			}
			c, err := leafOf(addr, "renew.example", pool)
			if err == nil && c.SerialNumber.Cmp(old.SerialNumber) != 0 {
				return c
			}
			if time.Now().After(deadline) {
				t.Fatalf("served certificate still %x after %v (last error %v):\n%s", old.SerialNumber, bound, err, p.log())
			}
			time.Sleep(300 * time.Millisecond)
		}
	}
	second := waitNewSerial(first, 2*validity, true)
	if !second.NotAfter.After(first.NotAfter) {
		t.Errorf("renewed certificate expires %v, not after the first's %v", second.NotAfter, first.NotAfter)
	}

	// CA down: the next renewal fails, is logged with its retry time,
	// and the current certificate is still served.
	peb.Pause()
	failures := p.countLog("certificate not obtained")
	p.waitCount(failures+1, 2*validity, "certificate not obtained", "renewal", true)
	current, err := leafOf(addr, "renew.example", nil)
	if err != nil {
		t.Fatalf("no handshake while the CA is down: %v", err)
	}
	l := p.waitLog("certificate not obtained", time.Second)
	if _, ok := l["retry_at"]; !ok {
		t.Errorf("failure does not say when it retries: %v", l)
	}

	// CA back: the retry (CertMagic's backoff starts at one minute)
	// renews, and handshakes get the new certificate. It may have expired
	// meanwhile: do not require the old one to verify.
	peb.Resume()
	third := waitNewSerial(current, 3*time.Minute, true)
	if third.SerialNumber.Cmp(second.SerialNumber) == 0 {
		t.Error("renewal after the outage served the old certificate")
	}
	if p.cmd.Process.Pid != pid || p.countLog("serving") != 1 {
		t.Error("paf restarted")
	}
	if peb.Orders() < 3 {
		t.Errorf("Pebble got %d orders, want at least 3", peb.Orders())
	}
}

// TestACMEUsageErrors checks flag combinations refused before anything
// starts.
func TestACMEUsageErrors(t *testing.T) {
	root := filepath.Join(t.TempDir(), "root.pem")
	if err := os.WriteFile(root, []byte("not a certificate\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	base := []string{"serve", "--data-dir", t.TempDir(), "--http", "127.0.0.1:0", "--https", "127.0.0.1:0"}
	for _, tt := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no hostname", []string{"--acme"}, 2, "--hostname"},
		{"bad challenge", []string{"--acme", "--hostname", "a.example", "--acme-challenge", "dns-01"}, 2, "--acme-challenge"},
		{"production and CA", []string{"--acme", "--hostname", "a.example", "--production", "--acme-ca", "https://ca.example/dir"}, 2, "--production"},
		{"plain http CA", []string{"--acme", "--hostname", "a.example", "--acme-ca", "http://ca.example/dir"}, 2, "https://"},
		{"https off", []string{"--acme", "--hostname", "a.example", "--https", "off"}, 2, "HTTPS"},
		{"http-01 without http", []string{"--acme", "--hostname", "a.example", "--http", "off", "--acme-challenge", "http-01"}, 2, "--http"},
		{"bad key type", []string{"--acme", "--hostname", "a.example", "--acme-key-type", "dsa"}, 2, "dsa"},
		{"bad CA root", []string{"--acme", "--hostname", "a.example", "--acme-ca-root", root}, 1, root},
		{"half EAB", []string{"--acme", "--hostname", "a.example", "--acme-eab-kid", "kid"}, 2, "--acme-eab"},
		{"remote without passphrase", []string{"--acme", "--hostname", "a.example", "--certs-remote", "file:///nonexistent"}, 2, "passphrase"},
		{"certs and remote", []string{"--acme", "--hostname", "a.example", "--certs", "/tmp/x", "--certs-remote", "file:///nonexistent"}, 2, "--certs-remote"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			code, _, stderr := runPaf(t, []string{"PAF_CERTS_PASS="}, append(base, tt.args...)...)
			if code != tt.code || !strings.Contains(stderr, tt.want) {
				t.Errorf("exit %d (want %d), stderr:\n%s\nwant it to mention %q", code, tt.code, stderr, tt.want)
			}
			oneLine(t, stderr)
		})
	}
}

// pemEncode encodes one block.
func pemEncode(typ string, der []byte) []byte {
	return pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
}

// TestACMEGitRemote keeps the ACME account and certificate in a Git
// branch: the certificate is obtained by one instance with no private key
// reaching the repository in plaintext, and a second instance with an
// empty data directory serves the same certificate without a new order.
func TestACMEGitRemote(t *testing.T) {
	git := testpeer.Need(t, "git")
	bare := filepath.Join(t.TempDir(), "certs.git")
	if out, err := exec.Command(git, "init", "--bare", "-q", bare).CombinedOutput(); err != nil {
		t.Fatalf("git init: %v\n%s", err, out)
	}
	httpPort, httpsPort := pebbletest.FreePort(t), pebbletest.FreePort(t)
	peb := pebbletest.Start(t, pebbletest.Config{HTTPPort: httpPort, TLSPort: httpsPort})
	passFile := filepath.Join(t.TempDir(), "pass")
	if err := os.WriteFile(passFile, []byte("s3cret passphrase\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	remote := []string{"--certs-remote", "file://" + bare, "--certs-pass-file", passFile,
		"--hostname", "git.example", "--acme-ca-root", peb.RootFile}
	p := acmePaf(t, peb, t.TempDir(), httpPort, httpsPort, remote...)
	p.waitLog("certificate obtained", 90*time.Second)
	p.waitLog("serving certificate", 30*time.Second)
	roots := rootPool(t, peb.IssuerRoot())
	first, err := leafOf("127.0.0.1:"+strconv.Itoa(httpsPort), "git.example", roots)
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(git, "--git-dir", bare, "log", "-p", "--all").CombinedOutput()
	if err != nil {
		t.Fatalf("git log: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "git.example.crt") || strings.Contains(string(out), "PRIVATE KEY") {
		t.Fatalf("repository: certificate missing or a private key in plaintext:\n%s", out)
	}

	p2 := acmePaf(t, peb, t.TempDir(), pebbletest.FreePort(t), pebbletest.FreePort(t), remote...)
	p2.waitLog("serving certificate", 30*time.Second)
	second, err := leafOf(p2.addr("https"), "git.example", roots)
	if err != nil {
		t.Fatal(err)
	}
	if second.SerialNumber.Cmp(first.SerialNumber) != 0 {
		t.Errorf("second instance serves serial %x, want %x", second.SerialNumber, first.SerialNumber)
	}
	if n := peb.Orders(); n != 1 {
		t.Errorf("Pebble got %d orders, want 1", n)
	}
}
