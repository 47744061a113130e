package storage

import (
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"
	"github.com/go-git/go-git/v5/plumbing/storer"
)

// snapshot is the content of one commit of the branch, held in memory:
// CertMagic's values are small, and reads then never wait for the network
// or for the repository lock. Snapshots are immutable once built.
type snapshot struct {
	head  plumbing.Hash // zero when the branch does not exist yet
	when  time.Time     // head's committer time
	files map[string]blob
	dirs  map[string]bool // every proper prefix of a file key
}

// blob is one file of a snapshot.
type blob struct {
	hash plumbing.Hash
	data []byte
	err  error // set instead of data for a file that cannot be served
}

func emptySnapshot() *snapshot {
	return &snapshot{files: map[string]blob{}, dirs: map[string]bool{}}
}

// newSnapshot indexes files (which it takes over) as the content of head.
func newSnapshot(head plumbing.Hash, when time.Time, files map[string]blob) *snapshot {
	s := &snapshot{head: head, when: when, files: files, dirs: map[string]bool{}}
	for k := range files {
		for i := strings.LastIndexByte(k, '/'); i > 0; i = strings.LastIndexByte(k[:i], '/') {
			if s.dirs[k[:i]] {
				break
			}
			s.dirs[k[:i]] = true
		}
	}
	return s
}

// readSnapshot reads the tree of commit head, reusing the content of prev
// for blobs it already holds.
func readSnapshot(st storer.EncodedObjectStorer, head plumbing.Hash, prev *snapshot) (*snapshot, error) {
	c, err := object.GetCommit(st, head)
	if err != nil {
		return nil, fmt.Errorf("commit %s: %w", head, err)
	}
	tree, err := c.Tree()
	if err != nil {
		return nil, fmt.Errorf("tree of %s: %w", head, err)
	}
	known := map[plumbing.Hash][]byte{}
	if prev != nil {
		for _, b := range prev.files {
			if b.err == nil {
				known[b.hash] = b.data
			}
		}
	}
	files := map[string]blob{}
	walker := object.NewTreeWalker(tree, true, nil)
	defer walker.Close()
	for {
		name, e, err := walker.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("tree of %s: %w", head, err)
		}
		if !e.Mode.IsFile() {
			continue
		}
		if data, ok := known[e.Hash]; ok {
			files[name] = blob{hash: e.Hash, data: data}
			continue
		}
		files[name] = readBlob(st, name, e.Hash, e.Mode)
	}
	return newSnapshot(head, c.Committer.When, files), nil
}

// readBlob reads one file; a file paf cannot serve gets an error naming
// it rather than failing the whole snapshot.
func readBlob(st storer.EncodedObjectStorer, name string, h plumbing.Hash, mode filemode.FileMode) blob {
	b := blob{hash: h}
	if mode == filemode.Symlink {
		b.err = fmt.Errorf("%w: %s is a symbolic link in the repository", ErrCorrupt, name)
		return b
	}
	obj, err := object.GetBlob(st, h)
	if err != nil {
		b.err = fmt.Errorf("%s: blob %s: %w", name, h, err)
		return b
	}
	if obj.Size > maxValue {
		b.err = fmt.Errorf("%w: %s is %d bytes (limit %d)", ErrCorrupt, name, obj.Size, maxValue)
		return b
	}
	r, err := obj.Reader()
	if err == nil {
		b.data, err = io.ReadAll(r)
		r.Close()
	}
	if err != nil {
		b.err = fmt.Errorf("%s: blob %s: %w", name, h, err)
		b.data = nil
	}
	return b
}

// exists reports whether key is a file or a directory.
func (s *snapshot) exists(key string) bool {
	_, ok := s.files[key]
	return ok || s.dirs[key]
}

// list returns the keys under prefix ("" is the root): its children, or
// with recursive every file and directory below it, sorted.
func (s *snapshot) list(prefix string, recursive bool) []string {
	p := ""
	if prefix != "" {
		p = prefix + "/"
	}
	seen := map[string]bool{}
	add := func(k string) {
		if !strings.HasPrefix(k, p) || k == prefix {
			return
		}
		rest := k[len(p):]
		if !recursive {
			if i := strings.IndexByte(rest, '/'); i >= 0 {
				rest = rest[:i]
			}
		}
		seen[p+rest] = true
	}
	for k := range s.files {
		add(k)
	}
	if recursive {
		for k := range s.dirs {
			add(k)
		}
	}
	keys := make([]string, 0, len(seen))
	for k := range seen {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
