package certs

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net"
	"os"
	"path"
	"slices"
	"strings"
	"time"

	"github.com/caddyserver/certmagic"
)

// ManualIssuerKey is the issuer directory manual certificates are stored
// under, next to the ACME CAs' directories in CertMagic's layout
// (certificates/<issuer>/<name>/<name>.crt|.key|.json), so that a storage
// that encrypts CertMagic's private keys encrypts these too. ACME issuer
// keys are derived from the CA's host name and never equal it.
const ManualIssuerKey = "manual"

// StoredCert describes a certificate kept in a certmagic.Storage, for
// `paf certs ls`.
type StoredCert struct {
	// Name is the name the certificate is stored under: its first DNS
	// name (or IP address).
	Name string
	// Names are all the names the certificate is valid for.
	Names []string
	// Issuer is the issuing CA's common name (or organization).
	Issuer string
	// NotAfter is when the certificate expires.
	NotAfter time.Time
	// Manual is true for certificates added by hand, which ACME never
	// renews; false for ACME-managed ones.
	Manual bool
	// IssuerKey is the storage directory of the issuer: ManualIssuerKey or
	// the ACME CA's key (such as acme-v02.api.letsencrypt.org-directory).
	IssuerKey string
	// Key is the storage key of the certificate chain.
	Key string
}

// manualMeta is the metadata stored beside a manual certificate.
type manualMeta struct {
	Names []string  `json:"names"`
	Added time.Time `json:"added"`
	// Manual marks the certificate as never renewed, for readers of the
	// repository.
	Manual bool `json:"manual"`
}

// readChain reads a PEM certificate chain file: every block must be a
// parseable CERTIFICATE, leaf first, each signed by the next.
func readChain(file string) ([]*x509.Certificate, []byte, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, nil, fmt.Errorf("certs: read certificate: %w", err)
	}
	var chain []*x509.Certificate
	var out []byte
	rest := data
	for {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if b.Type != "CERTIFICATE" {
			if strings.HasSuffix(b.Type, "PRIVATE KEY") {
				return nil, nil, fmt.Errorf("certs: certificate %s holds a private key: give the key with --key, in its own file", file)
			}
			return nil, nil, fmt.Errorf("certs: certificate %s: unexpected PEM block %q", file, b.Type)
		}
		c, err := x509.ParseCertificate(b.Bytes)
		if err != nil {
			return nil, nil, fmt.Errorf("certs: certificate %s: block %d: parse: %w", file, len(chain)+1, err)
		}
		chain = append(chain, c)
		out = append(out, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: b.Bytes})...)
	}
	if len(chain) == 0 {
		return nil, nil, fmt.Errorf("certs: certificate %s: no PEM CERTIFICATE block found", file)
	}
	if err := checkChainOrder(chain); err != nil {
		return nil, nil, fmt.Errorf("certs: certificate %s: %w", file, err)
	}
	return chain, out, nil
}

// checkChainOrder checks that each certificate is signed by the next one,
// as TLS requires the chain to be sent.
func checkChainOrder(chain []*x509.Certificate) error {
	for i := 0; i+1 < len(chain); i++ {
		if err := chain[i].CheckSignatureFrom(chain[i+1]); err != nil {
			return fmt.Errorf("chain out of order: certificate %d (%s) is not signed by certificate %d (%s): put the leaf first, then each issuer in turn (%v)",
				i+1, describeCert(chain[i]), i+2, describeCert(chain[i+1]), err)
		}
	}
	return nil
}

// describeCert names a certificate in error messages.
func describeCert(c *x509.Certificate) string {
	if c.Subject.CommonName != "" {
		return "CN=" + c.Subject.CommonName
	}
	if len(c.DNSNames) > 0 {
		return c.DNSNames[0]
	}
	return c.Subject.String()
}

