package gitsource

import (
	"os"
	"path/filepath"
	"sync"

	"github.com/go-git/go-git/v5/plumbing"
)

// maxTrackedTrees bounds how many built trees' blob sets a Source keeps
// while waiting for one to be served (fetches of a head that never builds
// into a site, alternating).
const maxTrackedTrees = 8

// blobRefs records which cached blobs the trees a Source built use, so
// that once a new tree is served the blobs no tree in use needs are
// deleted: without it the cache grows by every version of every large
// file the branch ever had. Deleting is safe even when the record is
// incomplete: a tree whose blob went missing materializes it again on open
// (blobStore.openFile), from the clone, which keeps every object.
type blobRefs struct {
	mu     sync.Mutex
	trees  map[string]map[plumbing.Hash]struct{} // revision -> its cached blobs
	served string                                // revision last served
}

// record notes the cached blobs of the tree of revision.
func (r *blobRefs) record(revision string, blobs map[plumbing.Hash]struct{}) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.trees == nil {
		r.trees = make(map[string]map[plumbing.Hash]struct{})
	}
	r.trees[revision] = blobs
	for rev := range r.trees {
		if len(r.trees) <= maxTrackedTrees {
			break
		}
		if rev != revision && rev != r.served {
			delete(r.trees, rev)
		}
	}
}

// servedNow notes that revision is now served and returns the blobs to keep:
// its own and those of the revision served before it, whose snapshot may
// still be answering requests. It returns nil, keep everything, when the
// tree of revision was not built by this process.
func (r *blobRefs) servedNow(revision string) map[plumbing.Hash]struct{} {
	r.mu.Lock()
	defer r.mu.Unlock()
	cur, ok := r.trees[revision]
	if !ok {
		return nil
	}
	prev := r.served
	keep := make(map[plumbing.Hash]struct{}, len(cur)+len(r.trees[prev]))
	for h := range cur {
		keep[h] = struct{}{}
	}
	for h := range r.trees[prev] {
		keep[h] = struct{}{}
	}
	for rev := range r.trees {
		if rev != revision && rev != prev {
			delete(r.trees, rev)
		}
	}
	r.served = revision
	return keep
}

// collectBlobs deletes the cached blobs of s's directory that keep does
// not hold. Errors are logged: a blob left behind only costs disk.
func (s *Source) collectBlobs(keep map[plumbing.Hash]struct{}) {
	if keep == nil {
		return
	}
	dirs, err := os.ReadDir(s.blobDir)
	if err != nil {
		s.log.Warn("gitsource: blob cache collection", "dir", s.blobDir, "err", err)
		return
	}
	removed := 0
	for _, d := range dirs {
		if !d.IsDir() || !isHex(d.Name(), 2) {
			continue
		}
		sub := filepath.Join(s.blobDir, d.Name())
		files, err := os.ReadDir(sub)
		if err != nil {
			continue
		}
		for _, f := range files {
			// Only finished blobs (named by their id): temporary files
			// may be a materialization in progress.
			name := f.Name()
			if !f.Type().IsRegular() || !isHex(name, 2*len(plumbing.ZeroHash)) {
				continue
			}
			if _, ok := keep[plumbing.NewHash(name)]; ok {
				continue
			}
			if err := os.Remove(filepath.Join(sub, name)); err == nil {
				removed++
			}
		}
	}
	if removed > 0 {
		s.log.Info("gitsource: blob cache collected", "removed", removed, "kept", len(keep))
	}
}

// removeLegacyBlobs deletes a blob cache in the layout before each
// Source had its own directory (blobs/xx/<id>, shared): nothing uses it
// any more, and a shared directory cannot be collected safely.
func removeLegacyBlobs(blobRoot string) {
	dirs, err := os.ReadDir(blobRoot)
	if err != nil {
		return
	}
	for _, d := range dirs {
		if d.IsDir() && isHex(d.Name(), 2) {
			os.RemoveAll(filepath.Join(blobRoot, d.Name()))
		}
	}
}

// isHex reports whether s is n lowercase hexadecimal digits.
func isHex(s string, n int) bool {
	if len(s) != n {
		return false
	}
	for i := 0; i < len(s); i++ {
		if c := s[i]; !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return true
}
