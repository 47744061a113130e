package route

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/pafhq/paf/gitsource"
	"github.com/pafhq/paf/internal/atomicfile"
)

// ErrNoRoute is returned by Store.Remove for a hostname without a route.
var ErrNoRoute = errors.New("no route for this hostname")

// Store is where routes are kept and edited: `paf route` writes through it,
// `paf proxy` reads from it.
type Store interface {
	Loader
	// Put writes r's file, replacing any route for r.Host. r must pass
	// Validate; it is checked again and nothing is written otherwise.
	Put(ctx context.Context, r *Route) error
	// Remove deletes host's route; ErrNoRoute when there is none.
	Remove(ctx context.Context, host string) error
}

// encode validates r and returns its file, checked to parse back.
func encode(r *Route) ([]byte, error) {
	if err := r.Validate(); err != nil {
		return nil, fmt.Errorf("route %s: %w", r.Host, err)
	}
	data := Format(r)
	back, err := Parse(r.Host+Ext, data)
	if err != nil {
		return nil, fmt.Errorf("route %s: formatted file does not parse back: %w", r.Host, err)
	}
	if !back.Equal(r) {
		return nil, fmt.Errorf("route %s: formatted file parses back differently", r.Host)
	}
	return data, nil
}

// DirStore keeps routes as files in a local directory.
type DirStore struct {
	// Dir holds the <hostname>.toml files.
	Dir string
}

var _ Store = DirStore{}

// Load implements Loader.
func (d DirStore) Load(ctx context.Context) (*Table, error) { return LoadDir(d.Dir) }

// Put implements Store; the file is replaced atomically.
func (d DirStore) Put(ctx context.Context, r *Route) error {
	data, err := encode(r)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(d.Dir, 0o755); err != nil {
		return fmt.Errorf("route: %w", err)
	}
	if err := atomicfile.Write(filepath.Join(d.Dir, r.Host+Ext), data, 0o644); err != nil {
		return fmt.Errorf("route: write %s: %w", r.Host, err)
	}
	return nil
}

// Remove implements Store.
func (d DirStore) Remove(ctx context.Context, host string) error {
	if err := ValidHost(host); err != nil {
		return fmt.Errorf("route: %w", err)
	}
	err := os.Remove(filepath.Join(d.Dir, host+Ext))
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("route: %s in %s: %w", host, d.Dir, ErrNoRoute)
	}
	if err != nil {
		return fmt.Errorf("route: remove %s: %w", host, err)
	}
	atomicfile.SyncDir(d.Dir)
	return nil
}

// GitStore keeps routes at the top of a Git branch. Every change is one
// commit pushed without force; a push that loses a race with another writer
// is redone on the new head.
type GitStore struct {
	// Remote is the repository and branch.
	Remote gitsource.Remote
	// Auth holds SSH and HTTPS options for Remote.
	Auth gitsource.Auth
	// Author is "Name <email>" for commits; empty means paf's default.
	Author string
}

var _ Store = GitStore{}

// Load implements Loader: it reads the branch head without keeping a clone
// (paf proxy uses a gitsource.Source with a TreeLoader instead).
func (g GitStore) Load(ctx context.Context) (*Table, error) {
	files, commit, err := gitsource.ReadFiles(ctx, g.Remote, g.Auth, "")
	if err != nil {
		return nil, err
	}
	return FromFiles("git "+g.Remote.Redacted(), commit, files)
}

// Put implements Store.
func (g GitStore) Put(ctx context.Context, r *Route) error {
	data, err := encode(r)
	if err != nil {
		return err
	}
	_, err = gitsource.CommitFiles(ctx, gitsource.PublishOptions{
		Remote: g.Remote, Auth: g.Auth, Author: g.Author,
		Message: "paf route add " + r.Host,
	}, []gitsource.FileChange{{Path: r.Host + Ext, Data: data}})
	if errors.Is(err, gitsource.ErrNothingToPublish) {
		return nil // the route is already as asked
	}
	return err
}

// Remove implements Store.
func (g GitStore) Remove(ctx context.Context, host string) error {
	if err := ValidHost(host); err != nil {
		return fmt.Errorf("route: %w", err)
	}
	_, err := gitsource.CommitFiles(ctx, gitsource.PublishOptions{
		Remote: g.Remote, Auth: g.Auth, Author: g.Author,
		Message: "paf route rm " + host,
	}, []gitsource.FileChange{{Path: host + Ext, Delete: true}})
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("route: %s in %s: %w", host, g.Remote.Redacted(), ErrNoRoute)
	}
	return err
}
