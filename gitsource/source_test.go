package gitsource

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pafhq/paf/site"
)

func TestParseRemote(t *testing.T) {
	cwd, _ := os.Getwd()
	tests := []struct {
		in      string
		want    Remote
		wantErr string
	}{
		{in: "file:///srv/site.git", want: Remote{URL: "file:///srv/site.git"}},
		{in: "file:///srv/site.git#pages", want: Remote{URL: "file:///srv/site.git", Branch: "pages"}},
		{in: "file://localhost/srv/x/../site.git", want: Remote{URL: "file:///srv/site.git"}},
		{in: "/srv/site.git#main", want: Remote{URL: "/srv/site.git", Branch: "main"}},
		{in: "site.git", want: Remote{URL: filepath.Join(cwd, "site.git")}},
		{in: "./a/b#refs/heads/gh-pages", want: Remote{URL: filepath.Join(cwd, "a/b"), Branch: "gh-pages"}},
		{in: "git://example.org/site.git", want: Remote{URL: "git://example.org/site.git"}},
		{in: "http://127.0.0.1:8080/site.git#b", want: Remote{URL: "http://127.0.0.1:8080/site.git", Branch: "b"}},
		{in: "https://example.org/u/site.git", want: Remote{URL: "https://example.org/u/site.git"}},
		{in: "ssh://git@example.org:2222/srv/site.git#main", want: Remote{URL: "ssh://git@example.org:2222/srv/site.git", Branch: "main"}},
		{in: "git@github.com:user/site.git#gh-pages", want: Remote{URL: "git@github.com:user/site.git", Branch: "gh-pages"}},
		{in: "example.org:site.git", want: Remote{URL: "example.org:site.git"}},
		{in: "", wantErr: "empty"},
		{in: "ftp://example.org/x.git", wantErr: `unsupported scheme "ftp"`},
		{in: "https:///x.git", wantErr: "no host"},
		{in: "https://example.org", wantErr: "no repository path"},
		{in: "https://example.org:99999999/x", wantErr: "port"},
		{in: "file://host/x.git", wantErr: "file URL with host"},
		{in: "file:///x.git#", wantErr: "empty branch"},
		{in: "file:///x.git#a..b", wantErr: "invalid branch name"},
		{in: "#main", wantErr: "no URL"},
		{in: "git@host:", wantErr: "no repository path"},
		{in: "@host:x", wantErr: "empty user"},
		{in: "ssh://u:pw@host/x", wantErr: "passwords are not supported"},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := ParseRemote(tt.in)
			if tt.wantErr != "" {
				wantErr(t, err, nil, tt.wantErr)
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.want {
				t.Errorf("got %+v, want %+v", got, tt.want)
			}
		})
	}
}

func TestRemoteRedacted(t *testing.T) {
	r, err := ParseRemote("https://user:secret@example.org/site.git#main")
	if err != nil {
		t.Fatal(err)
	}
	if s := r.String(); strings.Contains(s, "secret") || !strings.HasSuffix(s, "#main") {
		t.Errorf("String() = %q", s)
	}
}

func TestFetchFile(t *testing.T) {
	f := newFixture(t)
	for _, tt := range []struct {
		name string
		url  string
	}{
		{"file URL", "file://" + f.bare},
		{"plain path", f.bare},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r, err := ParseRemote(tt.url)
			if err != nil {
				t.Fatal(err)
			}
			s := newSource(t, r, Auth{})
			if _, err := s.Cached(context.Background()); !errors.Is(err, fs.ErrNotExist) {
				t.Fatalf("Cached before any Fetch: %v, want fs.ErrNotExist", err)
			}
			tree := fetch(t, s)
			checkTree(t, tree, f.work, f.head())
			if want := "git " + r.URL + "#main"; tree.Source != want {
				t.Errorf("Source = %q, want %q", tree.Source, want)
			}
			ct := f.g.Run(f.bare, "log", "-1", "--format=%ct", "main")
			if got := tree.Time.Unix(); ct != "" && got != mustAtoi(t, ct) {
				t.Errorf("Time = %d, want committer time %s", got, ct)
			}
			cached, err := s.Cached(context.Background())
			if err != nil {
				t.Fatalf("Cached: %v", err)
			}
			checkTree(t, cached, f.work, f.head())
		})
	}
}

