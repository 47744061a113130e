package site

import (
	"context"
	"io"
	"time"
)

// Kind says what an Entry is.
type Kind uint8

const (
	// File is a regular file.
	File Kind = iota
	// Symlink is a symbolic link; its Target is served as a redirect.
	Symlink
)

// An Entry is one file or symbolic link of a Tree.
type Entry struct {
	// Path is the slash-separated path relative to the site root, without
	// a leading slash, clean (no "." or ".." elements, no empty elements).
	Path string
	// Kind says whether the entry is a regular file or a symbolic link.
	Kind Kind
	// Size is the content's length in bytes (0 for a Symlink).
	Size int64
	// Hash is a hex digest of the content that changes whenever the content
	// does: the Git blob id for Git sources. It becomes the strong ETag.
	Hash string
	// Target is a Symlink's target as stored, relative to the link's
	// directory or absolute from the site root.
	Target string
	// Open returns the content of a File. It is called once when a snapshot
	// is built and, for files above the snapshot's large-file threshold,
	// again for every request that reads them, so it must be safe for
	// concurrent use and keep returning the same bytes for as long as a
	// snapshot that holds the Entry is in use.
	Open func() (io.ReadSeekCloser, error)
}

// A Tree is one version of a site as a source delivers it: the input from
// which a Snapshot is built.
type Tree struct {
	// Source describes where the tree came from, for logs ("git
	// https://example.org/site.git#pages", "dir /srv/www", "embedded demo").
	Source string
	// Revision identifies this version: a commit hash, or a digest of the
	// content for sources without one.
	Revision string
	// Time is when this version was made (the commit time); it becomes
	// Last-Modified.
	Time time.Time
	// Entries are the files and links of the tree, in any order.
	Entries []Entry
}

// A Source delivers the current version of a site.
type Source interface {
	// Fetch brings the source up to date (a Git fetch, a directory walk)
	// and returns its current Tree. A failed fetch returns an error and
	// must leave whatever the source has stored on disk usable.
	Fetch(ctx context.Context) (*Tree, error)
}

// A Cacher is a Source that keeps what it fetched on disk across restarts.
// It is an optional capability, found by type assertion: paf calls Cached at
// start so that a site whose remote is unreachable is still served from the
// last version it had.
type Cacher interface {
	// Cached returns the version stored by an earlier Fetch, without using
	// the network. It returns an error wrapping fs.ErrNotExist when there is
	// none.
	Cached(ctx context.Context) (*Tree, error)
}

// A ServedRecorder is a Source told which version a Site serves, once its
// snapshot is built and swapped in. It is an optional capability, found by
// type assertion: a Cacher that records it returns the version last served
// after a restart, not one fetched but never built.
type ServedRecorder interface {
	// Served records that revision, one that Fetch or Cached returned, is
	// what the site now serves. It uses no network.
	Served(ctx context.Context, revision string) error
}
