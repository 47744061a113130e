package certs

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io/fs"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/certmagic"
	"github.com/pafhq/paf/internal/testpeer"
	"go.uber.org/zap"
)

// testChain is a root, an intermediate and a leaf, written to files.
type testChain struct {
	Root, Inter, Leaf *x509.Certificate
	LeafKey           crypto.Signer
	RootFile          string // the root alone
	ChainFile         string // leaf then intermediate
	ReversedFile      string // intermediate then leaf
	KeyFile           string // the leaf's key
	OtherKeyFile      string // a key that fits nothing
}

// makeChain issues a leaf for names under a fresh intermediate and root.
func makeChain(t *testing.T, dir string, names []string, notAfter time.Time) *testChain {
	t.Helper()
	newKey := func() *ecdsa.PrivateKey {
		k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			t.Fatal(err)
		}
		return k
	}
	now := time.Now()
	issue := func(tmpl, parent *x509.Certificate, pub crypto.PublicKey, signer crypto.Signer) *x509.Certificate {
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
	rootKey, interKey, leafKey := newKey(), newKey(), newKey()
	rootTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "Test Root"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(48 * time.Hour),
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true,
	}
	root := issue(rootTmpl, rootTmpl, rootKey.Public(), rootKey)
	inter := issue(&x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "Test Intermediate"},
		NotBefore: now.Add(-time.Hour), NotAfter: now.Add(48 * time.Hour),
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true, IsCA: true,
	}, root, interKey.Public(), rootKey)
	leafTmpl := &x509.Certificate{
		SerialNumber: big.NewInt(3), Subject: pkix.Name{CommonName: names[0]},
		NotBefore: now.Add(-2 * time.Hour), NotAfter: notAfter,
		KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, n := range names {
		if ip := net.ParseIP(n); ip != nil {
			leafTmpl.IPAddresses = append(leafTmpl.IPAddresses, ip)
		} else {
			leafTmpl.DNSNames = append(leafTmpl.DNSNames, n)
		}
	}
	leaf := issue(leafTmpl, inter, leafKey.Public(), interKey)
	enc := func(c *x509.Certificate) []byte {
		return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: c.Raw})
	}
	encKey := func(k *ecdsa.PrivateKey) []byte {
		der, err := x509.MarshalPKCS8PrivateKey(k)
		if err != nil {
			t.Fatal(err)
		}
		return pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})
	}
	tc := &testChain{
		Root: root, Inter: inter, Leaf: leaf, LeafKey: leafKey,
		RootFile:     filepath.Join(dir, names[0]+"-root.pem"),
		ChainFile:    filepath.Join(dir, names[0]+"-chain.pem"),
		ReversedFile: filepath.Join(dir, names[0]+"-reversed.pem"),
		KeyFile:      filepath.Join(dir, names[0]+"-key.pem"),
		OtherKeyFile: filepath.Join(dir, names[0]+"-other-key.pem"),
	}
	for name, data := range map[string][]byte{
		tc.RootFile:     enc(root),
		tc.ChainFile:    append(enc(leaf), enc(inter)...),
		tc.ReversedFile: append(enc(inter), enc(leaf)...),
		tc.KeyFile:      encKey(leafKey),
		tc.OtherKeyFile: encKey(newKey()),
	} {
		if err := os.WriteFile(name, data, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return tc
}

func TestCertsAddManualErrors(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	good := makeChain(t, dir, []string{"good.example"}, time.Now().Add(24*time.Hour))
	expired := makeChain(t, dir, []string{"old.example"}, time.Now().Add(-time.Hour))
	garbage := filepath.Join(dir, "garbage.pem")
	if err := os.WriteFile(garbage, []byte("not PEM\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	encrypted := filepath.Join(dir, "encrypted.pem")
	if err := os.WriteFile(encrypted, []byte("-----BEGIN ENCRYPTED PRIVATE KEY-----\nAAAA\n-----END ENCRYPTED PRIVATE KEY-----\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		pair Pair
		want []string
	}{
		{"key does not fit", Pair{good.ChainFile, good.OtherKeyFile}, []string{good.OtherKeyFile, good.ChainFile, "does not fit"}},
		{"chain out of order", Pair{good.ReversedFile, good.KeyFile}, []string{good.ReversedFile, "out of order", "leaf first"}},
		{"expired", Pair{expired.ChainFile, expired.KeyFile}, []string{expired.ChainFile, "expired"}},
		{"garbage certificate", Pair{garbage, good.KeyFile}, []string{garbage, "no PEM CERTIFICATE"}},
		{"key as certificate", Pair{good.KeyFile, good.KeyFile}, []string{good.KeyFile, "private key"}},
		{"garbage key", Pair{good.ChainFile, garbage}, []string{garbage, "no PEM PRIVATE KEY"}},
		{"encrypted key", Pair{good.ChainFile, encrypted}, []string{encrypted, "encrypted"}},
		{"missing key", Pair{good.ChainFile, filepath.Join(dir, "missing.pem")}, []string{"missing.pem"}},
	} {
		t.Run(tt.name, func(t *testing.T) {
			st := &certmagic.FileStorage{Path: filepath.Join(t.TempDir(), "certs")}
			_, err := AddManual(ctx, st, tt.pair)
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range tt.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
			if _, err := os.Stat(st.Path); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("a refused certificate left %s behind", st.Path)
			}
		})
	}
}

func TestCertsStoreListRemove(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	st := &certmagic.FileStorage{Path: filepath.Join(dir, "certs")}
	if list, err := ListStored(ctx, st); err != nil || len(list) != 0 {
		t.Fatalf("empty storage: %v, %v", list, err)
	}
	a := makeChain(t, dir, []string{"a.example", "www.a.example"}, time.Now().Add(24*time.Hour))
	w := makeChain(t, dir, []string{"*.w.example"}, time.Now().Add(24*time.Hour))
	for _, c := range []*testChain{a, w} {
		got, err := AddManual(ctx, st, Pair{c.ChainFile, c.KeyFile})
		if err != nil {
			t.Fatal(err)
		}
		if got.Issuer != "Test Intermediate" || !got.Manual || got.Name != c.Leaf.DNSNames[0] {
			t.Errorf("AddManual = %+v", got)
		}
	}
	// Adding again replaces.
	if _, err := AddManual(ctx, st, Pair{a.ChainFile, a.KeyFile}); err != nil {
		t.Fatal(err)
	}
	list, err := ListStored(ctx, st)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[0].Name != "*.w.example" || list[1].Name != "a.example" {
		t.Fatalf("ListStored = %+v", list)
	}
	if list[1].Key != "certificates/manual/a.example/a.example.crt" || !list[1].NotAfter.Equal(a.Leaf.NotAfter) {
		t.Errorf("ListStored[1] = %+v", list[1])
	}
	meta, err := st.Load(ctx, "certificates/manual/a.example/a.example.json")
	if err != nil {
		t.Fatal(err)
	}
	var m manualMeta
	if err := json.Unmarshal(meta, &m); err != nil || !m.Manual || len(m.Names) != 2 {
		t.Errorf("metadata %s: %v", meta, err)
	}

	// Served by SNI, wildcard included; other names fall through.
	man, err := LoadStoredManual(ctx, st, nil)
	if err != nil {
		t.Fatal(err)
	}
	fallback := GetterFunc(func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return nil, errors.New("fallback") })
	g := ManualFirst(man, fallback)
	for sni, want := range map[string]*x509.Certificate{"a.example": a.Leaf, "WWW.A.EXAMPLE.": a.Leaf, "x.w.example": w.Leaf, "other.example": nil} {
		c, err := g.GetCertificate(&tls.ClientHelloInfo{ServerName: sni})
		if want == nil {
			if err == nil || err.Error() != "fallback" {
				t.Errorf("%s: got %v, %v; want the fallback", sni, c, err)
			}
			continue
		}
		if err != nil || !bytes.Equal(c.Leaf.Raw, want.Raw) || len(c.Certificate) != 2 {
			t.Errorf("%s: wrong certificate (%v)", sni, err)
		}
	}

	removed, err := RemoveStored(ctx, st, "a.example")
	if err != nil || len(removed) != 1 {
		t.Fatalf("RemoveStored = %v, %v", removed, err)
	}
	if _, err := os.Stat(filepath.Join(st.Path, "certificates", "manual", "a.example")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("a.example's directory is still there: %v", err)
	}
	if _, err := RemoveStored(ctx, st, "a.example"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("removing again: %v, want ErrNotExist", err)
	}
	if _, err := RemoveStored(ctx, st, "*.w.example"); err != nil {
		t.Errorf("removing the wildcard: %v", err)
	}
	if list, err := ListStored(ctx, st); err != nil || len(list) != 0 {
		t.Errorf("after removals: %v, %v", list, err)
	}
}

// TestACMEManualPrecedence checks, without a CA, that an ACME manager
// serves stored manual certificates for their names, refuses bad
// configurations, and answers nothing but challenges on the HTTP handler.
func TestACMEManualPrecedence(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	dir := t.TempDir()
	st := &certmagic.FileStorage{Path: filepath.Join(dir, "certs")}
	m := makeChain(t, dir, []string{"manual.example"}, time.Now().Add(24*time.Hour))
	if _, err := AddManual(ctx, st, Pair{m.ChainFile, m.KeyFile}); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		cfg  ACMEConfig
		want string
	}{
		{"no storage", ACMEConfig{Hostnames: []string{"a.example"}}, "no storage"},
		{"no names", ACMEConfig{Storage: st}, "no host names"},
		{"bad name", ACMEConfig{Storage: st, Hostnames: []string{"a.example/x"}}, "invalid host name"},
		{"plain http CA", ACMEConfig{Storage: st, Hostnames: []string{"a.example"}, CA: "http://ca.example/dir"}, "https://"},
		{"key type", ACMEConfig{Storage: st, Hostnames: []string{"a.example"}, KeyType: "dsa"}, "unknown key type"},
		{"challenge", ACMEConfig{Storage: st, Hostnames: []string{"a.example"}, Challenge: "dns-01"}, "unknown challenge"},
		{"half EAB", ACMEConfig{Storage: st, Hostnames: []string{"a.example"}, EAB: &EAB{KeyID: "k"}}, "external account"},
	} {
		if _, err := NewACME(ctx, tt.cfg); err == nil || !strings.Contains(err.Error(), tt.want) {
			t.Errorf("%s: error %v, want it to mention %q", tt.name, err, tt.want)
		}
	}

	logBuf := &testpeer.SyncBuffer{}
	log := slog.New(slog.NewJSONHandler(logBuf, nil))
	a, err := NewACME(ctx, ACMEConfig{Hostnames: []string{"Manual.Example", "manual.example"}, Storage: st, Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Close()
	c, err := a.GetCertificate(&tls.ClientHelloInfo{ServerName: "manual.example"})
	if err != nil || !bytes.Equal(c.Leaf.Raw, m.Leaf.Raw) {
		t.Fatalf("manual.example: %v", err)
	}
	if got := a.NextProtos(); len(got) != 1 || got[0] != ACMETLS1Protocol {
		t.Errorf("NextProtos = %v", got)
	}
	// Every name has a manual certificate: Start orders nothing.
	httpAddr := &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 1}
	if err := a.Start(ctx, httpAddr, httpAddr); err != nil {
		t.Fatal(err)
	}
	if err := a.Start(ctx, httpAddr, httpAddr); err == nil {
		t.Error("second Start succeeded")
	}
	if !strings.Contains(logBuf.String(), "not ordering one") || strings.Contains(logBuf.String(), "managing certificates") {
		t.Errorf("log:\n%s", logBuf.String())
	}
}

// TestACMEZapBridge checks that CertMagic's zap entries reach slog with
// level, logger name and fields.
func TestACMEZapBridge(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(slog.NewJSONHandler(&buf, &slog.HandlerOptions{Level: slog.LevelInfo}))
	zl := zapToSlog(log).Named("obtain").With(zap.String("identifier", "a.example"))
	zl.Debug("hidden")
	zl.Error("will retry", zap.Error(errors.New("boom")), zap.Duration("retrying_in", time.Minute), zap.Int("attempt", 2))
	var rec map[string]any
	if err := json.Unmarshal(buf.Bytes(), &rec); err != nil {
		t.Fatalf("%v: %s", err, buf.String())
	}
	want := map[string]any{"level": "ERROR", "msg": "will retry", "logger": "certmagic.obtain",
		"identifier": "a.example", "error": "boom", "retrying_in": float64(time.Minute), "attempt": float64(2)}
	for k, v := range want {
		if rec[k] != v {
			t.Errorf("%s = %v (%T), want %v", k, rec[k], rec[k], v)
		}
	}
}
