package certs

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestLocalCACreateReopen(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "ca")
	ca, err := OpenLocalCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	if ca.CertFile() != filepath.Join(dir, "ca.pem") {
		t.Errorf("CertFile = %s", ca.CertFile())
	}
	if !strings.HasPrefix(ca.Certificate().Subject.CommonName, "paf local CA ") {
		t.Errorf("CA CN = %q", ca.Certificate().Subject.CommonName)
	}
	for name, want := range map[string]os.FileMode{dir: 0o700, filepath.Join(dir, CAKeyName): 0o600} {
		fi, err := os.Stat(name)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s mode %v, want %v", name, fi.Mode().Perm(), want)
		}
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 2 {
		t.Errorf("CA directory holds %d entries, want ca.pem and ca-key.pem only", len(entries))
	}
	again, err := OpenLocalCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(again.Certificate().Raw, ca.Certificate().Raw) {
		t.Error("reopened CA differs from the created one")
	}
	if !publicKeysEqual(again.key.Public(), ca.key.Public()) {
		t.Error("reopened CA key differs")
	}
}

func TestLocalCALeafVerifies(t *testing.T) {
	dir := t.TempDir()
	ca, err := OpenLocalCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	is, err := ca.Issuer([]string{"example.test", "localhost", "127.0.0.1", "::1", "localhost"})
	if err != nil {
		t.Fatal(err)
	}
	pemBytes, err := os.ReadFile(ca.CertFile())
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pemBytes) {
		t.Fatal("ca.pem does not parse")
	}
	c, err := is.GetCertificate(&tls.ClientHelloInfo{ServerName: "localhost"})
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"example.test", "localhost", "127.0.0.1", "::1"} {
		if _, err := c.Leaf.Verify(x509.VerifyOptions{DNSName: name, Roots: pool}); err != nil {
			t.Errorf("leaf does not verify for %s: %v", name, err)
		}
	}
	if _, err := c.Leaf.Verify(x509.VerifyOptions{DNSName: "other.test", Roots: pool}); err == nil {
		t.Error("leaf verifies for a name it was not issued for")
	}
	if got := c.Leaf.NotAfter.Sub(c.Leaf.NotBefore); got > LeafValidity+2*time.Hour {
		t.Errorf("leaf validity %v", got)
	}
	if _, err := ca.Issuer(nil); err == nil {
		t.Error("Issuer(nil) succeeded")
	}
	if _, err := ca.Issuer([]string{"bad/name"}); err == nil {
		t.Error("Issuer accepted an invalid name")
	}
}

func TestIssuedRenews(t *testing.T) {
	ca, err := OpenLocalCA(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	is, err := ca.Issuer([]string{"localhost"})
	if err != nil {
		t.Fatal(err)
	}
	first, _ := is.GetCertificate(nil)
	if again, _ := is.GetCertificate(nil); again != first {
		t.Error("fresh certificate was re-issued")
	}
	is.now = func() time.Time { return first.Leaf.NotAfter.Add(-time.Hour) }
	renewed, err := is.GetCertificate(nil)
	if err != nil {
		t.Fatal(err)
	}
	if renewed == first || !renewed.Leaf.NotAfter.After(first.Leaf.NotAfter) {
		t.Error("certificate in its last third was not renewed")
	}
}

func TestLocalCACorrupt(t *testing.T) {
	tests := []struct {
		name   string
		mutate func(t *testing.T, dir string)
		file   string // file the error must name
	}{
		{"truncated cert", func(t *testing.T, dir string) {
			b, _ := os.ReadFile(filepath.Join(dir, CACertName))
			os.WriteFile(filepath.Join(dir, CACertName), b[:len(b)/2], 0o600)
		}, CACertName},
		{"garbage cert", func(t *testing.T, dir string) {
			os.WriteFile(filepath.Join(dir, CACertName), []byte("garbage"), 0o600)
		}, CACertName},
		{"missing key", func(t *testing.T, dir string) {
			os.Remove(filepath.Join(dir, CAKeyName))
		}, CAKeyName},
		{"garbage key", func(t *testing.T, dir string) {
			os.WriteFile(filepath.Join(dir, CAKeyName), []byte("garbage"), 0o600)
		}, CAKeyName},
		{"other key", func(t *testing.T, dir string) {
			other := t.TempDir()
			if _, err := OpenLocalCA(other); err != nil {
				t.Fatal(err)
			}
			b, _ := os.ReadFile(filepath.Join(other, CAKeyName))
			os.WriteFile(filepath.Join(dir, CAKeyName), b, 0o600)
		}, CAKeyName},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			if _, err := OpenLocalCA(dir); err != nil {
				t.Fatal(err)
			}
			tt.mutate(t, dir)
			before := snapshotDir(t, dir)
			_, err := OpenLocalCA(dir)
			if err == nil {
				t.Fatal("corrupt CA opened")
			}
			if !strings.Contains(err.Error(), filepath.Join(dir, tt.file)) {
				t.Errorf("error %q does not name %s", err, tt.file)
			}
			if after := snapshotDir(t, dir); after != before {
				t.Errorf("CA directory changed:\nbefore %s\nafter  %s", before, after)
			}
		})
	}
}

func TestLocalCAInterruptedCreation(t *testing.T) {
	dir := t.TempDir()
	if _, err := OpenLocalCA(dir); err != nil {
		t.Fatal(err)
	}
	// A key without certificate: creation died before the commit point.
	if err := os.Remove(filepath.Join(dir, CACertName)); err != nil {
		t.Fatal(err)
	}
	ca, err := OpenLocalCA(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(ca.CertFile()); err != nil {
		t.Fatal(err)
	}
}

// snapshotDir describes the names and contents of dir's files.
func snapshotDir(t *testing.T, dir string) string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, e := range entries {
		c, _ := os.ReadFile(filepath.Join(dir, e.Name()))
		b.WriteString(e.Name() + "=" + string(c) + ";")
	}
	return b.String()
}
