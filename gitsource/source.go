// Package gitsource serves a site straight from a Git branch and publishes a
// directory to one, with go-git: no git binary is needed at run time.
//
// A Source keeps a bare clone of the remote under its data directory and
// fetches the branch into it; the tree of the fetched commit becomes a
// site.Tree. What was last served is recorded on disk so that Cached can
// serve it again after a restart while the remote is unreachable. The data
// directory survives kill -9 at any moment: a clone that is found broken is
// replaced by a fresh one, built aside and renamed into place.
package gitsource

import (
	"compress/zlib"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/go-git/go-billy/v5/osfs"
	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/config"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/cache"
	"github.com/go-git/go-git/v5/plumbing/format/idxfile"
	"github.com/go-git/go-git/v5/plumbing/format/objfile"
	"github.com/go-git/go-git/v5/plumbing/format/packfile"
	"github.com/go-git/go-git/v5/plumbing/transport"
	"github.com/go-git/go-git/v5/storage/filesystem"
	"github.com/go-git/go-git/v5/storage/filesystem/dotgit"
	"github.com/go-git/go-git/v5/storage/memory"

	"github.com/pafhq/paf/site"

	"github.com/pafhq/paf/internal/atomicfile"
)

// Config configures a Source.
type Config struct {
	// Remote is the repository and branch to serve.
	Remote Remote
	// Auth holds the SSH and HTTPS options for Remote.
	Auth Auth
	// DataDir holds the bare clone (DataDir/git/<digest of URL#branch>),
	// the record of the served commit beside it (<digest>.json) and the
	// large-blob cache (DataDir/blobs/<digest>), which keeps the blobs of
	// the versions served last and before (Served collects the rest). It
	// is created if missing.
	// Required. Several Sources may share it; one process at a time may
	// use it.
	DataDir string
	// LargeFile is the blob size above which Entry.Open returns an
	// *os.File on a copy of the blob in the blob cache instead of an
	// in-memory reader. Zero means 1 MiB.
	LargeFile int64
	// Timeout bounds one Fetch, first clone included. Zero means two
	// minutes; raise it for a large site behind a slow link.
	Timeout time.Duration
	// Logger receives fetch and recovery events. Nil means
	// slog.Default().
	Logger *slog.Logger
}

// Source is a site.Source and site.Cacher backed by a Git branch. Its
// methods are safe for concurrent use; fetches are serialized.
type Source struct {
	remote    Remote
	auth      *resolvedAuth
	largeFile int64
	timeout   time.Duration
	log       *slog.Logger
	gitDir    string // DataDir/git
	repoDir   string // DataDir/git/<digest>
	stateFile string // DataDir/git/<digest>.json
	blobDir   string // DataDir/blobs/<digest>, this Source's own
	refs      blobRefs

	// sem serializes Fetch and Cached; a channel rather than a mutex so
	// that waiting for it honours the caller's context.
	sem chan struct{}
	// stateMu serializes updates of stateFile, so that Served, which
	// does not take sem (a stalled fetch may hold it for long), and
	// fetch never lose each other's record.
	stateMu sync.Mutex
}

var (
	_ site.Source = (*Source)(nil)
	_ site.Cacher = (*Source)(nil)
)

