package site

import (
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
)

// discardWriter is a ResponseWriter that keeps nothing, so that the
// benchmark measures the handler rather than a recorder.
type discardWriter struct {
	h      http.Header
	status int
}

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) WriteHeader(status int)      { w.status = status }
func (w *discardWriter) Write(b []byte) (int, error) { return len(b), nil }

// BenchmarkServe measures the hot path: a lookup, header assignments and a
// write.
func BenchmarkServe(b *testing.B) {
	snap := mustBuild(b, memTree(testFiles(b)), Options{Logger: slog.New(slog.DiscardHandler)})
	for _, c := range []struct {
		name   string
		path   string
		header map[string]string
		status int
	}{
		{"identity", "/style.css", nil, 200},
		{"index", "/", nil, 200},
		{"brotli", "/app.js", map[string]string{"Accept-Encoding": "gzip, deflate, br, zstd"}, 200},
		{"not-modified", "/app.js", map[string]string{"If-None-Match": snap.files["app.js"].identity.etag}, 304},
		{"404-page", "/missing", map[string]string{"Accept-Encoding": "gzip"}, 404},
	} {
		b.Run(c.name, func(b *testing.B) {
			r := httptest.NewRequest("GET", c.path, nil)
			for k, v := range c.header {
				r.Header.Set(k, v)
			}
			w := &discardWriter{h: make(http.Header, 8)}
			b.ReportAllocs()
			for b.Loop() {
				clear(w.h)
				snap.ServeHTTP(w, r)
			}
			if w.status != c.status {
				b.Fatalf("status %d, want %d", w.status, c.status)
			}
		})
	}
}
