package certs

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/certmagic"
	"github.com/mholt/acmez/v3/acme"
)

// Well-known ACME directories.
const (
	// LetsEncryptStaging is the default CA: its certificates are not
	// trusted by browsers, but its rate limits forgive configuration
	// mistakes. Switch to LetsEncryptProduction once staging works.
	LetsEncryptStaging = certmagic.LetsEncryptStagingCA
	// LetsEncryptProduction issues publicly trusted certificates.
	LetsEncryptProduction = certmagic.LetsEncryptProductionCA
)

// ACMETLS1Protocol is the ALPN protocol of the TLS-ALPN-01 challenge
// (RFC 8737): the HTTPS listener must offer it for the challenge to work.
const ACMETLS1Protocol = "acme-tls/1"

// Challenge types accepted by ACMEConfig.Challenge.
const (
	ChallengeHTTP01    = "http-01"
	ChallengeTLSALPN01 = "tls-alpn-01"
)

// KeyTypes lists the certificate key types ACMEConfig.KeyType accepts, the
// default first.
var KeyTypes = []string{"ecdsa-p256", "ecdsa-p384", "rsa2048", "rsa4096", "ed25519"}

// keyTypes maps KeyTypes to CertMagic's names.
func keyType(s string) (certmagic.KeyType, error) {
	switch s {
	case "", "ecdsa-p256":
		return certmagic.P256, nil
	case "ecdsa-p384":
		return certmagic.P384, nil
	case "rsa2048":
		return certmagic.RSA2048, nil
	case "rsa4096":
		return certmagic.RSA4096, nil
	case "ed25519":
		return certmagic.ED25519, nil
	}
	return "", fmt.Errorf("unknown key type %q: want one of %s", s, strings.Join(KeyTypes, ", "))
}

// EAB is an external account binding, which some CAs (ZeroSSL, Google,
// private CAs) require to tie the ACME account to an account of theirs.
type EAB struct {
	// KeyID is the key identifier the CA gave.
	KeyID string
	// HMACKey is the base64url-encoded MAC key the CA gave.
	HMACKey string
}

// ACMEConfig configures an ACME. The zero value of every field but
// Hostnames and Storage is usable.
type ACMEConfig struct {
	// Hostnames are the names to obtain and renew certificates for, one
	// certificate each. Required.
	Hostnames []string

	// KeepLocksOnClose makes Close leave the storage locks this process
	// holds in place. CertMagic keeps them per process, not per manager:
	// where several ACME share a process and a storage (paf proxy runs one
	// per routed name), stopping one must not release the locks of names
	// another is ordering. Call ReleaseLocks when the last one stops.
	KeepLocksOnClose bool

	// CA is the ACME directory URL. Empty means LetsEncryptStaging.
	CA string

	// Email is the ACME account's contact address, where the CA sends
	// expiry warnings. Empty registers an account without contact.
	Email string

	// CARoots are the roots trusted for the CA's own HTTPS API, for
	// private or test CAs such as Pebble. Nil means the system's roots.
	CARoots *x509.CertPool

	// KeyType is the certificates' key type, one of KeyTypes. Empty means
	// ecdsa-p256.
	KeyType string

	// EAB is the external account binding, nil for none.
	EAB *EAB

	// Challenge forces one challenge type (ChallengeHTTP01 or
	// ChallengeTLSALPN01). Empty enables both; CertMagic picks.
	Challenge string

	// Storage keeps the ACME account, the certificates, their keys and
	// metadata, and the manual certificates added with StoreManual. Shared
	// by several instances, it also carries their locks and challenge
	// tokens, so that one instance orders a certificate and any answers
	// the challenge. Required.
	Storage certmagic.Storage

	// RenewCheckInterval is how often certificates are checked for
	// renewal. Zero means 10 minutes; it must be well below the shortest
	// certificate lifetime / 3.
	RenewCheckInterval time.Duration

	// Logger receives what the ACME machinery does, why a certificate
	// could not be obtained and when it is tried again. Nil discards.
	Logger *slog.Logger
}

