package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestPublishThenServe publishes a directory with `paf publish`, checks what
// landed in the repository with git, and serves it with `paf serve`.
func TestPublishThenServe(t *testing.T) {
	repo := newGitRepo(t)
	out := t.TempDir()
	os.WriteFile(filepath.Join(out, "index.html"), []byte("<p>published</p>"), 0o644)
	os.MkdirAll(filepath.Join(out, "posts"), 0o755)
	os.WriteFile(filepath.Join(out, "posts", "index.html"), []byte("<p>posts</p>"), 0o644)
	remote := "file://" + repo.bare + "#pages"

	code, stdout, stderr := runPaf(t, nil, "publish", out, "--remote", remote, "--message", "first")
	if code != 0 {
		t.Fatalf("publish: exit %d: %s", code, stderr)
	}
	head := repo.git(repo.bare, "rev-parse", "pages")
	if !strings.Contains(stdout, head) {
		t.Errorf("publish printed %q, want the commit %s", stdout, head)
	}
	if msg := repo.git(repo.bare, "log", "-1", "--format=%s", "pages"); msg != "first" {
		t.Errorf("commit message %q, want \"first\"", msg)
	}
	if files := repo.git(repo.bare, "ls-tree", "-r", "--name-only", "pages"); files != "index.html\nposts/index.html" {
		t.Errorf("published tree:\n%s", files)
	}

	// A second publish replaces the tree and keeps history.
	os.Remove(filepath.Join(out, "posts", "index.html"))
	os.WriteFile(filepath.Join(out, "index.html"), []byte("<p>second</p>"), 0o644)
	if code, _, stderr := runPaf(t, nil, "publish", out, "--remote", remote); code != 0 {
		t.Fatalf("second publish: exit %d: %s", code, stderr)
	}
	if n := repo.git(repo.bare, "rev-list", "--count", "pages"); n != "2" {
		t.Errorf("%s commits on pages, want 2", n)
	}
	if files := repo.git(repo.bare, "ls-tree", "-r", "--name-only", "pages"); files != "index.html" {
		t.Errorf("second tree:\n%s", files)
	}

	// Empty directories are refused unless asked for.
	empty := t.TempDir()
	code, _, stderr = runPaf(t, nil, "publish", empty, "--remote", remote)
	if code == 0 || !strings.Contains(stderr, "--allow-empty") {
		t.Errorf("empty publish: exit %d, stderr %q; want a refusal naming --allow-empty", code, stderr)
	}
	if n := repo.git(repo.bare, "rev-list", "--count", "pages"); n != "2" {
		t.Errorf("a refused publish changed the branch: %s commits", n)
	}

	p := startPaf(t, nil, "--remote", remote, "--data-dir", t.TempDir(), "--poll", "0",
		"--http", "127.0.0.1:0", "--https", "off")
	_, body := httpGet(t, client(t, ""), "http://"+p.addr("http")+"/")
	if body != "<p>second</p>" {
		t.Fatalf("served %q", body)
	}
}

func TestPublishErrors(t *testing.T) {
	tests := []struct {
		name string
		args []string
		code int
		want string
	}{
		{"no dir", []string{"publish", "--remote", "file:///x"}, 2, "DIR"},
		{"no remote", []string{"publish", t.TempDir()}, 2, "--remote"},
		{"missing dir", []string{"publish", "/nonexistent/paf", "--remote", "file:///x"}, 1, "/nonexistent/paf"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, stderr := runPaf(t, nil, tt.args...)
			if code != tt.code || !strings.Contains(stderr, tt.want) {
				t.Fatalf("exit %d stderr %q; want exit %d naming %q", code, stderr, tt.code, tt.want)
			}
			oneLine(t, stderr)
		})
	}
}
