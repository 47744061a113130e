package gitsource

import (
	"context"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestFileTransportWithoutGit fetches and publishes over file:// with PATH
// emptied: the in-process transport installed in init must not exec
// git-upload-pack or git-receive-pack. (t.Setenv forbids t.Parallel.)
func TestFileTransportWithoutGit(t *testing.T) {
	f := newFixture(t)
	site := standardSite(t, "no git")
	t.Setenv("PATH", "")
	if p, err := exec.LookPath("git-upload-pack"); err == nil {
		t.Fatalf("git-upload-pack still found at %s", p)
	}
	for _, url := range []string{"file://" + f.bare, f.bare} {
		s := newSource(t, Remote{URL: url}, Auth{})
		checkTree(t, fetch(t, s), f.work, f.head())
	}
	c, err := Publish(context.Background(), site, PublishOptions{Remote: Remote{URL: "file://" + f.bare, Branch: "pub"}})
	if err != nil {
		t.Fatalf("Publish without git: %v", err)
	}
	s := newSource(t, Remote{URL: filepath.Clean(f.bare), Branch: "pub"}, Auth{})
	checkTree(t, fetch(t, s), site, c)
}
