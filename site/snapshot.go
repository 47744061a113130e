package site

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"path"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"
)

// A Snapshot is one version of a site prepared for serving: every small
// file read and compressed, every response header computed. It is
// immutable, so any number of requests may use it while a newer one is
// built.
type Snapshot struct {
	source   string
	revision string
	time     time.Time
	logger   *slog.Logger

	// files maps a request path without its leading slash to what it
	// serves: "a/b.css", and for directory indexes "a/" and "" too.
	files map[string]*resource
	// redirects maps a request path to a 301 target: "dir" -> "/dir/",
	// and symbolic links to their resolved target.
	redirects map[string]redirect
	// dirLinks maps a symbolic link to a directory to the directory's site
	// path, so that paths below the link redirect into the target.
	dirLinks map[string]string

	notFound   *resource // the site's 404.html, or nil
	defaultURL []string  // Location for missing paths, or nil
	hosts      []string

	count    int   // files
	bytes    int64 // total size of files
	inMemory int64 // bytes held, variants included
}

// A redirect is a precomputed 301 answer.
type redirect struct {
	location string
	// keepQuery is true for redirects inside the site, which keep the
	// request's query string.
	keepQuery bool
}

// A resource is one file of the snapshot and its representations.
type resource struct {
	path    string
	modtime time.Time
	ctype   []string
	// identity is the file as stored; variants are the compressed forms,
	// indexed by coding, nil where there is none.
	identity rep
	variants [numCodings]*rep
	// vary is true when variants exist.
	vary bool
}

// A rep is one representation of a resource with its precomputed headers.
type rep struct {
	etag string
	size int64
	// body is the content, or nil when it is large and read through open.
	body []byte
	open func() (io.ReadSeekCloser, error)
	// header is assigned into a 200 response, notModified into a 304 and
	// asError into the answer for a missing path when this is 404.html.
	header      []headerField
	notModified []headerField
	asError     []headerField
}

// A headerField is one precomputed header line. Its value slice has
// len == cap so that a handler appending to it copies rather than writes
// into memory shared by concurrent requests.
type headerField struct {
	key   string
	value []string
}

func field(key string, value string) headerField {
	return headerField{http.CanonicalHeaderKey(key), []string{value}[:1:1]}
}

