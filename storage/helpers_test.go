package storage

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"encoding/pem"
	"log/slog"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pafhq/paf/gitsource"
	"github.com/pafhq/paf/internal/testpeer"
)

// testWorkFactor keeps scrypt cheap in tests that create many keyrings;
// TestWrongPassphrase uses the real one.
const testWorkFactor = 10

// gitRunner runs the git binary isolated from the machine's configuration.
type gitRunner = testpeer.Git

func newGitRunner(t testing.TB) *gitRunner { return testpeer.NewGit(t) }

// remote is an empty bare repository, served by git daemon when started.
type remote struct {
	g    *gitRunner
	base string // directory holding certs.git
	bare string
	stop func()
	url  string // git:// URL once served, else file://
}

func newRemote(t testing.TB) *remote {
	t.Helper()
	g := newGitRunner(t)
	base := t.TempDir()
	bare := filepath.Join(base, "certs.git")
	g.Run(base, "init", "--bare", "--initial-branch=main", bare)
	return &remote{g: g, base: base, bare: bare, url: "file://" + bare}
}

// serve starts git daemon with pushes enabled on a free loopback port.
func (r *remote) serve(t testing.TB) {
	t.Helper()
	addr, stop := testpeer.GitDaemon(t, r.base, "--enable=receive-pack")
	r.stop = stop
	r.url = "git://" + addr + "/certs.git"
}

// head returns the bare repository's main, or "" when it has none.
func (r *remote) head() string {
	cmd := exec.Command(r.g.Bin, "rev-parse", "--verify", "-q", "refs/heads/main")
	cmd.Dir = r.bare
	out, _ := cmd.Output()
	return strings.TrimSpace(string(out))
}

// log returns the subjects of main's history, newest first.
func (r *remote) log() []string {
	if r.head() == "" {
		return nil
	}
	return strings.Split(r.g.Run(r.bare, "log", "--format=%s", "main"), "\n")
}

// everything returns the bytes of every object in the bare repository,
// whichever commit references it, plus every patch of the history.
func (r *remote) everything() string {
	var b strings.Builder
	if r.head() != "" {
		b.WriteString(r.g.Run(r.bare, "log", "-p", "--all"))
	}
	b.WriteString(r.g.Run(r.bare, "cat-file", "--batch-all-objects", "--batch", "--unordered"))
	return b.String()
}

// testLogger sends a storage's log to the test log, until the test ends.
func testLogger(t testing.TB, name string) *slog.Logger {
	w := &testWriter{t: t}
	t.Cleanup(func() { w.mu.Lock(); w.done = true; w.mu.Unlock() })
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug})).With("instance", name)
}

type testWriter struct {
	mu   sync.Mutex
	t    testing.TB
	done bool
}

func (w *testWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	if !w.done {
		w.t.Log(strings.TrimSpace(string(p)))
	}
	return len(p), nil
}

// openGit opens an instance on r with its own clone directory (or dir when
// given), closed when the test ends.
func openGit(t testing.TB, r *remote, name, dir string, lease time.Duration) *Git {
	t.Helper()
	g, err := tryOpenGit(t, r, name, dir, lease)
	if err != nil {
		t.Fatalf("OpenGit %s: %v", name, err)
	}
	return g
}

func tryOpenGit(t testing.TB, r *remote, name, dir string, lease time.Duration) (*Git, error) {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	rem, err := gitsource.ParseRemote(r.url)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	g, err := OpenGit(ctx, GitConfig{Remote: rem, Dir: dir, LockLease: lease, Logger: testLogger(t, name)})
	if err == nil {
		t.Cleanup(func() { g.Close() })
	}
	return g, err
}

// pemKey returns a fresh PEM-encoded EC private key, like CertMagic stores.
func pemKey(t testing.TB) []byte {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		t.Fatal(err)
	}
	return pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: der})
}

// testCtx is a context bounding one test step.
func testCtx(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	t.Cleanup(cancel)
	return ctx
}
