package route

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/pafhq/paf/site"
)

// Table is a complete set of routes, one per hostname. A Table is
// immutable once built, so a proxy can swap whole tables atomically and
// every request sees one consistent version.
type Table struct {
	// Source says where the table came from, for logs.
	Source string
	// Revision identifies this version: the Git commit, or a digest of
	// the files.
	Revision string

	routes map[string]*Route
}

// NewTable builds a table from routes, refusing two routes for one host.
func NewTable(source, revision string, routes []*Route) (*Table, error) {
	t := &Table{Source: source, Revision: revision, routes: make(map[string]*Route, len(routes))}
	for _, r := range routes {
		if _, dup := t.routes[r.Host]; dup {
			return nil, fmt.Errorf("route: %s: two routes for %s", source, r.Host)
		}
		t.routes[r.Host] = r
	}
	return t, nil
}

// Lookup returns the route for a Host header or SNI value (any case, port
// and trailing dot allowed), nil when there is none.
func (t *Table) Lookup(host string) *Route {
	if t == nil {
		return nil
	}
	return t.routes[NormalizeHost(host)]
}

// Hosts returns the routed hostnames, sorted.
func (t *Table) Hosts() []string {
	if t == nil {
		return nil
	}
	hosts := make([]string, 0, len(t.routes))
	for h := range t.routes {
		hosts = append(hosts, h)
	}
	slices.Sort(hosts)
	return hosts
}

// Routes returns the routes sorted by hostname.
func (t *Table) Routes() []*Route {
	var rs []*Route
	for _, h := range t.Hosts() {
		rs = append(rs, t.routes[h])
	}
	return rs
}

// Len is the number of routes.
func (t *Table) Len() int {
	if t == nil {
		return 0
	}
	return len(t.routes)
}

// isRouteFile reports whether a top-level file name is a route file: it
// ends in .toml and is not hidden (editors' and atomic writes' temporary
// files start with a dot).
func isRouteFile(name string) bool {
	return strings.HasSuffix(name, Ext) && !strings.HasPrefix(name, ".")
}

// FromFiles parses route files given by name. Every broken file is
// reported (errors.Join), and then no table is returned: a proxy keeps its
// previous routing rather than serving a partial one.
func FromFiles(source, revision string, files map[string][]byte) (*Table, error) {
	names := make([]string, 0, len(files))
	for n := range files {
		if isRouteFile(n) {
			names = append(names, n)
		}
	}
	slices.Sort(names)
	var routes []*Route
	var errs []error
	for _, n := range names {
		r, err := Parse(n, files[n])
		if err != nil {
			errs = append(errs, err)
			continue
		}
		routes = append(routes, r)
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	if revision == "" {
		revision = digest(names, files)
	}
	return NewTable(source, revision, routes)
}

// digest identifies a set of files by content.
func digest(names []string, files map[string][]byte) string {
	h := sha256.New()
	for _, n := range names {
		fmt.Fprintf(h, "%s\x00%d\x00", n, len(files[n]))
		h.Write(files[n])
	}
	return hex.EncodeToString(h.Sum(nil))[:16]
}

// LoadDir reads the route files at the top of dir.
func LoadDir(dir string) (*Table, error) {
	des, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("route: read %s: %w", dir, err)
	}
	files := map[string][]byte{}
	for _, de := range des {
		if !isRouteFile(de.Name()) || !de.Type().IsRegular() {
			continue
		}
		p := filepath.Join(dir, de.Name())
		f, err := os.Open(p)
		if err != nil {
			return nil, fmt.Errorf("route: %w", err)
		}
		b, err := io.ReadAll(io.LimitReader(f, MaxFileSize+1))
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("route: read %s: %w", p, err)
		}
		files[de.Name()] = b
	}
	return FromFiles("dir "+dir, "", files)
}

// FromTree reads the route files at the top of a site.Tree, as a
// gitsource.Source fetches it from a Git branch.
func FromTree(tree *site.Tree) (*Table, error) {
	files := map[string][]byte{}
	for _, e := range tree.Entries {
		if e.Kind != site.File || strings.Contains(e.Path, "/") || !isRouteFile(e.Path) {
			continue
		}
		if e.Size > MaxFileSize {
			return nil, &Error{File: e.Path, Err: fmt.Errorf("larger than %d bytes", MaxFileSize)}
		}
		rc, err := e.Open()
		if err != nil {
			return nil, fmt.Errorf("route: %s: %s: %w", tree.Source, e.Path, err)
		}
		b, err := io.ReadAll(io.LimitReader(rc, MaxFileSize+1))
		rc.Close()
		if err != nil {
			return nil, fmt.Errorf("route: %s: %s: %w", tree.Source, e.Path, err)
		}
		files[e.Path] = b
	}
	return FromFiles(tree.Source, tree.Revision, files)
}

// Loader delivers the current route table: the proxy calls it at start,
// on every poll and on every hook.
type Loader interface {
	Load(ctx context.Context) (*Table, error)
}

// LoaderFunc adapts a function to a Loader.
type LoaderFunc func(ctx context.Context) (*Table, error)

// Load implements Loader.
func (f LoaderFunc) Load(ctx context.Context) (*Table, error) { return f(ctx) }

// TreeLoader loads routes from a site.Source, such as a gitsource.Source
// keeping an on-disk clone of the routes branch.
type TreeLoader struct{ Source site.Source }

// Load implements Loader.
func (l TreeLoader) Load(ctx context.Context) (*Table, error) {
	tree, err := l.Source.Fetch(ctx)
	if err != nil {
		return nil, err
	}
	return FromTree(tree)
}

// Cached returns the table from the version the source kept on disk, when
// it is a site.Cacher: routes stay served across a restart while the
// remote is unreachable.
func (l TreeLoader) Cached(ctx context.Context) (*Table, error) {
	c, ok := l.Source.(site.Cacher)
	if !ok {
		return nil, errors.New("route: source keeps no cache")
	}
	tree, err := c.Cached(ctx)
	if err != nil {
		return nil, err
	}
	return FromTree(tree)
}
