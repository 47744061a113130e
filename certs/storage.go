package certs

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"github.com/pafhq/paf/internal/atomicfile"
)

// Storage keeps certificate material by key: CA keys and certificates today,
// ACME accounts and certificates later. Keys are slash-separated relative
// names such as "ca/ca.pem". Implementations must be safe for concurrent use
// and must never expose a half-written value: a Store either replaces the
// whole value or leaves the old one in place.
type Storage interface {
	// Load returns the value stored under key, or an error satisfying
	// errors.Is(err, fs.ErrNotExist) when there is none.
	Load(ctx context.Context, key string) ([]byte, error)
	// Store saves value under key, replacing any previous value atomically.
	Store(ctx context.Context, key string, value []byte) error
}

// DirStorage is a Storage in a directory of the local file system. Values
// are written to a temporary file in the same directory then renamed into
// place, with mode 0600 in directories of mode 0700, since they include
// private keys.
type DirStorage struct {
	// Dir is the root directory. It is created on the first Store.
	Dir string
}

var _ Storage = DirStorage{}

// Path returns the file name a key is stored under.
func (s DirStorage) Path(key string) (string, error) {
	if key == "" || !fs.ValidPath(key) || strings.Contains(key, `\`) {
		return "", fmt.Errorf("certs: invalid storage key %q", key)
	}
	return filepath.Join(s.Dir, filepath.FromSlash(key)), nil
}

// Load implements Storage.
func (s DirStorage) Load(ctx context.Context, key string) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	name, err := s.Path(key)
	if err != nil {
		return nil, err
	}
	b, err := os.ReadFile(name)
	if err != nil {
		return nil, fmt.Errorf("certs: load %s: %w", name, err)
	}
	return b, nil
}

// Store implements Storage.
func (s DirStorage) Store(ctx context.Context, key string, value []byte) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	name, err := s.Path(key)
	if err != nil {
		return err
	}
	dir := filepath.Dir(name)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("certs: store %s: %w", name, err)
	}
	if err := atomicfile.Write(name, value, 0o600); err != nil {
		return fmt.Errorf("certs: store %s: %w", name, err)
	}
	return nil
}

// isNotExist reports whether err says a stored value is missing.
func isNotExist(err error) bool { return errors.Is(err, fs.ErrNotExist) }
