package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pafhq/paf/internal/testpeer"
)

// manualChain writes a root, and a leaf for name signed by an intermediate
// signed by the root: chain.pem (leaf, intermediate), reversed.pem
// (intermediate, leaf), key.pem, other-key.pem and root.pem in dir.
func manualChain(t *testing.T, dir, name string) (root, chain, reversed, key, otherKey string) {
	t.Helper()
	newKey := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	now := time.Now()
	issue := func(tmpl, parent *x509.Certificate, pub any, signer *ecdsa.PrivateKey) *x509.Certificate {
		der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, signer)
		if err != nil {
			t.Fatal(err)
		}
		c, err := x509.ParseCertificate(der)
		if err != nil {
			t.Fatal(err)
		}
		return c
	}
	rk, ik, lk := newKey(), newKey(), newKey()
	rt := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Manual Test Root"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true}
	r := issue(rt, rt, rk.Public(), rk)
	i := issue(&x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "Manual Test Intermediate"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true}, r, ik.Public(), rk)
	l := issue(&x509.Certificate{SerialNumber: big.NewInt(3), Subject: pkix.Name{CommonName: name},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(24 * time.Hour), DNSNames: []string{name},
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}, i, lk.Public(), ik)
	keyPEM := func(k *ecdsa.PrivateKey) []byte {
		der, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return pemEncode("PRIVATE KEY", der)
	}
	root, chain, reversed = filepath.Join(dir, "root.pem"), filepath.Join(dir, "chain.pem"), filepath.Join(dir, "reversed.pem")
	key, otherKey = filepath.Join(dir, "key.pem"), filepath.Join(dir, "other-key.pem")
	for f, data := range map[string][]byte{
		root:     pemEncode("CERTIFICATE", r.Raw),
		chain:    append(pemEncode("CERTIFICATE", l.Raw), pemEncode("CERTIFICATE", i.Raw)...),
		reversed: append(pemEncode("CERTIFICATE", i.Raw), pemEncode("CERTIFICATE", l.Raw)...),
		key:      keyPEM(lk),
		otherKey: keyPEM(newKey()),
	} {
		if err := os.WriteFile(f, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return root, chain, reversed, key, otherKey
}

// TestCertsAddLsRm runs paf certs add, ls and rm on a --certs directory,
// and paf serve serving the stored manual certificate (to curl, verified
// against its root) next to the local CA.
func TestCertsAddLsRm(t *testing.T) {
	curl := testpeer.Need(t, "curl")
	dir := t.TempDir()
	store := filepath.Join(dir, "store")
	root, chain, reversed, key, otherKey := manualChain(t, dir, "manual.example")
	env := []string{"PAF_CERTS_PASS="}

	for _, tt := range []struct {
		name string
		args []string
		code int
		want []string
	}{
		{"no subcommand", nil, 2, []string{"ls, add or rm"}},
		{"unknown subcommand", []string{"list"}, 2, []string{`"list"`}},
		{"add without key", []string{"add", "--cert", chain, "--certs", store}, 2, []string{"--key"}},
		{"key does not fit", []string{"add", "--cert", chain, "--key", otherKey, "--certs", store}, 1, []string{otherKey, chain, "does not fit"}},
		{"chain out of order", []string{"add", "--cert", reversed, "--key", key, "--certs", store}, 1, []string{reversed, "out of order"}},
		{"rm without name", []string{"rm", "--certs", store}, 2, []string{"NAME"}},
		{"rm two names", []string{"rm", "a.example", "--certs", store, "b.example"}, 2, []string{"NAME"}},
		{"rm unknown", []string{"rm", "nothing.example", "--certs", store}, 1, []string{"nothing.example", "paf certs ls"}},
		{"ls extra argument", []string{"ls", "--certs", store, "extra"}, 2, []string{`"extra"`}},
		{"remote without passphrase", []string{"ls", "--certs-remote", "file:///nonexistent"}, 2, []string{"passphrase"}},
		{"certs and remote", []string{"ls", "--certs", store, "--certs-remote", "file:///nonexistent"}, 2, []string{"give one"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			code, _, stderr := runPaf(t, env, append([]string{"certs"}, tt.args...)...)
			if code != tt.code {
				t.Errorf("exit %d, want %d:\n%s", code, tt.code, stderr)
			}
			for _, w := range tt.want {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr does not mention %q:\n%s", w, stderr)
				}
			}
		})
	}
	if _, err := os.Stat(filepath.Join(store, "certificates")); err == nil {
		t.Fatal("refused certificates left something in the store")
	}

	code, out, stderr := runPaf(t, env, "certs", "add", "--cert", chain, "--key", key, "--certs", store)
	if code != 0 || !strings.Contains(out, "manual.example") {
		t.Fatalf("add: exit %d\n%s%s", code, out, stderr)
	}
	code, out, stderr = runPaf(t, env, "certs", "ls", "--certs", store)
	if code != 0 {
		t.Fatalf("ls: exit %d\n%s", code, stderr)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "NAME") {
		t.Fatalf("ls output:\n%s", out)
	}
	for _, w := range []string{"manual.example", "manual", "Manual Test Intermediate", time.Now().Add(24 * time.Hour).UTC().Format("2006-01-02"), store} {
		if !strings.Contains(lines[1], w) {
			t.Errorf("ls line %q lacks %q", lines[1], w)
		}
	}

	// paf serve serves it by SNI; other names get the local CA's.
	p := startPaf(t, nil, "serve", "--data-dir", filepath.Join(dir, "data"), "--certs", store,
		"--http", "127.0.0.1:0", "--https", "127.0.0.1:0")
	httpsPort := port(t, p.addr("https"))
	if !strings.Contains(p.log(), "serving manual certificate") {
		t.Errorf("no log line for the manual certificate:\n%s", p.log())
	}
	portNum, err := strconv.Atoi(httpsPort)
	if err != nil {
		t.Fatal(err)
	}
	if code := curlCheck(t, curl, root, "manual.example", portNum); code != "200" {
		t.Errorf("curl manual.example: status %s", code)
	}
	if c, err := leafOf("127.0.0.1:"+httpsPort, "localhost", nil); err != nil || !strings.HasPrefix(c.Issuer.CommonName, "paf local CA") {
		t.Errorf("localhost: %v, %v; want the local CA's certificate", c, err)
	}
	p.stop()

	code, out, stderr = runPaf(t, env, "certs", "rm", "manual.example", "--certs", store)
	if code != 0 || !strings.Contains(out, "removed manual certificate for manual.example") {
		t.Fatalf("rm: exit %d\n%s%s", code, out, stderr)
	}
	code, out, stderr = runPaf(t, env, "certs", "ls", "--certs", store)
	if code != 0 || out != "" || !strings.Contains(stderr, "no certificates") {
		t.Errorf("ls after rm: exit %d\n%s%s", code, out, stderr)
	}
}

