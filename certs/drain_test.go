package certs

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/caddyserver/certmagic"
)

// TestDrainStorageWaitsForHeldLocks checks what Close relies on: draining
// waits for a lock taken before it to be released, lets the holder store
// what it obtained meanwhile, and afterwards refuses new locks and writes
// while still answering reads and releases.
func TestDrainStorageWaitsForHeldLocks(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	d := newDrainStorage(&certmagic.FileStorage{Path: dir})
	if err := d.Lock(ctx, "issue_cert_a.test"); err != nil {
		t.Fatal(err)
	}

	drained := make(chan bool, 1)
	go func() { drained <- d.drain(time.Minute) }()
	// Closing has begun once a new lock is refused.
	for i := 0; ; i++ {
		err := d.Lock(ctx, "issue_cert_b.test")
		if errors.Is(err, errClosing) {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if err := d.Unlock(ctx, "issue_cert_b.test"); err != nil {
			t.Fatal(err)
		}
		if i == 1000 {
			t.Fatal("drain never started refusing locks")
		}
		time.Sleep(time.Millisecond)
	}
	select {
	case <-drained:
		t.Fatal("drain returned while a lock was held")
	default:
	}
	if ok, err := d.storage().(certmagic.TryLocker).TryLock(ctx, "issue_cert_c.test"); ok || !errors.Is(err, errClosing) {
		t.Fatalf("TryLock while closing = %v, %v; want refused", ok, err)
	}
	// The holder finishes its order: it may still store, then releases.
	if err := d.Store(ctx, "certificates/a.test.crt", []byte("cert")); err != nil {
		t.Fatalf("store under a held lock while closing: %v", err)
	}
	if err := d.Unlock(ctx, "issue_cert_a.test"); err != nil {
		t.Fatal(err)
	}
	select {
	case ok := <-drained:
		if !ok {
			t.Fatal("drain reported a timeout")
		}
	case <-time.After(30 * time.Second):
		t.Fatal("drain did not return after the last lock was released")
	}

	// Drained: no write reaches the disk any more; reads still work.
	if err := d.Store(ctx, "rw_test_1", []byte("x")); !errors.Is(err, errClosing) {
		t.Fatalf("store after drain = %v, want refused", err)
	}
	if _, err := os.Stat(filepath.Join(dir, "rw_test_1")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("refused store reached the disk: %v", err)
	}
	if err := d.Delete(ctx, "certificates/a.test.crt"); !errors.Is(err, errClosing) {
		t.Fatalf("delete after drain = %v, want refused", err)
	}
	if b, err := d.Load(ctx, "certificates/a.test.crt"); err != nil || string(b) != "cert" {
		t.Fatalf("load after drain = %q, %v", b, err)
	}
	locks, err := os.ReadDir(filepath.Join(dir, "locks"))
	if err != nil {
		t.Fatal(err)
	}
	if len(locks) != 0 {
		t.Fatalf("lock files left after drain: %v", locks)
	}
}

// TestDrainStorageTimesOut checks that a lock never released does not make
// Close wait for ever.
func TestDrainStorageTimesOut(t *testing.T) {
	ctx := context.Background()
	d := newDrainStorage(&certmagic.FileStorage{Path: t.TempDir()})
	if err := d.Lock(ctx, "stuck"); err != nil {
		t.Fatal(err)
	}
	if d.drain(10 * time.Millisecond) {
		t.Fatal("drain reported idle with a lock held")
	}
	if err := d.Unlock(ctx, "stuck"); err != nil {
		t.Fatal(err)
	}
	if !d.drain(time.Second) {
		t.Fatal("drain after the release did not report idle")
	}
}

// TestDrainStorageOffersWhatItWraps checks that the storage CertMagic sees
// is a TryLocker exactly when the wrapped one is: CertMagic takes ARI locks
// with TryLock whenever the storage claims it, so a claim the inner
// storage cannot honour fails every ARI update.
func TestDrainStorageOffersWhatItWraps(t *testing.T) {
	ctx := context.Background()
	file := &certmagic.FileStorage{Path: t.TempDir()}
	hidden := struct{ certmagic.Storage }{file} // as a wrapper embedding the interface

	if _, ok := newDrainStorage(hidden).storage().(certmagic.TryLocker); ok {
		t.Error("a storage without TryLock is offered as a TryLocker")
	}
	tl, ok := newDrainStorage(file).storage().(certmagic.TryLocker)
	if !ok {
		t.Fatal("FileStorage's TryLock is not offered")
	}
	got, err := tl.TryLock(ctx, "a")
	if err != nil || !got {
		t.Fatalf("TryLock = %v, %v", got, err)
	}
	if got, err := tl.TryLock(ctx, "a"); err != nil || got {
		t.Fatalf("second TryLock of a held lock = %v, %v, want false", got, err)
	}
	if err := tl.(certmagic.Locker).Unlock(ctx, "a"); err != nil {
		t.Fatal(err)
	}
}
