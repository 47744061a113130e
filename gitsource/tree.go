package gitsource

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"sync"

	git "github.com/go-git/go-git/v5"
	"github.com/go-git/go-git/v5/plumbing"
	"github.com/go-git/go-git/v5/plumbing/filemode"
	"github.com/go-git/go-git/v5/plumbing/object"

	"github.com/pafhq/paf/site"

	"github.com/pafhq/paf/internal/atomicfile"
)

// maxSymlinkTarget bounds a symbolic link's target; longer ones are skipped.
const maxSymlinkTarget = 4096

// blobStore reads the blobs of one tree. go-git's storage is not documented
// as safe for concurrent use, so reads go through a mutex; each tree has its
// own repository handle, so a fetch in progress does not block serving.
type blobStore struct {
	mu   sync.Mutex
	repo *git.Repository
	dir  string // the large-blob cache
}

// buildTree returns the site.Tree of commit hash. Large blobs are
// materialized into the blob cache before it returns, so that the tree is
// complete and its entries open without the network.
func (s *Source) buildTree(ctx context.Context, repo *git.Repository, hash plumbing.Hash, branch string) (*site.Tree, error) {
	c, err := repo.CommitObject(hash)
	if err != nil {
		return nil, fmt.Errorf("commit %s: %w", hash, err)
	}
	root, err := c.Tree()
	if err != nil {
		return nil, fmt.Errorf("tree of commit %s: %w", hash, err)
	}
	bs := &blobStore{repo: repo, dir: s.blobDir}
	t := &site.Tree{
		Source:   "git " + s.remote.Redacted() + "#" + branch,
		Revision: hash.String(),
		Time:     c.Committer.When,
	}
	w := object.NewTreeWalker(root, true, nil)
	defer w.Close()
	cached := make(map[plumbing.Hash]struct{})
	for {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		name, e, err := w.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			return nil, fmt.Errorf("walk tree of %s: %w", hash, err)
		}
		var kind site.Kind
		switch e.Mode {
		case filemode.Regular, filemode.Executable, filemode.Deprecated:
			kind = site.File
		case filemode.Symlink:
			kind = site.Symlink
		default: // directories are walked into; submodules are not part of the site
			continue
		}
		if !validPath(name) {
			s.log.Warn("gitsource: skipping entry with unsafe path", "path", name, "commit", hash.String())
			continue
		}
		size, err := bs.size(e.Hash)
		if err != nil {
			return nil, fmt.Errorf("%s: blob %s: %w", name, e.Hash, err)
		}
		ent := site.Entry{Path: name, Kind: kind, Hash: e.Hash.String()}
		if kind == site.Symlink {
			if size > maxSymlinkTarget || size == 0 {
				s.log.Warn("gitsource: skipping symlink with bad target length", "path", name, "size", size)
				continue
			}
			b, err := bs.read(e.Hash, size)
			if err != nil {
				return nil, fmt.Errorf("%s: blob %s: %w", name, e.Hash, err)
			}
			ent.Target = string(b)
			t.Entries = append(t.Entries, ent)
			continue
		}
		ent.Size = size
		if size > s.largeFile {
			path, err := bs.materialize(e.Hash, size)
			if err != nil {
				return nil, fmt.Errorf("%s: %w", name, err)
			}
			ent.Open = bs.openFile(e.Hash, size, path)
			cached[e.Hash] = struct{}{}
		} else {
			ent.Open = bs.openMem(e.Hash, size)
		}
		t.Entries = append(t.Entries, ent)
	}
	s.refs.record(t.Revision, cached)
	return t, nil
}

// validPath reports whether a tree path is one a site may hold: clean,
// relative, without .git elements.
func validPath(p string) bool {
	if p == "" || strings.HasPrefix(p, "/") || strings.ContainsRune(p, 0) {
		return false
	}
	for _, el := range strings.Split(p, "/") {
		if el == "" || el == "." || el == ".." || strings.EqualFold(el, ".git") {
			return false
		}
	}
	return true
}

