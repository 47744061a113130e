package storage

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	"github.com/caddyserver/certmagic"
	"github.com/go-git/go-billy/v5/osfs"
	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/cache"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/transport"
	"github.com/go-git/go-git/v5/storage/filesystem"

	"github.com/pafhq/paf/gitsource"
)

// Network bounds, so that a stalled remote cannot hang paf.
const (
	listTimeout  = 30 * time.Second
	fetchTimeout = time.Minute
	pushTimeout  = time.Minute
	// missFetchTimeout bounds the fetch a read miss triggers: the reader
	// (an ACME challenge answered by another instance) is waiting.
	missFetchTimeout = 10 * time.Second
	// missFetchEvery is the least time between two fetches triggered by
	// read misses, and missFetchAfterFailure between a failed fetch and
	// the next one a miss may trigger.
	missFetchEvery        = time.Second
	missFetchAfterFailure = 10 * time.Second
)

// GitConfig configures a Git storage.
type GitConfig struct {
	// Remote is the repository and branch (--certs-remote URL[#BRANCH]).
	// An empty Branch means the branch the remote's HEAD points to, or
	// "main" when the remote has none yet. A cluster needs a git://,
	// ssh:// or http(s):// remote, whose server updates the branch
	// atomically: file:// remotes are served in process by go-git, which
	// does not, so concurrent pushes from several processes could lose
	// one.
	Remote gitsource.Remote
	// Auth holds the SSH and HTTPS options, as for --remote.
	Auth gitsource.Auth
	// Dir holds the local clone, a bare repository in a subdirectory
	// named after the remote, so that one Dir may serve several remotes.
	// It is a cache: losing it loses nothing that was pushed. Required.
	Dir string
	// Author is "Name <email>", the author and committer of commits. Empty
	// means "paf <paf@localhost>". Commit messages also name the host and
	// process.
	Author string
	// LockLease is how long a lock outlives its holder's last renewal:
	// the holder renews every LockLease/3, and a crashed holder's lock
	// is taken over LockLease after its last renewal. Zero means 60s.
	// Instances' clocks must agree to well within it.
	LockLease time.Duration
	// FetchInterval is how often the clone is refreshed in the background.
	// Zero means 30s. Reads that miss also fetch, at most once a second.
	FetchInterval time.Duration
	// Logger receives fetch failures, push retries and lock takeovers.
	// Nil means slog.Default().
	Logger *slog.Logger
}