// TestCertsGitRemote keeps manual certificates in a Git branch: add, ls
// and rm through the remote, keys encrypted in every commit, a wrong
// passphrase refused without changing the repository.
func TestCertsGitRemote(t *testing.T) {
	git := testpeer.Need(t, "git")
	dir := t.TempDir()
	bare := filepath.Join(dir, "certs.git")
	if out, err := exec.Command(git, "init", "--bare", "-q", bare).CombinedOutput(); err != nil {
		t.Fatalf("git init: %v\n%s", err, out)
	}
	_, chain, _, key, _ := manualChain(t, dir, "git.example")
	remote := "file://" + bare + "#certs"
	env := []string{"PAF_CERTS_PASS=correct horse battery staple"}
	data := filepath.Join(dir, "data")

	code, out, stderr := runPaf(t, env, "certs", "add", "--cert", chain, "--key", key, "--certs-remote", remote, "--data-dir", data)
	if code != 0 {
		t.Fatalf("add: exit %d\n%s%s", code, out, stderr)
	}
	// Another machine (another data dir) sees it.
	code, out, stderr = runPaf(t, env, "certs", "ls", "--certs-remote", remote, "--data-dir", filepath.Join(dir, "other"))
	if code != 0 || !strings.Contains(out, "git.example") || !strings.Contains(out, "manual") || !strings.Contains(out, "git ") {
		t.Fatalf("ls from another data dir: exit %d\n%s%s", code, out, stderr)
	}
	history := func() string {
		out, err := exec.Command(git, "--git-dir", bare, "log", "-p", "--all").CombinedOutput()
		if err != nil {
			t.Fatalf("git log: %v\n%s", err, out)
		}
		return string(out)
	}
	before := history()
	if !strings.Contains(before, "git.example.crt") || strings.Contains(before, "PRIVATE KEY") {
		t.Fatalf("repository history: certificate missing or a key in plaintext:\n%s", before)
	}

	code, _, stderr = runPaf(t, []string{"PAF_CERTS_PASS=wrong"}, "certs", "ls", "--certs-remote", remote, "--data-dir", data)
	if code != 1 || !strings.Contains(stderr, "passphrase") {
		t.Errorf("wrong passphrase: exit %d\n%s", code, stderr)
	}
	oneLine(t, stderr)
	code, _, stderr = runPaf(t, []string{"PAF_CERTS_PASS=wrong"}, "certs", "add", "--cert", chain, "--key", key, "--certs-remote", remote, "--data-dir", data)
	if code != 1 || history() != before {
		t.Errorf("add with a wrong passphrase: exit %d, repository changed: %v\n%s", code, history() != before, stderr)
	}

	code, out, stderr = runPaf(t, env, "certs", "rm", "git.example", "--certs-remote", remote, "--data-dir", data)
	if code != 0 || !strings.Contains(out, "removed") {
		t.Fatalf("rm: exit %d\n%s%s", code, out, stderr)
	}
	code, out, stderr = runPaf(t, env, "certs", "ls", "--certs-remote", remote, "--data-dir", filepath.Join(dir, "other"))
	if code != 0 || strings.Contains(out, "git.example") {
		t.Errorf("ls after rm: exit %d\n%s%s", code, out, stderr)
	}

	// A local directory with a passphrase stores the key encrypted too.
	store := filepath.Join(dir, "store")
	if code, out, stderr := runPaf(t, env, "certs", "add", "--cert", chain, "--key", key, "--certs", store); code != 0 {
		t.Fatalf("add to an encrypted directory: exit %d\n%s%s", code, out, stderr)
	}
	b, err := os.ReadFile(filepath.Join(store, "certificates", "manual", "git.example", "git.example.key"))
	if err != nil || strings.Contains(string(b), "PRIVATE KEY") {
		t.Errorf("key in the directory: %v, plaintext: %v", err, strings.Contains(string(b), "PRIVATE KEY"))
	}
}