// Build reads every file of t and prepares it for serving: small files are
// read whole, checked against their Size and compressed; large ones are
// opened once to sniff their type and check their size. Any error (a file
// that cannot be read, or whose content does not match its Size, as after a
// partial fetch) fails the whole build, so a broken version never replaces
// a good one.
func Build(ctx context.Context, t *Tree, opts Options) (*Snapshot, error) {
	start := time.Now()
	s := &Snapshot{
		source:    t.Source,
		revision:  t.Revision,
		time:      t.Time,
		logger:    opts.logger(),
		files:     make(map[string]*resource, len(t.Entries)*5/4),
		redirects: make(map[string]redirect),
		dirLinks:  make(map[string]string),
		hosts:     opts.hostnames(),
	}
	if opts.Default != "" {
		s.defaultURL = []string{opts.Default}[:1:1]
	}

	// Index the entries, leaving out anything under .git.
	var files, links []*Entry
	paths := make(map[string]*Entry, len(t.Entries))
	dirs := map[string]bool{"": true}
	for i := range t.Entries {
		e := &t.Entries[i]
		if !validEntryPath(e.Path) {
			return nil, fmt.Errorf("site: build %s: invalid entry path %q", t.Source, e.Path)
		}
		if underGit(e.Path) {
			continue
		}
		if paths[e.Path] != nil {
			return nil, fmt.Errorf("site: build %s: duplicate entry %q", t.Source, e.Path)
		}
		paths[e.Path] = e
		for d := path.Dir(e.Path); d != "."; d = path.Dir(d) {
			dirs[d] = true
		}
		switch e.Kind {
		case File:
			if e.Open == nil {
				return nil, fmt.Errorf("site: build %s: %s has no Open", t.Source, e.Path)
			}
			files = append(files, e)
		case Symlink:
			links = append(links, e)
		default:
			return nil, fmt.Errorf("site: build %s: %s has unknown kind %d", t.Source, e.Path, e.Kind)
		}
	}

	comp, err := newCompressor(opts.largeFile())
	if err != nil {
		return nil, err
	}
	defer comp.close()
	b := &builder{
		snap:      s,
		overrides: opts.mimeOverrides(),
		large:     opts.largeFile(),
		comp:      comp,
	}
	resources, err := b.loadAll(ctx, files)
	if err != nil {
		return nil, err
	}

	// Attach precompressed siblings, then compute headers.
	for _, r := range resources {
		for k := range numCodings {
			sib := b.byPath(resources, r.path+k.ext())
			if sib == nil {
				continue
			}
			r.variants[k] = &rep{
				etag: `"` + strings.Trim(sib.identity.etag, `"`) + "-" + k.name() + `"`,
				size: sib.identity.size,
				body: sib.identity.body,
				open: sib.identity.open,
			}
		}
	}
	lastModified := ""
	if !t.Time.IsZero() {
		lastModified = t.Time.UTC().Format(http.TimeFormat)
	}
	for _, r := range resources {
		r.finish(lastModified)
		s.files[r.path] = r
		s.count++
		s.bytes += r.identity.size
		if r.identity.body != nil {
			s.inMemory += r.identity.size
		}
		for k, v := range r.variants {
			if v != nil && v.body != nil && paths[r.path+coding(k).ext()] == nil {
				s.inMemory += int64(len(v.body))
			}
		}
	}
	// Directory indexes: "a/" and "" serve a/index.html and index.html;
	// "a" redirects to "a/".
	for _, r := range resources {
		if r.path == "index.html" {
			s.files[""] = r
		} else if dir, ok := strings.CutSuffix(r.path, "/index.html"); ok {
			s.files[dir+"/"] = r
			if paths[dir] == nil {
				s.redirects[dir] = redirect{location: escapePath("/" + dir + "/"), keepQuery: true}
			}
		}
	}
	s.notFound = s.files["404.html"]

	for _, e := range links {
		s.addLink(e, paths, dirs)
	}

	s.logger.Info("site: snapshot built",
		"source", s.source, "revision", s.revision,
		"files", s.count, "links", len(links), "bytes", s.bytes,
		"memory", s.inMemory, "took", time.Since(start).Round(time.Millisecond))
	return s, nil
}

// builder holds what Build's workers share.
type builder struct {
	snap      *Snapshot
	overrides map[string]string
	large     int64
	comp      *compressor
	index     map[string]int
}

func (b *builder) byPath(rs []*resource, p string) *resource {
	if i, ok := b.index[p]; ok {
		return rs[i]
	}
	return nil
}

// loadAll loads files with GOMAXPROCS workers; the first error cancels the
// rest.
func (b *builder) loadAll(ctx context.Context, files []*Entry) ([]*resource, error) {
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	rs := make([]*resource, len(files))
	b.index = make(map[string]int, len(files))
	for i, e := range files {
		b.index[e.Path] = i
	}
	next := make(chan int)
	var wg sync.WaitGroup
	for range max(1, runtime.GOMAXPROCS(0)) {
		wg.Go(func() {
			for i := range next {
				r, err := b.load(ctx, files[i])
				if err != nil {
					cancel(err)
					continue
				}
				rs[i] = r
			}
		})
	}
feed:
	for i := range files {
		select {
		case next <- i:
		case <-ctx.Done():
			break feed
		}
	}
	close(next)
	wg.Wait()
	if err := context.Cause(ctx); err != nil {
		return nil, err
	}
	return rs, nil
}

// sniffLen is how much of a file content-type detection looks at.
const sniffLen = 3072