// New checks cfg as far as it can without the network (remote syntax, key,
// passphrase, known_hosts, fingerprint, CA file, data directory) and
// returns a Source. Errors name the offending option.
func New(cfg Config) (*Source, error) {
	if cfg.Remote.URL == "" {
		return nil, errors.New("--remote: required")
	}
	r, auth, err := resolveRemote(cfg.Remote, cfg.Auth, "--remote")
	if err != nil {
		return nil, err
	}
	if cfg.DataDir == "" {
		return nil, errors.New("--data-dir: required for a git remote")
	}
	dataDir, err := filepath.Abs(cfg.DataDir)
	if err != nil {
		return nil, fmt.Errorf("--data-dir %s: %w", cfg.DataDir, err)
	}
	// One clone and one blob cache per URL and branch: Sources never
	// share a repository, so each one's lock covers all writes to its
	// clone, and each collects its own blob cache.
	digest := hexDigest(r.URL + "#" + r.Branch)
	gitDir := filepath.Join(dataDir, "git")
	blobRoot := filepath.Join(dataDir, "blobs")
	blobDir := filepath.Join(blobRoot, digest)
	removeLegacyBlobs(blobRoot)
	for _, d := range []string{gitDir, blobDir} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("--data-dir %s: %w", cfg.DataDir, err)
		}
	}
	if cfg.LargeFile < 0 {
		return nil, fmt.Errorf("gitsource: negative LargeFile %d", cfg.LargeFile)
	}
	if cfg.LargeFile == 0 {
		cfg.LargeFile = 1 << 20
	}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	if cfg.Timeout < 0 {
		return nil, fmt.Errorf("gitsource: negative Timeout %v", cfg.Timeout)
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = fetchTimeout
	}
	return &Source{
		remote:    r,
		auth:      auth,
		largeFile: cfg.LargeFile,
		timeout:   cfg.Timeout,
		log:       log.With("remote", r.String()),
		gitDir:    gitDir,
		repoDir:   filepath.Join(gitDir, digest),
		stateFile: filepath.Join(gitDir, digest+".json"),
		blobDir:   blobDir,
		sem:       make(chan struct{}, 1),
	}, nil
}

func hexDigest(s string) string {
	sum := sha256.Sum256([]byte(s))
	return hex.EncodeToString(sum[:])
}

// Remote returns the remote the Source serves.
func (s *Source) Remote() Remote { return s.remote }

// acquire takes the fetch lock, giving up when ctx ends.
func (s *Source) acquire(ctx context.Context, op string) error {
	select {
	case s.sem <- struct{}{}:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("gitsource: %s %s: waiting for a previous fetch: %w", op, s.remote, ctx.Err())
	}
}

func (s *Source) release() { <-s.sem }

// Fetch implements site.Source: it brings the local clone up to date with
// the remote branch and returns the tree of its head commit. It returns
// when ctx ends or after Config.Timeout even if the remote stalls; a
// stalled transfer is then abandoned in the background and holds the fetch
// lock until the transport gives up. A failed fetch leaves the clone and
// what Cached returns as they were.
func (s *Source) Fetch(ctx context.Context) (*site.Tree, error) {
	if err := s.acquire(ctx, "fetch"); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	type result struct {
		tree *site.Tree
		err  error
	}
	done := make(chan result, 1)
	go func() {
		defer s.release()
		defer cancel()
		t, err := s.fetch(ctx)
		done <- result{t, err}
	}()
	select {
	case r := <-done:
		return r.tree, r.err
	case <-ctx.Done():
		select {
		case r := <-done:
			return r.tree, r.err
		default:
		}
		return nil, fmt.Errorf("gitsource: fetch %s: %w", s.remote, ctx.Err())
	}
}

// Cached implements site.Cacher: it returns, without using the network,
// the tree of the commit last confirmed with Served, so that a restart
// with the remote down serves what was served before, not a fetched
// commit that failed to build. When no commit was ever confirmed (a
// caller that does not call Served), or the confirmed one is no longer in
// the clone (a fresh clone of a force-pushed branch), it returns the
// commit the last successful Fetch returned. It returns an error wrapping
// fs.ErrNotExist when there is neither or neither is readable.
func (s *Source) Cached(ctx context.Context) (*site.Tree, error) {
	if err := s.acquire(ctx, "cached"); err != nil {
		return nil, err
	}
	defer s.release()
	s.stateMu.Lock()
	st, err := readState(s.stateFile)
	s.stateMu.Unlock()
	if err != nil {
		return nil, fmt.Errorf("gitsource: cached %s: %w", s.remote, err)
	}
	if st.URL != s.remote.URL {
		return nil, fmt.Errorf("gitsource: cached %s: state %s is for %s: %w", s.remote, s.stateFile, st.URL, fs.ErrNotExist)
	}
	repo, err := s.openRepo(s.repoDir)
	if err != nil {
		return nil, fmt.Errorf("gitsource: cached %s: local clone unusable (%v): %w", s.remote, err, fs.ErrNotExist)
	}
	var errs []error
	for _, c := range [][2]string{{st.Commit, st.Branch}, {st.Fetched, st.FetchedBranch}} {
		if c[0] == "" {
			continue
		}
		t, err := s.buildTree(ctx, repo, plumbing.NewHash(c[0]), c[1])
		if err == nil {
			if c[0] != st.Commit && st.Commit != "" {
				s.log.Warn("gitsource: served commit unreadable, using the last fetched one", "served", st.Commit, "fetched", c[0], "err", errors.Join(errs...))
			}
			return t, nil
		}
		if ctx.Err() != nil {
			return nil, fmt.Errorf("gitsource: cached %s: %w", s.remote, ctx.Err())
		}
		errs = append(errs, fmt.Errorf("commit %s unreadable: %w", c[0], err))
		if c[0] == st.Fetched {
			break
		}
	}
	return nil, fmt.Errorf("gitsource: cached %s: %v: %w", s.remote, errors.Join(errs...), fs.ErrNotExist)
}

