package storage

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"time"
)

// lockFile is the content of locks/<name>.lock. Token identifies one
// acquisition, so that a holder whose lock was taken over never renews or
// deletes its successor's.
type lockFile struct {
	Holder   string    `json:"holder"`
	Token    string    `json:"token"`
	Acquired time.Time `json:"acquired"`
	Expires  time.Time `json:"expires"`
}

// heldLock is a lock this instance holds, and its renewer.
type heldLock struct {
	name   string
	token  string
	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}
}

// stop ends the renewer and waits for it.
func (h *heldLock) stop() {
	h.cancel()
	<-h.done
}

var (
	errHeld = errors.New("lock held")
	errLost = errors.New("lock taken over by another instance")
)

// parseLock reads a lock file; an unreadable one counts as stale, like
// CertMagic's FileStorage treats an empty lock file.
func parseLock(b []byte) (*lockFile, bool) {
	var lf lockFile
	if err := json.Unmarshal(b, &lf); err != nil || lf.Token == "" || lf.Expires.IsZero() {
		return nil, false
	}
	return &lf, true
}

// tryLock makes one attempt: it commits a lock file for name unless an
// unexpired one is there, in which case it returns false and that one.
func (g *Git) tryLock(ctx context.Context, name string) (bool, *lockFile, error) {
	return g.tryLockToken(ctx, name, newToken())
}

// tryLockToken is tryLock with the acquisition's token. A lock file that
// already carries token is this acquisition's own: a push that timed out
// after the remote accepted it is retried on a head that has it, and that
// is success, not another holder to wait a whole lease for.
func (g *Git) tryLockToken(ctx context.Context, name, token string) (bool, *lockFile, error) {
	if name == "" {
		return false, nil, errors.New("storage: lock: empty name")
	}
	key := lockKey(name)
	var holder *lockFile
	var tookOver string
	err := g.update(ctx, "lock "+name, func(v *view) (string, error) {
		prevTookOver := tookOver
		holder, tookOver = nil, ""
		now := time.Now()
		subject := fmt.Sprintf("lock %s", name)
		if cur, ok, err := v.get(key); ok {
			lf, valid := parseLock(cur)
			switch {
			case err == nil && valid && lf.Token == token:
				// Pushed by an earlier attempt of this call: held.
				tookOver = prevTookOver
				return "", nil
			case err == nil && valid && now.Before(lf.Expires):
				holder = lf
				return "", errHeld
			case err == nil && valid:
				tookOver = fmt.Sprintf("%s, expired %s", lf.Holder, lf.Expires.Format(time.RFC3339))
			default:
				tookOver = "unreadable lock file"
			}
			subject = fmt.Sprintf("take over lock %s (%s)", name, tookOver)
		}
		b, err := json.MarshalIndent(lockFile{Holder: g.who, Token: token, Acquired: now, Expires: now.Add(g.lease)}, "", "  ")
		if err != nil {
			return "", err
		}
		return subject, v.set(key, append(b, '\n'))
	})
	if errors.Is(err, errHeld) {
		return false, holder, nil
	}
	if err != nil {
		return false, nil, err
	}
	if tookOver != "" {
		g.log.Warn("storage: took over a stale lock", "lock", name, "previous", tookOver)
	}
	hctx, cancel := context.WithCancel(g.ctx)
	h := &heldLock{name: name, token: token, ctx: hctx, cancel: cancel, done: make(chan struct{})}
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		cancel()
		return false, nil, ErrClosed
	}
	g.held[name] = h
	g.mu.Unlock()
	go g.renewLoop(h)
	return true, nil, nil
}

// Lock implements certmagic.Locker. It waits, fetching now and then,
// while another holder's lock is unexpired; an expired one is taken over.
// Pushing the lock file is the compare-and-swap: of two instances racing
// for a free lock, one push is refused and that instance sees the other's
// lock.
func (g *Git) Lock(ctx context.Context, name string) error {
	poll := min(max(g.lease/10, 100*time.Millisecond), 2*time.Second)
	logged := false
	for {
		ok, holder, err := g.tryLock(ctx, name)
		if err != nil {
			return fmt.Errorf("storage: lock %s: %w", name, err)
		}
		if ok {
			return nil
		}
		if !logged {
			g.log.Info("storage: waiting for lock", "lock", name, "holder", holder.Holder, "expires", holder.Expires)
			logged = true
		}
		wait := poll/2 + rand.N(poll)
		if until := time.Until(holder.Expires); until > 0 && until < wait {
			wait = until + 10*time.Millisecond
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("storage: lock %s: held by %s until %s: %w", name, holder.Holder, holder.Expires.Format(time.RFC3339), ctx.Err())
		case <-time.After(wait):
		}
		if err := g.Refresh(ctx); err != nil {
			g.log.Debug("storage: fetch while waiting for a lock", "lock", name, "err", err)
		}
	}
}

