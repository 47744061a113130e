// Package atomicfile writes files so that a reader, or a process restarted
// after a crash or kill -9, sees either the old content or the new one,
// never a part: the content goes to a temporary file in the same
// directory, is synced, then renamed over the target, and the directory is
// synced so the rename itself survives a power loss.
package atomicfile

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
)

// ErrNotRegular is returned for a path that exists and is not a regular
// file.
var ErrNotRegular = errors.New("not a regular file")

// Write replaces path with data, created with perm.
func Write(path string, data []byte, perm os.FileMode) error {
	return WriteFrom(path, bytes.NewReader(data), perm, nil)
}

// WriteFrom replaces path with what r yields, created with perm. check,
// when non-nil, runs after r is drained and before the rename: an error
// from it (content that fails verification, say) abandons the write and
// leaves path as it was.
//
// A path that exists but is not a regular file (a device such as
// /dev/null, a pipe, a directory) is refused with ErrNotRegular: renaming
// over it would replace the device itself.
func WriteFrom(path string, r io.Reader, perm os.FileMode, check func() error) (err error) {
	if fi, err := os.Lstat(path); err == nil && !fi.Mode().IsRegular() {
		return fmt.Errorf("%s: %w", path, ErrNotRegular)
	}
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}()
	// Chmod before writing: a private key must never sit in a file others
	// can read, even for a moment.
	if err = f.Chmod(perm); err != nil {
		return err
	}
	if _, err = io.Copy(f, r); err != nil {
		return err
	}
	if check != nil {
		if err = check(); err != nil {
			return err
		}
	}
	if err = f.Sync(); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	if err = os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("rename into place: %w", err)
	}
	SyncDir(dir)
	return nil
}

// SyncDir makes renames in dir durable. Errors are ignored: some file
// systems cannot sync a directory, and the rename has happened anyway.
func SyncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
}