// load reads one file and prepares its identity and compressed variants.
func (b *builder) load(ctx context.Context, e *Entry) (*resource, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if e.Size < 0 {
		return nil, fmt.Errorf("site: build %s: negative size %d", e.Path, e.Size)
	}
	f, err := e.Open()
	if err != nil {
		return nil, fmt.Errorf("site: build %s: %w", e.Path, err)
	}
	defer f.Close()

	r := &resource{path: e.Path, modtime: b.snap.time}
	r.identity.size = e.Size
	large := e.Size > b.large
	var content []byte
	if large {
		head := make([]byte, sniffLen)
		n, err := io.ReadFull(f, head)
		if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) && !errors.Is(err, io.EOF) {
			return nil, fmt.Errorf("site: build %s: %w", e.Path, err)
		}
		content = head[:n]
		end, err := f.Seek(0, io.SeekEnd)
		if err != nil {
			return nil, fmt.Errorf("site: build %s: %w", e.Path, err)
		}
		if end != e.Size {
			return nil, fmt.Errorf("site: build %s: content is %d bytes, entry says %d", e.Path, end, e.Size)
		}
		r.identity.open = e.Open
	} else {
		content = make([]byte, e.Size, e.Size+1)
		if _, err := io.ReadFull(f, content); err != nil {
			return nil, fmt.Errorf("site: build %s: content shorter than its %d bytes: %w", e.Path, e.Size, err)
		}
		if n, _ := f.Read(content[e.Size : e.Size+1]); n != 0 {
			return nil, fmt.Errorf("site: build %s: content longer than its %d bytes", e.Path, e.Size)
		}
		r.identity.body = content
	}
	hash := e.Hash
	if hash == "" {
		// A source without digests: hash the content here so the ETag
		// still changes exactly when the bytes do.
		h := sha256.New()
		if large {
			if _, err := f.Seek(0, io.SeekStart); err != nil {
				return nil, fmt.Errorf("site: build %s: %w", e.Path, err)
			}
			if _, err := io.Copy(h, f); err != nil {
				return nil, fmt.Errorf("site: build %s: %w", e.Path, err)
			}
		} else {
			h.Write(content)
		}
		hash = hex.EncodeToString(h.Sum(nil))
	}
	r.identity.etag = `"` + hash + `"`
	r.ctype = []string{contentType(e.Path, content, b.overrides)}[:1:1]

	if large || !isCompressible(r.ctype[0]) {
		return r, nil
	}
	for k := range numCodings {
		if _, ok := b.index[e.Path+k.ext()]; ok {
			continue // a precompressed sibling (a file, not a link) wins
		}
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		c, err := b.comp.compress(k, content)
		if err != nil {
			return nil, fmt.Errorf("site: build %s: %s: %w", e.Path, k.name(), err)
		}
		if worthIt(len(c), len(content)) {
			r.variants[k] = &rep{
				etag: `"` + hash + "-" + k.name() + `"`,
				size: int64(len(c)),
				body: bytes.Clone(c),
			}
		}
	}
	return r, nil
}

// finish precomputes the header sets of every representation.
func (r *resource) finish(lastModified string) {
	for _, v := range r.variants {
		if v != nil {
			r.vary = true
		}
	}
	r.identity.setHeaders(r, "", lastModified)
	for k, v := range r.variants {
		if v != nil {
			v.setHeaders(r, coding(k).name(), lastModified)
		}
	}
}

var (
	varyAE      = []string{"Accept-Encoding"}
	acceptBytes = []string{"bytes"}
	nosniff     = []string{"nosniff"}
)

func (v *rep) setHeaders(r *resource, enc string, lastModified string) {
	common := []headerField{{"Content-Type", r.ctype}, {"X-Content-Type-Options", nosniff}}
	if r.vary {
		common = append(common, headerField{"Vary", varyAE})
	}
	if enc != "" {
		common = append(common, field("Content-Encoding", enc))
	}
	length := field("Content-Length", strconv.FormatInt(v.size, 10))
	etag := field("ETag", v.etag)

	v.header = append(append([]headerField{}, common...), length, etag, headerField{"Accept-Ranges", acceptBytes})
	v.notModified = []headerField{etag}
	if r.vary {
		v.notModified = append(v.notModified, headerField{"Vary", varyAE})
	}
	if lastModified != "" {
		lm := field("Last-Modified", lastModified)
		v.header = append(v.header, lm)
		v.notModified = append(v.notModified, lm)
	}
	v.asError = append(append([]headerField{}, common...), length, field("Cache-Control", "no-cache"))
}

