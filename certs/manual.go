package certs

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"time"
)

// Pair names a certificate file and its private key file, as given with
// --tls-cert and --tls-key. CertFile holds PEM certificates, leaf first then
// any intermediates; KeyFile holds the leaf's PEM private key (PKCS #1,
// PKCS #8 or SEC 1).
type Pair struct {
	CertFile, KeyFile string
}

// Manual serves certificates loaded from files the operator provides. The
// certificate for a connection is chosen by SNI against each leaf's DNS SANs
// (exact names, then one-label wildcards such as *.example.org); when the
// client sends no SNI, IP SANs are matched against the address the client
// connected to. The first pair is the default when nothing matches, so a
// single-certificate setup serves every client. A Manual is immutable once
// loaded and safe for concurrent use.
type Manual struct {
	certs    []*tls.Certificate
	byName   map[string]*tls.Certificate // lower-case DNS names and "*.suffix" wildcards
	byIP     map[string]*tls.Certificate // net.IP.String() of IP SANs
	fallback *tls.Certificate
}

// LoadManual reads and checks every pair: files readable, PEM well formed,
// key matching the certificate, leaf currently valid. Checking at start turns
// what would be a failed handshake for every visitor into one clear error
// naming the file. When several leaves claim a name, the earliest pair wins.
func LoadManual(pairs []Pair) (*Manual, error) {
	if len(pairs) == 0 {
		return nil, errors.New("certs: no certificate given (--tls-cert and --tls-key)")
	}
	now := time.Now()
	var loaded []*tls.Certificate
	for _, p := range pairs {
		c, err := loadPair(p, now)
		if err != nil {
			return nil, err
		}
		loaded = append(loaded, c)
	}
	return newManual(loaded), nil
}

// loadPair reads one pair and names the faulty file in every error.
func loadPair(p Pair, now time.Time) (*tls.Certificate, error) {
	if p.CertFile == "" || p.KeyFile == "" {
		return nil, fmt.Errorf("certs: certificate %q and key %q must both be given", p.CertFile, p.KeyFile)
	}
	certPEM, err := os.ReadFile(p.CertFile)
	if err != nil {
		return nil, fmt.Errorf("certs: read certificate: %w", err)
	}
	keyPEM, err := os.ReadFile(p.KeyFile)
	if err != nil {
		return nil, fmt.Errorf("certs: read key: %w", err)
	}
	if err := checkPEM(certPEM, "CERTIFICATE"); err != nil {
		return nil, fmt.Errorf("certs: certificate %s: %w", p.CertFile, err)
	}
	if err := checkPEM(keyPEM, "PRIVATE KEY"); err != nil {
		return nil, fmt.Errorf("certs: key %s: %w", p.KeyFile, err)
	}
	leaf, err := firstCertificate(certPEM)
	if err != nil {
		return nil, fmt.Errorf("certs: certificate %s: %w", p.CertFile, err)
	}
	c, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("certs: key %s does not fit certificate %s: %w", p.KeyFile, p.CertFile, err)
	}
	if c.Leaf == nil {
		c.Leaf = leaf
	}
	if err := checkValidity(c.Leaf, now); err != nil {
		return nil, fmt.Errorf("certs: certificate %s: %w", p.CertFile, err)
	}
	return &c, nil
}

// checkPEM reports whether data holds at least one PEM block whose type ends
// in suffix ("CERTIFICATE", "PRIVATE KEY"), so that a wrong or garbage file
// gets an error saying so rather than crypto/tls's generic one.
func checkPEM(data []byte, suffix string) error {
	rest := data
	found := false
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if strings.HasSuffix(b.Type, suffix) {
			found = true
		}
	}
	if !found {
		return fmt.Errorf("no PEM %s block found", suffix)
	}
	return nil
}

// firstCertificate parses the first CERTIFICATE block of data: the leaf.
func firstCertificate(data []byte) (*x509.Certificate, error) {
	rest := data
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			return nil, errors.New("no PEM CERTIFICATE block found")
		}
		if b.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parse: %w", err)
		}
		return c, nil
	}
}

// checkValidity refuses a certificate outside its validity period: serving
// it would fail every handshake.
func checkValidity(c *x509.Certificate, now time.Time) error {
	if now.After(c.NotAfter) {
		return fmt.Errorf("expired on %s", c.NotAfter.UTC().Format(time.RFC3339))
	}
	if now.Before(c.NotBefore) {
		return fmt.Errorf("not valid before %s", c.NotBefore.UTC().Format(time.RFC3339))
	}
	return nil
}

// normalizeName lower-cases a DNS name and drops a trailing dot.
func normalizeName(n string) string {
	return strings.TrimSuffix(strings.ToLower(n), ".")
}

// GetCertificate implements Getter.
func (m *Manual) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	if hello == nil {
		return m.fallback, nil
	}
	if hello.ServerName != "" {
		if c := m.byDNSName(hello.ServerName); c != nil {
			return c, nil
		}
		return m.fallback, nil
	}
	if hello.Conn != nil && len(m.byIP) > 0 {
		if a, ok := hello.Conn.LocalAddr().(*net.TCPAddr); ok {
			if c, ok := m.byIP[a.IP.String()]; ok {
				return c, nil
			}
		}
	}
	return m.fallback, nil
}

// Certificates returns the loaded certificates in the order given, for
// logging names and expiry dates at start.
func (m *Manual) Certificates() []*tls.Certificate {
	return append([]*tls.Certificate(nil), m.certs...)
}