// ACME obtains certificates from an ACME CA and renews them in the last
// third of their life (or when the CA's renewal information, ARI, says
// so), retrying failures with growing backoff under a client-side rate
// limit. It wraps CertMagic, which does the ACME work.
//
// Serving never depends on the CA: certificates already in storage are
// served at once, a CA that is down or refusing only delays renewal (the
// log says what failed and when it retries), and a renewed certificate is
// used by new handshakes as soon as it is stored. Manual certificates found
// in storage (see StoreManual) are served for their names and never
// renewed; names they cover are not ordered.
//
// Use: NewACME, wire GetCertificate, HTTPChallengeHandler and NextProtos
// into the server, bind the listeners, then Start. ACME is safe for
// concurrent use.
type ACME struct {
	cfg    ACMEConfig
	log    *slog.Logger
	cache  *certmagic.Cache
	magic  *certmagic.Config
	issuer *certmagic.ACMEIssuer
	manual *Manual // nil when storage holds none
	serve  Getter  // manual first, then CertMagic's
	store  *drainStorage

	mu       sync.Mutex
	failures map[string]int // consecutive failures per name, for the retry estimate
	started  bool
	closed   bool
	cancel   context.CancelFunc // Start's, which stops the orders under way
	stopOnce sync.Once
}

// NewACME checks cfg, loads the manual certificates in storage and prepares
// certificate management; nothing is ordered before Start. Call Close (or
// cancel Start's context) to stop the background maintenance.
func NewACME(ctx context.Context, cfg ACMEConfig) (*ACME, error) {
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if cfg.Storage == nil {
		return nil, errors.New("certs: acme: no storage")
	}
	if len(cfg.Hostnames) == 0 {
		return nil, errors.New("certs: acme: no host names to obtain certificates for")
	}
	var names []string
	for _, h := range cfg.Hostnames {
		n := normalizeName(strings.TrimSpace(h))
		if n == "" || strings.ContainsAny(n, " /:@") {
			return nil, fmt.Errorf("certs: acme: invalid host name %q", h)
		}
		if !slices.Contains(names, n) {
			names = append(names, n)
		}
	}
	cfg.Hostnames = names
	if cfg.CA == "" {
		cfg.CA = LetsEncryptStaging
	}
	if !strings.HasPrefix(cfg.CA, "https://") {
		return nil, fmt.Errorf("certs: acme: CA directory %q: want an https:// URL", cfg.CA)
	}
	kt, err := keyType(cfg.KeyType)
	if err != nil {
		return nil, fmt.Errorf("certs: acme: %w", err)
	}
	switch cfg.Challenge {
	case "", ChallengeHTTP01, ChallengeTLSALPN01:
	default:
		return nil, fmt.Errorf("certs: acme: unknown challenge %q: want %s or %s", cfg.Challenge, ChallengeHTTP01, ChallengeTLSALPN01)
	}
	if cfg.EAB != nil && (cfg.EAB.KeyID == "" || cfg.EAB.HMACKey == "") {
		return nil, errors.New("certs: acme: external account binding needs both a key id and an HMAC key")
	}
	if cfg.RenewCheckInterval < 0 {
		return nil, fmt.Errorf("certs: acme: negative renewal check interval %v", cfg.RenewCheckInterval)
	}

	a := &ACME{cfg: cfg, log: log, failures: make(map[string]int), store: newDrainStorage(cfg.Storage)}
	zl := zapToSlog(log)
	a.cache = certmagic.NewCache(certmagic.CacheOptions{
		GetConfigForCert:   func(certmagic.Certificate) (*certmagic.Config, error) { return a.magic, nil },
		RenewCheckInterval: cfg.RenewCheckInterval,
		Logger:             zl,
	})
	_, fileStorage := cfg.Storage.(*certmagic.FileStorage)
	a.magic = certmagic.New(a.cache, certmagic.Config{
		RenewalWindowRatio: 1.0 / 3,
		KeySource:          certmagic.StandardKeyGenerator{KeyType: kt},
		Storage:            a.store.storage(),
		DefaultServerName:  names[0],
		FallbackServerName: names[0],
		OnEvent:            a.onEvent,
		// The check writes and deletes a file before each order: cheap on
		// a disk, a pair of commits on a Git remote.
		DisableStorageCheck: !fileStorage,
		Logger:              zl,
	})
	tmpl := certmagic.ACMEIssuer{
		CA:                      cfg.CA,
		Email:                   cfg.Email,
		Agreed:                  true, // running with --acme is agreeing to the CA's terms
		TrustedRoots:            cfg.CARoots,
		DisableHTTPChallenge:    cfg.Challenge == ChallengeTLSALPN01,
		DisableTLSALPNChallenge: cfg.Challenge == ChallengeHTTP01,
		Logger:                  zl,
	}
	if cfg.CA == LetsEncryptProduction {
		tmpl.TestCA = LetsEncryptStaging
	} else {
		tmpl.TestCA = cfg.CA // retries stay on the CA the operator chose
	}
	if cfg.EAB != nil {
		tmpl.ExternalAccount = &acme.EAB{KeyID: cfg.EAB.KeyID, MACKey: cfg.EAB.HMACKey}
	}
	a.issuer = certmagic.NewACMEIssuer(a.magic, tmpl)
	a.magic.Issuers = []certmagic.Issuer{a.issuer}

	m, err := LoadStoredManual(ctx, cfg.Storage, log)
	if err != nil {
		a.cache.Stop()
		return nil, err
	}
	a.manual = m
	a.serve = ManualFirst(m, GetterFunc(a.magic.GetCertificate))
	return a, nil
}

