package site

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Site serves the current Snapshot of a Source and keeps it up to date.
// The zero value with Source set is ready for Load; Options and Logger must
// not change after the first call.
type Site struct {
	// Source delivers the versions of the site.
	Source Source
	// Options configure every snapshot built.
	Options Options
	// Logger receives update and fallback messages. Nil means
	// Options.Logger, then slog.Default().
	Logger *slog.Logger

	current atomic.Pointer[Snapshot]

	mu      sync.Mutex
	running *update // the update in progress, if any
	queued  *update // the one that starts after it, shared by later callers
}

// An update is one Fetch-and-maybe-Build shared by every Update call that
// joined it.
type update struct {
	ctx     context.Context
	joined  int // callers sharing it, for the log
	done    chan struct{}
	changed bool
	err     error
}

func (s *Site) logger() *slog.Logger {
	if s.Logger != nil {
		return s.Logger
	}
	return s.Options.logger()
}

// Current returns the snapshot being served, or nil before Load.
func (s *Site) Current() *Snapshot { return s.current.Load() }

// Load makes the first snapshot. When the Source cannot fetch but keeps a
// cache (Cacher), the cached version is served and a warning says the
// remote is unreachable, so a restart during a remote outage still serves
// the site. When neither works it returns the Fetch error.
func (s *Site) Load(ctx context.Context) error {
	t, err := s.Source.Fetch(ctx)
	if err != nil {
		c, ok := s.Source.(Cacher)
		if !ok {
			return err
		}
		cached, cerr := c.Cached(ctx)
		if errors.Is(cerr, fs.ErrNotExist) {
			// A first start: there is no cache to mention.
			return err
		}
		if cerr != nil {
			return fmt.Errorf("%w (and no usable cached version: %v)", err, cerr)
		}
		s.logger().Warn("site: source unreachable, serving the cached version",
			"source", cached.Source, "revision", cached.Revision,
			"time", cached.Time.UTC().Format(time.RFC3339), "err", err)
		t = cached
	}
	snap, err := Build(ctx, t, s.buildOptions())
	if err != nil {
		return fmt.Errorf("site: load: %w", err)
	}
	s.current.Store(snap)
	s.served(ctx, t)
	return nil
}

// served tells a ServedRecorder source what is now served. A failure only
// means a restart with the source unreachable may serve an older version:
// it is logged, not returned.
func (s *Site) served(ctx context.Context, t *Tree) {
	if r, ok := s.Source.(ServedRecorder); ok {
		if err := r.Served(ctx, t.Revision); err != nil {
			s.logger().Warn("site: recording the served version failed", "revision", t.Revision, "err", err)
		}
	}
}

func (s *Site) buildOptions() Options {
	o := s.Options
	o.Logger = s.logger()
	return o
}

// Update fetches the Source and, when its Revision differs from the one
// served, builds the new snapshot in full and swaps it in. Requests keep
// being served from the old snapshot meanwhile and after any error.
//
// Concurrent calls coalesce: a call made while an update runs waits for
// the next one, which starts when the running one ends and is shared by
// every call that arrived meanwhile, so a burst of webhooks costs at most
// two fetches and none of them misses a push made before it was called.
// ctx bounds the caller's wait, not the update: an update serves every
// caller that joined it, so it runs without their cancellation (sources
// bound their own network work).
func (s *Site) Update(ctx context.Context) (changed bool, err error) {
	s.mu.Lock()
	var u *update
	switch {
	case s.running == nil:
		u = &update{ctx: context.WithoutCancel(ctx), done: make(chan struct{})}
		s.running = u
		go s.run(u)
	case s.queued == nil:
		u = &update{ctx: context.WithoutCancel(ctx), done: make(chan struct{})}
		s.queued = u
	default:
		u = s.queued
	}
	u.joined++
	s.mu.Unlock()
	select {
	case <-u.done:
		return u.changed, u.err
	case <-ctx.Done():
		return false, fmt.Errorf("site: update: %w", context.Cause(ctx))
	}
}

// run performs u, then the update queued meanwhile, until none is left.
func (s *Site) run(u *update) {
	for u != nil {
		s.mu.Lock()
		joined := u.joined
		s.mu.Unlock()
		u.changed, u.err = s.update(u.ctx, joined)
		close(u.done)
		s.mu.Lock()
		u, s.queued = s.queued, nil
		s.running = u
		s.mu.Unlock()
	}
}

func (s *Site) update(ctx context.Context, callers int) (bool, error) {
	t, err := s.Source.Fetch(ctx)
	if err != nil {
		return false, fmt.Errorf("site: update: %w", err)
	}
	old := s.current.Load()
	if old != nil && old.Revision() == t.Revision {
		return false, nil
	}
	snap, err := Build(ctx, t, s.buildOptions())
	if err != nil {
		return false, fmt.Errorf("site: update: %w", err)
	}
	s.current.Store(snap)
	s.served(ctx, t)
	from := ""
	if old != nil {
		from = old.Revision()
	}
	s.logger().Info("site: updated", "source", t.Source, "from", from, "to", t.Revision, "callers", callers)
	return true, nil
}

// Poll calls Update every interval until ctx is done, logging failures.
// It returns at once when every is not positive.
func (s *Site) Poll(ctx context.Context, every time.Duration) {
	if every <= 0 {
		return
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if _, err := s.Update(ctx); err != nil && !errors.Is(err, context.Canceled) {
			s.logger().Warn("site: poll failed, still serving the previous version", "err", err)
		}
	}
}

// ServeHTTP serves the request wholly from the snapshot current when it
// arrives, even if a newer one is swapped in before it ends. Before Load
// succeeds it answers 503.
func (s *Site) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	snap := s.current.Load()
	if snap == nil {
		w.Header()["Retry-After"] = []string{"5"}
		plainError(w, http.StatusServiceUnavailable)
		return
	}
	snap.ServeHTTP(w, r)
}
