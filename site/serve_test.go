package site

import (
	"bytes"
	"compress/gzip"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/andybalholm/brotli"
	"github.com/klauspost/compress/zstd"
)

var (
	indexHTML  = "<!DOCTYPE html><html><head><title>paf</title></head><body>" + strings.Repeat("<p>Hello from the paf test site, served from a snapshot.</p>\n", 80) + "</body></html>\n"
	styleCSS   = strings.Repeat("body { margin: 0; padding: 0; font-family: sans-serif; }\n", 60)
	appJS      = strings.Repeat("export function hello(name) { return `hello ${name}`; }\n", 60)
	dataJSON   = `{"items": [` + strings.Repeat(`{"name": "item", "value": 42},`, 100) + `{}]}`
	preJS      = strings.Repeat("console.log('precompressed sibling');\n", 50)
	pngBytes   = "\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR" + strings.Repeat("\x00", 200)
	woff2Bytes = "wOF2" + strings.Repeat("\x00\x01\x02\x03", 100)
	pdfBytes   = "%PDF-1.4\n" + strings.Repeat("binary\x00\x01", 30)
	notFound   = "<!DOCTYPE html><title>gone</title><p>Custom not found page.</p>" + strings.Repeat("<!-- padding -->", 40)
)

// compressWith compresses s in coding k with a decoder-side library, to
// make distinct sibling files.
func mustCompress(t testing.TB, name, s string) string {
	t.Helper()
	var buf bytes.Buffer
	switch name {
	case "gzip":
		w := gzip.NewWriter(&buf)
		w.Write([]byte(s))
		w.Close()
	case "br":
		w := brotli.NewWriterLevel(&buf, 1)
		w.Write([]byte(s))
		w.Close()
	}
	return buf.String()
}

func testFiles(t testing.TB) map[string]memFile {
	return map[string]memFile{
		"index.html":      {content: indexHTML},
		"style.css":       {content: styleCSS},
		"app.js":          {content: appJS},
		"mod.mjs":         {content: appJS},
		"data.json":       {content: dataJSON},
		"img.png":         {content: pngBytes},
		"font.woff2":      {content: woff2Bytes},
		"notes":           {content: "plain words without an extension\n"},
		"blob":            {content: pdfBytes},
		"small.txt":       {content: "hi\n"},
		"feed":            {content: "<feed/>"},
		"over.txt":        {content: "override me"},
		"docs/index.html": {content: "<h1>docs</h1>"},
		"docs/guide.html": {content: "<h1>guide</h1>"},
		"pre.js":          {content: preJS},
		"pre.js.gz":       {content: mustCompress(t, "gzip", preJS)},
		"pre.js.br":       {content: mustCompress(t, "br", preJS)},
		"404.html":        {content: notFound},
		".git/config":     {content: "SECRET"},
		".GIT/HEAD":       {content: "SECRET"},
		"link.html":       {link: "docs/guide.html"},
		"docs/up.html":    {link: "../small.txt"},
		"linkdir":         {link: "docs"},
		"rootlink":        {link: "/docs/guide.html"},
		"escape":          {link: "../../etc/passwd"},
		"abs":             {link: "/etc/passwd"},
		"dangling":        {link: "nothing-here"},
		"gitlink":         {link: ".git/config"},
		"winlink":         {link: "C:\\Windows\\win.ini"},
		"ext":             {link: "https://example.org/elsewhere"},
		"empty.txt":       {content: ""},
	}
}

func testOptions() Options {
	return Options{MIMETypes: map[string]string{"/feed": "application/atom+xml", "over.txt": "text/x-custom"}}
}

// decode undoes a Content-Encoding.
func decode(t *testing.T, enc string, b []byte) []byte {
	t.Helper()
	var r io.Reader
	switch enc {
	case "":
		return b
	case "gzip":
		zr, err := gzip.NewReader(bytes.NewReader(b))
		if err != nil {
			t.Fatalf("gzip: %v", err)
		}
		r = zr
	case "br":
		r = brotli.NewReader(bytes.NewReader(b))
	case "zstd":
		zr, err := zstd.NewReader(nil, zstd.WithDecoderConcurrency(1))
		if err != nil {
			t.Fatalf("zstd: %v", err)
		}
		defer zr.Close()
		out, err := zr.DecodeAll(b, nil)
		if err != nil {
			t.Fatalf("decode zstd: %v", err)
		}
		return out
	default:
		t.Fatalf("unknown encoding %q", enc)
	}
	out, err := io.ReadAll(r)
	if err != nil {
		t.Fatalf("decode %s: %v", enc, err)
	}
	return out
}

