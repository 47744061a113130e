package server

import (
	"bufio"
	"io"
	"math"
	"net"
	"net/http"
	"sync"
	"time"
)

// sendChunk bounds how much a single ReadFrom (sendfile) may send between
// two extensions of the write deadline: a slow client downloading a large
// file keeps making progress chunk by chunk, while one that stops reading
// is cut after SendTimeout.
const sendChunk = 4 << 20

// guard wraps h with the per-request protections net/http leaves to its
// users:
//
//   - A send timeout, like nginx's send_timeout: each response must make
//     progress within d. net/http has only WriteTimeout, a bound on the
//     whole response that would cut long downloads, and with it unset an
//     HTTP/2 client advertising a zero flow-control window holds a
//     handler goroutine per stream for as long as it likes.
//   - RFC 9112 §6.1: "If a message is received with both a
//     Transfer-Encoding and a Content-Length header field, ... the server
//     MUST close the connection after responding to such a request."
//     net/http removes the Content-Length before a handler runs, so every
//     HTTP/1 request with a Transfer-Encoding closes its connection; chunked
//     uploads still work, only without keep-alive.
func guard(h http.Handler, d time.Duration) http.Handler {
	return &guarded{next: h, timeout: d}
}

type guarded struct {
	next    http.Handler
	timeout time.Duration
}

var guardPool = sync.Pool{New: func() any { return new(deadlineWriter) }}

// ServeHTTP implements http.Handler.
func (g *guarded) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.ProtoMajor == 1 && len(r.TransferEncoding) > 0 {
		w.Header().Set("Connection", "close")
	}
	if g.timeout <= 0 {
		g.next.ServeHTTP(w, r)
		return
	}
	dw := guardPool.Get().(*deadlineWriter)
	*dw = deadlineWriter{ResponseWriter: w, rc: *http.NewResponseController(w), timeout: g.timeout}
	if r.ProtoMajor == 1 {
		// A keep-alive connection keeps the deadline the previous
		// response left; net/http may write (100 Continue) before the
		// handler does.
		dw.clear()
	}
	g.next.ServeHTTP(dw, r)
	// net/http sends what the handler left buffered (or, for a response
	// without a body, the headers) after it returns: bound that too. An
	// HTTP/2 stream that completes stops its timer.
	dw.extend()
	*dw = deadlineWriter{}
	guardPool.Put(dw)
}

// deadlineWriter arms the connection's (HTTP/1) or stream's (HTTP/2) write
// deadline for the duration of every write, and disarms it after: only a
// write that cannot make progress times out, never a quiet stream between
// two writes (server-sent events through the proxy). HTTP/2 matters here:
// its stream deadline is a timer that resets the stream when it fires,
// whether a write is pending or not. It keeps the optional interfaces of
// the writer it wraps: io.ReaderFrom for sendfile, http.Flusher, Hijack,
// and Unwrap for http.ResponseController.
type deadlineWriter struct {
	http.ResponseWriter
	rc      http.ResponseController // a value: a pointer would escape, one allocation per request
	timeout time.Duration
}

var (
	_ io.ReaderFrom = (*deadlineWriter)(nil)
	_ http.Flusher  = (*deadlineWriter)(nil)
)

// extend moves the write deadline to timeout from now. Writers that do not
// support deadlines (httptest recorders) simply go without.
func (w *deadlineWriter) extend() {
	w.rc.SetWriteDeadline(time.Now().Add(w.timeout))
}

// clear disarms the write deadline.
func (w *deadlineWriter) clear() {
	w.rc.SetWriteDeadline(time.Time{})
}

// Write implements http.ResponseWriter.
func (w *deadlineWriter) Write(p []byte) (int, error) {
	w.extend()
	n, err := w.ResponseWriter.Write(p)
	w.clear()
	return n, err
}

// ReadFrom sends src in chunks of sendChunk, extending the deadline before
// each, through the underlying ReadFrom: sendfile still applies, as
// net.TCPConn takes an *io.LimitedReader around an *os.File.
func (w *deadlineWriter) ReadFrom(src io.Reader) (int64, error) {
	rf, ok := w.ResponseWriter.(io.ReaderFrom)
	if !ok {
		return io.Copy(writerOnly{w}, src) // through Write, deadline and all
	}
	defer w.clear()
	// net.TCPConn's sendfile unwraps one *io.LimitedReader around an
	// *os.File, no more: keep a single level around the caller's reader.
	lr, ok := src.(*io.LimitedReader)
	if !ok {
		lr = &io.LimitedReader{R: src, N: math.MaxInt64}
	}
	var total int64
	for lr.N > 0 {
		w.extend()
		want := min(lr.N, sendChunk)
		n, err := rf.ReadFrom(&io.LimitedReader{R: lr.R, N: want})
		lr.N -= n
		total += n
		if err != nil || n < want {
			return total, err
		}
	}
	return total, nil
}

// Flush implements http.Flusher.
func (w *deadlineWriter) Flush() { w.FlushError() }

// FlushError is what http.ResponseController.Flush calls.
func (w *deadlineWriter) FlushError() error {
	w.extend()
	defer w.clear()
	return w.rc.Flush()
}

// Hijack lets protocol upgrades through (HTTP/1 only). The connection comes
// with its write deadline disarmed.
func (w *deadlineWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	return w.rc.Hijack()
}

// Unwrap returns the underlying writer, for http.ResponseController.
func (w *deadlineWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