// issuerName is a certificate issuer's display name.
func issuerName(c *x509.Certificate) string {
	if c.Issuer.CommonName != "" {
		return c.Issuer.CommonName
	}
	if len(c.Issuer.Organization) > 0 {
		return c.Issuer.Organization[0]
	}
	return c.Issuer.String()
}

// certNames returns the names a leaf is valid for: DNS names, then IPs.
func certNames(c *x509.Certificate) []string {
	var names []string
	for _, n := range c.DNSNames {
		if n = normalizeName(n); n != "" && !slices.Contains(names, n) {
			names = append(names, n)
		}
	}
	for _, ip := range c.IPAddresses {
		names = append(names, ip.String())
	}
	return names
}

// AddManual checks a certificate chain file and its key file and stores
// them in st as a manual certificate, under the leaf's first name,
// replacing any manual certificate stored under that name. The chain must
// be in order (leaf first, each certificate signed by the next), the key
// must fit the leaf, and the leaf must be currently valid; errors name the
// faulty file. The key is stored before the certificate, so that a
// certificate in storage always has its key.
func AddManual(ctx context.Context, st certmagic.Storage, p Pair) (StoredCert, error) {
	if p.CertFile == "" || p.KeyFile == "" {
		return StoredCert{}, errors.New("certs: add: give both a certificate and a key file")
	}
	chain, chainPEM, err := readChain(p.CertFile)
	if err != nil {
		return StoredCert{}, err
	}
	leaf := chain[0]
	keyData, err := os.ReadFile(p.KeyFile)
	if err != nil {
		return StoredCert{}, fmt.Errorf("certs: read key: %w", err)
	}
	var keyPEM []byte
	for rest := keyData; ; {
		var b *pem.Block
		b, rest = pem.Decode(rest)
		if b == nil {
			break
		}
		if strings.HasSuffix(b.Type, "PRIVATE KEY") {
			if keyPEM != nil {
				return StoredCert{}, fmt.Errorf("certs: key %s: more than one private key", p.KeyFile)
			}
			keyPEM = pem.EncodeToMemory(b)
		}
	}
	if keyPEM == nil {
		return StoredCert{}, fmt.Errorf("certs: key %s: no PEM PRIVATE KEY block found", p.KeyFile)
	}
	if strings.Contains(string(keyPEM), "ENCRYPTED") {
		return StoredCert{}, fmt.Errorf("certs: key %s is encrypted: decrypt it first (e.g. openssl pkey -in %s -out plain.pem); paf encrypts stored keys itself with --certs-pass-file", p.KeyFile, p.KeyFile)
	}
	if _, err := tls.X509KeyPair(chainPEM, keyPEM); err != nil {
		return StoredCert{}, fmt.Errorf("certs: key %s does not fit certificate %s: %w", p.KeyFile, p.CertFile, err)
	}
	if err := checkValidity(leaf, time.Now()); err != nil {
		return StoredCert{}, fmt.Errorf("certs: certificate %s: %w", p.CertFile, err)
	}
	names := certNames(leaf)
	if len(names) == 0 {
		return StoredCert{}, fmt.Errorf("certs: certificate %s names no host (no DNS or IP subject alternative name)", p.CertFile)
	}
	meta, err := json.MarshalIndent(manualMeta{Names: names, Added: time.Now().UTC(), Manual: true}, "", "\t")
	if err != nil {
		return StoredCert{}, fmt.Errorf("certs: add: %w", err)
	}
	name := names[0]
	keys := certmagic.StorageKeys
	for _, kv := range []struct {
		key   string
		value []byte
	}{
		{keys.SitePrivateKey(ManualIssuerKey, name), keyPEM},
		{keys.SiteMeta(ManualIssuerKey, name), meta},
		{keys.SiteCert(ManualIssuerKey, name), chainPEM},
	} {
		if err := st.Store(ctx, kv.key, kv.value); err != nil {
			return StoredCert{}, fmt.Errorf("certs: add %s: store %s: %w", name, kv.key, err)
		}
	}
	return StoredCert{
		Name: name, Names: names, Issuer: issuerName(leaf), NotAfter: leaf.NotAfter,
		Manual: true, IssuerKey: ManualIssuerKey, Key: keys.SiteCert(ManualIssuerKey, name),
	}, nil
}

