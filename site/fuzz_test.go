package site

import (
	"bufio"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// FuzzServePath sends arbitrary request targets to a snapshot holding a
// public file, a .git directory and a link leading out of the site. Whatever
// the target, the response must never carry a secret's bytes, and a 200
// must be exactly one public file.
func FuzzServePath(f *testing.F) {
	for _, seed := range []string{
		"/", "/index.html", "/docs", "/docs/", "/a%2e%2e/", "/..%2f.git/config", "/%2e%2e/%2e%2e/etc/passwd",
		"/.git/config", "/.GIT/HEAD", "/docs/..%5c..%5c.git/config", "/%00", "/docs/%2e%2e/.git/config",
		"//.git/config", "/docs/./../.git", "/out", "/out/", "/docs\\..\\.git\\config", "/index.html%00.txt",
		"/%252e%252e/.git/config", "/docs/.git", "/.%2e/.git", "*", "http://x/.git/config",
	} {
		f.Add(seed)
	}
	tree := memTree(map[string]memFile{
		"index.html":      {content: "<p>public index</p>"},
		"docs/index.html": {content: "<p>public docs</p>"},
		".git/config":     {content: "SECRET-GIT-CONFIG"},
		"out":             {link: "../../etc"},
	})
	snap := mustBuild(f, tree, Options{})
	public := map[string]bool{"<p>public index</p>": true, "<p>public docs</p>": true}

	f.Fuzz(func(t *testing.T, target string) {
		// Go through net/http's own request parsing, as the server does.
		raw := "GET " + target + " HTTP/1.1\r\nHost: example.org\r\n\r\n"
		req, err := http.ReadRequest(bufio.NewReader(strings.NewReader(raw)))
		if err != nil {
			return // net/http refuses it before any handler runs
		}
		rec := httptest.NewRecorder()
		snap.ServeHTTP(rec, req)
		body := rec.Body.String()
		if strings.Contains(body, "SECRET") {
			t.Fatalf("%q served a secret: %d %q", target, rec.Code, body)
		}
		if rec.Code == http.StatusOK && !public[body] {
			t.Fatalf("%q: 200 with %q, not a public file", target, body)
		}
	})
}

// FuzzAcceptEncoding sends arbitrary Accept-Encoding values (and Range,
// the other request field the snapshot reads itself) for a compressible
// page. Whatever they say, the answer decodes to the page's bytes (or a
// slice of them for 206), and a coding is only used when the field names
// it or "*" with a non-zero q.
func FuzzAcceptEncoding(f *testing.F) {
	for _, seed := range []struct{ ae, rng string }{
		{"gzip", ""}, {"br;q=0.5, gzip;q=0.9", ""}, {"*;q=0", ""}, {"identity;q=0, *;q=0", ""},
		{"zstd;q=1.000, br;q=1", ""}, {"GZIP;Q=0.001", ""}, {"gzip;q=1.0001", ""}, {"x-gzip, deflate", ""},
		{";;,,q=", ""}, {"br", "bytes=0-9"}, {"", "bytes=-5"}, {"gzip", "bytes=5-2"}, {"", "bytes=0-1,3-4"},
	} {
		f.Add(seed.ae, seed.rng)
	}
	page := strings.Repeat("<p>compressible paf page</p>\n", 200)
	snap := mustBuild(f, memTree(map[string]memFile{"index.html": {content: page}}), Options{})
	f.Fuzz(func(t *testing.T, ae, rng string) {
		req := httptest.NewRequest("GET", "/index.html", nil)
		req.Header.Set("Accept-Encoding", ae)
		if rng != "" {
			req.Header.Set("Range", rng)
		}
		rec := httptest.NewRecorder()
		snap.ServeHTTP(rec, req)
		enc := rec.Header().Get("Content-Encoding")
		if enc != "" {
			lower := strings.ToLower(ae)
			if !strings.Contains(lower, enc) && !strings.Contains(lower, "*") {
				t.Fatalf("Accept-Encoding %q: served %s", ae, enc)
			}
		}
		body := string(decode(t, enc, rec.Body.Bytes()))
		switch rec.Code {
		case http.StatusOK:
			if body != page {
				t.Fatalf("Accept-Encoding %q: 200 with %d bytes that are not the page", ae, len(body))
			}
		case http.StatusPartialContent:
			if enc != "" {
				t.Fatalf("Range %q: 206 with Content-Encoding %s", rng, enc)
			}
			if !strings.Contains(rec.Header().Get("Content-Type"), "multipart/byteranges") && !strings.Contains(page, body) {
				t.Fatalf("Range %q: 206 with bytes not in the page", rng)
			}
		case http.StatusRequestedRangeNotSatisfiable, http.StatusNotAcceptable:
		default:
			t.Fatalf("Accept-Encoding %q, Range %q: status %d", ae, rng, rec.Code)
		}
	})
}
