package gitsource

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"net/http/cgi"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/format/packfile"
	"github.com/go-git/go-git/v5/plumbing/transport"
	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"
	"github.com/go-git/go-git/v5/storage/filesystem/dotgit"

	"github.com/pafhq/paf/internal/testpeer"
	"github.com/pafhq/paf/site"
)

// TestServedSurvivesRestart: a fetched commit that the caller never
// confirmed with Served (its site failed to build) is not what a restart
// with the remote down serves; the last confirmed one is. Without any
// confirmation, Cached falls back to the last fetched commit.
func TestServedSurvivesRestart(t *testing.T) {
	ctx := context.Background()
	for _, tt := range []struct {
		name       string
		confirmNew bool // Served is called for the second commit too
		confirmOld bool // Served is called for the first commit
		want       int  // index of the commit Cached returns after restart
	}{
		{"new commit failed to build", false, true, 0},
		{"new commit served", true, true, 1},
		{"Served never called", false, false, 1},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := newFixture(t)
			dataDir := t.TempDir()
			open := func() *Source {
				s, err := New(Config{Remote: Remote{URL: f.bare}, DataDir: dataDir, LargeFile: testLargeFile,
					Logger: slog.New(slog.NewTextHandler(testWriter{t}, nil))})
				if err != nil {
					t.Fatal(err)
				}
				return s
			}
			s := open()
			commits := []string{fetch(t, s).Revision}
			if tt.confirmOld {
				if err := s.Served(ctx, commits[0]); err != nil {
					t.Fatalf("Served: %v", err)
				}
			}
			f.write(map[string]string{"index.html": "<h1>broken</h1>\n"})
			f.commit("second")
			f.push(false)
			commits = append(commits, fetch(t, s).Revision)
			if commits[1] == commits[0] {
				t.Fatal("second fetch returned the first commit")
			}
			if tt.confirmNew {
				if err := s.Served(ctx, commits[1]); err != nil {
					t.Fatalf("Served: %v", err)
				}
			}
			// Restart with the remote gone.
			if err := os.RemoveAll(f.base); err != nil {
				t.Fatal(err)
			}
			s = open()
			if _, err := s.Fetch(ctx); err == nil {
				t.Fatal("Fetch with the remote gone: no error")
			}
			tree, err := s.Cached(ctx)
			if err != nil {
				t.Fatalf("Cached: %v", err)
			}
			if tree.Revision != commits[tt.want] {
				t.Errorf("Cached after restart = %s, want %s (commits %v)", tree.Revision, commits[tt.want], commits)
			}
			// Confirming what Cached returned is accepted; a commit never
			// fetched is refused.
			if err := s.Served(ctx, tree.Revision); err != nil {
				t.Errorf("Served(the cached revision): %v", err)
			}
			for _, bad := range []string{"", "not-a-hash", plumbing.ZeroHash.String(), "0123456789012345678901234567890123456789"} {
				if err := s.Served(ctx, bad); err == nil {
					t.Errorf("Served(%q): no error", bad)
				}
			}
			if again, err := s.Cached(ctx); err != nil || again.Revision != tree.Revision {
				t.Errorf("Cached after refused Served calls = %v, %v; want %s", again, err, tree.Revision)
			}
		})
	}
}

// TestIsLocalError: only failures known to come from the clone on disk
// answer a failed fetch with a re-clone; a failing remote (HTTP status,
// SSH, unknown errors) does not.
func TestIsLocalError(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "git", "abc")
	u, _ := url.Parse("https://forge.example/site.git/info/refs")
	status := func(code int) error {
		return &githttp.Err{Response: &http.Response{StatusCode: code, Request: &http.Request{URL: u}}}
	}
	canceled, cancel := context.WithCancel(context.Background())
	cancel()
	for _, tt := range []struct {
		name  string
		ctx   context.Context
		err   error
		local bool
	}{
		{"object missing", nil, fmt.Errorf("fetch: %w", plumbing.ErrObjectNotFound), true},
		{"local ref missing", nil, plumbing.ErrReferenceNotFound, true},
		{"packfile damaged", nil, packfile.ErrZLib.AddDetails("x"), true},
		{"pack missing", nil, dotgit.ErrPackfileNotFound, true},
		{"file in clone", nil, &fs.PathError{Op: "open", Path: filepath.Join(dir, "objects/pack/p.idx"), Err: fs.ErrPermission}, true},
		{"file elsewhere", nil, &fs.PathError{Op: "open", Path: "/etc/ssl/ca.pem", Err: fs.ErrNotExist}, false},
		{"sibling dir", nil, &fs.PathError{Op: "open", Path: dir + "x/config", Err: fs.ErrNotExist}, false},
		{"HTTP 502", nil, fmt.Errorf("gitsource: fetch: %w", status(http.StatusBadGateway)), false},
		{"HTTP 503", nil, status(http.StatusServiceUnavailable), false},
		{"SSH handshake", nil, errors.New("ssh: handshake failed: EOF"), false},
		{"unexpected", nil, plumbing.NewUnexpectedError(errors.New("remote hung up")), false},
		{"auth", nil, transport.ErrAuthenticationRequired, false},
		{"host key", nil, ErrHostKeyMismatch, false},
		{"canceled", canceled, plumbing.ErrObjectNotFound, false},
	} {
		ctx := tt.ctx
		if ctx == nil {
			ctx = context.Background()
		}
		if got := isLocalError(ctx, tt.err, dir); got != tt.local {
			t.Errorf("%s: isLocalError(%v) = %v, want %v", tt.name, tt.err, got, tt.local)
		}
	}
}

// TestRemote502NoReclone: a forge that lists references but answers the
// pack request with 502 fails the fetch once; the clone is not thrown
// away and cloned again from the failing remote, and Cached still serves.
func TestRemote502NoReclone(t *testing.T) {
	f := newFixture(t)
	f.g.Run(f.bare, "config", "http.receivepack", "true")
	next := &cgi.Handler{
		Path:       testpeer.Need(t, "git-http-backend"),
		Root:       "/",
		Env:        []string{"GIT_PROJECT_ROOT=" + f.base, "GIT_HTTP_EXPORT_ALL=1", "GIT_CONFIG_NOSYSTEM=1", "HOME=" + f.g.Home},
		InheritEnv: []string{"PATH"},
	}
	var failing atomic.Bool
	var packRequests atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/git-upload-pack") && failing.Load() {
			packRequests.Add(1)
			http.Error(w, "bad gateway", http.StatusBadGateway)
			return
		}
		next.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	s := newSource(t, Remote{URL: srv.URL + "/remote.git"}, Auth{})
	served := fetch(t, s).Revision
	f.write(map[string]string{"index.html": "<h1>v2</h1>\n"})
	f.commit("v2")
	f.push(false)
	failing.Store(true)
	_, err := s.Fetch(context.Background())
	wantErr(t, err, nil, "502")
	if n := packRequests.Load(); n != 1 {
		t.Errorf("%d pack requests to the failing remote, want 1 (no re-clone)", n)
	}
	tree, err := s.Cached(context.Background())
	if err != nil || tree.Revision != served {
		t.Errorf("Cached after a 502 = %v, %v; want %s", tree, err, served)
	}
	failing.Store(false)
	checkTree(t, fetch(t, s), f.work, f.head())
}

var _ site.ServedRecorder = (*Source)(nil)
