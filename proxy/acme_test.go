package proxy

import (
	"context"
	"crypto/tls"
	"net"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/caddyserver/certmagic"

	"github.com/pafhq/paf/certs"
	"github.com/pafhq/paf/route"
)

// gatedStorage is a certmagic.FileStorage whose every call waits until
// open is closed, like a Git store fetching a slow remote. entered is
// closed at the first call.
type gatedStorage struct {
	certmagic.FileStorage
	open      chan struct{}
	entered   chan struct{}
	enterOnce sync.Once
}

func (s *gatedStorage) wait(ctx context.Context) error {
	s.enterOnce.Do(func() { close(s.entered) })
	select {
	case <-s.open:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *gatedStorage) Lock(ctx context.Context, name string) error {
	if err := s.wait(ctx); err != nil {
		return err
	}
	return s.FileStorage.Lock(ctx, name)
}

func (s *gatedStorage) Unlock(ctx context.Context, name string) error {
	if err := s.wait(ctx); err != nil {
		return err
	}
	return s.FileStorage.Unlock(ctx, name)
}

func (s *gatedStorage) Store(ctx context.Context, key string, value []byte) error {
	if err := s.wait(ctx); err != nil {
		return err
	}
	return s.FileStorage.Store(ctx, key, value)
}

func (s *gatedStorage) Load(ctx context.Context, key string) ([]byte, error) {
	if err := s.wait(ctx); err != nil {
		return nil, err
	}
	return s.FileStorage.Load(ctx, key)
}

func (s *gatedStorage) Delete(ctx context.Context, key string) error {
	if err := s.wait(ctx); err != nil {
		return err
	}
	return s.FileStorage.Delete(ctx, key)
}

func (s *gatedStorage) Exists(ctx context.Context, key string) bool {
	if s.wait(ctx) != nil {
		return false
	}
	return s.FileStorage.Exists(ctx, key)
}

func (s *gatedStorage) List(ctx context.Context, path string, recursive bool) ([]string, error) {
	if err := s.wait(ctx); err != nil {
		return nil, err
	}
	return s.FileStorage.List(ctx, path, recursive)
}

func (s *gatedStorage) Stat(ctx context.Context, key string) (certmagic.KeyInfo, error) {
	if err := s.wait(ctx); err != nil {
		return certmagic.KeyInfo{}, err
	}
	return s.FileStorage.Stat(ctx, key)
}

var _ certmagic.Storage = (*gatedStorage)(nil)

// acmeTable is a routing table of backend routes for hosts.
func acmeTable(t *testing.T, hosts ...string) *route.Table {
	t.Helper()
	m := map[string][]byte{}
	for _, h := range hosts {
		m[h+".toml"] = []byte("backends = [\"http://127.0.0.1:1\"]\n")
	}
	tb, err := route.FromFiles("test", "", m)
	if err != nil {
		t.Fatal(err)
	}
	return tb
}

// TestACMEHostsSyncDoesNotBlockHandshakes: while new routes' managers are
// being created over a storage that does not answer, Sync returns, and a
// handshake for a name already managed gets its answer. Only then does
// the storage answer, and the new names end up managed.
func TestACMEHostsSyncDoesNotBlockHandshakes(t *testing.T) {
	fast := &certmagic.FileStorage{Path: t.TempDir()}
	slow := &gatedStorage{FileStorage: certmagic.FileStorage{Path: t.TempDir()}, open: make(chan struct{}), entered: make(chan struct{})}
	var releaseOnce sync.Once
	release := func() { releaseOnce.Do(func() { close(slow.open) }) }
	t.Cleanup(release)
	h := &ACMEHosts{New: func(ctx context.Context, host string) (*certs.ACME, error) {
		var st certmagic.Storage = slow
		if host == "a.test" {
			st = fast
		}
		// Nothing listens on port 1: orders fail, in the background.
		return certs.NewACME(ctx, certs.ACMEConfig{Hostnames: []string{host}, CA: "https://127.0.0.1:1/dir", Storage: st, RenewCheckInterval: time.Hour})
	}}
	t.Cleanup(h.Close)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	h.Sync(acmeTable(t, "a.test"))
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	if err := h.Start(ctx, nil, ln.Addr()); err != nil {
		t.Fatal(err)
	}
	for i := 0; !slices.Equal(h.Names(), []string{"a.test"}); i++ {
		if i == 2000 {
			t.Fatalf("a.test never managed: %v", h.Names())
		}
		time.Sleep(5 * time.Millisecond)
	}

	// Sync returns while the new managers wait for the storage (before
	// the fix it held the lock across it, and ran in the caller).
	synced := make(chan struct{})
	go func() {
		h.Sync(acmeTable(t, "a.test", "b.test", "c.test", "d.test"))
		close(synced)
	}()
	<-slow.entered
	// The storage answers only after the handshake did, or, if the
	// handshake is stuck behind the slow managers, after a while (then the
	// test fails on the order of events, not on a duration).
	order := make(chan string, 2)
	hsDone := make(chan struct{})
	go func() {
		c1, c2 := net.Pipe() // CertMagic logs the handshake's addresses
		defer c1.Close()
		defer c2.Close()
		h.GetCertificate(&tls.ClientHelloInfo{ServerName: "a.test", Conn: c1})
		order <- "handshake"
		close(hsDone)
	}()
	go func() {
		select {
		case <-hsDone:
		case <-time.After(20 * time.Second):
			order <- "storage answered"
		}
		release()
	}()
	if first := <-order; first != "handshake" {
		t.Fatalf("the handshake for a.test waited for the new names' storage")
	}
	<-synced
	for i := 0; !slices.Equal(h.Names(), []string{"a.test", "b.test", "c.test", "d.test"}); i++ {
		if i == 2000 {
			t.Fatalf("new names never managed: %v", h.Names())
		}
		time.Sleep(5 * time.Millisecond)
	}
	// A removal applies at once, even with a creation pending.
	h.Sync(acmeTable(t, "b.test"))
	if got := h.Names(); !slices.Equal(got, []string{"b.test"}) {
		t.Errorf("after removing names: %v, want [b.test]", got)
	}
}
