package gitsource

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/go-git/go-git/v5/plumbing"

	"github.com/pafhq/paf/internal/atomicfile"
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
	return atomicfile.Write(path, b, 0o600)
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