type serveCase struct {
	name   string
	method string // GET when empty
	path   string
	header map[string]string
	status int
	// want are expected response headers; "" means absent.
	want map[string]string
	// body is the expected body after decoding Content-Encoding, when
	// non-nil.
	body *string
	// contains is a substring the raw body must contain.
	contains string
	// raw is the exact raw body, when non-nil.
	raw *string
}

func ptr(s string) *string { return &s }

func TestServe(t *testing.T) {
	files := testFiles(t)
	snap := mustBuild(t, memTree(files), testOptions())
	etag := func(p string) string { return snap.files[p].identity.etag }
	lm := treeTime.Format(http.TimeFormat)
	idxTag := etag("index.html")
	idxHash := strings.Trim(idxTag, `"`)

	cases := []serveCase{
		{name: "root index", path: "/", status: 200, body: &indexHTML,
			want: map[string]string{"Content-Type": "text/html; charset=utf-8", "ETag": idxTag, "Last-Modified": lm,
				"Content-Length": strconv.Itoa(len(indexHTML)), "Accept-Ranges": "bytes", "Vary": "Accept-Encoding", "Content-Encoding": ""}},
		{name: "index by name", path: "/index.html", status: 200, body: &indexHTML},
		{name: "dir index", path: "/docs/", status: 200, body: ptr("<h1>docs</h1>")},
		{name: "dir slash redirect keeps query", path: "/docs?a=1&b=2", status: 301, want: map[string]string{"Location": "/docs/?a=1&b=2"}},
		{name: "dir redirect", path: "/docs", status: 301, want: map[string]string{"Location": "/docs/"}},
		{name: "css", path: "/style.css", status: 200, body: &styleCSS, want: map[string]string{"Content-Type": "text/css; charset=utf-8"}},
		{name: "js", path: "/app.js", status: 200, body: &appJS, want: map[string]string{"Content-Type": "text/javascript; charset=utf-8"}},
		{name: "mjs", path: "/mod.mjs", status: 200, want: map[string]string{"Content-Type": "text/javascript; charset=utf-8"}},
		{name: "json", path: "/data.json", status: 200, want: map[string]string{"Content-Type": "application/json; charset=utf-8"}},
		{name: "png", path: "/img.png", status: 200, body: &pngBytes, want: map[string]string{"Content-Type": "image/png", "Vary": ""},
			header: map[string]string{"Accept-Encoding": "br, gzip, zstd"}},
		{name: "woff2 not compressed", path: "/font.woff2", status: 200, header: map[string]string{"Accept-Encoding": "br, gzip, zstd"},
			want: map[string]string{"Content-Type": "font/woff2", "Content-Encoding": ""}, raw: &woff2Bytes},
		{name: "sniffed text", path: "/notes", status: 200, want: map[string]string{"Content-Type": "text/plain; charset=utf-8"}},
		{name: "sniffed pdf", path: "/blob", status: 200, want: map[string]string{"Content-Type": "application/pdf"}},
		{name: "mime override with slash", path: "/feed", status: 200, want: map[string]string{"Content-Type": "application/atom+xml; charset=utf-8"}},
		{name: "mime override without slash", path: "/over.txt", status: 200, want: map[string]string{"Content-Type": "text/x-custom; charset=utf-8"}},
		{name: "small not compressed", path: "/small.txt", status: 200, header: map[string]string{"Accept-Encoding": "gzip, br, zstd"},
			want: map[string]string{"Content-Encoding": "", "Content-Type": "text/plain; charset=utf-8"}, raw: ptr("hi\n")},
		{name: "empty file", path: "/empty.txt", status: 200, want: map[string]string{"Content-Length": "0"}, raw: ptr("")},

		// Compression negotiation.
		{name: "br preferred", path: "/", header: map[string]string{"Accept-Encoding": "gzip, deflate, br, zstd"}, status: 200, body: &indexHTML,
			want: map[string]string{"Content-Encoding": "br", "ETag": `"` + idxHash + `-br"`, "Vary": "Accept-Encoding"}},
		{name: "zstd", path: "/", header: map[string]string{"Accept-Encoding": "zstd"}, status: 200, body: &indexHTML,
			want: map[string]string{"Content-Encoding": "zstd", "ETag": `"` + idxHash + `-zstd"`}},
		{name: "gzip", path: "/", header: map[string]string{"Accept-Encoding": "gzip"}, status: 200, body: &indexHTML,
			want: map[string]string{"Content-Encoding": "gzip", "ETag": `"` + idxHash + `-gzip"`}},
		{name: "q values", path: "/style.css", header: map[string]string{"Accept-Encoding": "br;q=0.5, gzip;q=0.9, zstd;q=0.1"}, status: 200, body: &styleCSS,
			want: map[string]string{"Content-Encoding": "gzip"}},
		{name: "q=0 excludes", path: "/style.css", header: map[string]string{"Accept-Encoding": "br;q=0, *"}, status: 200, body: &styleCSS,
			want: map[string]string{"Content-Encoding": "zstd"}},
		{name: "identity preferred", path: "/style.css", header: map[string]string{"Accept-Encoding": "gzip;q=0.5, identity"}, status: 200, body: &styleCSS,
			want: map[string]string{"Content-Encoding": ""}},
		{name: "star", path: "/app.js", header: map[string]string{"Accept-Encoding": "*"}, status: 200, body: &appJS,
			want: map[string]string{"Content-Encoding": "br"}},
		{name: "unknown only", path: "/app.js", header: map[string]string{"Accept-Encoding": "deflate, compress"}, status: 200, raw: &appJS,
			want: map[string]string{"Content-Encoding": ""}},
		{name: "no accept-encoding", path: "/app.js", status: 200, raw: &appJS, want: map[string]string{"Content-Encoding": "", "Vary": "Accept-Encoding"}},
		{name: "json gzip", path: "/data.json", header: map[string]string{"Accept-Encoding": "gzip"}, status: 200, body: &dataJSON,
			want: map[string]string{"Content-Encoding": "gzip"}},
		{name: "precompressed gz sibling", path: "/pre.js", header: map[string]string{"Accept-Encoding": "gzip"}, status: 200,
			raw: ptr(files["pre.js.gz"].content), body: &preJS, want: map[string]string{"Content-Encoding": "gzip"}},
		{name: "precompressed br sibling", path: "/pre.js", header: map[string]string{"Accept-Encoding": "br, gzip"}, status: 200,
			raw: ptr(files["pre.js.br"].content), body: &preJS, want: map[string]string{"Content-Encoding": "br"}},
		{name: "sibling served as itself", path: "/pre.js.gz", header: map[string]string{"Accept-Encoding": "gzip"}, status: 200,
			raw: ptr(files["pre.js.gz"].content), want: map[string]string{"Content-Type": "application/gzip", "Content-Encoding": ""}},

		// Conditional requests.
		{name: "if-none-match 304", path: "/", header: map[string]string{"If-None-Match": idxTag}, status: 304, raw: ptr(""),
			want: map[string]string{"ETag": idxTag, "Content-Length": ""}},
		{name: "if-none-match weak", path: "/", header: map[string]string{"If-None-Match": "W/" + idxTag}, status: 304},
		{name: "if-none-match list", path: "/", header: map[string]string{"If-None-Match": `"nope", ` + idxTag + `, "other"`}, status: 304},
		{name: "if-none-match star", path: "/", header: map[string]string{"If-None-Match": "*"}, status: 304},
		{name: "if-none-match mismatch", path: "/", header: map[string]string{"If-None-Match": `"nope"`}, status: 200, body: &indexHTML},
		{name: "if-none-match br variant", path: "/", header: map[string]string{"If-None-Match": `"` + idxHash + `-br"`, "Accept-Encoding": "br"}, status: 304,
			want: map[string]string{"ETag": `"` + idxHash + `-br"`, "Vary": "Accept-Encoding"}},
		{name: "identity tag does not match br", path: "/", header: map[string]string{"If-None-Match": idxTag, "Accept-Encoding": "br"}, status: 200, body: &indexHTML},
		{name: "if-modified-since equal", path: "/", header: map[string]string{"If-Modified-Since": lm}, status: 304},
		{name: "if-modified-since later", path: "/", header: map[string]string{"If-Modified-Since": treeTime.Add(time.Hour).Format(http.TimeFormat)}, status: 304},
		{name: "if-modified-since earlier", path: "/", header: map[string]string{"If-Modified-Since": treeTime.Add(-time.Hour).Format(http.TimeFormat)}, status: 200},
		{name: "if-none-match wins over ims", path: "/", header: map[string]string{"If-None-Match": `"nope"`, "If-Modified-Since": lm}, status: 200},
		{name: "if-match fails", path: "/", header: map[string]string{"If-Match": `"nope"`}, status: 412},
		{name: "if-match ok", path: "/", header: map[string]string{"If-Match": idxTag}, status: 200},

		// Ranges.
		{name: "range", path: "/style.css", header: map[string]string{"Range": "bytes=5-14", "Accept-Encoding": "br, gzip"}, status: 206,
			raw: ptr(styleCSS[5:15]), want: map[string]string{"Content-Range": "bytes 5-14/" + strconv.Itoa(len(styleCSS)), "Content-Encoding": "", "Content-Length": "10"}},
		{name: "suffix range", path: "/style.css", header: map[string]string{"Range": "bytes=-7"}, status: 206, raw: ptr(styleCSS[len(styleCSS)-7:])},
		{name: "range unsatisfiable", path: "/style.css", header: map[string]string{"Range": "bytes=999999-"}, status: 416,
			want: map[string]string{"Content-Range": "bytes */" + strconv.Itoa(len(styleCSS))}},
		{name: "if-range match", path: "/style.css", header: map[string]string{"Range": "bytes=0-3", "If-Range": etag("style.css")}, status: 206, raw: ptr(styleCSS[:4])},
		{name: "if-range mismatch", path: "/style.css", header: map[string]string{"Range": "bytes=0-3", "If-Range": `"old"`}, status: 200, raw: &styleCSS},
		{name: "multi range", path: "/style.css", header: map[string]string{"Range": "bytes=0-1,5-6"}, status: 206, contains: styleCSS[5:7]},

		// Methods.
		{name: "head", method: "HEAD", path: "/", status: 200, raw: ptr(""),
			want: map[string]string{"Content-Length": strconv.Itoa(len(indexHTML)), "ETag": idxTag, "Content-Type": "text/html; charset=utf-8"}},
		{name: "head br", method: "HEAD", path: "/", header: map[string]string{"Accept-Encoding": "br"}, status: 200, raw: ptr(""),
			want: map[string]string{"Content-Encoding": "br"}},
		{name: "post", method: "POST", path: "/", status: 405, want: map[string]string{"Allow": "GET, HEAD"}},
		{name: "delete", method: "DELETE", path: "/index.html", status: 405, want: map[string]string{"Allow": "GET, HEAD"}},
		{name: "options", method: "OPTIONS", path: "/", status: 204, want: map[string]string{"Allow": "GET, HEAD"}},

		// Links.
		{name: "symlink", path: "/link.html", status: 301, want: map[string]string{"Location": "/docs/guide.html"}},
		{name: "symlink up", path: "/docs/up.html", status: 301, want: map[string]string{"Location": "/small.txt"}},
		{name: "symlink to dir", path: "/linkdir", status: 301, want: map[string]string{"Location": "/docs/"}},
		{name: "symlink to dir with slash", path: "/linkdir/", status: 301, want: map[string]string{"Location": "/docs/"}},
		{name: "through symlinked dir", path: "/linkdir/guide.html?x=1", status: 301, want: map[string]string{"Location": "/docs/guide.html?x=1"}},
		{name: "root-absolute link", path: "/rootlink", status: 301, want: map[string]string{"Location": "/docs/guide.html"}},
		{name: "escaping link", path: "/escape", status: 404, contains: "Custom not found"},
		{name: "absolute fs link", path: "/abs", status: 404},
		{name: "dangling link", path: "/dangling", status: 404},
		{name: "link into .git", path: "/gitlink", status: 404},
		{name: "windows link", path: "/winlink", status: 404},
		{name: "external link", path: "/ext", status: 301, want: map[string]string{"Location": "https://example.org/elsewhere"}},

		// Missing.
		{name: "404 page", path: "/missing", status: 404, raw: &notFound,
			want: map[string]string{"Content-Type": "text/html; charset=utf-8", "ETag": "", "Content-Length": strconv.Itoa(len(notFound))}},
		{name: "404 page compressed", path: "/missing", header: map[string]string{"Accept-Encoding": "gzip"}, status: 404, body: &notFound,
			want: map[string]string{"Content-Encoding": "gzip"}},
		{name: "404 page head", method: "HEAD", path: "/missing", status: 404, raw: ptr("")},
		{name: "dir without index", path: "/nodir/", status: 404},
		{name: "file with slash", path: "/style.css/", status: 404},
		{name: ".git", path: "/.git/config", status: 404, want: map[string]string{"Content-Type": "text/plain; charset=utf-8"}},
		{name: ".GIT", path: "/.GIT/HEAD", status: 404},
		{name: ".Git dir", path: "/.Git/", status: 404},
	}
	runServeCases(t, snap, cases)
}