// storedCertKeys returns the storage keys of every certificate chain in
// st, as (issuer key, name directory, key) triples.
func storedCertKeys(ctx context.Context, st certmagic.Storage) ([][3]string, error) {
	list, err := st.List(ctx, "certificates", true)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil
		}
		return nil, fmt.Errorf("certs: list storage: %w", err)
	}
	var out [][3]string
	for _, k := range list {
		parts := strings.Split(k, "/")
		if len(parts) != 4 || parts[0] != "certificates" || parts[3] != parts[2]+".crt" {
			continue
		}
		out = append(out, [3]string{parts[1], parts[2], k})
	}
	slices.SortFunc(out, func(a, b [3]string) int {
		if c := strings.Compare(a[1], b[1]); c != 0 {
			return c
		}
		return strings.Compare(a[0], b[0])
	})
	return out, nil
}

// ListStored returns the certificates kept in st, manual and ACME-managed,
// sorted by name. A certificate that cannot be parsed is an error naming
// its storage key: it would not be served either.
func ListStored(ctx context.Context, st certmagic.Storage) ([]StoredCert, error) {
	keys, err := storedCertKeys(ctx, st)
	if err != nil {
		return nil, err
	}
	var out []StoredCert
	for _, k := range keys {
		b, err := st.Load(ctx, k[2])
		if err != nil {
			return nil, fmt.Errorf("certs: load %s: %w", k[2], err)
		}
		leaf, err := firstCertificate(b)
		if err != nil {
			return nil, fmt.Errorf("certs: stored certificate %s: %w", k[2], err)
		}
		names := certNames(leaf)
		name := k[1]
		if len(names) > 0 {
			name = names[0]
		}
		out = append(out, StoredCert{
			Name: name, Names: names, Issuer: issuerName(leaf), NotAfter: leaf.NotAfter,
			Manual: k[0] == ManualIssuerKey, IssuerKey: k[0], Key: k[2],
		})
	}
	slices.SortStableFunc(out, func(a, b StoredCert) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

// RemoveStored deletes every certificate stored for name (manual or ACME,
// with its key and metadata) and returns what it removed. An ACME-managed
// certificate that is removed is ordered again by the next `paf serve
// --acme` for that name. Removing nothing is an error satisfying
// errors.Is(err, fs.ErrNotExist).
func RemoveStored(ctx context.Context, st certmagic.Storage, name string) ([]StoredCert, error) {
	list, err := ListStored(ctx, st)
	if err != nil {
		return nil, err
	}
	want := normalizeName(strings.TrimSpace(name))
	safe := certmagic.StorageKeys.Safe(want)
	var removed []StoredCert
	for _, c := range list {
		if c.Name != want && path.Base(path.Dir(c.Key)) != safe {
			continue
		}
		dir := path.Dir(c.Key)
		base := path.Base(dir)
		// The certificate goes first: without it the rest is ignored.
		for _, k := range []string{c.Key, path.Join(dir, base+".key"), path.Join(dir, base+".json"), dir} {
			if err := st.Delete(ctx, k); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return removed, fmt.Errorf("certs: remove %s: delete %s: %w", name, k, err)
			}
		}
		removed = append(removed, c)
	}
	if len(removed) == 0 {
		return nil, fmt.Errorf("certs: no certificate stored for %q: %w", name, fs.ErrNotExist)
	}
	return removed, nil
}

// LoadStoredManual loads the manual certificates in st, for serving. A
// certificate that is expired, corrupt or without a fitting key is logged
// and skipped: the others are still served. It returns nil when st holds
// none (a nil *Manual matches no name).
func LoadStoredManual(ctx context.Context, st certmagic.Storage, log *slog.Logger) (*Manual, error) {
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	keys, err := storedCertKeys(ctx, st)
	if err != nil {
		return nil, err
	}
	var loaded []*tls.Certificate
	now := time.Now()
	for _, k := range keys {
		if k[0] != ManualIssuerKey {
			continue
		}
		c, err := loadStoredPair(ctx, st, k[2], now)
		if err != nil {
			log.Error("manual certificate not served", "key", k[2], "error", err.Error())
			continue
		}
		log.Info("serving manual certificate", "names", strings.Join(certNames(c.Leaf), ","),
			"not_after", c.Leaf.NotAfter.UTC().Format(time.RFC3339), "key", k[2])
		loaded = append(loaded, c)
	}
	if len(loaded) == 0 {
		return nil, nil
	}
	return newManual(loaded), nil
}

// loadStoredPair loads and checks one stored certificate and its key.
func loadStoredPair(ctx context.Context, st certmagic.Storage, certKey string, now time.Time) (*tls.Certificate, error) {
	certPEM, err := st.Load(ctx, certKey)
	if err != nil {
		return nil, err
	}
	keyKey := strings.TrimSuffix(certKey, ".crt") + ".key"
	keyPEM, err := st.Load(ctx, keyKey)
	if err != nil {
		return nil, err
	}
	c, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, fmt.Errorf("key %s does not fit certificate %s: %w", keyKey, certKey, err)
	}
	if c.Leaf == nil {
		if c.Leaf, err = x509.ParseCertificate(c.Certificate[0]); err != nil {
			return nil, err
		}
	}
	if err := checkValidity(c.Leaf, now); err != nil {
		return nil, err
	}
	return &c, nil
}