func mustAtoi(t testing.TB, s string) int64 {
	t.Helper()
	var n int64
	for _, c := range s {
		if c < '0' || c > '9' {
			t.Fatalf("not a number: %q", s)
		}
		n = n*10 + int64(c-'0')
	}
	return n
}

func TestFetchUpdates(t *testing.T) {
	f := newFixture(t)
	s := newSource(t, Remote{URL: "file://" + f.bare}, Auth{})
	old := fetch(t, s)
	oldContent := readEntry(t, old, "index.html")

	// A new commit is picked up.
	f.write(map[string]string{"index.html": "<h1>v2</h1>\n", "new.txt": "new\n"})
	f.commit("v2")
	f.push(false)
	tree := fetch(t, s)
	checkTree(t, tree, f.work, f.head())

	// The old tree still reads its own content.
	if got := readEntry(t, old, "index.html"); got != oldContent {
		t.Errorf("old tree's index.html = %q, want %q", got, oldContent)
	}

	// A force-push (rewritten history) still updates.
	f.g.Run(f.work, "reset", "-q", "--hard", "HEAD~1")
	f.write(map[string]string{"index.html": "<h1>rewritten</h1>\n", "big.bin": strings.Repeat("z", 2*testLargeFile)})
	f.commit("rewritten")
	f.push(true)
	tree = fetch(t, s)
	checkTree(t, tree, f.work, f.head())

	// Nothing new: same revision again.
	again := fetch(t, s)
	if again.Revision != tree.Revision {
		t.Errorf("Revision changed without a push: %s → %s", tree.Revision, again.Revision)
	}
	cached, err := s.Cached(context.Background())
	if err != nil || cached.Revision != f.head() {
		t.Fatalf("Cached = %v, %v; want %s", cached, err, f.head())
	}
}

func readEntry(t testing.TB, tree *site.Tree, path string) string {
	t.Helper()
	for _, e := range tree.Entries {
		if e.Path == path {
			r, err := e.Open()
			if err != nil {
				t.Fatal(err)
			}
			defer r.Close()
			b, err := io.ReadAll(r)
			if err != nil {
				t.Fatal(err)
			}
			return string(b)
		}
	}
	t.Fatalf("no entry %q", path)
	return ""
}

func TestFetchBranch(t *testing.T) {
	f := newFixture(t)
	f.g.Run(f.work, "checkout", "-q", "-b", "pages")
	f.write(map[string]string{"pages.txt": "on pages\n"})
	f.commit("pages")
	f.g.Run(f.work, "push", "-q", f.bare, "pages")

	s := newSource(t, Remote{URL: f.bare, Branch: "pages"}, Auth{})
	tree := fetch(t, s)
	checkTree(t, tree, f.work, f.g.Run(f.bare, "rev-parse", "pages"))
	if !strings.HasSuffix(tree.Source, "#pages") {
		t.Errorf("Source = %q", tree.Source)
	}

	// Default branch: the remote's HEAD (main), not pages.
	s = newSource(t, Remote{URL: f.bare}, Auth{})
	if tree := fetch(t, s); tree.Revision != f.head() {
		t.Errorf("default branch fetched %s, want main's %s", tree.Revision, f.head())
	}
}

func TestFetchErrors(t *testing.T) {
	f := newFixture(t)
	tests := []struct {
		name   string
		remote Remote
		target error
		subs   []string
	}{
		{"missing repository", Remote{URL: filepath.Join(t.TempDir(), "nope.git")}, nil, []string{"repository not found", "nope.git"}},
		{"missing branch", Remote{URL: f.bare, Branch: "gh-pages"}, ErrBranchNotFound, []string{`"gh-pages"`, "main"}},
		{"refused connection", Remote{URL: "git://127.0.0.1:1/x.git"}, nil, []string{"127.0.0.1:1", "refused"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newSource(t, tt.remote, Auth{})
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			_, err := s.Fetch(ctx)
			wantErr(t, err, tt.target, tt.subs...)
			if _, err := s.Cached(ctx); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("Cached after failed Fetch: %v, want fs.ErrNotExist", err)
			}
		})
	}
}