// LoadCARoots reads a PEM file of root certificates for ACMEConfig.CARoots.
func LoadCARoots(file string) (*x509.CertPool, error) {
	b, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("certs: CA roots: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(b) {
		return nil, fmt.Errorf("certs: CA roots %s: no PEM CERTIFICATE block found", file)
	}
	return pool, nil
}

// Start begins managing the host names: certificates in storage are loaded
// and served, missing or expiring ones are ordered in the background, and
// maintenance (renewal, ARI) runs until ctx is cancelled. httpAddr and
// tlsAddr are the bound addresses of the listeners that answer challenges
// (HTTPChallengeHandler on httpAddr, GetCertificate with NextProtos on
// tlsAddr); CertMagic then knows challenges are answered there and binds
// nothing itself. A nil httpAddr disables HTTP-01. Call Start once, after
// the listeners are bound.
func (a *ACME) Start(ctx context.Context, httpAddr, tlsAddr net.Addr) error {
	a.mu.Lock()
	if a.started {
		a.mu.Unlock()
		return errors.New("certs: acme: Start called twice")
	}
	if a.closed {
		a.mu.Unlock()
		return errors.New("certs: acme: Start after Close")
	}
	a.started = true
	ctx, a.cancel = context.WithCancel(ctx)
	a.mu.Unlock()

	if tlsAddr == nil {
		return errors.New("certs: acme: no HTTPS listener")
	}
	// CertMagic starts its own challenge listener unless the port is
	// taken; pointing it at our bound listeners makes it find them busy.
	if host, port, ok := splitAddr(httpAddr); ok {
		a.issuer.ListenHost = host
		a.issuer.AltHTTPPort = port
	} else {
		if a.cfg.Challenge == ChallengeHTTP01 {
			return errors.New("certs: acme: HTTP-01 needs an HTTP listener")
		}
		a.issuer.DisableHTTPChallenge = true
	}
	host, port, ok := splitAddr(tlsAddr)
	if !ok {
		return fmt.Errorf("certs: acme: HTTPS listener address %v is not TCP", tlsAddr)
	}
	if a.issuer.ListenHost == "" || a.issuer.ListenHost == host {
		a.issuer.ListenHost = host
	}
	a.issuer.AltTLSALPNPort = port

	var manage []string
	for _, n := range a.cfg.Hostnames {
		if c := a.manual.lookup(n); c != nil {
			a.log.Info("manual certificate stored for this name: serving it, not ordering one",
				"name", n, "not_after", c.Leaf.NotAfter.UTC().Format(time.RFC3339))
			continue
		}
		manage = append(manage, n)
	}
	go func() {
		<-ctx.Done()
		a.Close()
	}()
	if len(manage) == 0 {
		return nil
	}
	a.log.Info("managing certificates", "names", strings.Join(manage, ","), "ca", a.cfg.CA,
		"challenges", a.challenges())
	if err := a.magic.ManageAsync(ctx, manage); err != nil {
		return fmt.Errorf("certs: acme: %w", err)
	}
	return nil
}

