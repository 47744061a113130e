package main

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pafhq/paf/internal/testpeer"
)

// TestProxyManualCertificates: paf proxy serves a --tls-cert pair for its
// name and a certificate stored with `paf certs add` for another, each
// verified by curl trusting only that certificate.
func TestProxyManualCertificates(t *testing.T) {
	curl := testpeer.Need(t, "curl")
	openssl := testpeer.Need(t, "openssl")
	_, addrA := pxBackend(t, "site A")
	_, addrB := pxBackend(t, "site B")
	dir := t.TempDir()
	selfSigned := func(name string) (cert, key string) {
		cert, key = filepath.Join(dir, name+".pem"), filepath.Join(dir, name+".key")
		out, err := exec.Command(openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
			"-nodes", "-days", "2", "-subj", "/CN="+name, "-addext", "subjectAltName=DNS:"+name,
			"-keyout", key, "-out", cert).CombinedOutput()
		if err != nil {
			t.Fatalf("openssl: %v\n%s", err, out)
		}
		return cert, key
	}
	certA, keyA := selfSigned("a.test")
	certB, keyB := selfSigned("b.test")
	routes := filepath.Join(dir, "routes")
	for _, r := range [][]string{{"a.test", addrA}, {"b.test", addrB}} {
		if code, out, errOut := runPaf(t, nil, "route", "add", r[0], "--backend", "http://"+r[1], "--routes", routes, "--cert", "manual"); code != 0 {
			t.Fatalf("route add %s: %d %s %s", r[0], code, out, errOut)
		}
	}
	store := filepath.Join(dir, "certs")
	if code, out, errOut := runPaf(t, []string{"PAF_CERTS_PASS=manual test"}, "certs", "add", "--cert", certB, "--key", keyB, "--certs", store); code != 0 {
		t.Fatalf("certs add: %d %s %s", code, out, errOut)
	}
	px := startPaf(t, []string{"PAF_CERTS_PASS=manual test"}, "proxy", "--routes", routes, "--http", "off", "--https", "127.0.0.1:0",
		"--data-dir", filepath.Join(dir, "data"), "--certs", store, "--tls-cert", certA, "--tls-key", keyA, "--poll", "0")
	httpsAddr := px.addr("https")
	for _, tt := range []struct{ host, ca, body string }{{"a.test", certA, "site A"}, {"b.test", certB, "site B"}} {
		body, status, err := pxCurl(t, curl, tt.ca, tt.host, httpsAddr, "--http2")
		if err != nil || body != tt.body || !strings.HasPrefix(status, "200") {
			t.Errorf("%s with its manual certificate: %v %q %q, want 200 %q", tt.host, err, body, status, tt.body)
		}
	}
	// Each certificate is served only for its own name.
	if _, _, err := pxCurl(t, curl, certA, "b.test", httpsAddr); err == nil {
		t.Error("b.test verified against a.test's certificate")
	}
}

// TestCertsAddWarnsWithoutPassphrase: storing a key without a passphrase
// says it is unencrypted; with one it does not, and the key on disk is not
// plaintext.
func TestCertsAddWarnsWithoutPassphrase(t *testing.T) {
	openssl := testpeer.Need(t, "openssl")
	dir := t.TempDir()
	cert, key := filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem")
	if out, err := exec.Command(openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
		"-nodes", "-days", "2", "-subj", "/CN=w.test", "-addext", "subjectAltName=DNS:w.test",
		"-keyout", key, "-out", cert).CombinedOutput(); err != nil {
		t.Fatalf("openssl: %v\n%s", err, out)
	}
	for _, tt := range []struct {
		env  []string
		warn bool
	}{{nil, true}, {[]string{"PAF_CERTS_PASS=secret words"}, false}} {
		store := filepath.Join(t.TempDir(), "certs")
		code, _, stderr := runPaf(t, tt.env, "certs", "add", "--cert", cert, "--key", key, "--certs", store)
		if code != 0 {
			t.Fatalf("certs add: exit %d: %s", code, stderr)
		}
		if got := strings.Contains(stderr, "unencrypted"); got != tt.warn {
			t.Errorf("env %v: warning %v, want %v: %q", tt.env, got, tt.warn, stderr)
		}
		out, _ := exec.Command("grep", "-rl", "PRIVATE KEY", store).Output()
		if plain := len(strings.TrimSpace(string(out))) > 0; plain != tt.warn {
			t.Errorf("env %v: plaintext key on disk %v, want %v", tt.env, plain, tt.warn)
		}
	}
}