// newManual indexes loaded certificates, certs[0] the fallback; when
// several leaves claim a name, the earliest wins.
func newManual(certs []*tls.Certificate) *Manual {
	m := &Manual{
		certs:  certs,
		byName: make(map[string]*tls.Certificate),
		byIP:   make(map[string]*tls.Certificate),
	}
	for _, c := range certs {
		for _, n := range c.Leaf.DNSNames {
			n = normalizeName(n)
			if _, ok := m.byName[n]; !ok && n != "" {
				m.byName[n] = c
			}
		}
		for _, ip := range c.Leaf.IPAddresses {
			if _, ok := m.byIP[ip.String()]; !ok {
				m.byIP[ip.String()] = c
			}
		}
	}
	m.fallback = certs[0]
	return m
}

// byDNSName returns the certificate for a DNS name, exact then wildcard,
// or nil.
func (m *Manual) byDNSName(name string) *tls.Certificate {
	name = normalizeName(name)
	if c, ok := m.byName[name]; ok {
		return c
	}
	if i := strings.IndexByte(name, '.'); i > 0 {
		if c, ok := m.byName["*"+name[i:]]; ok {
			return c
		}
	}
	return nil
}

// lookup returns the certificate for name (exact, then wildcard, then IP),
// or nil when none matches; unlike GetCertificate it has no fallback. A nil
// Manual matches nothing.
func (m *Manual) lookup(name string) *tls.Certificate {
	if m == nil {
		return nil
	}
	if c := m.byDNSName(name); c != nil {
		return c
	}
	if ip := net.ParseIP(name); ip != nil {
		if c, ok := m.byIP[ip.String()]; ok {
			return c
		}
	}
	return nil
}

// ManualFirst serves the manual certificate matching a handshake's SNI,
// and asks fallback for every other handshake. Use it to serve stored
// manual certificates next to --tls-cert files or the local CA. A nil
// manual returns fallback itself.
func ManualFirst(manual *Manual, fallback Getter) Getter {
	if manual == nil {
		return fallback
	}
	return GetterFunc(func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
		if hello.ServerName != "" {
			if c := manual.lookup(hello.ServerName); c != nil {
				return c, nil
			}
		}
		return fallback.GetCertificate(hello)
	})
}