// challenges names the enabled challenge types, for the log.
func (a *ACME) challenges() string {
	var c []string
	if !a.issuer.DisableHTTPChallenge {
		c = append(c, ChallengeHTTP01)
	}
	if !a.issuer.DisableTLSALPNChallenge {
		c = append(c, ChallengeTLSALPN01)
	}
	return strings.Join(c, ",")
}

// splitAddr returns the host and port of a TCP address; the host is empty
// for unspecified addresses, as net.Listen spells "all interfaces".
func splitAddr(a net.Addr) (string, int, bool) {
	ta, ok := a.(*net.TCPAddr)
	if !ok || ta == nil {
		return "", 0, false
	}
	if ta.IP == nil || ta.IP.IsUnspecified() {
		return "", ta.Port, true
	}
	return ta.IP.String(), ta.Port, true
}

// closeWait bounds how long Close waits for maintenance and orders to
// stop and let go of the storage.
const closeWait = 10 * time.Second

// Close stops background maintenance and the orders under way, waits until
// they have let go of the storage (at most 10 seconds: nothing this ACME
// started writes to it after Close returns, unless that wait ran out), and
// releases the storage locks this process holds (CertMagic keeps them per
// process), so that another instance sharing the storage need not wait for
// them to expire. Certificates keep being served from memory. Close waits
// for the releases, at most 10 seconds more.
func (a *ACME) Close() {
	a.stopOnce.Do(func() {
		a.mu.Lock()
		a.closed = true
		if a.cancel != nil {
			a.cancel()
		}
		a.mu.Unlock()
		deadline := time.Now().Add(closeWait)
		// Stop waits for a maintenance pass in progress, which may be
		// talking to the CA: the same deadline bounds it.
		stopped := make(chan struct{})
		go func() {
			a.cache.Stop()
			close(stopped)
		}()
		t := time.NewTimer(closeWait)
		select {
		case <-stopped:
		case <-t.C:
		}
		t.Stop()
		if !a.store.drain(max(time.Until(deadline), time.Millisecond)) {
			a.log.Warn("ACME: maintenance, an order or a renewal still runs after 10s; stopping without it")
		}
		if !a.cfg.KeepLocksOnClose {
			ReleaseLocks(a.log)
		}
	})
}

// ReleaseLocks releases the storage locks this process holds, so that
// another instance sharing the storage need not wait for them to expire.
// It waits at most 10 seconds.
func ReleaseLocks(log *slog.Logger) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	certmagic.CleanUpOwnLocks(ctx, zapToSlog(log))
}

// GetCertificate implements Getter: the TLS-ALPN-01 challenge certificate
// for a validation handshake, else the manual certificate matching the
// SNI, else the managed certificate for it (the current one: renewals
// replace it in the cache).
func (a *ACME) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	if len(hello.SupportedProtos) == 1 && hello.SupportedProtos[0] == ACMETLS1Protocol {
		return a.magic.GetCertificate(hello)
	}
	return a.serve.GetCertificate(hello)
}

// HTTPChallengeHandler answers ACME HTTP-01 validation requests, those of
// this instance's orders and, through the storage, of any instance sharing
// it. Other requests get 404. Mount it at /.well-known/acme-challenge/ on
// the plain HTTP listener (server.Config.ChallengeHandler).
func (a *ACME) HTTPChallengeHandler() http.Handler {
	return a.issuer.HTTPChallengeHandler(http.NotFoundHandler())
}

