package gitsource

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// siteDir makes a directory to publish: files, an executable, a symlink, a
// .git directory to be skipped and an empty directory.
func siteDir(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		p := filepath.Join(dir, name)
		os.MkdirAll(filepath.Dir(p), 0o755)
		writeFile(t, p, content)
	}
	return dir
}

func standardSite(t *testing.T, version string) string {
	dir := siteDir(t, map[string]string{
		"index.html":         "<h1>" + version + "</h1>\n",
		"a/b/c.css":          "c{}\n",
		"a-b.txt":            "sorts between a and a/ in git order\n",
		"run.sh":             "#!/bin/sh\n",
		".git/config":        "not a repository\n",
		".well-known/x.json": "{}\n",
	})
	os.Chmod(filepath.Join(dir, "run.sh"), 0o755)
	os.Symlink("index.html", filepath.Join(dir, "home.html"))
	os.MkdirAll(filepath.Join(dir, "empty/dir"), 0o755)
	return dir
}

// compareDirs checks that got (a git clone) holds exactly want's files,
// links and executable bits, .git and empty directories aside.
func compareDirs(t *testing.T, want, got string) {
	t.Helper()
	list := func(root string) map[string]fs.FileInfo {
		m := map[string]fs.FileInfo{}
		filepath.Walk(root, func(p string, fi fs.FileInfo, err error) error {
			if err != nil {
				t.Fatal(err)
			}
			if fi.IsDir() {
				if fi.Name() == ".git" {
					return filepath.SkipDir
				}
				return nil
			}
			rel, _ := filepath.Rel(root, p)
			m[rel] = fi
			return nil
		})
		return m
	}
	w, g := list(want), list(got)
	if len(w) != len(g) {
		t.Errorf("clone has %d files, want %d", len(g), len(w))
	}
	for name, wfi := range w {
		gfi, ok := g[name]
		if !ok {
			t.Errorf("clone lacks %s", name)
			continue
		}
		if wfi.Mode().Type() != gfi.Mode().Type() || (wfi.Mode().Perm()&0o100) != (gfi.Mode().Perm()&0o100) {
			t.Errorf("%s: mode %v in clone, want %v", name, gfi.Mode(), wfi.Mode())
		}
		if wfi.Mode()&fs.ModeSymlink != 0 {
			a, _ := os.Readlink(filepath.Join(want, name))
			b, _ := os.Readlink(filepath.Join(got, name))
			if a != b {
				t.Errorf("%s: link to %q in clone, want %q", name, b, a)
			}
			continue
		}
		a, _ := os.ReadFile(filepath.Join(want, name))
		b, _ := os.ReadFile(filepath.Join(got, name))
		if !bytes.Equal(a, b) {
			t.Errorf("%s: clone has %q, want %q", name, b, a)
		}
	}
}

