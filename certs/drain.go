package certs

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/caddyserver/certmagic"
)

// errClosing is what a drainStorage answers a new lock or write with once
// its ACME is closing.
var errClosing = errors.New("certs: acme: closing: no new storage work")

// drainStorage is the storage CertMagic sees. CertMagic gives no way to
// wait for an order or renewal it has under way, and a job that has not
// yet looked at its cancelled context still takes a lock or writes a
// storage check file. So the work is counted here, where it touches the
// storage: a call in progress, or a lock held between Lock and Unlock (an
// order in progress holds one). Close then waits for the count to reach
// zero, and from then on refuses new locks, and writes not made under a
// lock; an order that holds a lock may still store the certificate it
// obtained.
type drainStorage struct {
	certmagic.Storage

	mu      sync.Mutex
	closing bool
	calls   int            // storage calls in progress
	held    map[string]int // locks taken through this storage and not released
	idle    chan struct{}  // closed when closing and nothing is under way
}

func newDrainStorage(s certmagic.Storage) *drainStorage {
	return &drainStorage{Storage: s, held: make(map[string]int), idle: make(chan struct{})}
}

// storage returns what CertMagic is given: d, with TryLock only when the
// inner storage has it. CertMagic picks how it locks by asking whether the
// storage is a TryLocker (ARI updates take their lock with TryLock), so
// claiming it for a storage without would fail every one of them.
func (d *drainStorage) storage() certmagic.Storage {
	if _, ok := d.Storage.(certmagic.TryLocker); ok {
		return drainTryLocker{d}
	}
	return d
}

// drainTryLocker is a drainStorage over a storage with TryLock.
type drainTryLocker struct{ *drainStorage }

// TryLock implements certmagic.TryLocker; like Lock, it is refused once
// closing.
func (d drainTryLocker) TryLock(ctx context.Context, name string) (bool, error) {
	if err := d.beginLock(); err != nil {
		return false, fmt.Errorf("trylock %s: %w", name, err)
	}
	got, err := d.Storage.(certmagic.TryLocker).TryLock(ctx, name)
	d.end(name, got && err == nil, false)
	return got, err
}

// begin counts a call; write calls are refused when closing, unless a lock
// is held (an order finishing).
func (d *drainStorage) begin(write bool) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if write && d.closing && len(d.held) == 0 {
		return errClosing
	}
	d.calls++
	return nil
}

// end ends a call begun with begin; lock and unlock tell how the held
// locks changed.
func (d *drainStorage) end(name string, lock, unlock bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.calls--
	switch {
	case lock:
		d.held[name]++
	case unlock && d.held[name] > 0:
		if d.held[name]--; d.held[name] == 0 {
			delete(d.held, name)
		}
	}
	d.signalLocked()
}

func (d *drainStorage) signalLocked() {
	if d.closing && d.calls == 0 && len(d.held) == 0 {
		select {
		case <-d.idle:
		default:
			close(d.idle)
		}
	}
}

// drain refuses new work and waits until none is under way, or timeout
// passes. It reports whether the storage went idle.
func (d *drainStorage) drain(timeout time.Duration) bool {
	d.mu.Lock()
	d.closing = true
	d.signalLocked()
	d.mu.Unlock()
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case <-d.idle:
		return true
	case <-t.C:
		return false
	}
}

// beginLock counts a lock call. Locks are refused once closing, even with
// other locks held.
func (d *drainStorage) beginLock() error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.closing {
		return errClosing
	}
	d.calls++
	return nil
}

// Lock implements certmagic.Locker; a lock is work under way until
// Unlock.
func (d *drainStorage) Lock(ctx context.Context, name string) error {
	if err := d.beginLock(); err != nil {
		return fmt.Errorf("lock %s: %w", name, err)
	}
	err := d.Storage.Lock(ctx, name)
	d.end(name, err == nil, false)
	return err
}

// Unlock implements certmagic.Locker. It is never refused: releasing is
// how work ends.
func (d *drainStorage) Unlock(ctx context.Context, name string) error {
	_ = d.begin(false)
	err := d.Storage.Unlock(ctx, name)
	d.end(name, false, true)
	return err
}

// RenewLockLease implements certmagic.LockLeaseRenewer when the inner
// storage does; otherwise it does nothing, as CertMagic does for a storage
// without it.
func (d *drainStorage) RenewLockLease(ctx context.Context, name string, lease time.Duration) error {
	r, ok := d.Storage.(certmagic.LockLeaseRenewer)
	if !ok {
		return nil
	}
	_ = d.begin(false)
	defer d.end(name, false, false)
	return r.RenewLockLease(ctx, name, lease)
}

// Store implements certmagic.Storage.
func (d *drainStorage) Store(ctx context.Context, key string, value []byte) error {
	if err := d.begin(true); err != nil {
		return fmt.Errorf("store %s: %w", key, err)
	}
	defer d.end("", false, false)
	return d.Storage.Store(ctx, key, value)
}

// Delete implements certmagic.Storage.
func (d *drainStorage) Delete(ctx context.Context, key string) error {
	if err := d.begin(true); err != nil {
		return fmt.Errorf("delete %s: %w", key, err)
	}
	defer d.end("", false, false)
	return d.Storage.Delete(ctx, key)
}

// Load implements certmagic.Storage.
func (d *drainStorage) Load(ctx context.Context, key string) ([]byte, error) {
	_ = d.begin(false)
	defer d.end("", false, false)
	return d.Storage.Load(ctx, key)
}

// Exists implements certmagic.Storage.
func (d *drainStorage) Exists(ctx context.Context, key string) bool {
	_ = d.begin(false)
	defer d.end("", false, false)
	return d.Storage.Exists(ctx, key)
}

// List implements certmagic.Storage.
func (d *drainStorage) List(ctx context.Context, prefix string, recursive bool) ([]string, error) {
	_ = d.begin(false)
	defer d.end("", false, false)
	return d.Storage.List(ctx, prefix, recursive)
}

// Stat implements certmagic.Storage.
func (d *drainStorage) Stat(ctx context.Context, key string) (certmagic.KeyInfo, error) {
	_ = d.begin(false)
	defer d.end("", false, false)
	return d.Storage.Stat(ctx, key)
}

// String names the inner storage, which CertMagic logs.
func (d *drainStorage) String() string { return fmt.Sprint(d.Storage) }
