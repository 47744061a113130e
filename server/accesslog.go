package server

import (
	"bufio"
	"io"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"
)

// accessLog wraps h to log one Info record per request: method, host,
// path, status, bytes, proto, duration and remote address. When the logger
// discards Info, h runs unwrapped.
func accessLog(h http.Handler, log *slog.Logger) http.Handler {
	return &accessLogger{next: h, log: log}
}

type accessLogger struct {
	next http.Handler
	log  *slog.Logger
}

// writerPool recycles response writer wrappers so the access log adds no
// allocation per request of its own.
var writerPool = sync.Pool{New: func() any { return new(loggingWriter) }}

// ServeHTTP implements http.Handler.
func (a *accessLogger) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.ProtoMajor == 1 {
		if answerRejection(w, r, a.log) {
			return
		}
		w = closeUnlessHijacked(w, r)
	}
	ctx := r.Context()
	if !a.log.Enabled(ctx, slog.LevelInfo) {
		a.next.ServeHTTP(w, r)
		return
	}
	start := time.Now()
	lw := writerPool.Get().(*loggingWriter)
	*lw = loggingWriter{ResponseWriter: w}
	defer func() {
		status := lw.status
		if status == 0 {
			status = http.StatusOK // nothing written: net/http sends 200
		}
		a.log.LogAttrs(ctx, slog.LevelInfo, "request",
			slog.String("method", r.Method),
			slog.String("host", r.Host),
			slog.String("path", r.URL.Path),
			slog.Int("status", status),
			slog.Int64("bytes", lw.bytes),
			slog.String("proto", r.Proto),
			slog.Duration("duration", time.Since(start)),
			slog.String("remote", r.RemoteAddr),
		)
		*lw = loggingWriter{}
		writerPool.Put(lw)
	}()
	a.next.ServeHTTP(lw, r)
}

// loggingWriter records the status and body size of a response. It keeps
// the optional interfaces a static file server relies on: io.ReaderFrom so
// sendfile still applies, http.Flusher, and Unwrap for
// http.ResponseController (deadlines, hijacking).
type loggingWriter struct {
	http.ResponseWriter
	status int
	bytes  int64
}

var (
	_ io.ReaderFrom = (*loggingWriter)(nil)
	_ http.Flusher  = (*loggingWriter)(nil)
)

// WriteHeader records the final status; 1xx informational responses are
// not final.
func (w *loggingWriter) WriteHeader(code int) {
	if w.status == 0 && (code >= 200 || code == http.StatusSwitchingProtocols) {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

// Write implements http.ResponseWriter.
func (w *loggingWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(p)
	w.bytes += int64(n)
	return n, err
}

// ReadFrom passes through to the underlying writer's ReadFrom, which for
// HTTP/1 over TCP uses sendfile.
func (w *loggingWriter) ReadFrom(r io.Reader) (int64, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	var n int64
	var err error
	if rf, ok := w.ResponseWriter.(io.ReaderFrom); ok {
		n, err = rf.ReadFrom(r)
	} else {
		n, err = io.Copy(writerOnly{w.ResponseWriter}, r)
	}
	w.bytes += n
	return n, err
}

// writerOnly hides a writer's ReadFrom so io.Copy does not recurse.
type writerOnly struct{ io.Writer }

// Flush implements http.Flusher.
func (w *loggingWriter) Flush() { w.FlushError() }

// FlushError is what http.ResponseController.Flush calls, so flush errors
// reach callers that ask for them.
func (w *loggingWriter) FlushError() error {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return http.NewResponseController(w.ResponseWriter).Flush()
}

// Hijack lets protocol upgrades through where the underlying writer
// supports them (HTTP/1 only).
func (w *loggingWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	return http.NewResponseController(w.ResponseWriter).Hijack()
}

// Unwrap returns the underlying writer, for http.ResponseController.
func (w *loggingWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
