package site

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"
)

// FS is a Source over an fs.FS: a directory on disk (see Dir) or an
// embedded site (embed.FS). Every Fetch walks the whole FS, so a directory
// edited in place is picked up by the next Update.
//
// Entries get a SHA-256 content hash (remembered between fetches for files
// whose size and modification time did not change, so polling a large
// directory does not reread it), symbolic links become Symlink entries when
// the FS can read them (fs.ReadLinkFS), anything named .git is skipped, and
// special files (devices, pipes, sockets) are ignored. Because files are
// opened again per request when they are large, a large file changed on
// disk is served with its new bytes before the next Update; small ones stay
// as they were when the snapshot was built.
type FS struct {
	// Name describes the source in Tree.Source and logs ("dir /srv/www",
	// "embedded demo").
	Name string
	// FS holds the site.
	FS fs.FS
	// Fallback is Tree.Time when no file has a modification time, as with
	// embed.FS. FromFS sets it to the time it was called, so that
	// Last-Modified is stable for the life of the process.
	Fallback time.Time

	// root is the absolute directory of a Dir source, used to turn
	// absolute link targets into site-relative ones.
	root []string

	mu   sync.Mutex
	memo map[string]hashMemo
}

type hashMemo struct {
	size    int64
	modTime time.Time
	change  fileChange
	hash    string
}

// fileChange is what, beyond size and mtime, tells that a file was
// replaced or rewritten: its inode and status-change time, as git's index
// uses. Builds with fixed mtimes (SOURCE_DATE_EPOCH, rsync -t, cp -p) keep
// size and mtime, but a rewrite still moves the ctime and a replacement the
// inode. Zero where the file system does not say (embed.FS).
type fileChange struct {
	ino   uint64
	ctime int64
}

// FromFS returns a Source over fsys; name goes into Tree.Source.
func FromFS(name string, fsys fs.FS) Source {
	return &FS{Name: name, FS: fsys, Fallback: time.Now().UTC().Truncate(time.Second)}
}

// Dir returns a Source over the directory root, after checking that it
// exists, is a directory and can be listed.
func Dir(root string) (Source, error) {
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, fmt.Errorf("site: dir %s: %w", root, err)
	}
	fi, err := os.Stat(abs)
	if err != nil {
		return nil, fmt.Errorf("site: dir %s: %w", root, err)
	}
	if !fi.IsDir() {
		return nil, fmt.Errorf("site: dir %s: not a directory", root)
	}
	f, err := os.Open(abs)
	if err != nil {
		return nil, fmt.Errorf("site: dir %s: %w", root, err)
	}
	_, err = f.ReadDir(1)
	f.Close()
	if err != nil && !errors.Is(err, io.EOF) {
		return nil, fmt.Errorf("site: dir %s: %w", root, err)
	}
	roots := []string{abs}
	if real, err := filepath.EvalSymlinks(abs); err == nil && real != abs {
		roots = append(roots, real)
	}
	// os.Root, not os.DirFS: no symbolic link swapped in after the walk
	// (of a file or of a directory on its path) can make a per-request
	// open reach outside the site.
	r, err := os.OpenRoot(abs)
	if err != nil {
		return nil, fmt.Errorf("site: dir %s: %w", root, err)
	}
	s := FromFS("dir "+abs, r.FS()).(*FS)
	s.root = roots
	return s, nil
}