// Git is a certmagic.Storage kept in a Git branch. Reads are served from an
// in-memory copy of the local clone's head; each Store, Delete and lock
// operation is a commit pushed without force, so that a push is a
// compare-and-swap on the branch: when another instance pushed first, the
// change is applied again on top of its commit and pushed again. Its
// methods are safe for concurrent use.
type Git struct {
	access   *gitsource.Access
	branch   string
	dir      string // the bare clone
	repo     *git.Repository
	sig      object.Signature
	who      string // "host pid N #instance", for commit messages and lock holders
	lease    time.Duration
	interval time.Duration
	log      *slog.Logger

	// sem serializes everything that touches the repository (fetch,
	// commit, push, history walks); a channel so that waiting honours
	// contexts.
	sem        chan struct{}
	lastFetch  time.Time // last fetch attempt, under sem
	fetchOK    bool      // whether it succeeded, under sem
	remoteDown bool      // logged as down, under sem
	modCache   map[modKey]time.Time

	snap atomic.Pointer[snapshot]

	mu     sync.Mutex // guards held and closed
	held   map[string]*heldLock
	closed bool

	ctx    context.Context // cancelled by Close
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

var (
	_ certmagic.Storage          = (*Git)(nil)
	_ certmagic.TryLocker        = (*Git)(nil)
	_ certmagic.LockLeaseRenewer = (*Git)(nil)
)

// OpenGit opens (or clones) the local copy of cfg.Remote and brings it up
// to date. With the remote unreachable it serves the existing clone, with a
// warning; with no clone either it fails. An empty remote, or one without
// the branch, is an empty storage whose first write creates the branch.
func OpenGit(ctx context.Context, cfg GitConfig) (*Git, error) {
	access, err := gitsource.NewAccess(cfg.Remote, cfg.Auth)
	if err != nil {
		return nil, fmt.Errorf("storage: --certs-remote: %w", err)
	}
	if cfg.Dir == "" {
		return nil, errors.New("storage: git: Dir (the local clone's directory) is required")
	}
	author := cfg.Author
	if author == "" {
		author = gitsource.DefaultAuthor
	}
	sig, err := gitsource.ParseAuthor(author)
	if err != nil {
		return nil, fmt.Errorf("storage: git: %w", err)
	}
	if cfg.LockLease < 0 || cfg.FetchInterval < 0 {
		return nil, errors.New("storage: git: negative LockLease or FetchInterval")
	}
	if cfg.LockLease == 0 {
		cfg.LockLease = 60 * time.Second
	}
	if cfg.FetchInterval == 0 {
		cfg.FetchInterval = 30 * time.Second
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	host, _ := os.Hostname()
	if host == "" {
		host = "unknown-host"
	}
	sum := sha256.Sum256([]byte(access.Remote.URL + "#" + access.Remote.Branch))
	dir, err := filepath.Abs(filepath.Join(cfg.Dir, hex.EncodeToString(sum[:8])))
	if err != nil {
		return nil, fmt.Errorf("storage: git: Dir %s: %w", cfg.Dir, err)
	}
	bg, cancel := context.WithCancel(context.Background())
	g := &Git{
		access:   access,
		dir:      dir,
		sig:      sig,
		who:      fmt.Sprintf("%s pid %d #%s", host, os.Getpid(), newToken()[:6]),
		lease:    cfg.LockLease,
		interval: cfg.FetchInterval,
		log:      log.With("certs_remote", access.Remote.String()),
		sem:      make(chan struct{}, 1),
		modCache: map[modKey]time.Time{},
		held:     map[string]*heldLock{},
		ctx:      bg,
		cancel:   cancel,
	}
	if err := g.open(ctx); err != nil {
		cancel()
		return nil, err
	}
	g.wg.Add(1)
	go g.refreshLoop()
	return g, nil
}

// String names the remote, for logs and `paf certs ls`.
func (g *Git) String() string { return "git " + g.access.Remote.Redacted() + "#" + g.branch }

// Close stops background fetches and lock renewals. Locks still held are
// not released: like a crashed holder's, they expire after LockLease, so
// call Unlock first. Close does not wait for a network operation in
// progress beyond its timeout.
func (g *Git) Close() error {
	g.mu.Lock()
	if g.closed {
		g.mu.Unlock()
		return nil
	}
	g.closed = true
	held := g.held
	g.held = map[string]*heldLock{}
	g.mu.Unlock()
	g.cancel()
	for _, h := range held {
		h.stop()
	}
	g.wg.Wait()
	return nil
}

// acquire takes the repository lock, giving up when ctx ends.
func (g *Git) acquire(ctx context.Context) error {
	g.mu.Lock()
	closed := g.closed
	g.mu.Unlock()
	if closed {
		return ErrClosed
	}
	select {
	case g.sem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (g *Git) release() { <-g.sem }

func (g *Git) trackingRef() plumbing.ReferenceName {
	return plumbing.NewRemoteReferenceName("origin", g.branch)
}

// open prepares the clone and the first snapshot.
func (g *Git) open(ctx context.Context) error {
	if err := os.MkdirAll(filepath.Dir(g.dir), 0o700); err != nil {
		return fmt.Errorf("storage: git: Dir: %w", err)
	}
	existed := false
	repo, err := g.openRepo()
	if err == nil {
		existed = true
	} else {
		if !errors.Is(err, fs.ErrNotExist) {
			g.log.Warn("storage: local clone unusable, starting a new one", "dir", g.dir, "err", err)
			aside := fmt.Sprintf("%s.broken-%d", g.dir, time.Now().UnixNano())
			if err := os.Rename(g.dir, aside); err != nil {
				return fmt.Errorf("storage: git: move broken clone %s aside: %w", g.dir, err)
			}
			// Renamed first, so that a crash while deleting leaves no
			// half-deleted clone in place.
			os.RemoveAll(aside)
		}
		st := filesystem.NewStorage(osfs.New(g.dir), cache.NewObjectLRUDefault())
		if repo, err = git.Init(st, nil); err != nil {
			return fmt.Errorf("storage: git: init clone %s: %w", g.dir, err)
		}
	}
	g.repo = repo

	branch, lerr := g.pickBranch(ctx)
	if lerr != nil && branch == "" {
		return lerr
	}
	g.branch = branch
	if lerr == nil {
		lerr = g.fetchLocked(ctx)
	}
	if lerr != nil {
		cached := false
		if existed {
			if ref, err := repo.Reference(g.trackingRef(), true); err == nil {
				if s, err := readSnapshot(repo.Storer, ref.Hash(), nil); err == nil {
					g.snap.Store(s)
					cached = true
				}
			}
		}
		if !cached {
			return fmt.Errorf("storage: open %s: no usable local clone in %s and the remote is unavailable: %w", g.access.Remote, g.dir, lerr)
		}
		g.remoteDown = true
		g.log.Warn("storage: remote unreachable, serving the local clone", "dir", g.dir, "commit", g.snap.Load().head, "err", lerr)
		return nil
	}
	if g.snap.Load() == nil {
		g.snap.Store(emptySnapshot())
	}
	return nil
}

// openRepo opens the clone and checks that its tracking refs resolve to
// readable commits; an error wrapping fs.ErrNotExist means there is none.
func (g *Git) openRepo() (*git.Repository, error) {
	if _, err := os.Stat(filepath.Join(g.dir, "config")); err != nil {
		return nil, err
	}
	st := filesystem.NewStorage(osfs.New(g.dir), cache.NewObjectLRUDefault())
	repo, err := git.Open(st, nil)
	if err != nil {
		return nil, err
	}
	iter, err := repo.References()
	if err != nil {
		return nil, err
	}
	err = iter.ForEach(func(ref *plumbing.Reference) error {
		if !ref.Name().IsRemote() {
			return nil
		}
		if _, err := readSnapshot(st, ref.Hash(), nil); err != nil {
			return fmt.Errorf("ref %s: %w", ref.Name(), err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	return repo, nil
}

// pickBranch returns the configured branch, else the remote HEAD's branch,
// else (remote unreachable) the one branch the clone tracks. A non-empty
// branch with an error means the remote could not be listed.
func (g *Git) pickBranch(ctx context.Context) (string, error) {
	if b := g.access.Remote.Branch; b != "" {
		return b, nil
	}
	lctx, cancel := context.WithTimeout(ctx, listTimeout)
	defer cancel()
	rem := git.NewRemote(g.repo.Storer, &config.RemoteConfig{Name: "origin", URLs: []string{g.access.Remote.URL}})
	var refs []*plumbing.Reference
	err := g.access.Retry(lctx, func() (err error) {
		refs, err = rem.ListContext(lctx, &git.ListOptions{Auth: g.access.AuthMethod, CABundle: g.access.CABundle})
		return err
	})
	if errors.Is(err, transport.ErrEmptyRemoteRepository) {
		return "main", nil
	}
	if err != nil {
		var tracked []string
		iter, ierr := g.repo.References()
		if ierr == nil {
			iter.ForEach(func(ref *plumbing.Reference) error {
				if ref.Name().IsRemote() {
					tracked = append(tracked, ref.Name().Short()[len("origin/"):])
				}
				return nil
			})
		}
		err = g.access.Error("list", err)
		if len(tracked) == 1 {
			return tracked[0], err
		}
		return "", fmt.Errorf("storage: open %s: no usable local clone in %s and the remote is unavailable: %w", g.access.Remote, g.dir, err)
	}
	byName := map[plumbing.ReferenceName]*plumbing.Reference{}
	for _, r := range refs {
		byName[r.Name()] = r
	}
	if head, ok := byName[plumbing.HEAD]; ok && head.Type() == plumbing.SymbolicReference && head.Target().IsBranch() {
		if _, ok := byName[head.Target()]; ok {
			return head.Target().Short(), nil
		}
	}
	for _, b := range []string{"main", "master"} {
		if _, ok := byName[plumbing.NewBranchReferenceName(b)]; ok {
			return b, nil
		}
	}
	return "main", nil
}

// fetchLocked brings the tracking ref up to date and refreshes the
// snapshot. A remote without the branch leaves the clone as it is (the
// next write recreates the branch from it). Called under sem, or before
// the Git is shared.
func (g *Git) fetchLocked(ctx context.Context) error {
	g.lastFetch = time.Now()
	ctx, cancel := context.WithTimeout(ctx, fetchTimeout)
	defer cancel()
	spec := config.RefSpec(fmt.Sprintf("+refs/heads/%s:%s", g.branch, g.trackingRef()))
	rem := git.NewRemote(g.repo.Storer, &config.RemoteConfig{Name: "origin", URLs: []string{g.access.Remote.URL}})
	err := g.access.Retry(ctx, func() error {
		return rem.FetchContext(ctx, &git.FetchOptions{
			RemoteName: "origin",
			RefSpecs:   []config.RefSpec{spec},
			Auth:       g.access.AuthMethod,
			CABundle:   g.access.CABundle,
			Tags:       git.NoTags,
			Force:      true,
		})
	})
	var noRef git.NoMatchingRefSpecError
	switch {
	case err == nil, errors.Is(err, git.NoErrAlreadyUpToDate):
	case errors.Is(err, transport.ErrEmptyRemoteRepository), errors.As(err, &noRef):
		// No branch yet: nothing to fetch.
	default:
		g.fetchOK = false
		return g.access.Error("fetch", err)
	}
	g.fetchOK = true
	if g.remoteDown {
		g.remoteDown = false
		g.log.Info("storage: remote reachable again")
	}
	ref, rerr := g.repo.Reference(g.trackingRef(), true)
	if rerr != nil {
		return nil
	}
	prev := g.snap.Load()
	if prev != nil && prev.head == ref.Hash() {
		return nil
	}
	s, err := readSnapshot(g.repo.Storer, ref.Hash(), prev)
	if err != nil {
		return fmt.Errorf("storage: fetch %s: %w", g.access.Remote, err)
	}
	g.snap.Store(s)
	return nil
}

// refreshLoop fetches every interval until Close.
func (g *Git) refreshLoop() {
	defer g.wg.Done()
	t := time.NewTicker(g.interval)
	defer t.Stop()
	for {
		select {
		case <-g.ctx.Done():
			return
		case <-t.C:
		}
		if err := g.acquire(g.ctx); err != nil {
			return
		}
		err := g.fetchLocked(g.ctx)
		if err != nil && !g.remoteDown && g.ctx.Err() == nil {
			g.remoteDown = true
			g.log.Warn("storage: fetch failed; serving the local clone until the remote is back", "err", err)
		}
		g.release()
	}
}

// missFetch fetches after a read found nothing (or before reading a key
// that mustBeFresh), so that a value another instance pushed a moment ago
// (a challenge token) is seen. Fetches start at most once per
// missFetchEvery: a miss soon after a fetch waits for the rest of that
// second, and misses waiting together share one fetch. After
// a failed fetch, misses do not fetch for missFetchAfterFailure. It
// reports whether the snapshot may have changed since the miss.
func (g *Git) missFetch(ctx context.Context) bool {
	missed := time.Now()
	for {
		if err := g.acquire(ctx); err != nil {
			return false
		}
		if g.lastFetch.After(missed) {
			// A fetch started after the miss, and finished: its result
			// is in the snapshot.
			g.release()
			return true
		}
		since := time.Since(g.lastFetch)
		if !g.fetchOK && since < missFetchAfterFailure {
			g.release()
			return false
		}
		if since >= missFetchEvery {
			fctx, cancel := context.WithTimeout(ctx, missFetchTimeout)
			err := g.fetchLocked(fctx)
			cancel()
			g.release()
			if err != nil {
				g.log.Debug("storage: fetch after a read miss failed", "err", err)
				return false
			}
			return true
		}
		g.release()
		select {
		case <-ctx.Done():
			return false
		case <-time.After(missFetchEvery - since):
		}
	}
}

// Refresh fetches now, for callers that know the remote changed (tests,
// `paf certs ls`).
func (g *Git) Refresh(ctx context.Context) error {
	if err := g.acquire(ctx); err != nil {
		return fmt.Errorf("storage: refresh %s: %w", g.access.Remote, err)
	}
	defer g.release()
	return g.fetchLocked(ctx)
}

// Head returns the commit the storage currently reads from, zero when the
// branch does not exist yet.
func (g *Git) Head() string {
	if h := g.snap.Load().head; !h.IsZero() {
		return h.String()
	}
	return ""
}

// lookup finds key in the snapshot, fetching once on a miss, or before
// reading a key that mustBeFresh.
func (g *Git) lookup(ctx context.Context, key string) (blob, *snapshot, bool) {
	s := g.snap.Load()
	if mustBeFresh(key) {
		// A hit may be stale: fetch (at most once a second, shared with
		// concurrent readers) and read what the remote has. With the
		// remote down, the clone's value is all there is.
		if g.missFetch(ctx) {
			s = g.snap.Load()
		}
		b, ok := s.files[key]
		return b, s, ok
	}
	if b, ok := s.files[key]; ok {
		return b, s, true
	}
	if s.dirs[key] || !g.missFetch(ctx) {
		return blob{}, s, false
	}
	s = g.snap.Load()
	b, ok := s.files[key]
	return b, s, ok
}

// Load implements certmagic.Storage.
func (g *Git) Load(ctx context.Context, key string) ([]byte, error) {
	if err := checkKey(key); err != nil {
		return nil, fmt.Errorf("storage: load: %v: %w", err, fs.ErrNotExist)
	}
	b, _, ok := g.lookup(ctx, key)
	if !ok {
		return nil, fmt.Errorf("storage: load %s from %s: %w", key, g, fs.ErrNotExist)
	}
	if b.err != nil {
		return nil, fmt.Errorf("storage: load %s from %s: %w", key, g, b.err)
	}
	return append([]byte(nil), b.data...), nil
}

// Exists implements certmagic.Storage.
func (g *Git) Exists(ctx context.Context, key string) bool {
	if key != "" && checkKey(key) != nil {
		return false
	}
	if key == "" || g.snap.Load().exists(key) {
		return true
	}
	return g.missFetch(ctx) && g.snap.Load().exists(key)
}

// List implements certmagic.Storage.
func (g *Git) List(ctx context.Context, prefix string, recursive bool) ([]string, error) {
	if prefix != "" && checkKey(prefix) != nil {
		return nil, fmt.Errorf("storage: list %q: %w", prefix, fs.ErrNotExist)
	}
	s := g.snap.Load()
	if prefix != "" && !s.exists(prefix) {
		return nil, fmt.Errorf("storage: list %s in %s: %w", prefix, g, fs.ErrNotExist)
	}
	return s.list(prefix, recursive), nil
}

// Stat implements certmagic.Storage. Modified is the time of the commit
// that last changed the key (searched in the last 1000 commits).
func (g *Git) Stat(ctx context.Context, key string) (certmagic.KeyInfo, error) {
	if err := checkKey(key); err != nil {
		return certmagic.KeyInfo{}, fmt.Errorf("storage: stat: %v: %w", err, fs.ErrNotExist)
	}
	b, s, ok := g.lookup(ctx, key)
	if !ok {
		if s.dirs[key] {
			return certmagic.KeyInfo{Key: key, Modified: s.when, IsTerminal: false}, nil
		}
		return certmagic.KeyInfo{}, fmt.Errorf("storage: stat %s in %s: %w", key, g, fs.ErrNotExist)
	}
	mod, err := g.modified(ctx, s, key, b.hash)
	if err != nil {
		return certmagic.KeyInfo{}, fmt.Errorf("storage: stat %s in %s: %w", key, g, err)
	}
	return certmagic.KeyInfo{Key: key, Modified: mod, Size: int64(len(b.data)), IsTerminal: true}, nil
}

// modKey caches the modification time of one version of one file.
type modKey struct {
	key  string
	hash plumbing.Hash
}

// modified walks first parents back from the snapshot's head to the
// commit that gave key its current content.
func (g *Git) modified(ctx context.Context, s *snapshot, key string, h plumbing.Hash) (time.Time, error) {
	if s.head.IsZero() {
		return s.when, nil
	}
	if err := g.acquire(ctx); err != nil {
		return time.Time{}, err
	}
	defer g.release()
	mk := modKey{key, h}
	if t, ok := g.modCache[mk]; ok {
		return t, nil
	}
	c, err := object.GetCommit(g.repo.Storer, s.head)
	if err != nil {
		return time.Time{}, err
	}
	when := c.Committer.When
	for i := 0; i < 1000 && len(c.ParentHashes) > 0; i++ {
		p, err := object.GetCommit(g.repo.Storer, c.ParentHashes[0])
		if err != nil {
			break
		}
		t, err := p.Tree()
		if err != nil {
			break
		}
		e, err := t.FindEntry(key)
		if err != nil || e.Hash != h {
			break
		}
		c, when = p, p.Committer.When
	}
	if len(g.modCache) > 4096 {
		clear(g.modCache)
	}
	g.modCache[mk] = when
	return when, nil
}

// newToken returns a random identifier for a lock acquisition.
func newToken() string {
	var b [12]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