// Served records that revision, a commit a Fetch or Cached of this
// Source returned, was built and is now what the site serves: Cached
// returns it after a restart until another revision is confirmed. A
// caller that builds the site from a fetched tree calls it after the new
// snapshot is in place, never before, so that a commit that fails to
// build is never what a restart falls back to. It does not use the
// network and does not wait for a fetch in progress. A revision this
// Source did not fetch is an error and changes nothing.
func (s *Source) Served(ctx context.Context, revision string) error {
	if err := s.recordServed(ctx, revision); err != nil {
		return err
	}
	// The blobs of versions no longer served go (those of the version
	// served before stay: its snapshot may still answer requests).
	s.collectBlobs(s.refs.servedNow(revision))
	return nil
}

// recordServed is Served's record in the state file.
func (s *Source) recordServed(ctx context.Context, revision string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("gitsource: served %s %s: %w", s.remote, revision, err)
	}
	if !validCommit(revision) {
		return fmt.Errorf("gitsource: served %s: %q is not a commit hash", s.remote, revision)
	}
	s.stateMu.Lock()
	defer s.stateMu.Unlock()
	st, err := readState(s.stateFile)
	if err != nil || st.URL != s.remote.URL {
		return fmt.Errorf("gitsource: served %s %s: not fetched by this source (%v)", s.remote, revision, err)
	}
	switch revision {
	case st.Commit:
		return nil
	case st.Fetched:
		st.Commit, st.Branch = st.Fetched, st.FetchedBranch
	default:
		return fmt.Errorf("gitsource: served %s %s: not the last fetched commit (%s)", s.remote, revision, st.Fetched)
	}
	if err := writeState(s.stateFile, st); err != nil {
		return fmt.Errorf("gitsource: served %s %s: record served commit: %w", s.remote, revision, err)
	}
	return nil
}

// recordFetched records commit as the last fetched, keeping the served
// one.
func (s *Source) recordFetched(branch, commit string) error {
	s.stateMu.Lock()
	defer s.stateMu.Unlock()
	st, err := readState(s.stateFile)
	if err != nil || st.URL != s.remote.URL {
		st = state{URL: s.remote.URL}
	} else if st.Fetched == commit && st.FetchedBranch == branch {
		return nil // every poll of an unchanged branch: no fsynced rewrite
	}
	st.Fetched, st.FetchedBranch = commit, branch
	return writeState(s.stateFile, st)
}

