package gitsource

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestRecovery damages the local clone the ways kill -9 or a full disk can
// and checks that Cached fails softly and the next Fetch recovers.
func TestRecovery(t *testing.T) {
	f := newFixture(t)
	tests := []struct {
		name   string
		damage func(t *testing.T, s *Source)
	}{
		{"truncated ref", func(t *testing.T, s *Source) {
			truncate(t, filepath.Join(s.repoDir, "refs/remotes/origin/main"))
		}},
		{"missing objects", func(t *testing.T, s *Source) {
			for _, dir := range []string{"objects/pack", "objects"} {
				ms, _ := filepath.Glob(filepath.Join(s.repoDir, dir, "*"))
				for _, m := range ms {
					if filepath.Base(m) != "pack" && filepath.Base(m) != "info" {
						os.RemoveAll(m)
					}
				}
			}
		}},
		{"truncated pack", func(t *testing.T, s *Source) {
			ms, _ := filepath.Glob(filepath.Join(s.repoDir, "objects/pack/*.pack"))
			if len(ms) == 0 {
				t.Fatal("no pack file")
			}
			for _, m := range ms {
				truncate(t, m)
			}
		}},
		{"missing config", func(t *testing.T, s *Source) {
			os.Remove(filepath.Join(s.repoDir, "config"))
		}},
		{"missing clone", func(t *testing.T, s *Source) {
			os.RemoveAll(s.repoDir)
		}},
		{"leftover temp clone", func(t *testing.T, s *Source) {
			os.MkdirAll(s.repoDir+".tmp-123/objects", 0o700)
			truncate(t, filepath.Join(s.repoDir, "HEAD"))
		}},
		{"damaged state", func(t *testing.T, s *Source) {
			os.WriteFile(s.stateFile, []byte("{garbage"), 0o600)
		}},
		{"missing blob cache", func(t *testing.T, s *Source) {
			os.RemoveAll(s.blobDir)
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newSource(t, Remote{URL: f.bare}, Auth{})
			fetch(t, s)
			tt.damage(t, s)
			// Cached may or may not still work, but must fail softly.
			if tree, err := s.Cached(context.Background()); err != nil && !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("Cached on a damaged clone: %v, want fs.ErrNotExist", err)
			} else if err == nil {
				checkTree(t, tree, f.work, f.head())
			}
			checkTree(t, fetch(t, s), f.work, f.head())
			tree, err := s.Cached(context.Background())
			if err != nil {
				t.Fatalf("Cached after recovery: %v", err)
			}
			checkTree(t, tree, f.work, f.head())
			if ms, _ := filepath.Glob(s.repoDir + ".tmp-*"); len(ms) != 0 {
				t.Errorf("temporary clones left: %v", ms)
			}
		})
	}
}

func truncate(t *testing.T, path string) {
	t.Helper()
	if err := os.Truncate(path, 0); err != nil {
		t.Fatal(err)
	}
}

// TestFailedFetchKeepsCached checks that a fetch failing (the remote's
// branch gone) leaves Cached on the last served commit.
func TestFailedFetchKeepsCached(t *testing.T) {
	f := newFixture(t)
	s := newSource(t, Remote{URL: f.bare, Branch: "main"}, Auth{})
	served := fetch(t, s).Revision
	f.g.Run(f.bare, "branch", "-q", "-m", "main", "other")
	_, err := s.Fetch(context.Background())
	wantErr(t, err, ErrBranchNotFound, "main")
	os.RemoveAll(f.bare)
	_, err = s.Fetch(context.Background())
	wantErr(t, err, nil, "repository not found")
	tree, err := s.Cached(context.Background())
	if err != nil {
		t.Fatalf("Cached: %v", err)
	}
	if tree.Revision != served {
		t.Errorf("Cached = %s, want last served %s", tree.Revision, served)
	}
}

// TestKill9 kills, with SIGKILL, a process that keeps recloning and
// fetching into a data dir, then checks that the data dir is usable: Cached
// fails softly or serves the pushed commit, and Fetch succeeds.
func TestKill9(t *testing.T) {
	if dir := os.Getenv("GITSOURCE_KILL9_DATADIR"); dir != "" {
		kill9Helper(dir, os.Getenv("GITSOURCE_KILL9_REMOTE"))
		return
	}
	f := newFixture(t)
	dataDir := t.TempDir()
	cmd := exec.Command(os.Args[0], "-test.run=^TestKill9$")
	cmd.Env = append(os.Environ(), "GITSOURCE_KILL9_DATADIR="+dataDir, "GITSOURCE_KILL9_REMOTE="+f.bare)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	// Kill once it has fetched twice: the third fetch (a fresh clone) is
	// then under way.
	sc := bufio.NewScanner(out)
	for n := 0; n < 2 && sc.Scan(); {
		if sc.Text() == "fetched" {
			n++
		}
	}
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	cmd.Wait()

	s, err := New(Config{Remote: Remote{URL: f.bare}, DataDir: dataDir, LargeFile: testLargeFile})
	if err != nil {
		t.Fatal(err)
	}
	if tree, err := s.Cached(context.Background()); err != nil && !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Cached after kill -9: %v, want success or fs.ErrNotExist", err)
	} else if err == nil {
		checkTree(t, tree, f.work, f.head())
	}
	checkTree(t, fetch(t, s), f.work, f.head())
	if ms, _ := filepath.Glob(s.repoDir + ".tmp-*"); len(ms) != 0 {
		t.Errorf("temporary clones left: %v", ms)
	}
}

// kill9Helper is the process TestKill9 kills: it clones afresh and fetches
// in a loop (bounded, should the parent fail to kill it).
func kill9Helper(dataDir, remote string) {
	s, err := New(Config{Remote: Remote{URL: remote}, DataDir: dataDir, LargeFile: testLargeFile,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	for range 1000 {
		os.RemoveAll(s.blobDir)
		os.RemoveAll(s.repoDir)
		if _, err := s.Fetch(context.Background()); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		fmt.Println("fetched")
	}
	os.Exit(0)
}
