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
