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
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Names of the local CA's files inside its directory.
const (
	// CACertName is the CA certificate users add to their trust store.
	CACertName = "ca.pem"
	// CAKeyName is the CA's private key, mode 0600.
	CAKeyName = "ca-key.pem"
)

// Lifetimes of local CA material.
const (
	// CAValidity is how long a newly created local CA is valid: long, since
	// users trust it by hand.
	CAValidity = 10 * 365 * 24 * time.Hour
	// LeafValidity is how long an issued leaf certificate is valid. Leaves
	// live only in memory and are re-issued, so they can be short-lived.
	LeafValidity = 7 * 24 * time.Hour
	// backdate is subtracted from NotBefore to tolerate client clock skew.
	backdate = time.Hour
)

// LocalCA is a certificate authority kept in a directory (the data
// directory's ca/), used when no certificate is given so that HTTPS works
// out of the box: users trust CertFile once and every later run's
// certificates verify. The CA key never leaves the directory; leaf
// certificates are issued in memory and never written to disk.
type LocalCA struct {
	dir  string
	cert *x509.Certificate
	der  []byte
	key  crypto.Signer
}

// OpenLocalCA loads the CA in dir, or creates one when dir holds none.
//
// A CA certificate that exists but cannot be used (unreadable, corrupt,
// without its key, expired) is an error naming the file, never replaced:
// users may already trust it, and a silent replacement would break every
// client that does. A key without a certificate is the trace of an
// interrupted creation (the certificate is written last), which nobody can
// trust yet, so creation starts over.
func OpenLocalCA(dir string) (*LocalCA, error) {
	ctx := context.Background()
	st := DirStorage{Dir: dir}
	certPath, _ := st.Path(CACertName)
	keyPath, _ := st.Path(CAKeyName)

	certPEM, err := st.Load(ctx, CACertName)
	switch {
	case err == nil:
		keyPEM, err := st.Load(ctx, CAKeyName)
		if err != nil {
			if isNotExist(err) {
				return nil, fmt.Errorf("certs: local CA %s has no key %s: restore the key or remove the CA (clients trusting it will stop doing so)", certPath, keyPath)
			}
			return nil, fmt.Errorf("certs: local CA: %w", err)
		}
		return parseLocalCA(dir, certPath, certPEM, keyPath, keyPEM, time.Now())
	case !isNotExist(err):
		return nil, fmt.Errorf("certs: local CA: %w", err)
	}
	return createLocalCA(ctx, st, dir, time.Now())
}

// parseLocalCA checks a stored CA and names the faulty file in errors.
func parseLocalCA(dir, certPath string, certPEM []byte, keyPath string, keyPEM []byte, now time.Time) (*LocalCA, error) {
	b, rest := pem.Decode(certPEM)
	if b == nil || b.Type != "CERTIFICATE" || len(bytes.TrimSpace(rest)) != 0 {
		return nil, fmt.Errorf("certs: local CA certificate %s is corrupt: want exactly one PEM CERTIFICATE block (not overwriting it; remove it to create a new CA)", certPath)
	}
	cert, err := x509.ParseCertificate(b.Bytes)
	if err != nil {
		return nil, fmt.Errorf("certs: local CA certificate %s is corrupt (not overwriting it): %w", certPath, err)
	}
	if !cert.IsCA {
		return nil, fmt.Errorf("certs: local CA certificate %s is not a CA certificate", certPath)
	}
	if err := checkValidity(cert, now); err != nil {
		return nil, fmt.Errorf("certs: local CA certificate %s: %w (remove the directory %s to create a new CA)", certPath, err, dir)
	}
	kb, _ := pem.Decode(keyPEM)
	if kb == nil || !strings.HasSuffix(kb.Type, "PRIVATE KEY") {
		return nil, fmt.Errorf("certs: local CA key %s is corrupt: no PEM PRIVATE KEY block", keyPath)
	}
	key, err := parsePrivateKey(kb.Bytes)
	if err != nil {
		return nil, fmt.Errorf("certs: local CA key %s: %w", keyPath, err)
	}
	if !publicKeysEqual(key.Public(), cert.PublicKey) {
		return nil, fmt.Errorf("certs: local CA key %s does not fit certificate %s", keyPath, certPath)
	}
	return &LocalCA{dir: dir, cert: cert, der: b.Bytes, key: key}, nil
}

// parsePrivateKey accepts the encodings openssl and Go write.
func parsePrivateKey(der []byte) (crypto.Signer, error) {
	if k, err := x509.ParsePKCS8PrivateKey(der); err == nil {
		if s, ok := k.(crypto.Signer); ok {
			return s, nil
		}
		return nil, errors.New("unsupported private key type")
	}
	if k, err := x509.ParseECPrivateKey(der); err == nil {
		return k, nil
	}
	if k, err := x509.ParsePKCS1PrivateKey(der); err == nil {
		return k, nil
	}
	return nil, errors.New("cannot parse private key")
}

// publicKeysEqual compares public keys of any standard type.
func publicKeysEqual(a, b crypto.PublicKey) bool {
	e, ok := a.(interface{ Equal(crypto.PublicKey) bool })
	return ok && e.Equal(b)
}