func runServeCases(t *testing.T, h http.Handler, cases []serveCase) {
	for _, ts := range servers(t, h) {
		t.Run(ts.name, func(t *testing.T) {
			for _, c := range cases {
				t.Run(c.name, func(t *testing.T) {
					method := c.method
					if method == "" {
						method = "GET"
					}
					resp, body := ts.do(t, method, c.path, c.header)
					if resp.StatusCode != c.status {
						t.Fatalf("status %d, want %d; body %q", resp.StatusCode, c.status, truncate(body))
					}
					for k, v := range c.want {
						if got := resp.Header.Get(k); got != v {
							t.Errorf("%s: %q, want %q", k, got, v)
						}
					}
					if c.raw != nil && string(body) != *c.raw {
						t.Errorf("raw body %q, want %q", truncate(body), truncate([]byte(*c.raw)))
					}
					if c.body != nil {
						if got := decode(t, resp.Header.Get("Content-Encoding"), body); string(got) != *c.body {
							t.Errorf("decoded body %q, want %q", truncate(got), truncate([]byte(*c.body)))
						}
					}
					if c.contains != "" && !bytes.Contains(body, []byte(c.contains)) {
						t.Errorf("body %q lacks %q", truncate(body), c.contains)
					}
					if bytes.Contains(body, []byte("SECRET")) {
						t.Errorf("body leaks .git content")
					}
				})
			}
		})
	}
}

