package gitsource

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-git/go-git/v5/plumbing"

	"github.com/pafhq/paf/internal/testpeer"
	"github.com/pafhq/paf/site"
)

// testLargeFile is the LargeFile threshold tests use, so that a modest
// file exercises the blob cache.
const testLargeFile = 64 << 10

// gitRunner runs the git binary isolated from the machine's configuration.
type gitRunner = testpeer.Git

func newGit(t testing.TB) *gitRunner { return testpeer.NewGit(t) }

// fixture is a work tree and the bare repository it pushes to.
type fixture struct {
	g    *gitRunner
	work string
	bare string // absolute path of remote.git
	base string // directory holding remote.git
}

// newFixture makes a work tree with a few files, a symlink, an executable
// and a large file, commits it on main and clones it bare.
func newFixture(t testing.TB) *fixture {
	t.Helper()
	g := newGit(t)
	root := t.TempDir()
	f := &fixture{g: g, work: filepath.Join(root, "work"), base: filepath.Join(root, "srv")}
	f.bare = filepath.Join(f.base, "remote.git")
	g.Run(root, "init", "-q", "-b", "main", f.work)
	big := make([]byte, 3*testLargeFile+17)
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range big {
		big[i] = byte(rng.Uint32())
	}
	f.write(map[string]string{
		"index.html":      "<h1>hello</h1>\n",
		"css/site.css":    "body{}\n",
		"deep/a/b/c.txt":  "deep\n",
		"big.bin":         string(big),
		"script.sh":       "#!/bin/sh\necho hi\n",
		"docs/empty.txt":  "",
		"name with space": "space\n",
	})
	if err := os.Chmod(filepath.Join(f.work, "script.sh"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("index.html", filepath.Join(f.work, "home.html")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink("../index.html", filepath.Join(f.work, "css/up.html")); err != nil {
		t.Fatal(err)
	}
	f.commit("initial")
	if err := os.MkdirAll(f.base, 0o755); err != nil {
		t.Fatal(err)
	}
	g.Run(root, "clone", "-q", "--bare", f.work, f.bare)
	return f
}

// write writes files relative to the work tree.
func (f *fixture) write(files map[string]string) {
	f.g.T.Helper()
	for name, content := range files {
		p := filepath.Join(f.work, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			f.g.T.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			f.g.T.Fatal(err)
		}
	}
}

// commit commits everything in the work tree and returns the commit id.
func (f *fixture) commit(msg string) string {
	f.g.T.Helper()
	f.g.Run(f.work, "add", "-A")
	f.g.Run(f.work, "commit", "-q", "--allow-empty", "-m", msg)
	return f.g.Run(f.work, "rev-parse", "HEAD")
}

// push pushes main to the bare repository, forced if force.
func (f *fixture) push(force bool) {
	f.g.T.Helper()
	args := []string{"push", "-q", f.bare, "main"}
	if force {
		args = append(args, "--force")
	}
	f.g.Run(f.work, args...)
}

// head returns the bare repository's main.
func (f *fixture) head() string {
	f.g.T.Helper()
	return f.g.Run(f.bare, "rev-parse", "refs/heads/main")
}

// newSource makes a Source with a fresh data dir.
func newSource(t testing.TB, r Remote, auth Auth) *Source {
	t.Helper()
	s, err := New(Config{Remote: r, Auth: auth, DataDir: t.TempDir(), LargeFile: testLargeFile,
		Logger: slog.New(slog.NewTextHandler(testWriter{t}, nil))})
	if err != nil {
		t.Fatalf("New(%s): %v", r, err)
	}
	return s
}

// testWriter sends log lines to the test's log.
type testWriter struct{ t testing.TB }

func (w testWriter) Write(p []byte) (int, error) {
	w.t.Helper()
	w.t.Log(strings.TrimSuffix(string(p), "\n"))
	return len(p), nil
}

// fetch fetches under a bounded context.
func fetch(t testing.TB, s *Source) *site.Tree {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	tree, err := s.Fetch(ctx)
	if err != nil {
		t.Fatalf("Fetch: %v", err)
	}
	return tree
}

// checkTree compares a tree with the work tree on disk, which must be
// at the same commit: every file and link, content, hash, and that large
// files open as seekable *os.File. Entries are opened concurrently.
func checkTree(t testing.TB, tree *site.Tree, work, commit string) {
	t.Helper()
	if tree.Revision != commit {
		t.Errorf("Revision = %s, want %s", tree.Revision, commit)
	}
	want := map[string]os.FileInfo{}
	err := filepath.Walk(work, func(p string, fi os.FileInfo, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(work, p)
		if fi.IsDir() {
			if fi.Name() == ".git" {
				return filepath.SkipDir
			}
			return nil
		}
		want[filepath.ToSlash(rel)] = fi
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]site.Entry{}
	for _, e := range tree.Entries {
		got[e.Path] = e
	}
	var names []string
	for n := range want {
		names = append(names, n)
	}
	sort.Strings(names)
	for n := range got {
		if _, ok := want[n]; !ok {
			t.Errorf("tree has unexpected entry %q", n)
		}
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	errorf := func(format string, a ...any) {
		mu.Lock()
		defer mu.Unlock()
		t.Errorf(format, a...)
	}
	for _, n := range names {
		fi := want[n]
		e, ok := got[n]
		if !ok {
			t.Errorf("tree lacks %q", n)
			continue
		}
		p := filepath.Join(work, filepath.FromSlash(n))
		if fi.Mode()&os.ModeSymlink != 0 {
			target, _ := os.Readlink(p)
			if e.Kind != site.Symlink || e.Target != target {
				t.Errorf("%s: kind %v target %q, want symlink to %q", n, e.Kind, e.Target, target)
			}
			continue
		}
		content, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		if e.Kind != site.File || e.Size != int64(len(content)) {
			t.Errorf("%s: kind %v size %d, want file of %d bytes", n, e.Kind, e.Size, len(content))
		}
		if h := plumbing.ComputeHash(plumbing.BlobObject, content); e.Hash != h.String() {
			t.Errorf("%s: Hash %s, want blob id %s", n, e.Hash, h)
		}
		for range 3 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				checkOpen(errorf, e, content)
			}()
		}
	}
	wg.Wait()
}

// checkOpen opens an entry and checks its content, and for large files that
// it is an *os.File that seeks.
func checkOpen(errorf func(string, ...any), e site.Entry, content []byte) {
	r, err := e.Open()
	if err != nil {
		errorf("%s: Open: %v", e.Path, err)
		return
	}
	defer r.Close()
	b, err := io.ReadAll(r)
	if err != nil || !bytes.Equal(b, content) {
		errorf("%s: read %d bytes (err %v), want the %d bytes on disk", e.Path, len(b), err, len(content))
		return
	}
	_, isFile := r.(*os.File)
	if large := int64(len(content)) > testLargeFile; large != isFile {
		errorf("%s: Open returned %T for %d bytes (threshold %d)", e.Path, r, len(content), testLargeFile)
	}
	if len(content) < 10 {
		return
	}
	off := int64(len(content) / 2)
	if _, err := r.Seek(off, io.SeekStart); err != nil {
		errorf("%s: Seek: %v", e.Path, err)
		return
	}
	rest, err := io.ReadAll(r)
	if err != nil || !bytes.Equal(rest, content[off:]) {
		errorf("%s: after Seek(%d) read %d bytes (err %v), want %d", e.Path, off, len(rest), err, len(content)-int(off))
	}
}

// freePort returns a loopback port that was free a moment ago.
func freePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// wantErr fails unless err is non-nil, matches target (when set) and
// mentions every substring.
func wantErr(t testing.TB, err, target error, subs ...string) {
	t.Helper()
	if err == nil {
		t.Fatalf("got no error, want one mentioning %q", subs)
	}
	t.Logf("error (as expected): %v", err)
	if target != nil && !errors.Is(err, target) {
		t.Errorf("error %q does not match %v", err, target)
	}
	for _, s := range subs {
		if !strings.Contains(err.Error(), s) {
			t.Errorf("error %q does not mention %q", err, s)
		}
	}
}
