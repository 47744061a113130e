package client

import (
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"errors"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"
)

// Authenticator decides which TLS servers the client trusts, like the
// X509 authenticators of the OCaml stack paf came from.
//
// Configure sets only the verification fields of c (RootCAs,
// InsecureSkipVerify, VerifyConnection) and must be safe to call from
// several goroutines: a Dialer calls it for every handshake on a fresh
// config.
type Authenticator interface {
	Configure(c *tls.Config)
}

// SystemRoots trusts the chains the operating system's roots sign, for the
// host named in the URL. It is the default.
type SystemRoots struct{}

// Configure implements Authenticator.
func (SystemRoots) Configure(c *tls.Config) {
	c.RootCAs = nil
	c.InsecureSkipVerify = false
	c.VerifyConnection = nil
}

// CertPool trusts the chains its roots sign, for the host named in the URL,
// and nothing else: a private CA, such as paf's local one.
type CertPool struct {
	Roots *x509.CertPool
}

// Configure implements Authenticator.
func (p *CertPool) Configure(c *tls.Config) {
	c.RootCAs = p.Roots
	c.InsecureSkipVerify = false
	c.VerifyConnection = nil
}

// CAFile reads PEM certificates from path and trusts them alone, as curl's
// --cacert does.
func CAFile(path string) (*CertPool, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("client: CA file: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("client: CA file %s: no PEM certificate in it", path)
	}
	return &CertPool{Roots: pool}, nil
}

// Insecure checks nothing: any server is trusted. It exists so that
// turning verification off is a choice spelled out in code (curl's -k).
type Insecure struct{}

// Configure implements Authenticator.
func (Insecure) Configure(c *tls.Config) {
	c.RootCAs = nil
	c.InsecureSkipVerify = true
	c.VerifyConnection = nil
}

// PinKind says what a Pin hashes.
type PinKind int

const (
	// PinCert hashes the server certificate's DER encoding: the pin
	// changes whenever the certificate is reissued.
	PinCert PinKind = iota
	// PinKey hashes the certificate's SubjectPublicKeyInfo: the pin
	// survives renewals that keep the key (curl's --pinnedpubkey).
	PinKey
)

// Pin trusts a server whose leaf certificate, or its public key, hashes to
// one of the given SHA-256 digests, within the certificate's validity
// period. The chain and the names in the certificate are not checked: the
// pin says which server this is, so a self-signed certificate or a bare IP
// address works, as with OCaml's fingerprint authenticators.
type Pin struct {
	Kind    PinKind
	Digests [][sha256.Size]byte
	// Now returns the time validity is checked at; nil means time.Now.
	Now func() time.Time
}

// PinError is a server that did not match a Pin.
type PinError struct {
	Got  string // the server's pin, in the syntax ParsePin accepts
	Want string
}

// Error implements error.
func (e *PinError) Error() string {
	return fmt.Sprintf("server certificate does not match the pin: got %s, want %s", e.Got, e.Want)
}

// ParsePin parses "cert:sha256:<base64>" (hash of the certificate's DER)
// or "key:sha256:<base64>" (hash of its SubjectPublicKeyInfo). Several
// digests of the same kind may be given separated by commas, for key
// rollovers: "key:sha256:AAA...,key:sha256:BBB...".
func ParsePin(spec string) (*Pin, error) {
	p := &Pin{}
	for i, part := range strings.Split(spec, ",") {
		part = strings.TrimSpace(part)
		kind, rest, ok := strings.Cut(part, ":")
		if !ok {
			return nil, fmt.Errorf("client: pin %q: want cert:sha256:<base64> or key:sha256:<base64>", part)
		}
		var k PinKind
		switch kind {
		case "cert":
			k = PinCert
		case "key":
			k = PinKey
		default:
			return nil, fmt.Errorf("client: pin %q: unknown kind %q, want cert or key", part, kind)
		}
		if i > 0 && k != p.Kind {
			return nil, fmt.Errorf("client: pin %q: mixes cert and key pins", spec)
		}
		p.Kind = k
		hash, b64, ok := strings.Cut(rest, ":")
		if !ok || hash != "sha256" {
			return nil, fmt.Errorf("client: pin %q: unsupported hash %q, want sha256", part, hash)
		}
		d, err := decodeDigest(b64)
		if err != nil {
			return nil, fmt.Errorf("client: pin %q: %w", part, err)
		}
		p.Digests = append(p.Digests, d)
	}
	return p, nil
}

func decodeDigest(s string) ([sha256.Size]byte, error) {
	var d [sha256.Size]byte
	var b []byte
	var err error
	for _, enc := range []*base64.Encoding{base64.StdEncoding, base64.RawStdEncoding, base64.URLEncoding, base64.RawURLEncoding} {
		if b, err = enc.DecodeString(s); err == nil {
			break
		}
	}
	if err != nil {
		return d, fmt.Errorf("digest is not base64: %w", err)
	}
	if len(b) != sha256.Size {
		return d, fmt.Errorf("digest is %d bytes, a SHA-256 digest is %d", len(b), sha256.Size)
	}
	copy(d[:], b)
	return d, nil
}

// PinOf returns the pin of a certificate in ParsePin's syntax, to print
// what a server presents.
func PinOf(kind PinKind, cert *x509.Certificate) string {
	return formatPin(kind, pinDigest(kind, cert))
}

// pinDigest is what a pin of kind compares: the SHA-256 of the public key
// or of the whole certificate.
func pinDigest(kind PinKind, cert *x509.Certificate) [sha256.Size]byte {
	if kind == PinKey {
		return sha256.Sum256(cert.RawSubjectPublicKeyInfo)
	}
	return sha256.Sum256(cert.Raw)
}

// formatPin writes one digest in ParsePin's syntax.
func formatPin(kind PinKind, d [sha256.Size]byte) string {
	prefix := "cert:sha256:"
	if kind == PinKey {
		prefix = "key:sha256:"
	}
	return prefix + base64.StdEncoding.EncodeToString(d[:])
}

// String returns the pin in ParsePin's syntax.
func (p *Pin) String() string {
	parts := make([]string, len(p.Digests))
	for i, d := range p.Digests {
		parts[i] = formatPin(p.Kind, d)
	}
	return strings.Join(parts, ",")
}

// Configure implements Authenticator.
func (p *Pin) Configure(c *tls.Config) {
	c.RootCAs = nil
	// The chain is not verified: the pin replaces it. VerifyConnection
	// runs on every handshake, resumed ones included.
	c.InsecureSkipVerify = true
	c.VerifyConnection = p.verify
}

func (p *Pin) verify(cs tls.ConnectionState) error {
	if len(cs.PeerCertificates) == 0 {
		return errors.New("server sent no certificate")
	}
	leaf := cs.PeerCertificates[0]
	if d := pinDigest(p.Kind, leaf); !slices.Contains(p.Digests, d) {
		return &PinError{Got: formatPin(p.Kind, d), Want: p.String()}
	}
	now := time.Now()
	if p.Now != nil {
		now = p.Now()
	}
	if now.Before(leaf.NotBefore) || now.After(leaf.NotAfter) {
		return x509.CertificateInvalidError{Cert: leaf, Reason: x509.Expired,
			Detail: fmt.Sprintf("current time %s is outside %s – %s", now.UTC().Format(time.RFC3339),
				leaf.NotBefore.UTC().Format(time.RFC3339), leaf.NotAfter.UTC().Format(time.RFC3339))}
	}
	return nil
}
