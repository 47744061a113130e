package gitsource

import (
	"context"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// cachedBlobs lists the blob ids in s's blob cache.
func cachedBlobs(t *testing.T, s *Source) []string {
	t.Helper()
	var ids []string
	err := filepath.WalkDir(s.blobDir, func(p string, d os.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			ids = append(ids, d.Name())
		}
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(ids)
	return ids
}

// blobID returns the blob id of path in commit, as git has it.
func (f *fixture) blobID(commit, path string) string {
	return f.g.Run(f.work, "rev-parse", commit+":"+path)
}

// TestBlobCacheCollected checks that serving a new version deletes the
// cached large blobs neither it nor the version served before it uses,
// that those of the previous version stay (its snapshot may still be
// answering), and that a blob deleted under a tree is materialized again
// when the tree opens it.
func TestBlobCacheCollected(t *testing.T) {
	f := newFixture(t)
	s := newSource(t, Remote{URL: f.bare}, Auth{})
	ctx := context.Background()
	big := func(seed string) string { return strings.Repeat(seed, 2*testLargeFile/len(seed)+1) }

	serve := func() (string, func(string) []byte) {
		t.Helper()
		tree := fetch(t, s)
		if err := s.Served(ctx, tree.Revision); err != nil {
			t.Fatal(err)
		}
		open := func(path string) []byte {
			for _, e := range tree.Entries {
				if e.Path == path {
					r, err := e.Open()
					if err != nil {
						t.Fatalf("open %s of %s: %v", path, tree.Revision, err)
					}
					defer r.Close()
					b, _ := io.ReadAll(r)
					return b
				}
			}
			t.Fatalf("%s not in %s", path, tree.Revision)
			return nil
		}
		return tree.Revision, open
	}
	v1, _ := serve()
	bigV1 := f.blobID(v1, "big.bin")

	f.write(map[string]string{"big.bin": big("second version "), "other.bin": big("other ")})
	f.commit("v2")
	f.push(false)
	v2, openV2 := serve()
	bigV2, other := f.blobID(v2, "big.bin"), f.blobID(v2, "other.bin")
	if got, want := cachedBlobs(t, s), sorted(bigV1, bigV2, other); !slices.Equal(got, want) {
		t.Fatalf("after v2: cached %v, want v1's and v2's %v", got, want)
	}

	os.Remove(filepath.Join(f.work, "other.bin"))
	f.write(map[string]string{"big.bin": big("third version ")})
	f.commit("v3")
	f.push(false)
	v3, _ := serve()
	bigV3 := f.blobID(v3, "big.bin")
	if got, want := cachedBlobs(t, s), sorted(bigV2, other, bigV3); !slices.Equal(got, want) {
		t.Fatalf("after v3: cached %v, want v2's and v3's %v (v1's gone)", got, want)
	}

	f.commit("v4: no large file changes")
	f.push(false)
	serve()
	if got, want := cachedBlobs(t, s), sorted(bigV3); !slices.Equal(got, want) {
		t.Fatalf("after v4: cached %v, want %v", got, want)
	}
	// v2's tree still opens its collected blobs: from the clone.
	if b := openV2("other.bin"); string(b) != big("other ") {
		t.Fatalf("v2 other.bin after collection: %d bytes, not its content", len(b))
	}
}

func sorted(ids ...string) []string {
	slices.Sort(ids)
	return slices.Compact(ids)
}

// TestLegacyBlobCacheRemoved checks the shared blob cache of earlier
// versions (blobs/xx/<id>) is removed, and other Sources' caches are not.
func TestLegacyBlobCacheRemoved(t *testing.T) {
	data := t.TempDir()
	legacy := filepath.Join(data, "blobs", "ab", strings.Repeat("ab", 20))
	mine := filepath.Join(data, "blobs", strings.Repeat("cd", 32), "ef", strings.Repeat("ef", 20))
	for _, p := range []string{legacy, mine} {
		os.MkdirAll(filepath.Dir(p), 0o700)
		os.WriteFile(p, []byte("x"), 0o600)
	}
	if _, err := New(Config{Remote: Remote{URL: "https://example.org/site.git"}, DataDir: data}); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(legacy); !os.IsNotExist(err) {
		t.Errorf("legacy blob cache entry still there: %v", err)
	}
	if _, err := os.Stat(mine); err != nil {
		t.Errorf("another Source's blob cache was touched: %v", err)
	}
}