// Fetch walks the FS and returns its current Tree. Its Revision is a
// digest of every path, kind and hash (or link target), so it changes
// exactly when the served content does.
func (s *FS) Fetch(ctx context.Context) (*Tree, error) {
	s.mu.Lock()
	old := s.memo
	s.mu.Unlock()
	memo := make(map[string]hashMemo, len(old))

	t := &Tree{Source: s.Name}
	var newest time.Time
	err := fs.WalkDir(s.FS, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return fmt.Errorf("site: %s: read %s: %w", s.Name, p, err)
		}
		if err := ctx.Err(); err != nil {
			return err
		}
		if p != "." && strings.EqualFold(d.Name(), ".git") {
			if d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		typ := d.Type()
		if typ.IsRegular() || typ.IsDir() {
			info, err := d.Info()
			if err != nil {
				return fmt.Errorf("site: %s: stat %s: %w", s.Name, p, err)
			}
			if mt := info.ModTime(); mt.After(newest) {
				newest = mt
			}
			if typ.IsDir() {
				return nil
			}
			hash, err := s.hash(p, info, old)
			if err != nil {
				return err
			}
			memo[p] = hashMemo{info.Size(), info.ModTime(), changeOf(info), hash}
			t.Entries = append(t.Entries, Entry{
				Path: p, Kind: File, Size: info.Size(), Hash: hash, Open: s.opener(p, info.Size(), info.ModTime()),
			})
			return nil
		}
		if typ&fs.ModeSymlink == 0 {
			return nil // device, pipe, socket: never served
		}
		target, err := fs.ReadLink(s.FS, p)
		if errors.Is(err, fs.ErrInvalid) {
			if _, ok := s.FS.(fs.ReadLinkFS); !ok {
				return nil // cannot tell where it points: leave it out
			}
		}
		if err != nil {
			return fmt.Errorf("site: %s: readlink %s: %w", s.Name, p, err)
		}
		t.Entries = append(t.Entries, Entry{Path: p, Kind: Symlink, Target: s.linkTarget(p, target)})
		return nil
	})
	if err != nil {
		return nil, err
	}
	s.mu.Lock()
	s.memo = memo
	s.mu.Unlock()

	sort.Slice(t.Entries, func(i, j int) bool { return t.Entries[i].Path < t.Entries[j].Path })
	h := sha256.New()
	for _, e := range t.Entries {
		fmt.Fprintf(h, "%s\x00%d\x00%s\x00%s\n", e.Path, e.Kind, e.Hash, e.Target)
	}
	t.Revision = hex.EncodeToString(h.Sum(nil))
	t.Time = newest.UTC().Truncate(time.Second)
	if newest.IsZero() || newest.Unix() <= 0 {
		t.Time = s.Fallback
	}
	return t, nil
}

// hash returns the SHA-256 of the file at p, reusing the previous fetch's
// when its size, modification time, inode and status-change time are
// unchanged.
func (s *FS) hash(p string, info fs.FileInfo, old map[string]hashMemo) (string, error) {
	if m, ok := old[p]; ok && m.size == info.Size() && m.modTime.Equal(info.ModTime()) && !info.ModTime().IsZero() && m.change == changeOf(info) {
		return m.hash, nil
	}
	f, err := s.FS.Open(p)
	if err != nil {
		return "", fmt.Errorf("site: %s: read %s: %w", s.Name, p, err)
	}
	defer f.Close()
	h := sha256.New()
	n, err := io.Copy(h, f)
	if err != nil {
		return "", fmt.Errorf("site: %s: read %s: %w", s.Name, p, err)
	}
	if n != info.Size() {
		return "", fmt.Errorf("site: %s: read %s: changed while reading (%d bytes, expected %d)", s.Name, p, n, info.Size())
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// opener returns an Entry.Open for the file at p.
// The file may be rewritten between the walk and a request (large files
// are opened per request): a size or mtime that changed since is an error,
// answered 500 until the next update, never new bytes under the old ETag
// and Content-Length.
func (s *FS) opener(p string, size int64, mtime time.Time) func() (io.ReadSeekCloser, error) {
	fsys := s.FS
	return func() (io.ReadSeekCloser, error) {
		f, err := fsys.Open(p)
		if err != nil {
			return nil, err
		}
		if fi, err := f.Stat(); err != nil || fi.Size() != size || !fi.ModTime().Equal(mtime) {
			f.Close()
			return nil, fmt.Errorf("site: %s changed since the snapshot was built", p)
		}
		if rsc, ok := f.(io.ReadSeekCloser); ok {
			return rsc, nil
		}
		b, err := io.ReadAll(f)
		f.Close()
		if err != nil {
			return nil, err
		}
		return nopCloser{bytes.NewReader(b)}, nil
	}
}

type nopCloser struct{ *bytes.Reader }

func (nopCloser) Close() error { return nil }

// linkTarget turns an absolute target inside a Dir root into the
// equivalent relative one; outside the root it becomes a relative path
// that climbs out of the site, which a Snapshot refuses (404).
func (s *FS) linkTarget(p, target string) string {
	if len(s.root) == 0 || !filepath.IsAbs(target) {
		return target
	}
	for _, root := range s.root {
		if target == root || strings.HasPrefix(target, root+string(filepath.Separator)) {
			rel, err := filepath.Rel(filepath.Join(root, filepath.FromSlash(path.Dir(p))), target)
			if err == nil {
				return filepath.ToSlash(rel)
			}
		}
	}
	rel, err := filepath.Rel(filepath.Join(s.root[0], filepath.FromSlash(path.Dir(p))), target)
	if err != nil {
		return target
	}
	return filepath.ToSlash(rel)
}
