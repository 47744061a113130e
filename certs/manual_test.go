package certs

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// writeSelfSigned writes a self-signed certificate for names and its key
// into dir, returning the pair.
func writeSelfSigned(t *testing.T, dir, base string, names []string, notBefore, notAfter time.Time) Pair {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(time.Now().UnixNano()),
		Subject:      pkix.Name{CommonName: names[0]},
		NotBefore:    notBefore,
		NotAfter:     notAfter,
		DNSNames:     names,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	p := Pair{CertFile: filepath.Join(dir, base+".crt"), KeyFile: filepath.Join(dir, base+".key")}
	if err := os.WriteFile(p.CertFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p.KeyFile, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestManualSNI(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	a := writeSelfSigned(t, dir, "a", []string{"a.example", "www.a.example"}, now.Add(-time.Hour), now.Add(time.Hour))
	b := writeSelfSigned(t, dir, "b", []string{"b.example", "*.b.example"}, now.Add(-time.Hour), now.Add(time.Hour))
	m, err := LoadManual([]Pair{a, b})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		sni  string
		want string // CommonName of the chosen leaf
	}{
		{"a.example", "a.example"},
		{"WWW.A.Example.", "a.example"},
		{"b.example", "b.example"},
		{"x.b.example", "b.example"},
		{"y.x.b.example", "a.example"}, // wildcards cover one label only: default
		{"other.example", "a.example"}, // default is the first pair
		{"", "a.example"},
	}
	for _, tt := range tests {
		c, err := m.GetCertificate(&tls.ClientHelloInfo{ServerName: tt.sni})
		if err != nil {
			t.Fatalf("%q: %v", tt.sni, err)
		}
		if got := c.Leaf.Subject.CommonName; got != tt.want {
			t.Errorf("SNI %q: got certificate %q, want %q", tt.sni, got, tt.want)
		}
	}
}

func TestLoadManualErrors(t *testing.T) {
	dir := t.TempDir()
	now := time.Now()
	a := writeSelfSigned(t, dir, "a", []string{"a.example"}, now.Add(-time.Hour), now.Add(time.Hour))
	b := writeSelfSigned(t, dir, "b", []string{"b.example"}, now.Add(-time.Hour), now.Add(time.Hour))
	old := writeSelfSigned(t, dir, "old", []string{"old.example"}, now.Add(-48*time.Hour), now.Add(-24*time.Hour))
	garbage := filepath.Join(dir, "garbage.pem")
	if err := os.WriteFile(garbage, []byte("this is not PEM\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	badDER := filepath.Join(dir, "bad-der.pem")
	if err := os.WriteFile(badDER, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: []byte("nope")}), 0o600); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(dir, "missing.pem")
	tests := []struct {
		name  string
		pairs []Pair
		want  []string // substrings of the error
	}{
		{"none", nil, []string{"no certificate"}},
		{"mismatched key", []Pair{{a.CertFile, b.KeyFile}}, []string{b.KeyFile, a.CertFile, "does not fit"}},
		{"garbage cert", []Pair{{garbage, a.KeyFile}}, []string{garbage, "no PEM CERTIFICATE"}},
		{"garbage key", []Pair{{a.CertFile, garbage}}, []string{garbage, "no PEM PRIVATE KEY"}},
		{"bad DER", []Pair{{badDER, a.KeyFile}}, []string{badDER, "parse"}},
		{"missing cert", []Pair{{missing, a.KeyFile}}, []string{missing}},
		{"missing key", []Pair{{a.CertFile, missing}}, []string{missing}},
		{"expired", []Pair{a, old}, []string{old.CertFile, "expired"}},
		{"key as cert", []Pair{{a.KeyFile, a.KeyFile}}, []string{a.KeyFile, "no PEM CERTIFICATE"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := LoadManual(tt.pairs)
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}
