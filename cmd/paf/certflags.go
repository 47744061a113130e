package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/pafhq/paf/certs"
	"github.com/pafhq/paf/gitsource"
)

// certFlagSet is what paf serve and paf proxy share to build certificates:
// the ACME flags, the certificate store flags, and the settings they depend
// on (the data directory, the Git options of a --certs-remote, the HTTP
// listener that answers HTTP-01).
type certFlagSet struct {
	acme     *acmeOptions
	store    *certStoreOptions
	dataDir  string
	auth     gitsource.Auth
	httpAddr string
}

// acmeConfig checks the ACME flags and opens the certificate store they
// use, returning a configuration complete but for Hostnames. The caller
// closes the store (openedStore.close) once done with it.
func (c certFlagSet) acmeConfig(ctx context.Context, log *slog.Logger) (certs.ACMEConfig, *openedStore, error) {
	a := c.acme
	ca := a.ca
	switch {
	case a.production && a.ca != "":
		return certs.ACMEConfig{}, nil, usageErr("--production and --acme-ca: give one")
	case a.production:
		ca = certs.LetsEncryptProduction
	case ca == "":
		ca = certs.LetsEncryptStaging
	}
	if !strings.HasPrefix(ca, "https://") {
		return certs.ACMEConfig{}, nil, usageErr("--acme-ca %q: want an https:// ACME directory URL", ca)
	}
	switch a.challenge {
	case "", certs.ChallengeTLSALPN01:
	case certs.ChallengeHTTP01:
		if c.httpAddr == "off" || c.httpAddr == "" {
			return certs.ACMEConfig{}, nil, usageErr("--acme-challenge http-01 needs the --http listener")
		}
	default:
		return certs.ACMEConfig{}, nil, usageErr("--acme-challenge %q: want http-01 or tls-alpn-01", a.challenge)
	}
	if !slices.Contains(certs.KeyTypes, a.keyType) {
		return certs.ACMEConfig{}, nil, usageErr("--acme-key-type %q: want one of %s", a.keyType, strings.Join(certs.KeyTypes, ", "))
	}
	if a.renewCheck <= 0 {
		return certs.ACMEConfig{}, nil, usageErr("--acme-renew-check %v: must be positive", a.renewCheck)
	}
	cfg := certs.ACMEConfig{
		CA:                 ca,
		Email:              a.email,
		KeyType:            a.keyType,
		Challenge:          a.challenge,
		RenewCheckInterval: a.renewCheck,
		Logger:             log,
	}
	if a.caRoot != "" {
		pool, err := certs.LoadCARoots(a.caRoot)
		if err != nil {
			return certs.ACMEConfig{}, nil, fmt.Errorf("--acme-ca-root: %w", err)
		}
		cfg.CARoots = pool
	}
	hmac := a.eabHMAC
	if a.eabHMACFile != "" {
		if hmac != "" {
			return certs.ACMEConfig{}, nil, usageErr("--acme-eab-hmac and --acme-eab-hmac-file: give one, not both")
		}
		b, err := os.ReadFile(a.eabHMACFile)
		if err != nil {
			return certs.ACMEConfig{}, nil, fmt.Errorf("--acme-eab-hmac-file: %w", err)
		}
		hmac = strings.TrimSpace(string(b))
	}
	switch {
	case a.eabKID != "" && hmac != "":
		cfg.EAB = &certs.EAB{KeyID: a.eabKID, HMACKey: hmac}
	case a.eabKID != "" || hmac != "":
		return certs.ACMEConfig{}, nil, usageErr("--acme-eab-kid and --acme-eab-hmac: give both or neither")
	}
	st, err := openCertStore(ctx, c.store, c.dataDir, c.auth, log)
	if err != nil {
		return certs.ACMEConfig{}, nil, err
	}
	st.warnPlaintext(log)
	// The store itself, not the openedStore around it: CertMagic asks the
	// storage for optional capabilities (TryLock for ARI, lease renewal,
	// FileStorage for its write check), which the wrapper would hide.
	cfg.Storage = st.Storage
	return cfg, st, nil
}

// newACME wraps certs.NewACME's errors for the command line: usage errors
// as they are, others prefixed with the flag.
func newACME(ctx context.Context, cfg certs.ACMEConfig) (*certs.ACME, error) {
	m, err := certs.NewACME(ctx, cfg)
	if err != nil {
		var ue *usageError
		if errors.As(err, &ue) {
			return nil, err
		}
		return nil, fmt.Errorf("--acme: %w", err)
	}
	return m, nil
}

// storedManual loads the manual certificates of the certificate store, to
// serve next to --tls-cert files or the local CA. The default store is
// only read when its directory exists, so that paf never creates it just
// to look.
func (c certFlagSet) storedManual(ctx context.Context, log *slog.Logger) (*certs.Manual, error) {
	if !c.store.configured() {
		if _, err := os.Stat(filepath.Join(c.dataDir, "certs")); err != nil {
			return nil, nil
		}
	}
	st, err := openCertStore(ctx, c.store, c.dataDir, c.auth, log)
	if err != nil {
		return nil, err
	}
	defer st.close()
	return certs.LoadStoredManual(ctx, st, log)
}

// storedManualIn is storedManual over a store already open (the one ACME
// uses, from acmeConfig), nil for none: a store is opened only then. A
// second opening of the same --certs-remote would run a second Git store
// on the same clone while the first is live, and derive the key again.
func (c certFlagSet) storedManualIn(ctx context.Context, st *openedStore, log *slog.Logger) (*certs.Manual, error) {
	if st == nil {
		return c.storedManual(ctx, log)
	}
	return certs.LoadStoredManual(ctx, st, log)
}

// loadTLSCerts loads the --tls-cert/--tls-key pairs, nil when none are
// given.
func loadTLSCerts(certFiles, keyFiles []string) (*certs.Manual, error) {
	if len(certFiles) != len(keyFiles) {
		return nil, usageErr("--tls-cert and --tls-key: give them in pairs (%d certificates, %d keys)", len(certFiles), len(keyFiles))
	}
	if len(certFiles) == 0 {
		return nil, nil
	}
	pairs := make([]certs.Pair, len(certFiles))
	for i := range certFiles {
		pairs[i] = certs.Pair{CertFile: certFiles[i], KeyFile: keyFiles[i]}
	}
	m, err := certs.LoadManual(pairs)
	if err != nil {
		return nil, fmt.Errorf("--tls-cert: %w", err)
	}
	return m, nil
}