// fetch does Fetch's work under the lock.
func (s *Source) fetch(ctx context.Context) (*site.Tree, error) {
	branch, remoteHash, err := s.resolveBranch(ctx)
	if err != nil {
		return nil, err
	}
	s.removeStale()
	localRef := plumbing.NewRemoteReferenceName("origin", branch)

	recreated := false
	repo, err := s.openRepo(s.repoDir)
	if err == nil {
		err = checkRefs(repo)
	}
	if err != nil {
		if !errors.Is(err, fs.ErrNotExist) {
			s.log.Warn("gitsource: local clone unusable, cloning afresh", "dir", s.repoDir, "err", err)
		}
		if repo, err = s.recreate(ctx, branch); err != nil {
			return nil, err
		}
		recreated = true
	} else if cur, rerr := repo.Reference(localRef, false); rerr != nil || cur.Hash() != remoteHash {
		if err := s.fetchInto(ctx, repo, branch); err != nil {
			if !isLocalError(ctx, err, s.repoDir) {
				return nil, err
			}
			s.log.Warn("gitsource: fetch into local clone failed, cloning afresh", "dir", s.repoDir, "err", err)
			if repo, err = s.recreate(ctx, branch); err != nil {
				return nil, err
			}
			recreated = true
		}
	}
	tree, err := s.treeAt(ctx, repo, localRef, branch)
	if err != nil && !recreated && ctx.Err() == nil {
		s.log.Warn("gitsource: local clone incomplete, cloning afresh", "dir", s.repoDir, "err", err)
		if repo, err = s.recreate(ctx, branch); err != nil {
			return nil, err
		}
		tree, err = s.treeAt(ctx, repo, localRef, branch)
	}
	if err != nil {
		return nil, fmt.Errorf("gitsource: fetch %s: %w", s.remote, err)
	}
	if err := s.recordFetched(branch, tree.Revision); err != nil {
		return nil, fmt.Errorf("gitsource: fetch %s: record fetched commit: %w", s.remote, err)
	}
	s.log.Info("gitsource: fetched", "branch", branch, "commit", tree.Revision, "entries", len(tree.Entries))
	return tree, nil
}

// treeAt builds the tree of the commit ref points to.
func (s *Source) treeAt(ctx context.Context, repo *git.Repository, ref plumbing.ReferenceName, branch string) (*site.Tree, error) {
	r, err := repo.Reference(ref, false)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", ref, err)
	}
	return s.buildTree(ctx, repo, r.Hash(), branch)
}

// resolveBranch lists the remote's references and returns the branch to
// serve and its head.
func (s *Source) resolveBranch(ctx context.Context) (string, plumbing.Hash, error) {
	refs, err := listRemote(ctx, s.remote, s.auth)
	if err != nil {
		return "", plumbing.ZeroHash, err
	}
	return pickBranch(s.remote, refs)
}

// listRemote is ls-remote: the remote's references, HEAD included.
func listRemote(ctx context.Context, r Remote, auth *resolvedAuth) (map[plumbing.ReferenceName]*plumbing.Reference, error) {
	ctx, cancel := context.WithTimeout(ctx, listTimeout)
	defer cancel()
	rem := git.NewRemote(memory.NewStorage(), &config.RemoteConfig{Name: "origin", URLs: []string{r.URL}})
	var list []*plumbing.Reference
	err := retryLocal(ctx, r, func() (err error) {
		list, err = rem.ListContext(ctx, &git.ListOptions{Auth: auth.method, CABundle: auth.caBundle, PeelingOption: git.IgnorePeeled})
		return err
	})
	if err != nil {
		return nil, remoteError("list", r, err)
	}
	refs := make(map[plumbing.ReferenceName]*plumbing.Reference, len(list))
	for _, ref := range list {
		refs[ref.Name()] = ref
	}
	return refs, nil
}

// remoteError wraps a transport error with the operation and remote, and
// rephrases the common ones.
func remoteError(op string, r Remote, err error) error {
	switch {
	case errors.Is(err, transport.ErrEmptyRemoteRepository):
		return fmt.Errorf("gitsource: %s %s: remote repository is empty: %w", op, r.Redacted(), ErrBranchNotFound)
	}
	return fmt.Errorf("gitsource: %s %s: %w", op, r.Redacted(), err)
}

