package gitsource

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/go-git/go-git/v5/plumbing"
)

// state is the record of the commit a Source last served, written only
// after the commit's tree was read completely.
type state struct {
	URL    string `json:"url"`
	Branch string `json:"branch"`
	Commit string `json:"commit"`
}

// maxStateSize bounds what readState reads: the file is a few hundred bytes.
const maxStateSize = 64 << 10

// readState reads the state file; a missing one wraps fs.ErrNotExist, and so
// does a damaged one, which is treated as absent.
func readState(path string) (state, error) {
	var st state
	fi, err := os.Stat(path)
	if err != nil {
		return st, fmt.Errorf("no served commit recorded: %w", err)
	}
	if fi.Size() > maxStateSize {
		return st, fmt.Errorf("state %s: too large: %w", path, fs.ErrNotExist)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return st, fmt.Errorf("state %s: %w", path, err)
	}
	if err := json.Unmarshal(b, &st); err != nil {
		return st, fmt.Errorf("state %s: %v: %w", path, err, fs.ErrNotExist)
	}
	if !plumbing.IsHash(st.Commit) || plumbing.NewHash(st.Commit).IsZero() {
		return st, fmt.Errorf("state %s: bad commit %q: %w", path, st.Commit, fs.ErrNotExist)
	}
	return st, nil
}

// writeState records st atomically.
func writeState(path string, st state) error {
	b, err := json.Marshal(st)
	if err != nil {
		return err
	}
	return writeFileAtomic(path, b, 0o600)
}

// writeFileAtomic writes data to path through a synced temporary file
// renamed into place, so that path holds the old or the new content, never
// a mix, whenever the process dies.
func writeFileAtomic(path string, data []byte, perm os.FileMode) (err error) {
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
	if _, err = f.Write(data); err != nil {
		return err
	}
	if err = f.Chmod(perm); err != nil {
		return err
	}
	if err = f.Sync(); err != nil {
		return err
	}
	if err = f.Close(); err != nil {
		return err
	}
	if err = os.Rename(f.Name(), path); err != nil {
		return err
	}
	syncDir(dir)
	return nil
}

// syncDir makes a rename in dir durable; errors are ignored because some
// file systems cannot sync directories and the rename happened anyway.
func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		d.Sync()
		d.Close()
	}
}

// syncTree fsyncs every file and directory under root, so that a clone
// renamed into place is on disk before it is used.
func syncTree(root string) error {
	return filepath.WalkDir(root, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() && !d.Type().IsRegular() {
			return nil
		}
		f, err := os.Open(path)
		if err != nil {
			return err
		}
		err = f.Sync()
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil && d.IsDir() && errors.Is(err, errors.ErrUnsupported) {
			return nil
		}
		return err
	})
}
