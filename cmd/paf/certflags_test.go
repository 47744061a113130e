package main

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/caddyserver/certmagic"

	"github.com/pafhq/paf/certs"
)

// TestACMEConfigStorageCapabilities checks that the storage handed to
// CertMagic keeps the optional capabilities of the store it opened:
// CertMagic decides by type assertion how to lock ARI updates (TryLock),
// whether to renew lock leases, and whether to check a directory is
// writable.
func TestACMEConfigStorageCapabilities(t *testing.T) {
	pass := filepath.Join(t.TempDir(), "pass")
	if err := os.WriteFile(pass, []byte("correct horse battery staple\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		name       string
		store      certStoreOptions
		fileStore  bool
		leaseRenew bool
	}{
		{"directory", certStoreOptions{dir: t.TempDir()}, true, false},
		{"encrypted directory", certStoreOptions{dir: t.TempDir(), passFile: pass}, false, true},
	} {
		t.Run(c.name, func(t *testing.T) {
			fl := certFlagSet{
				acme:    &acmeOptions{keyType: certs.KeyTypes[0], renewCheck: time.Hour},
				store:   &c.store,
				dataDir: t.TempDir(),
			}
			cfg, st, err := fl.acmeConfig(context.Background(), slog.New(slog.DiscardHandler))
			if err != nil {
				t.Fatal(err)
			}
			defer st.close()
			if _, ok := cfg.Storage.(certmagic.TryLocker); !ok {
				t.Errorf("%T: TryLock hidden from CertMagic", cfg.Storage)
			}
			if _, ok := cfg.Storage.(*certmagic.FileStorage); ok != c.fileStore {
				t.Errorf("%T: is a FileStorage = %v, want %v", cfg.Storage, ok, c.fileStore)
			}
			if _, ok := cfg.Storage.(certmagic.LockLeaseRenewer); ok != c.leaseRenew {
				t.Errorf("%T: renews lock leases = %v, want %v", cfg.Storage, ok, c.leaseRenew)
			}
		})
	}
}