// TryLock implements certmagic.TryLocker: like Lock, but it returns false
// at once when another holder's lock is unexpired.
func (g *Git) TryLock(ctx context.Context, name string) (bool, error) {
	ok, _, err := g.tryLock(ctx, name)
	if err == nil && !ok && g.missFetch(ctx) {
		// The clone may have been stale: look again.
		ok, _, err = g.tryLock(ctx, name)
	}
	if err != nil {
		return false, fmt.Errorf("storage: trylock %s: %w", name, err)
	}
	return ok, nil
}

// Unlock implements certmagic.Locker: it stops renewing the lock and
// commits its removal. A lock that another instance took over (this one
// stopped renewing for longer than the lease) is left to it.
func (g *Git) Unlock(ctx context.Context, name string) error {
	g.mu.Lock()
	h := g.held[name]
	delete(g.held, name)
	g.mu.Unlock()
	if h == nil {
		return fmt.Errorf("storage: unlock %s: not held by this instance", name)
	}
	h.stop()
	key := lockKey(name)
	lost := false
	err := g.update(ctx, "unlock "+name, func(v *view) (string, error) {
		lost = false
		cur, ok, _ := v.get(key)
		if !ok {
			lost = true
			return "", nil
		}
		if lf, valid := parseLock(cur); !valid || lf.Token != h.token {
			lost = true
			return "", nil
		}
		v.del(key)
		return fmt.Sprintf("unlock %s", name), nil
	})
	if err != nil {
		return fmt.Errorf("storage: unlock %s (it expires in at most %s): %w", name, g.lease, err)
	}
	if lost {
		g.log.Warn("storage: lock was taken over before Unlock; the critical section may have overlapped another holder's", "lock", name)
	}
	return nil
}

// RenewLockLease implements certmagic.LockLeaseRenewer: it renews the lock
// now and reports an error if this instance no longer holds it. The lease
// stays LockLease whatever leaseDuration asks: the holder renews in the
// background for as long as it lives, and a crashed holder's lock should
// free up after LockLease, not after CertMagic's hours-long retry waits.
func (g *Git) RenewLockLease(ctx context.Context, lockKey string, leaseDuration time.Duration) error {
	g.mu.Lock()
	h := g.held[lockKey]
	g.mu.Unlock()
	if h == nil {
		return fmt.Errorf("storage: renew lock %s: not held by this instance", lockKey)
	}
	if err := g.renew(ctx, h); err != nil {
		return fmt.Errorf("storage: renew lock %s: %w", lockKey, err)
	}
	return nil
}

// renew pushes a later expiry for h, or errLost when the lock file is no
// longer h's.
func (g *Git) renew(ctx context.Context, h *heldLock) error {
	key := lockKey(h.name)
	return g.update(ctx, "renew lock "+h.name, func(v *view) (string, error) {
		cur, ok, _ := v.get(key)
		lf, valid := parseLock(cur)
		if !ok || !valid || lf.Token != h.token {
			return "", errLost
		}
		lf.Expires = time.Now().Add(g.lease)
		b, err := json.MarshalIndent(lf, "", "  ")
		if err != nil {
			return "", err
		}
		return fmt.Sprintf("renew lock %s until %s", h.name, lf.Expires.UTC().Format(time.RFC3339)), v.set(key, append(b, '\n'))
	})
}

// renewLoop renews h every third of the lease until stopped or lost.
func (g *Git) renewLoop(h *heldLock) {
	defer close(h.done)
	t := time.NewTicker(g.lease / 3)
	defer t.Stop()
	for {
		select {
		case <-h.ctx.Done():
			return
		case <-t.C:
		}
		err := g.renew(h.ctx, h)
		switch {
		case errors.Is(err, errLost):
			g.log.Error("storage: lock taken over by another instance while held; its critical section may overlap this one's", "lock", h.name)
			return
		case err != nil && h.ctx.Err() == nil:
			g.log.Warn("storage: renew lock failed; retrying", "lock", h.name, "err", err)
		}
	}
}