// pickBranch chooses the branch named by r, or the one HEAD points to.
func pickBranch(r Remote, refs map[plumbing.ReferenceName]*plumbing.Reference) (string, plumbing.Hash, error) {
	if r.Branch != "" {
		ref, ok := refs[plumbing.NewBranchReferenceName(r.Branch)]
		if !ok {
			return "", plumbing.ZeroHash, fmt.Errorf("gitsource: %s: %w: %q (remote has %s)", r.Redacted(), ErrBranchNotFound, r.Branch, branchList(refs))
		}
		return r.Branch, ref.Hash(), nil
	}
	head, ok := refs[plumbing.HEAD]
	if ok && head.Type() == plumbing.SymbolicReference {
		if ref, ok := refs[head.Target()]; ok && head.Target().IsBranch() {
			return head.Target().Short(), ref.Hash(), nil
		}
	}
	if ok && head.Type() == plumbing.HashReference {
		var names []string
		for n, ref := range refs {
			if n.IsBranch() && ref.Hash() == head.Hash() {
				names = append(names, n.Short())
			}
		}
		sort.Strings(names)
		for _, pref := range []string{"main", "master"} {
			for _, n := range names {
				if n == pref {
					return n, head.Hash(), nil
				}
			}
		}
		if len(names) > 0 {
			return names[0], head.Hash(), nil
		}
	}
	return "", plumbing.ZeroHash, fmt.Errorf("gitsource: %s: %w: the remote's HEAD points to no branch; name one with URL#BRANCH (remote has %s)", r.Redacted(), ErrBranchNotFound, branchList(refs))
}

func branchList(refs map[plumbing.ReferenceName]*plumbing.Reference) string {
	var names []string
	for n := range refs {
		if n.IsBranch() {
			names = append(names, n.Short())
		}
	}
	if len(names) == 0 {
		return "no branches"
	}
	sort.Strings(names)
	if len(names) > 10 {
		names = append(names[:10], "...")
	}
	return "branches " + strings.Join(names, ", ")
}

// openRepo opens the bare clone at dir with a small object cache: trees
// keep their repository for Entry.Open, and blobs are read once.
func (s *Source) openRepo(dir string) (*git.Repository, error) {
	if _, err := os.Stat(filepath.Join(dir, "config")); err != nil {
		return nil, err
	}
	st := filesystem.NewStorageWithOptions(osfs.New(dir), cache.NewObjectLRU(4*cache.MiByte),
		filesystem.Options{LargeObjectThreshold: s.largeFile})
	return git.Open(st, nil)
}

// checkRefs reads every remote-tracking ref and its commit: a clone cut
// short by kill -9 fails here rather than in the middle of a fetch.
func checkRefs(repo *git.Repository) error {
	iter, err := repo.References()
	if err != nil {
		return err
	}
	return iter.ForEach(func(ref *plumbing.Reference) error {
		if !ref.Name().IsRemote() {
			return nil
		}
		if ref.Type() != plumbing.HashReference {
			return fmt.Errorf("ref %s is not a hash", ref.Name())
		}
		c, err := repo.CommitObject(ref.Hash())
		if err != nil {
			return fmt.Errorf("ref %s: commit %s: %w", ref.Name(), ref.Hash(), err)
		}
		if _, err := c.Tree(); err != nil {
			return fmt.Errorf("ref %s: tree of %s: %w", ref.Name(), ref.Hash(), err)
		}
		return nil
	})
}

// fetchInto fetches the branch into refs/remotes/origin/<branch>, forced so
// that a force-pushed branch still updates.
func (s *Source) fetchInto(ctx context.Context, repo *git.Repository, branch string) error {
	spec := config.RefSpec(fmt.Sprintf("+refs/heads/%s:refs/remotes/origin/%s", branch, branch))
	rem := git.NewRemote(repo.Storer, &config.RemoteConfig{Name: "origin", URLs: []string{s.remote.URL}, Fetch: []config.RefSpec{spec}})
	err := retryLocal(ctx, s.remote, func() error {
		return rem.FetchContext(ctx, &git.FetchOptions{
			RemoteName: "origin",
			RefSpecs:   []config.RefSpec{spec},
			Auth:       s.auth.method,
			CABundle:   s.auth.caBundle,
			Tags:       git.NoTags,
			Force:      true,
		})
	})
	if err != nil && !errors.Is(err, git.NoErrAlreadyUpToDate) {
		return remoteError("fetch", s.remote, err)
	}
	return nil
}