// NextProtos returns the ALPN protocols the HTTPS listener must offer
// besides h2 and http/1.1 (server.Config.NextProtos): ACMENextProtos of
// its challenge setting.
func (a *ACME) NextProtos() []string { return ACMENextProtos(a.cfg.Challenge) }

// ACMENextProtos returns the ALPN protocols an HTTPS listener answering
// ACME challenges of the given kind (ACMEConfig.Challenge) must offer
// besides h2 and http/1.1: ACMETLS1Protocol unless TLS-ALPN-01 is
// disabled. For listeners serving several ACME instances at once.
func ACMENextProtos(challenge string) []string {
	if challenge == ChallengeHTTP01 {
		return nil
	}
	return []string{ACMETLS1Protocol}
}

// retryIntervals mirrors CertMagic's backoff schedule, to tell the
// operator when a failed order is tried again.
var retryIntervals = []time.Duration{
	time.Minute, 2 * time.Minute, 2 * time.Minute, 5 * time.Minute,
	10 * time.Minute, 10 * time.Minute, 10 * time.Minute, 20 * time.Minute,
	20 * time.Minute, 20 * time.Minute, 20 * time.Minute, 30 * time.Minute,
	30 * time.Minute, 30 * time.Minute, 30 * time.Minute, 30 * time.Minute,
	30 * time.Minute, time.Hour, time.Hour, time.Hour, 2 * time.Hour,
	2 * time.Hour, 3 * time.Hour, 3 * time.Hour, 6 * time.Hour,
}

// onEvent turns CertMagic's events into paf's log lines: one line per
// certificate obtained or failed, with the reason and the next attempt.
func (a *ACME) onEvent(ctx context.Context, event string, data map[string]any) error {
	name, _ := data["identifier"].(string)
	renewal, _ := data["renewal"].(bool)
	switch event {
	case "cert_obtained":
		a.mu.Lock()
		delete(a.failures, name)
		a.mu.Unlock()
		issuer, _ := data["issuer"].(string)
		a.log.Info("certificate obtained", "name", name, "renewal", renewal, "issuer", issuer)
	case "cert_failed":
		a.mu.Lock()
		n := a.failures[name]
		a.failures[name] = n + 1
		a.mu.Unlock()
		retry := retryIntervals[min(n, len(retryIntervals)-1)]
		attrs := []any{"name", name, "renewal", renewal, "attempt", n + 1,
			"retry_in", retry.String(), "retry_at", time.Now().Add(retry).UTC().Format(time.RFC3339)}
		if err, ok := data["error"].(error); ok {
			attrs = append(attrs, "error", err.Error())
			if hint := errorHint(err); hint != "" {
				attrs = append(attrs, "hint", hint)
			}
		}
		if renewal {
			attrs = append(attrs, "serving", "the current certificate until it expires")
		}
		a.log.Error("certificate not obtained", attrs...)
	case "cached_managed_cert":
		if sans, ok := data["sans"].([]string); ok {
			a.log.Info("serving certificate", "names", strings.Join(sans, ","))
		}
	}
	return nil
}

// errorHint suggests a fix for common causes of failure.
func errorHint(err error) string {
	var ua x509.UnknownAuthorityError
	var ci x509.CertificateInvalidError
	var hn x509.HostnameError
	msg := err.Error()
	switch {
	case errors.As(err, &ua), errors.As(err, &ci), errors.As(err, &hn),
		strings.Contains(msg, "x509:"), strings.Contains(msg, "tls: failed to verify"):
		return "the CA's HTTPS certificate did not verify: for a private or test CA give its root with --acme-ca-root"
	case strings.Contains(msg, "connection refused"), strings.Contains(msg, "no such host"),
		strings.Contains(msg, "i/o timeout"):
		return "the CA could not be reached: check --acme-ca and the network"
	case strings.Contains(msg, "rateLimited"):
		return "the CA rate-limits this account or name: paf backs off; use the staging CA while testing"
	case strings.Contains(msg, "externalAccountRequired"):
		return "the CA requires external account binding: give --acme-eab-kid and --acme-eab-hmac"
	}
	return ""
}