func TestNewErrors(t *testing.T) {
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "notpem")
	os.WriteFile(notPEM, []byte("hello"), 0o600)
	tests := []struct {
		name string
		cfg  Config
		subs []string
	}{
		{"no remote", Config{DataDir: dir}, []string{"--remote"}},
		{"bad scheme", Config{Remote: Remote{URL: "ftp://x/y"}, DataDir: dir}, []string{"ftp"}},
		{"no data dir", Config{Remote: Remote{URL: "/x.git"}}, []string{"--data-dir"}},
		{"missing key", Config{Remote: Remote{URL: "/x.git"}, DataDir: dir, Auth: Auth{SSHKey: "/nonexistent/key"}}, []string{"--ssh-key /nonexistent/key"}},
		{"key not a key", Config{Remote: Remote{URL: "/x.git"}, DataDir: dir, Auth: Auth{SSHKey: notPEM}}, []string{"--ssh-key " + notPEM}},
		{"pass file without key", Config{Remote: Remote{URL: "/x.git"}, DataDir: dir, Auth: Auth{SSHKeyPassFile: notPEM}}, []string{"--ssh-key-pass-file", "without --ssh-key"}},
		{"bad CA", Config{Remote: Remote{URL: "/x.git"}, DataDir: dir, Auth: Auth{CAFile: notPEM}}, []string{"--git-ca " + notPEM, "no PEM certificate"}},
		{"missing CA", Config{Remote: Remote{URL: "/x.git"}, DataDir: dir, Auth: Auth{CAFile: "/nonexistent/ca"}}, []string{"--git-ca /nonexistent/ca"}},
		{"bad authenticator", Config{Remote: Remote{URL: "/x.git"}, DataDir: dir, Auth: Auth{SSHAuthenticator: "MD5:aa"}}, []string{"--ssh-authenticator", "SHA256:"}},
		{"short authenticator", Config{Remote: Remote{URL: "/x.git"}, DataDir: dir, Auth: Auth{SSHAuthenticator: "SHA256:AAAA"}}, []string{"--ssh-authenticator", "32"}},
		{"missing known_hosts", Config{Remote: Remote{URL: "/x.git"}, DataDir: dir, Auth: Auth{SSHKnownHosts: "/nonexistent/kh"}}, []string{"--ssh-known-hosts /nonexistent/kh"}},
		{"ssh without key", Config{Remote: Remote{URL: "ssh://git@127.0.0.1/x.git"}, DataDir: dir, Auth: Auth{SSHAuthenticator: "SHA256:" + strings.Repeat("A", 43)}}, []string{"--ssh-key", "required"}},
		{"bad branch", Config{Remote: Remote{URL: "/x.git", Branch: "a b"}, DataDir: dir}, []string{"invalid branch name"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(tt.cfg)
			wantErr(t, err, nil, tt.subs...)
		})
	}
}

// TestConcurrent runs Fetch, Cached and reads of earlier trees at once
// while the remote moves, for the race detector; every call must succeed.
func TestConcurrent(t *testing.T) {
	f := newFixture(t)
	s := newSource(t, Remote{URL: f.bare}, Auth{})
	first := fetch(t, s)
	var wg sync.WaitGroup
	errs := make(chan error, 64)
	for i := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 3 {
				var err error
				if i%2 == 0 {
					_, err = s.Fetch(context.Background())
				} else {
					_, err = s.Cached(context.Background())
				}
				if err != nil {
					errs <- err
				}
				for _, e := range first.Entries {
					if e.Open == nil {
						continue
					}
					r, err := e.Open()
					if err != nil {
						errs <- err
						continue
					}
					io.Copy(io.Discard, r)
					r.Close()
				}
			}
		}()
	}
	for i := range 3 {
		f.write(map[string]string{"index.html": fmt.Sprintf("v%d\n", i)})
		f.commit(fmt.Sprint(i))
		f.push(false)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	checkTree(t, fetch(t, s), f.work, f.head())
}
