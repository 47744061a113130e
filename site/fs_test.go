package site

import (
	"bytes"
	"context"
	"errors"
	"io"
	"io/fs"
	"math/rand/v2"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"testing/fstest"
	"time"
)

// writeFiles creates files (path -> content) under dir.
func writeFiles(t testing.TB, dir string, files map[string]string) {
	t.Helper()
	for p, c := range files {
		full := filepath.Join(dir, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(c), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func randomBytes(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, seed))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func TestDirFetch(t *testing.T) {
	root := t.TempDir()
	www := filepath.Join(root, "www")
	writeFiles(t, root, map[string]string{
		"outside.txt":         "SECRET",
		"www/index.html":      "<h1>hi</h1>",
		"www/sub/a.txt":       "a",
		"www/.git/config":     "SECRET",
		"www/sub/.GIT/x":      "SECRET",
		"www/.gitignore":      "kept",
		"www/docs/guide.html": "guide",
	})
	mtime := time.Date(2024, 5, 6, 7, 8, 9, 0, time.UTC)
	for _, link := range []struct{ name, target string }{
		{"www/link.html", "sub/a.txt"},
		{"www/sub/up", "../index.html"},
		{"www/docslink", "docs"},
		{"www/abs-in", filepath.Join(www, "sub/a.txt")},
		{"www/abs-out", filepath.Join(root, "outside.txt")},
		{"www/rel-out", "../outside.txt"},
	} {
		if err := os.Symlink(link.target, filepath.Join(root, link.name)); err != nil {
			t.Fatal(err)
		}
	}
	filepath.WalkDir(www, func(p string, d fs.DirEntry, err error) error {
		os.Chtimes(p, mtime, mtime)
		return nil
	})

	src, err := Dir(www)
	if err != nil {
		t.Fatal(err)
	}
	tree, err := src.Fetch(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if tree.Source != "dir "+www || !tree.Time.Equal(mtime) || len(tree.Revision) != 64 {
		t.Errorf("tree %q %v %q", tree.Source, tree.Time, tree.Revision)
	}
	got := map[string]Entry{}
	for _, e := range tree.Entries {
		got[e.Path] = e
	}
	want := map[string]string{ // path -> content or "->target"
		"index.html": "<h1>hi</h1>", "sub/a.txt": "a", ".gitignore": "kept", "docs/guide.html": "guide",
		"link.html": "->sub/a.txt", "sub/up": "->../index.html", "docslink": "->docs",
		"abs-in": "->sub/a.txt", "abs-out": "->../outside.txt", "rel-out": "->../outside.txt",
	}
	if len(got) != len(want) {
		t.Errorf("entries %v, want %d", got, len(want))
	}
	for p, w := range want {
		e, ok := got[p]
		switch {
		case !ok:
			t.Errorf("missing %s", p)
		case strings.HasPrefix(w, "->"):
			if e.Kind != Symlink || e.Target != w[2:] {
				t.Errorf("%s: kind %d target %q, want link to %q", p, e.Kind, e.Target, w[2:])
			}
		default:
			rc, err := e.Open()
			if err != nil {
				t.Fatalf("%s: open: %v", p, err)
			}
			b, _ := io.ReadAll(rc)
			rc.Close()
			if e.Kind != File || string(b) != w || e.Size != int64(len(w)) || len(e.Hash) != 64 {
				t.Errorf("%s: kind %d size %d hash %q content %q, want %q", p, e.Kind, e.Size, e.Hash, b, w)
			}
		}
	}

	// The revision is stable, and changes with content.
	again, err := src.Fetch(context.Background())
	if err != nil || again.Revision != tree.Revision {
		t.Errorf("refetch: %v %q != %q", err, again.Revision, tree.Revision)
	}
	writeFiles(t, www, map[string]string{"sub/a.txt": "b"})
	changed, err := src.Fetch(context.Background())
	if err != nil || changed.Revision == tree.Revision {
		t.Errorf("after change: %v, revision unchanged %q", err, changed.Revision)
	}

	// Served: links inside redirect, outside 404.
	snap := mustBuild(t, changed, Options{})
	runServeCases(t, snap, []serveCase{
		{name: "file", path: "/sub/a.txt", status: 200, raw: ptr("b")},
		{name: "link", path: "/link.html", status: 301, want: map[string]string{"Location": "/sub/a.txt"}},
		{name: "abs link inside", path: "/abs-in", status: 301, want: map[string]string{"Location": "/sub/a.txt"}},
		{name: "abs link outside", path: "/abs-out", status: 404},
		{name: "rel link outside", path: "/rel-out", status: 404},
		{name: "dir link", path: "/docslink", status: 301, want: map[string]string{"Location": "/docs/"}},
		{name: "through dir link", path: "/docslink/guide.html", status: 301, want: map[string]string{"Location": "/docs/guide.html"}},
	})
}

func TestDirErrors(t *testing.T) {
	root := t.TempDir()
	writeFiles(t, root, map[string]string{"file": "x"})
	for _, p := range []string{filepath.Join(root, "missing"), filepath.Join(root, "file")} {
		if _, err := Dir(p); err == nil || !strings.Contains(err.Error(), p) {
			t.Errorf("Dir(%s): %v, want an error naming it", p, err)
		}
	}
}

func TestFetchUnreadable(t *testing.T) {
	if os.Geteuid() == 0 {
		// Root reads through mode 000; an FS that fails stands in below.
		t.Log("running as root: chmod cannot deny reads, using a failing FS instead")
	} else {
		root := t.TempDir()
		writeFiles(t, root, map[string]string{"ok.txt": "x", "locked/secret.txt": "y"})
		locked := filepath.Join(root, "locked")
		if err := os.Chmod(locked, 0); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { os.Chmod(locked, 0o755) })
		src, err := Dir(root)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := src.Fetch(context.Background()); err == nil || !strings.Contains(err.Error(), "locked") {
			t.Errorf("Fetch: %v, want an error naming locked", err)
		}
	}
	src := FromFS("failing", failingFS{fstest.MapFS{"ok.txt": {Data: []byte("x")}, "bad/file": {Data: []byte("y")}}, "bad"})
	if _, err := src.Fetch(context.Background()); err == nil || !strings.Contains(err.Error(), "bad") || !errors.Is(err, fs.ErrPermission) {
		t.Errorf("Fetch: %v, want a permission error naming bad", err)
	}
}

// failingFS refuses to list or open anything under deny.
type failingFS struct {
	fstest.MapFS
	deny string
}

func (f failingFS) Open(name string) (fs.File, error) {
	if name == f.deny || strings.HasPrefix(name, f.deny+"/") {
		return nil, &fs.PathError{Op: "open", Path: name, Err: fs.ErrPermission}
	}
	return f.MapFS.Open(name)
}

func (f failingFS) ReadDir(name string) ([]fs.DirEntry, error) {
	if name == f.deny {
		return nil, &fs.PathError{Op: "readdir", Path: name, Err: fs.ErrPermission}
	}
	return f.MapFS.ReadDir(name)
}

func TestFromFSEmbedLike(t *testing.T) {
	fallback := time.Date(2020, 1, 2, 3, 4, 5, 0, time.UTC)
	src := FromFS("embedded demo", fstest.MapFS{
		"index.html":  {Data: []byte("<p>demo</p>")},
		".git/HEAD":   {Data: []byte("SECRET")},
		"css/a.css":   {Data: []byte("a{}")},
		"dev":         {Mode: fs.ModeDevice},
		"css/link.sh": {Data: []byte("a.css"), Mode: fs.ModeSymlink},
	}).(*FS)
	src.Fallback = fallback
	tree, err := src.Fetch(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if !tree.Time.Equal(fallback) || tree.Source != "embedded demo" {
		t.Errorf("time %v source %q", tree.Time, tree.Source)
	}
	var paths []string
	for _, e := range tree.Entries {
		paths = append(paths, e.Path+":"+strconv.Itoa(int(e.Kind))+":"+e.Target)
	}
	if got := strings.Join(paths, " "); got != "css/a.css:0: css/link.sh:1:a.css index.html:0:" {
		t.Errorf("entries %s", got)
	}
}

// TestTraversal sends every spelling of "outside the site" and ".git" on a
// raw connection, so that no client normalizes them first, and also calls
// the handler directly.
func TestTraversal(t *testing.T) {
	root := t.TempDir()
	writeFiles(t, root, map[string]string{
		"secret.txt":        "SECRET",
		"www/index.html":    "<h1>home</h1>",
		"www/sub/a.txt":     "a",
		"www/.git/config":   "SECRET",
		"www/sub/.git/HEAD": "SECRET",
	})
	src, err := Dir(filepath.Join(root, "www"))
	if err != nil {
		t.Fatal(err)
	}
	tree, err := src.Fetch(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	// Put .git back into the tree, as a careless source might, to check
	// that Build and ServeHTTP refuse it on their own.
	tree.Entries = append(tree.Entries, memTree(map[string]memFile{
		".git/config": {content: "SECRET"}, "sub/.Git/HEAD": {content: "SECRET"},
	}).Entries...)
	snap := mustBuild(t, tree, Options{})
	srv := httptest.NewServer(snap)
	t.Cleanup(srv.Close)
	addr := srv.Listener.Addr().String()

	for _, target := range []string{
		"/../secret.txt", "/%2e%2e/secret.txt", "/.%2e/secret.txt", "/%2e./secret.txt", "/%2E%2E/secret.txt",
		"/..%2fsecret.txt", "/%2e%2e%2fsecret.txt", "/%2e%2e%5csecret.txt", "/..%5csecret.txt", "/..\\secret.txt",
		"/sub/..%5c..%5csecret.txt", "/sub/../../secret.txt", "/sub/%2e%2e/%2e%2e/secret.txt", "/sub/./a.txt",
		"/index.html%00", "/index.html%00.txt", "/sub%00/a.txt",
		"//secret.txt", "//../secret.txt", "/sub//a.txt", "///etc/passwd",
		"/.git/config", "/.GIT/config", "/.Git/config", "/%2egit/config", "/%2Egit/config", "/.git%2fconfig",
		"/.git", "/.git/", "/sub/.git/HEAD", "/sub/.GiT/HEAD", "/sub/.Git/HEAD",
		"/%252e%252e/secret.txt", "/%2e%2e", "/..", "/sub/..",
		"../secret.txt", "http://localhost/../secret.txt", "*",
	} {
		t.Run(target, func(t *testing.T) {
			resp, body := rawRequest(t, addr, "GET "+target+" HTTP/1.1")
			if resp.StatusCode != 400 && resp.StatusCode != 404 {
				t.Errorf("status %d, want 400 or 404; body %q", resp.StatusCode, body)
			}
			if bytes.Contains(body, []byte("SECRET")) {
				t.Errorf("leaked: %q", body)
			}
		})
	}

	// Direct calls, with Path and RawPath as a parser might leave them.
	for _, u := range []*url.URL{
		{Path: "/../secret.txt"},
		{Path: "/sub/../../secret.txt", RawPath: "/sub/%2e%2e/%2e%2e/secret.txt"},
		{Path: "/../secret.txt", RawPath: "/..%2fsecret.txt"},
		{Path: "/..\\secret.txt", RawPath: "/%2e%2e%5csecret.txt"},
		{Path: "/index.html\x00"},
		{Path: "/.git/config"},
		{Path: "/.GIT/config"},
		{Path: "secret.txt"},
		{Path: ""},
		{Opaque: "/../secret.txt"},
		{Path: "/sub/a.txt/../../secret.txt"},
	} {
		req := httptest.NewRequest("GET", "/", nil)
		req.URL = u
		w := httptest.NewRecorder()
		snap.ServeHTTP(w, req)
		if w.Code != 400 && w.Code != 404 || bytes.Contains(w.Body.Bytes(), []byte("SECRET")) {
			t.Errorf("direct %#v: %d %q", u, w.Code, w.Body.String())
		}
	}

	// Control: the real files are served.
	for p, want := range map[string]string{"/sub/a.txt": "a", "/": "<h1>home</h1>"} {
		resp, body := rawRequest(t, addr, "GET "+p+" HTTP/1.1")
		if resp.StatusCode != 200 || string(body) != want {
			t.Errorf("%s: %d %q", p, resp.StatusCode, body)
		}
	}
}

// TestLargeFiles serves files above Options.LargeFile from disk.
func TestLargeFiles(t *testing.T) {
	root := t.TempDir()
	big := randomBytes(300_000, 1)
	bigText := strings.Repeat("large text line that compresses well\n", 2000)
	gz := mustCompress(t, "gzip", bigText)
	pngLike := append([]byte("\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"), randomBytes(5000, 2)...)
	writeFiles(t, root, map[string]string{
		"big.bin":     string(big),
		"big.txt":     bigText,
		"big.txt.gz":  gz,
		"image":       string(pngLike),
		"small.txt":   "small",
		"exactly.txt": strings.Repeat("x", 4096),
	})
	src, err := Dir(root)
	if err != nil {
		t.Fatal(err)
	}
	tree, err := src.Fetch(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	snap := mustBuild(t, tree, Options{LargeFile: 4096})
	for _, p := range []string{"big.bin", "big.txt", "image"} {
		if r := snap.files[p]; r.identity.body != nil || r.identity.open == nil {
			t.Errorf("%s held in memory", p)
		}
	}
	if snap.files["exactly.txt"].identity.body == nil || snap.files["big.txt"].variants[codingGzip].body == nil {
		t.Errorf("small file or small sibling not in memory")
	}
	if snap.files["big.txt"].variants[codingBr] != nil {
		t.Errorf("large file compressed at build")
	}
	n := len(big)
	runServeCases(t, snap, []serveCase{
		{name: "whole", path: "/big.bin", status: 200, raw: ptr(string(big)),
			want: map[string]string{"Content-Length": strconv.Itoa(n), "Content-Type": "application/octet-stream"}},
		{name: "range", path: "/big.bin", header: map[string]string{"Range": "bytes=100000-100099"}, status: 206, raw: ptr(string(big[100000:100100])),
			want: map[string]string{"Content-Range": "bytes 100000-100099/" + strconv.Itoa(n)}},
		{name: "open range", path: "/big.bin", header: map[string]string{"Range": "bytes=299990-"}, status: 206, raw: ptr(string(big[299990:]))},
		{name: "unsatisfiable", path: "/big.bin", header: map[string]string{"Range": "bytes=400000-"}, status: 416,
			want: map[string]string{"Content-Range": "bytes */" + strconv.Itoa(n)}},
		{name: "head", method: "HEAD", path: "/big.bin", status: 200, raw: ptr(""), want: map[string]string{"Content-Length": strconv.Itoa(n)}},
		{name: "etag 304", path: "/big.bin", header: map[string]string{"If-None-Match": snap.files["big.bin"].identity.etag}, status: 304},
		{name: "sniffed", path: "/image", status: 200, want: map[string]string{"Content-Type": "image/png"}, raw: ptr(string(pngLike))},
		{name: "identity large text", path: "/big.txt", status: 200, raw: &bigText, want: map[string]string{"Content-Encoding": ""}},
		{name: "sibling for large", path: "/big.txt", header: map[string]string{"Accept-Encoding": "br, gzip"}, status: 200, raw: &gz, body: &bigText,
			want: map[string]string{"Content-Encoding": "gzip", "Content-Length": strconv.Itoa(len(gz)), "Vary": "Accept-Encoding"}},
	})
}

// TestBuildSizeMismatch checks that content that does not match its Size,
// as after a partial fetch, fails the build.
func TestBuildSizeMismatch(t *testing.T) {
	for _, c := range []struct {
		name  string
		delta int64
		large int64
	}{{"small short", 1, 0}, {"small long", -1, 0}, {"large short", 1, 8}, {"large long", -1, 8}} {
		t.Run(c.name, func(t *testing.T) {
			tree := memTree(map[string]memFile{"a.txt": {content: "0123456789abcdef"}, "ok": {content: "x"}})
			for i := range tree.Entries {
				if tree.Entries[i].Path == "a.txt" {
					tree.Entries[i].Size += c.delta
				}
			}
			_, err := Build(context.Background(), tree, Options{LargeFile: c.large, Logger: testLogger(t)})
			if err == nil || !strings.Contains(err.Error(), "a.txt") {
				t.Errorf("Build: %v, want an error naming a.txt", err)
			}
		})
	}
	tree := memTree(map[string]memFile{"a.txt": {content: "x"}})
	tree.Entries[0].Open = func() (io.ReadSeekCloser, error) { return nil, fs.ErrNotExist }
	if _, err := Build(context.Background(), tree, Options{Logger: testLogger(t)}); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Build with failing Open: %v", err)
	}
	for _, bad := range []string{"/abs", "a//b", "a/../b", "./a", ""} {
		tree := memTree(map[string]memFile{"x": {content: "x"}})
		tree.Entries[0].Path = bad
		if _, err := Build(context.Background(), tree, Options{Logger: testLogger(t)}); err == nil {
			t.Errorf("Build accepted path %q", bad)
		}
	}
}

// TestBuildMissingHash checks that entries without a Hash get one from
// their content.
func TestBuildMissingHash(t *testing.T) {
	tree := memTree(map[string]memFile{"a.txt": {content: "hello"}, "big": {content: strings.Repeat("z", 100)}})
	for i := range tree.Entries {
		tree.Entries[i].Hash = ""
	}
	snap := mustBuild(t, tree, Options{LargeFile: 50})
	for _, p := range []string{"a.txt", "big"} {
		if tag := snap.files[p].identity.etag; len(tag) != 66 {
			t.Errorf("%s: etag %q", p, tag)
		}
	}
}

// TestDirSeesRewriteWithSameSizeAndMtime: a build that keeps size and
// mtime (SOURCE_DATE_EPOCH, rsync -t) still changes the revision.
func TestDirSeesRewriteWithSameSizeAndMtime(t *testing.T) {
	root := t.TempDir()
	p := filepath.Join(root, "index.html")
	if err := os.WriteFile(p, []byte("version A"), 0o644); err != nil {
		t.Fatal(err)
	}
	fixed := time.Date(2020, 1, 1, 0, 0, 0, 0, time.UTC)
	os.Chtimes(p, fixed, fixed)
	src, err := Dir(root)
	if err != nil {
		t.Fatal(err)
	}
	first, err := src.Fetch(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	// Replaced by a new file, same size, same mtime.
	tmp := filepath.Join(root, ".tmp")
	os.WriteFile(tmp, []byte("version B"), 0o644)
	os.Chtimes(tmp, fixed, fixed)
	if err := os.Rename(tmp, p); err != nil {
		t.Fatal(err)
	}
	second, err := src.Fetch(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if first.Revision == second.Revision {
		t.Fatal("a rewrite keeping size and mtime did not change the revision")
	}
}