// addLink registers the redirect a symbolic link stands for. Links whose
// target leaves the site, names nothing in it, or is not an http(s) URL
// or a path are left out and so answer 404.
func (s *Snapshot) addLink(e *Entry, paths map[string]*Entry, dirs map[string]bool) {
	if u, ok := externalTarget(e.Target); ok {
		s.redirects[e.Path] = redirect{location: u}
		return
	}
	target, ok := resolveLink(e.Path, e.Target)
	if !ok {
		s.logger.Debug("site: link leaves the site", "link", e.Path, "target", e.Target)
		return
	}
	switch {
	case paths[target] != nil:
		s.redirects[e.Path] = redirect{location: escapePath("/" + target), keepQuery: true}
	case dirs[target]:
		loc := "/" + target + "/"
		if target == "" {
			loc = "/"
		}
		s.redirects[e.Path] = redirect{location: escapePath(loc), keepQuery: true}
		s.dirLinks[e.Path] = target
	default:
		s.logger.Debug("site: dangling link", "link", e.Path, "target", e.Target)
	}
}

// externalTarget reports whether a link target is an absolute http or
// https URL, which is redirected to as is (like unipi, whose Location is
// the target).
func externalTarget(t string) (string, bool) {
	lower := strings.ToLower(t)
	if !strings.HasPrefix(lower, "http://") && !strings.HasPrefix(lower, "https://") {
		return "", false
	}
	u, err := url.Parse(t)
	if err != nil || u.Host == "" || strings.ContainsAny(t, "\x00\r\n") {
		return "", false
	}
	return u.String(), true
}

// resolveLink resolves a link target against the directory of the link
// at linkPath (or the site root when it starts with a slash) and returns
// the clean site path it names, without slashes at either end. It fails
// when the target climbs above the root, looks like a filesystem path of
// another system (backslashes, a drive letter), contains NUL, or names
// something under .git.
func resolveLink(linkPath, target string) (string, bool) {
	if target == "" || strings.ContainsAny(target, "\\\x00") {
		return "", false
	}
	if len(target) >= 2 && target[1] == ':' {
		return "", false
	}
	var segs []string
	if target[0] != '/' {
		if d := path.Dir(linkPath); d != "." {
			segs = strings.Split(d, "/")
		}
	}
	for seg := range strings.SplitSeq(target, "/") {
		switch seg {
		case "", ".":
		case "..":
			if len(segs) == 0 {
				return "", false
			}
			segs = segs[:len(segs)-1]
		default:
			segs = append(segs, seg)
		}
	}
	p := strings.Join(segs, "/")
	if underGit(p) {
		return "", false
	}
	return p, true
}

// validEntryPath checks the Entry.Path contract: relative, clean, no
// empty elements.
func validEntryPath(p string) bool {
	if p == "" || p[0] == '/' || strings.ContainsRune(p, 0) {
		return false
	}
	for seg := range strings.SplitSeq(p, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return false
		}
	}
	return true
}

// underGit reports whether any element of p is .git, in any case.
func underGit(p string) bool {
	for seg := range strings.SplitSeq(p, "/") {
		if strings.EqualFold(seg, ".git") {
			return true
		}
	}
	return false
}

// escapePath percent-encodes a site path for a Location header.
func escapePath(p string) string {
	return (&url.URL{Path: p}).EscapedPath()
}

// Revision identifies the version of the site the snapshot serves.
func (s *Snapshot) Revision() string { return s.revision }

// Source describes where the snapshot's tree came from.
func (s *Snapshot) Source() string { return s.source }

// Time is the version's time, served as Last-Modified.
func (s *Snapshot) Time() time.Time { return s.time }

// Len is the number of files the snapshot serves.
func (s *Snapshot) Len() int { return s.count }

// Paths returns the served file paths, sorted, for diagnostics.
func (s *Snapshot) Paths() []string {
	var ps []string
	for p, r := range s.files {
		if p == r.path {
			ps = append(ps, p)
		}
	}
	sort.Strings(ps)
	return ps
}