// createLocalCA makes a new CA. The key is stored before the certificate so
// that the certificate's presence means the CA is complete.
func createLocalCA(ctx context.Context, st DirStorage, dir string, now time.Time) (*LocalCA, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("certs: create local CA: %w", err)
	}
	// The directory is the CA's own (the data directory's ca/): keep the
	// key out of other users' reach even if it pre-existed.
	if err := os.Chmod(dir, 0o700); err != nil {
		return nil, fmt.Errorf("certs: create local CA: %w", err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("certs: create local CA: %w", err)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, fmt.Errorf("certs: create local CA: %w", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: "paf local CA " + caSuffix(), Organization: []string{"paf local CA"}},
		NotBefore:             now.Add(-backdate),
		NotAfter:              now.Add(CAValidity),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, key.Public(), key)
	if err != nil {
		return nil, fmt.Errorf("certs: create local CA: %w", err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("certs: create local CA: %w", err)
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return nil, fmt.Errorf("certs: create local CA: %w", err)
	}
	if err := st.Store(ctx, CAKeyName, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER})); err != nil {
		return nil, fmt.Errorf("certs: create local CA: %w", err)
	}
	if err := st.Store(ctx, CACertName, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})); err != nil {
		return nil, fmt.Errorf("certs: create local CA: %w", err)
	}
	return &LocalCA{dir: dir, cert: cert, der: der, key: key}, nil
}

// caSuffix distinguishes CAs of different machines in a trust store listing.
func caSuffix() string {
	if h, err := os.Hostname(); err == nil && h != "" {
		return h
	}
	b := make([]byte, 4)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// randomSerial returns a positive 128-bit serial number.
func randomSerial() (*big.Int, error) {
	return rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 128))
}

// CertFile returns the path of the CA certificate users trust, to print at
// start.
func (ca *LocalCA) CertFile() string { return filepath.Join(ca.dir, CACertName) }

// Certificate returns the CA certificate, to build client trust pools.
func (ca *LocalCA) Certificate() *x509.Certificate { return ca.cert }

// Issuer issues a leaf certificate for names (DNS names, and IP addresses
// which become IP SANs) and returns a Getter that serves it and re-issues it
// in memory when it enters the last third of its validity. Names are
// lower-cased; duplicates are dropped.
func (ca *LocalCA) Issuer(names []string) (*Issued, error) {
	is := &Issued{ca: ca, now: time.Now}
	seen := make(map[string]bool)
	for _, n := range names {
		n = normalizeName(strings.TrimSpace(n))
		if n == "" || seen[n] {
			continue
		}
		seen[n] = true
		if ip := net.ParseIP(strings.Trim(n, "[]")); ip != nil {
			is.ips = append(is.ips, ip)
			continue
		}
		if strings.ContainsAny(n, " /:@") {
			return nil, fmt.Errorf("certs: issue certificate: invalid name %q", n)
		}
		is.dns = append(is.dns, n)
	}
	if len(is.dns) == 0 && len(is.ips) == 0 {
		return nil, errors.New("certs: issue certificate: no names")
	}
	c, err := is.issue()
	if err != nil {
		return nil, err
	}
	is.cur.Store(c)
	return is, nil
}

// Issued serves a leaf certificate from a LocalCA and renews it before it
// expires. It is safe for concurrent use.
type Issued struct {
	ca  *LocalCA
	dns []string
	ips []net.IP
	now func() time.Time // replaced in tests

	cur atomic.Pointer[tls.Certificate]
	mu  sync.Mutex // serializes renewals
}

// issue creates a fresh leaf certificate for the Issued's names.
func (is *Issued) issue() (*tls.Certificate, error) {
	now := is.now()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("certs: issue certificate: %w", err)
	}
	serial, err := randomSerial()
	if err != nil {
		return nil, fmt.Errorf("certs: issue certificate: %w", err)
	}
	cn := ""
	if len(is.dns) > 0 {
		cn = is.dns[0]
	} else {
		cn = is.ips[0].String()
	}
	notAfter := now.Add(LeafValidity)
	if notAfter.After(is.ca.cert.NotAfter) {
		notAfter = is.ca.cert.NotAfter
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: cn, Organization: []string{"paf local CA"}},
		NotBefore:    now.Add(-backdate),
		NotAfter:     notAfter,
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     is.dns,
		IPAddresses:  is.ips,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, is.ca.cert, key.Public(), is.ca.key)
	if err != nil {
		return nil, fmt.Errorf("certs: issue certificate: %w", err)
	}
	leaf, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, fmt.Errorf("certs: issue certificate: %w", err)
	}
	return &tls.Certificate{
		Certificate: [][]byte{der},
		PrivateKey:  key,
		Leaf:        leaf,
	}, nil
}

// needsRenewal reports whether c is in the last third of its validity.
func needsRenewal(c *x509.Certificate, now time.Time) bool {
	life := c.NotAfter.Sub(c.NotBefore)
	return !now.Before(c.NotAfter.Add(-life / 3))
}

// GetCertificate implements Getter. It ignores SNI: the one leaf carries all
// names. When renewal fails, the current certificate is served as long as it
// is valid.
func (is *Issued) GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error) {
	c := is.cur.Load()
	if !needsRenewal(c.Leaf, is.now()) {
		return c, nil
	}
	is.mu.Lock()
	defer is.mu.Unlock()
	c = is.cur.Load()
	now := is.now()
	if !needsRenewal(c.Leaf, now) {
		return c, nil
	}
	n, err := is.issue()
	if err != nil {
		if now.Before(c.Leaf.NotAfter) {
			return c, nil
		}
		return nil, err
	}
	is.cur.Store(n)
	return n, nil
}