func TestPublish(t *testing.T) {
	g := newGit(t)
	for _, transport := range []string{"file", "http"} {
		t.Run(transport, func(t *testing.T) {
			f := &fixture{g: g, base: t.TempDir()}
			f.bare = filepath.Join(f.base, "remote.git")
			g.Run(f.base, "init", "-q", "--bare", "-b", "main", f.bare)
			url := "file://" + f.bare
			if transport == "http" {
				url = startHTTPBackend(t, f, false).URL + "/remote.git"
			}
			ctx := context.Background()
			publish := func(dir string, opts PublishOptions) (string, error) {
				opts.Remote.URL = url
				return Publish(ctx, dir, opts)
			}

			// Empty remote: the branch is created.
			v1 := standardSite(t, "v1")
			c1, err := publish(v1, PublishOptions{Message: "first"})
			if err != nil {
				t.Fatalf("first Publish: %v", err)
			}
			if got := g.Run(f.bare, "rev-parse", "main"); got != c1 {
				t.Fatalf("main = %s, want %s", got, c1)
			}
			if got := g.Run(f.bare, "log", "-1", "--format=%an <%ae>|%s", "main"); got != "paf <paf@localhost>|first" {
				t.Errorf("commit author|subject = %q", got)
			}
			if mode := g.Run(f.bare, "ls-tree", "main", "run.sh"); !strings.HasPrefix(mode, "100755 ") {
				t.Errorf("run.sh tree entry %q, want mode 100755", mode)
			}
			g.Run(f.bare, "fsck", "--strict")
			clone := filepath.Join(t.TempDir(), "clone")
			g.Run(f.base, "clone", "-q", "-b", "main", url, clone)
			compareDirs(t, v1, clone)

			// Second publish: a child commit.
			v2 := standardSite(t, "v2")
			c2, err := publish(v2, PublishOptions{Author: "Ada <ada@example.org>"})
			if err != nil {
				t.Fatalf("second Publish: %v", err)
			}
			if got := g.Run(f.bare, "rev-parse", "main^"); got != c1 {
				t.Errorf("parent of %s = %s, want %s", c2, got, c1)
			}
			if got := g.Run(f.bare, "log", "-1", "--format=%an <%ae>", "main"); got != "Ada <ada@example.org>" {
				t.Errorf("author = %q", got)
			}
			g.Run(clone, "pull", "-q")
			compareDirs(t, v2, clone)

			// Same content: nothing new.
			c3, err := publish(standardSite(t, "v2"), PublishOptions{})
			if !errors.Is(err, ErrNothingToPublish) || c3 != c2 {
				t.Errorf("identical Publish = %s, %v; want %s, ErrNothingToPublish", c3, err, c2)
			}
			if got := g.Run(f.bare, "rev-parse", "main"); got != c2 {
				t.Errorf("main moved to %s", got)
			}

			// The published branch serves as a source.
			s := newSource(t, Remote{URL: url}, Auth{})
			checkTree(t, fetch(t, s), v2, c2)

			// Empty directory: refused, unless allowed.
			empty := t.TempDir()
			os.MkdirAll(filepath.Join(empty, "sub"), 0o755)
			_, err = publish(empty, PublishOptions{})
			wantErr(t, err, nil, empty, "no files", "--allow-empty")
			ce, err := Publish(ctx, empty, PublishOptions{Remote: Remote{URL: url, Branch: "blank"}, AllowEmpty: true})
			if err != nil {
				t.Fatalf("Publish with AllowEmpty: %v", err)
			}
			if got := g.Run(f.bare, "ls-tree", "-r", ce); got != "" {
				t.Errorf("empty publish has tree %q", got)
			}
			if got := g.Run(f.bare, "rev-parse", "main"); got != c2 {
				t.Errorf("publishing to blank moved main to %s", got)
			}
		})
	}
}

func TestPublishErrors(t *testing.T) {
	f := newFixture(t)
	dir := siteDir(t, map[string]string{"index.html": "x"})
	tests := []struct {
		name   string
		dir    string
		opts   PublishOptions
		target error
		subs   []string
	}{
		{"missing dir", "/nonexistent/site", PublishOptions{Remote: Remote{URL: f.bare}}, nil, []string{"/nonexistent/site"}},
		{"missing remote", dir, PublishOptions{Remote: Remote{URL: filepath.Join(t.TempDir(), "nope.git")}}, nil, []string{"nope.git", "repository not found"}},
		{"bad author", dir, PublishOptions{Remote: Remote{URL: f.bare}, Author: "nobody"}, nil, []string{"author", "Name <email>"}},
		{"bad remote", dir, PublishOptions{Remote: Remote{URL: "ftp://x/y"}}, nil, []string{"ftp"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Publish(context.Background(), tt.dir, tt.opts)
			wantErr(t, err, tt.target, tt.subs...)
		})
	}
}

// TestPublishOntoExisting publishes onto a branch with history made by
// git: the new commit's parent is the branch head.
func TestPublishOntoExisting(t *testing.T) {
	f := newFixture(t)
	old := f.head()
	dir := standardSite(t, "over")
	c, err := Publish(context.Background(), dir, PublishOptions{Remote: Remote{URL: f.bare}})
	if err != nil {
		t.Fatal(err)
	}
	if got := f.g.Run(f.bare, "rev-parse", c+"^"); got != old {
		t.Errorf("parent = %s, want %s", got, old)
	}
}
