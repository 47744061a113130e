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

// state records, for one remote, the commit last served (confirmed by
// Served after the site built from it) and the commit last fetched, each
// written only after the commit's tree was read completely. Commit and
// Branch keep their names from before Fetched existed: a state file
// written then records what was fetched, and is taken as served.
type state struct {
	URL    string `json:"url"`
	Branch string `json:"branch,omitempty"`
	Commit string `json:"commit,omitempty"`

	Fetched       string `json:"fetched,omitempty"`
	FetchedBranch string `json:"fetched_branch,omitempty"`
}

// maxStateSize bounds what readState reads: the file is a few hundred bytes.
const maxStateSize = 64 << 10

// validCommit reports whether c names a commit.
func validCommit(c string) bool {
	return plumbing.IsHash(c) && !plumbing.NewHash(c).IsZero()
}

// readState reads the state file; a missing one wraps fs.ErrNotExist, and so
// does a damaged one, which is treated as absent. A commit field that is
// not a hash is cleared; a state with neither commit wraps fs.ErrNotExist.
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
		return state{}, fmt.Errorf("state %s: %v: %w", path, err, fs.ErrNotExist)
	}
	bad := st.Commit
	if !validCommit(st.Commit) {
		st.Commit, st.Branch = "", ""
	}
	if !validCommit(st.Fetched) {
		if st.Fetched != "" {
			bad = st.Fetched
		}
		st.Fetched, st.FetchedBranch = "", ""
	}
	if st.Commit == "" && st.Fetched == "" {
		return st, fmt.Errorf("state %s: bad commit %q: %w", path, bad, fs.ErrNotExist)
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