func truncate(b []byte) string {
	if len(b) > 120 {
		return string(b[:120]) + "..."
	}
	return string(b)
}

func TestServePlain404AndDefault(t *testing.T) {
	files := testFiles(t)
	delete(files, "404.html")
	plain := mustBuild(t, memTree(files), Options{})
	runServeCases(t, plain, []serveCase{
		{name: "plain 404", path: "/missing", status: 404, contains: "Not Found", want: map[string]string{"Content-Type": "text/html; charset=utf-8"}},
	})
	def := mustBuild(t, memTree(files), Options{Default: "https://example.org/home"})
	runServeCases(t, def, []serveCase{
		{name: "default 302", path: "/missing", status: 302, want: map[string]string{"Location": "https://example.org/home"}},
		{name: "existing still served", path: "/small.txt", status: 200, raw: ptr("hi\n")},
	})
}

func TestServeHostnames(t *testing.T) {
	snap := mustBuild(t, memTree(testFiles(t)), Options{Hostnames: []string{"Example.ORG", "www.example.org.", "::1"}})
	runServeCases(t, snap, []serveCase{
		{name: "other host", path: "/small.txt", header: map[string]string{"Host": "evil.example"}, status: 421},
		{name: "ip host", path: "/small.txt", status: 421},
		{name: "allowed host", path: "/small.txt", header: map[string]string{"Host": "example.org"}, status: 200, raw: ptr("hi\n")},
		{name: "allowed host with port and case", path: "/small.txt", header: map[string]string{"Host": "WWW.example.org:8443"}, status: 200},
		{name: "allowed with trailing dot", path: "/small.txt", header: map[string]string{"Host": "example.org."}, status: 200},
		{name: "ipv6 with port", path: "/small.txt", header: map[string]string{"Host": "[::1]:8080"}, status: 200},
		{name: "ipv6 without port", path: "/small.txt", header: map[string]string{"Host": "[::1]"}, status: 200},
		{name: "other with port", path: "/small.txt", header: map[string]string{"Host": "example.net:443"}, status: 421},
	})
}