// isLocalError reports whether a failed fetch into the clone at dir is
// known to be the clone's fault, so that a fresh clone is worth trying:
// objects, packs, indexes or references missing or damaged on disk, or a
// file under dir that cannot be read or written. Anything else (network,
// HTTP status, SSH, authentication, cancellation, an error paf does not
// know) is taken for the remote's and not answered with a full re-clone
// from a remote that is failing.
func isLocalError(ctx context.Context, err error, dir string) bool {
	if ctx.Err() != nil || err == nil {
		return false
	}
	var pe *fs.PathError
	if errors.As(err, &pe) && within(dir, pe.Path) {
		return true
	}
	var le *os.LinkError
	if errors.As(err, &le) && (within(dir, le.Old) || within(dir, le.New)) {
		return true
	}
	var pfe *packfile.Error
	if errors.As(err, &pfe) {
		return true
	}
	for _, local := range []error{
		plumbing.ErrObjectNotFound,
		plumbing.ErrReferenceNotFound,
		plumbing.ErrInvalidType,
		packfile.ErrReferenceDeltaNotFound,
		packfile.ErrDeltaNotCached,
		packfile.ErrInvalidDelta,
		packfile.ErrDeltaCmd,
		packfile.ErrMalformedPackFile,
		packfile.ErrLengthOverflow,
		packfile.ErrInflatedSizeMismatch,
		idxfile.ErrMalformedIdxFile,
		idxfile.ErrUnsupportedVersion,
		objfile.ErrHeader,
		objfile.ErrNegativeSize,
		dotgit.ErrNotFound,
		dotgit.ErrIdxNotFound,
		dotgit.ErrPackfileNotFound,
		dotgit.ErrConfigNotFound,
		dotgit.ErrPackedRefsDuplicatedRef,
		dotgit.ErrPackedRefsBadFormat,
		dotgit.ErrSymRefTargetNotFound,
		dotgit.ErrIsDir,
		dotgit.ErrEmptyRefFile,
		git.ErrRepositoryNotExists,
		zlib.ErrChecksum,
		zlib.ErrHeader,
	} {
		if errors.Is(err, local) {
			return true
		}
	}
	return false
}

// within reports whether path is dir or under it.
func within(dir, path string) bool {
	if dir == "" || path == "" {
		return false
	}
	rel, err := filepath.Rel(dir, path)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator)) && !filepath.IsAbs(rel)
}

// recreate clones the branch into a fresh bare repository beside the
// current one and renames it into place: at any moment the place holds a
// whole repository or nothing.
func (s *Source) recreate(ctx context.Context, branch string) (*git.Repository, error) {
	base := filepath.Base(s.repoDir)
	tmp, err := os.MkdirTemp(s.gitDir, base+".tmp-")
	if err != nil {
		return nil, fmt.Errorf("gitsource: clone %s: %w", s.remote, err)
	}
	ok := false
	defer func() {
		if !ok {
			os.RemoveAll(tmp)
		}
	}()
	st := filesystem.NewStorageWithOptions(osfs.New(tmp), cache.NewObjectLRU(4*cache.MiByte), filesystem.Options{})
	repo, err := git.Init(st, nil)
	if err != nil {
		return nil, fmt.Errorf("gitsource: clone %s: init %s: %w", s.remote, tmp, err)
	}
	if err := s.fetchInto(ctx, repo, branch); err != nil {
		return nil, err
	}
	if err := syncTree(tmp); err != nil {
		return nil, fmt.Errorf("gitsource: clone %s: %w", s.remote, err)
	}
	var old string
	if _, err := os.Lstat(s.repoDir); err == nil {
		old = tmp + ".old"
		if err := os.Rename(s.repoDir, old); err != nil {
			return nil, fmt.Errorf("gitsource: clone %s: move broken clone aside: %w", s.remote, err)
		}
	}
	if err := os.Rename(tmp, s.repoDir); err != nil {
		return nil, fmt.Errorf("gitsource: clone %s: %w", s.remote, err)
	}
	ok = true
	atomicfile.SyncDir(s.gitDir)
	if old != "" {
		os.RemoveAll(old)
	}
	return s.openRepo(s.repoDir)
}

// removeStale deletes temporary clones left by a process killed while
// cloning.
func (s *Source) removeStale() {
	matches, _ := filepath.Glob(filepath.Join(s.gitDir, filepath.Base(s.repoDir)+".tmp-*"))
	for _, m := range matches {
		os.RemoveAll(m)
	}
}