// size returns a blob's size from its header, without inflating it.
func (b *blobStore) size(h plumbing.Hash) (int64, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	type sizer interface {
		EncodedObjectSize(plumbing.Hash) (int64, error)
	}
	if sz, ok := b.repo.Storer.(sizer); ok {
		return sz.EncodedObjectSize(h)
	}
	o, err := b.repo.Storer.EncodedObject(plumbing.BlobObject, h)
	if err != nil {
		return 0, err
	}
	return o.Size(), nil
}

// read returns a small blob's content.
func (b *blobStore) read(h plumbing.Hash, size int64) ([]byte, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	blob, err := b.repo.BlobObject(h)
	if err != nil {
		return nil, err
	}
	r, err := blob.Reader()
	if err != nil {
		return nil, err
	}
	defer r.Close()
	data := make([]byte, 0, size)
	buf := bytes.NewBuffer(data)
	if _, err := io.Copy(buf, io.LimitReader(r, size+1)); err != nil {
		return nil, err
	}
	if int64(buf.Len()) != size {
		return nil, fmt.Errorf("blob %s: read %d bytes, want %d", h, buf.Len(), size)
	}
	return buf.Bytes(), nil
}

// memFile is an in-memory io.ReadSeekCloser.
type memFile struct{ *bytes.Reader }

func (memFile) Close() error { return nil }

// openMem returns an Entry.Open reading the blob into memory.
func (b *blobStore) openMem(h plumbing.Hash, size int64) func() (io.ReadSeekCloser, error) {
	return func() (io.ReadSeekCloser, error) {
		data, err := b.read(h, size)
		if err != nil {
			return nil, fmt.Errorf("gitsource: open blob %s: %w", h, err)
		}
		return memFile{bytes.NewReader(data)}, nil
	}
}

// openFile returns an Entry.Open opening the materialized blob, and
// materializing it again should the cache have been cleaned underneath.
func (b *blobStore) openFile(h plumbing.Hash, size int64, path string) func() (io.ReadSeekCloser, error) {
	return func() (io.ReadSeekCloser, error) {
		f, err := os.Open(path)
		if errors.Is(err, fs.ErrNotExist) {
			if _, err = b.materialize(h, size); err == nil {
				f, err = os.Open(path)
			}
		}
		if err != nil {
			return nil, fmt.Errorf("gitsource: open blob %s: %w", h, err)
		}
		return f, nil
	}
}

// blobPath is where the blob cache keeps blob h.
func (b *blobStore) blobPath(h plumbing.Hash) string {
	s := h.String()
	return filepath.Join(b.dir, s[:2], s)
}

// materialize copies a blob into the content-addressed blob cache, once:
// the file is named by the blob id and checked against it, so an existing
// file is immutable and shared by every tree that holds the blob.
func (b *blobStore) materialize(h plumbing.Hash, size int64) (path string, err error) {
	path = b.blobPath(h)
	if fi, err := os.Stat(path); err == nil && fi.Mode().IsRegular() && fi.Size() == size {
		return path, nil
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("blob cache: %w", err)
	}
	blob, err := b.repo.BlobObject(h)
	if err != nil {
		return "", fmt.Errorf("blob %s: %w", h, err)
	}
	r, err := blob.Reader()
	if err != nil {
		return "", fmt.Errorf("blob %s: %w", h, err)
	}
	defer r.Close()
	hasher := plumbing.NewHasher(plumbing.BlobObject, size)
	// The hash covers the size in the object header: content that is too
	// long or too short cannot match.
	err = atomicfile.WriteFrom(path, io.TeeReader(io.LimitReader(r, size+1), hasher), 0o600, func() error {
		if hasher.Sum() != h {
			return fmt.Errorf("blob %s: content does not match its id", h)
		}
		return nil
	})
	if err != nil {
		return "", fmt.Errorf("blob cache: %w", err)
	}
	return path, nil
}
