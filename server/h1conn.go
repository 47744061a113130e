package server

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/subtle"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2"
)

// maxRequestLine bounds the request line (method, target and version,
// without its line end), like nginx's large_client_header_buffers (4 8k):
// a longer one is answered 414 URI Too Long, the status that names the
// usual cause, instead of the 431 net/http would send for it.
const maxRequestLine = 8 << 10

// h1Limits bounds what an h1Conn holds of one request head.
type h1Limits struct {
	// maxRequestLine is the longest request line accepted, line end
	// excluded; longer ones get 414. Zero means maxRequestLine.
	maxRequestLine int
	// maxHead is the longest head accepted, request line and line ends
	// included; longer ones get 431. Zero means DefaultMaxHeaderBytes.
	maxHead int
	// headTimeout bounds the time from a head's first byte to its last
	// (Config.ReadHeaderTimeout); a slower head gets 408. Zero means
	// none.
	headTimeout time.Duration
}

// h1Limits returns the limits of the Server's HTTP/1 connections.
func (s *Server) h1Limits() h1Limits {
	return h1Limits{maxRequestLine: maxRequestLine, maxHead: s.cfg.MaxHeaderBytes, headTimeout: s.cfg.ReadHeaderTimeout}
}

func (l h1Limits) withDefaults() h1Limits {
	if l.maxRequestLine <= 0 {
		l.maxRequestLine = maxRequestLine
	}
	if l.maxHead <= 0 {
		l.maxHead = DefaultMaxHeaderBytes
	}
	return l
}

const (
	// h1MinBuf is the head buffer's first size, and the least it may
	// grow to whatever maxHead says.
	h1MinBuf = 4 << 10
	// h1MaxChunkLine bounds a chunk-size line, extensions included, as
	// net/http's chunked reader does.
	h1MaxChunkLine = 4 << 10
	// h1Linger and h1LingerBytes bound the draining of a rejected
	// connection before it is closed.
	h1Linger      = 500 * time.Millisecond
	h1LingerBytes = 256 << 10
	// h1RejectHeader carries the token that marks a stand-in request.
	h1RejectHeader = "Paf-Reject"
)

// h1Conn is the front of an HTTP/1.1 connection: it hands net/http only
// request heads it has read whole and checked, so that every malformed
// request is answered 400 (or 414, 431, 501) and the connection closed, as
// issue 6 requires. net/http stays the parser of record; h1Conn exists for
// the few cases net/http's parser decides in a way no handler can see or
// undo:
//
//   - Obsolete line folding (RFC 9112 §5.2: "A server that receives an
//     obs-fold in a request message ... MUST either reject the message by
//     sending a 400 (Bad Request) ... or replace each received obs-fold
//     with one or more SP octets"): net/http joins folded lines, so the
//     handler sees a clean value. h1Conn rejects them.
//   - An oversize request line: net/http counts it in MaxHeaderBytes and
//     answers 431. h1Conn answers 414 beyond maxRequestLine, like nginx.
//   - Transfer-Encoding in an HTTP/1.0 request (RFC 9112 §6.1: "the
//     server MUST treat the message as if the framing is faulty, even if a
//     Content-Length is present, and close the connection after
//     responding"): net/http ignores the field (golang/go#12785), frames
//     by Content-Length and keeps a keep-alive connection open. h1Conn
//     rejects it, and with it Content-Length beside Transfer-Encoding,
//     any coding other than a single "chunked" (501), and Content-Length
//     values that are not one plain decimal number.
//   - A first line that is not HTTP/1 at all (its last word does not start
//     with "HTTP/"), such as an invalid HTTP/2 preface on an h2c port or
//     an HTTP/0.9 request: the connection is closed without a byte
//     written, since an HTTP/1 error would be garbage to such a peer (RFC
//     9113 §3.4 makes an invalid preface a connection error).
//
// While it holds a head, h1Conn also rejects a bare CR anywhere in it (RFC
// 9112 §2.2; a bare LF ends a line, as net/http accepts), a head over
// maxHead (431), and a head that takes longer than headTimeout from its
// first byte (408): net/http arms ReadHeaderTimeout only when it sees a
// request's first bytes, which h1Conn hands on only with the whole head,
// so on a keep-alive connection the idle timeout would otherwise bound a
// trickled head. Everything else (tokens, Host, field values, versions) is
// left to net/http, which rejects what it cannot parse and closes the
// connection: a head whose request line net/http will refuse (malformed
// version, HTTP/2.0) is passed on for net/http's 400 or 505, then io.EOF.
//
// Contract. Read returns the connection's bytes unchanged, except that a
// rejected head is replaced by a stand-in request (see reject) followed by
// io.EOF for good, and a first line that is not HTTP/1 yields io.EOF at
// once. To find where each request ends on a keep-alive or pipelined
// connection, h1Conn frames bodies exactly as net/http does (Content-Length,
// or chunked for HTTP/1.1 and later, else no body); a chunked body it cannot
// parse strictly ends in a Read error, which fails net/http's body read and
// closes the connection, so the two never disagree on where a request
// starts. A head is held (at most maxHead bytes, never more) until its empty
// line arrives; body bytes pass through as they come. After a CONNECT
// request, a request with Upgrade and "Connection: upgrade", or the HTTP/2
// prior-knowledge preface as the very first bytes, the rest of the
// connection passes through unchecked: it may be another protocol. If the
// handler refuses such an upgrade, the rest of that connection is left to
// net/http's own checks. Read is not safe for concurrent use (net/http
// never calls it so). Close lingers after a rejection (see Close);
// deadlines and addresses are the wrapped connection's.
type h1Conn struct {
	net.Conn
	lim    h1Limits
	bufMax int // the head buffer never grows beyond this

	// buf[start:end] is read from Conn and not yet returned;
	// buf[start:start+ready] of it is checked and may be returned.
	buf               []byte
	start, end, ready int

	state h1State
	err   error // h1Failed's error, or a read error to return once buf is drained
	heads int   // heads released so far

	hs       headScan
	postSkip bool // the last head was a POST: net/http skips up to 4 CR/LF before the next

	remain  uint64     // h1Length: body bytes left; h1Chunked in chData: chunk bytes left
	chunk   chunkState // h1Chunked: where in the chunked body
	chLine  int        // h1Chunked: bytes of the current size or trailer line
	chTotal int        // h1Chunked: trailer bytes so far
	chSize  int        // h1Chunked: hex digits of the current size

	standIn   []byte // h1StandIn: what is left to return of the stand-in head
	rejected  atomic.Pointer[h1Rejection]
	lingering atomic.Bool // Close drains before closing
	// upgraded is set when a CONNECT or Upgrade head put the connection
	// in passthrough: unless the handler hijacks it, closeUnlessHijacked
	// then closes it after the response, so that a refused upgrade cannot
	// turn the checks off for the requests after it.
	upgraded atomic.Bool

	// dlMu guards the read deadlines: net/http's (rdl, set from other
	// goroutines, abortPendingRead among them) and the head's (headDL),
	// the earlier of which is the connection's.
	dlMu   sync.Mutex
	rdl    time.Time
	headDL time.Time
}

// h1State is what h1Conn expects next from the connection.
type h1State uint8

const (
	h1Head    h1State = iota // a request head
	h1Length                 // a body of remain bytes
	h1Chunked                // a chunked body
	h1Pass                   // anything: passed through unchecked
	h1StandIn                // nothing: returning the stand-in head
	h1Done                   // nothing: io.EOF for good
	h1Failed                 // nothing: err for good
)

// headScan is the progress through one head, offsets counted from
// h1Conn.start, so that they survive moving the buffer.
type headScan struct {
	pos       int  // next byte to look at
	lineStart int  // first byte of the current line
	lines     int  // lines complete, request line included
	began     bool // leading CR/LF skipped and preface excluded
	bareLF    bool // first head: the request line ended in a bare LF and had no version

	doomed    bool // net/http will reject it: release it, then end
	major     int
	minor     int
	connect   bool
	post      bool
	upgrade   bool // has an Upgrade field
	connUp    bool // has a Connection field with the "upgrade" token
	nameStart int  // name of the last field line, for messages
	nameEnd   int

	clFields int // Content-Length fields
	clStart  int // value of the first one
	clEnd    int
	clDiffer bool
	teFields int // Transfer-Encoding fields
	teStart  int // value of the first one
	teEnd    int
}

// chunkState is a position in the chunked body grammar (RFC 9112 §7.1).
type chunkState uint8

const (
	chSize        chunkState = iota // hex digits of chunk-size
	chExt                           // after ';': chunk-ext up to CR
	chSizeLF                        // LF ending the size line
	chData                          // remain bytes of chunk-data
	chDataCR                        // CR after chunk-data
	chDataLF                        // LF after chunk-data
	chTrailer                       // start of a trailer line, or the final CRLF
	chTrailerRest                   // rest of a trailer field line
	chTrailerLF                     // LF ending a trailer field line
	chEndLF                         // LF of the final CRLF
)

// h1Rejection is why h1Conn replaced a head by the stand-in.
type h1Rejection struct {
	token  string
	status int
	reason string
}

// connectionStater is what net/http looks for to set Request.TLS when the
// connection is not a *tls.Conn.
type connectionStater interface {
	ConnectionState() tls.ConnectionState
}

// newH1Conn wraps c, an accepted connection about to serve HTTP/1.1
// (plain TCP, or a *tls.Conn whose handshake chose HTTP/1.1 or nothing).
// The result has ConnectionState exactly when c has, and the ReadFrom
// (sendfile) of a plain connection only when c is not TLS.
func newH1Conn(c net.Conn, lim h1Limits) net.Conn {
	lim = lim.withDefaults()
	h := &h1Conn{Conn: c, lim: lim, bufMax: max(lim.maxHead, h1MinBuf)}
	if _, ok := c.(connectionStater); ok {
		return &h1TLSConn{h}
	}
	return &h1PlainConn{h}
}

// h1PlainConn is an h1Conn over plain TCP, which keeps sendfile.
type h1PlainConn struct{ *h1Conn }

// ReadFrom lets net/http send files with sendfile through the wrapper.
func (c *h1PlainConn) ReadFrom(r io.Reader) (int64, error) {
	if rf, ok := c.Conn.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	return io.Copy(writerOnly{c.Conn}, r)
}

// h1TLSConn is an h1Conn over TLS: net/http takes Request.TLS from it.
type h1TLSConn struct{ *h1Conn }

// ConnectionState returns the wrapped *tls.Conn's.
func (c *h1TLSConn) ConnectionState() tls.ConnectionState {
	return c.Conn.(connectionStater).ConnectionState()
}

// NetConn returns the wrapped connection.
func (c *h1Conn) NetConn() net.Conn { return c.Conn }

// CloseWrite half-closes the connection when the wrapped one can, for
// net/http's lingering close after an error.
func (c *h1Conn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// Close closes the connection, at once unless a head was rejected: then
// the client may still be sending it, and closing with its bytes unread
// would reset the connection and could destroy the error response before
// the client reads it. So, like net/http's own error path and nginx's
// lingering_close, it half-closes, drains for up to h1Linger in the
// background and closes then. A second Close closes at once.
func (c *h1Conn) Close() error {
	if c.rejected.Load() == nil || !c.lingering.CompareAndSwap(false, true) {
		return c.Conn.Close()
	}
	go func() {
		c.CloseWrite()
		c.Conn.SetReadDeadline(time.Now().Add(h1Linger))
		io.CopyN(io.Discard, c.Conn, h1LingerBytes)
		c.Conn.Close()
	}()
	return nil
}

// rejection returns why the connection was rejected, nil if it was not.
func (c *h1Conn) rejection() *h1Rejection { return c.rejected.Load() }

// SetDeadline sets both deadlines; see SetReadDeadline.
func (c *h1Conn) SetDeadline(t time.Time) error {
	if err := c.Conn.SetWriteDeadline(t); err != nil {
		return err
	}
	return c.SetReadDeadline(t)
}

// SetReadDeadline records net/http's read deadline. The connection's is
// the earlier of it and the current head's: net/http arms
// ReadHeaderTimeout only once it has the first bytes of a request, which
// h1Conn hands on only with the whole head, so h1Conn times the head
// itself (see headTimedOut).
func (c *h1Conn) SetReadDeadline(t time.Time) error {
	c.dlMu.Lock()
	defer c.dlMu.Unlock()
	c.rdl = t
	return c.applyDeadline()
}

// setHeadDeadline sets (or, with the zero time, clears) the head's
// deadline.
func (c *h1Conn) setHeadDeadline(t time.Time) {
	c.dlMu.Lock()
	defer c.dlMu.Unlock()
	c.headDL = t
	c.applyDeadline()
}

// clearHeadDeadline ends the timing of a head, if one was timed.
func (c *h1Conn) clearHeadDeadline() {
	if !c.headDL.IsZero() {
		c.setHeadDeadline(time.Time{})
	}
}

// applyDeadline sets the connection's read deadline; dlMu is held.
func (c *h1Conn) applyDeadline() error {
	d := c.rdl
	if !c.headDL.IsZero() && (d.IsZero() || c.headDL.Before(d)) {
		d = c.headDL
	}
	return c.Conn.SetReadDeadline(d)
}

// headTimedOut reports whether a read timed out on the head's deadline
// rather than net/http's (which, past too, wins: abortPendingRead expects
// its timeout back).
func (c *h1Conn) headTimedOut(err error) bool {
	if !isTimeout(err) {
		return false
	}
	c.dlMu.Lock()
	defer c.dlMu.Unlock()
	now := time.Now()
	return !c.headDL.IsZero() && !now.Before(c.headDL) && (c.rdl.IsZero() || now.Before(c.rdl))
}

// Read implements net.Conn; see h1Conn for what it returns.
func (c *h1Conn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	for {
		if c.ready > 0 {
			n := copy(p, c.buf[c.start:c.start+c.ready])
			c.start += n
			c.ready -= n
			if c.start == c.end {
				c.start, c.end = 0, 0
				if len(c.buf) > h1MinBuf {
					// A large head is gone: an idle keep-alive
					// connection holds h1MinBuf at most.
					c.buf = nil
				}
			}
			return n, nil
		}
		switch c.state {
		case h1Head:
			if c.start < c.end && c.scanHead() {
				continue
			}
			if c.start < c.end && c.lim.headTimeout > 0 && c.headDL.IsZero() {
				// A head has begun and waits for more: time it.
				c.setHeadDeadline(time.Now().Add(c.lim.headTimeout))
			}
			if err := c.fill(); err != nil {
				if c.headTimedOut(err) {
					// Answered in order, even from net/http's background
					// read while a handler writes (a timeout error there
					// would cancel that request).
					c.reject(http.StatusRequestTimeout, fmt.Sprintf("request head not complete within %v", c.lim.headTimeout))
					continue
				}
				return 0, err
			}
		case h1Length:
			if c.start < c.end {
				k := min(uint64(c.end-c.start), c.remain)
				c.ready = int(k)
				c.bodyRead(k)
				continue
			}
			q := p
			if uint64(len(q)) > c.remain {
				q = q[:c.remain]
			}
			n, err := c.Conn.Read(q)
			c.bodyRead(uint64(n))
			return n, err
		case h1Chunked:
			if c.start < c.end {
				k, err := c.chunked(c.buf[c.start:c.end])
				c.ready = k
				if err != nil {
					c.fail(err)
					if k == 0 {
						return 0, err
					}
				}
				continue
			}
			// Read at most what the buffer can take back, should the
			// body end inside what arrives.
			c.alloc()
			q := p[:min(len(p), len(c.buf))]
			n, err := c.Conn.Read(q)
			k, cerr := c.chunked(q[:n])
			if cerr != nil {
				c.fail(cerr)
				if k == 0 {
					return 0, cerr
				}
				return k, nil
			}
			if k < n {
				// The body ended: the rest is the next head.
				c.end = copy(c.buf, q[k:n])
				c.start = 0
				if err != nil && !isTimeout(err) {
					c.err = err
				}
				return k, nil
			}
			return n, err
		case h1Pass:
			if c.start < c.end {
				n := copy(p, c.buf[c.start:c.end])
				c.start += n
				return n, nil
			}
			return c.Conn.Read(p)
		case h1StandIn:
			n := copy(p, c.standIn)
			c.standIn = c.standIn[n:]
			if len(c.standIn) == 0 {
				c.state = h1Done
			}
			return n, nil
		case h1Done:
			return 0, io.EOF
		default: // h1Failed
			return 0, c.err
		}
	}
}

// isTimeout reports whether err is a deadline passing, which net/http
// provokes on purpose (abortPendingRead) and which must not stick.
func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// alloc makes the head buffer on first use.
func (c *h1Conn) alloc() {
	if c.buf == nil {
		c.buf = make([]byte, min(h1MinBuf, c.bufMax))
	}
}

// fill reads more of a head into the buffer, moving or growing it as
// needed (never beyond bufMax; scanHead rejects a head before that).
func (c *h1Conn) fill() error {
	if c.err != nil {
		err := c.err
		if c.state != h1Failed {
			c.err = nil
		}
		return err
	}
	c.alloc()
	if c.start > 0 {
		c.end = copy(c.buf, c.buf[c.start:c.end])
		c.start = 0
	}
	if c.end == len(c.buf) {
		if len(c.buf) >= c.bufMax {
			// Unreachable: scanHead rejects a head of maxHead bytes.
			return errors.New("server: h1: head buffer full")
		}
		nb := make([]byte, min(2*len(c.buf), c.bufMax))
		c.end = copy(nb, c.buf[:c.end])
		c.buf = nb
	}
	n, err := c.Conn.Read(c.buf[c.end:])
	c.end += n
	if n > 0 {
		if err != nil && !isTimeout(err) {
			c.err = err // after what arrived with it
		}
		return nil
	}
	if err == nil {
		err = io.ErrNoProgress
	}
	return err
}

// bodyRead counts n bytes of a Content-Length body.
func (c *h1Conn) bodyRead(n uint64) {
	c.remain -= n
	if c.remain == 0 {
		c.nextHead()
	}
}

// nextHead expects a request head next.
func (c *h1Conn) nextHead() {
	c.state = h1Head
	c.hs = headScan{}
}

// fail ends the connection with err once checked bytes are returned.
func (c *h1Conn) fail(err error) {
	c.state = h1Failed
	c.err = err
}

// scanHead advances through the head in buf[start:end]. It returns true
// once it decided (bytes are ready, or the state changed), false when it
// needs more input.
func (c *h1Conn) scanHead() bool {
	b := c.buf[c.start:c.end]
	hs := &c.hs
	if !hs.began {
		switch {
		case c.heads == 0:
			n := min(len(b), len(http2.ClientPreface))
			if string(b[:n]) == http2.ClientPreface[:n] {
				if n < len(http2.ClientPreface) {
					return false
				}
				c.ready = len(b)
				c.state = h1Pass
				return true
			}
		case c.postSkip:
			// net/http peeks 4 bytes after a POST and drops the CR and
			// LF among them (RFC 7230 §3.5 tolerance).
			if len(b) < 4 {
				return false
			}
			k := 0
			for k < 4 && (b[k] == '\r' || b[k] == '\n') {
				k++
			}
			hs.pos, hs.lineStart = k, k
		}
		hs.began = true
	}
	for {
		i := bytes.IndexByte(b[hs.pos:], '\n')
		if i < 0 {
			hs.pos = len(b)
			return c.checkPartial()
		}
		lf := hs.pos + i
		hs.pos = lf + 1
		if c.line(b, lf) {
			return true
		}
		hs.lineStart = hs.pos
	}
}

// checkPartial rejects a head whose unfinished part already exceeds a
// limit.
func (c *h1Conn) checkPartial() bool {
	hs := &c.hs
	switch {
	case hs.lines == 0 && hs.pos-hs.lineStart > c.lim.maxRequestLine+1: // +1: a CR may follow
		c.reject(http.StatusRequestURITooLong, fmt.Sprintf("request line longer than %d bytes", c.lim.maxRequestLine))
	case hs.pos >= c.lim.maxHead:
		c.reject(http.StatusRequestHeaderFieldsTooLarge, fmt.Sprintf("request head longer than %d bytes", c.lim.maxHead))
	default:
		return false
	}
	return true
}

// line takes the line of the head ending with the LF at b[lf]. It returns
// true once it decided the head's fate.
func (c *h1Conn) line(b []byte, lf int) bool {
	hs := &c.hs
	ls, e := hs.lineStart, lf
	crlf := e > ls && b[e-1] == '\r'
	if crlf {
		e--
	}
	l := b[ls:e]
	if lf+1 > c.lim.maxHead && !(hs.lines == 0 && len(l) > c.lim.maxRequestLine) {
		c.reject(http.StatusRequestHeaderFieldsTooLarge, fmt.Sprintf("request head longer than %d bytes", c.lim.maxHead))
		return true
	}
	if bytes.IndexByte(l, '\r') >= 0 {
		c.reject(http.StatusBadRequest, "bare CR in the request head")
		return true
	}
	idx := hs.lines
	hs.lines++
	if idx == 0 {
		return c.requestLine(l, crlf, lf)
	}
	if hs.bareLF {
		// The first line had no version and ended in a bare LF: if this
		// one ends like a request line, a bare LF broke it (net/http
		// answers 400); otherwise it is not HTTP/1.
		if lastWordIsVersion(l) {
			c.ready = lf + 1
			c.state = h1Done
		} else {
			c.state = h1Done
			c.start, c.end = 0, 0
		}
		return true
	}
	if len(l) == 0 {
		return c.endHead(lf + 1)
	}
	if l[0] == ' ' || l[0] == '\t' {
		what := "before the first field"
		if idx > 1 {
			what = "in field " + printable(b[hs.nameStart:hs.nameEnd])
		}
		c.reject(http.StatusBadRequest, "obsolete line folding "+what)
		return true
	}
	colon := bytes.IndexByte(l, ':')
	if colon < 0 {
		// Not a field line: net/http rejects the head.
		hs.nameStart, hs.nameEnd = ls, e
		return false
	}
	hs.nameStart, hs.nameEnd = ls, ls+colon
	name := l[:colon]
	vs, ve := trimOWS(b, ls+colon+1, e)
	switch len(name) {
	case len("content-length"):
		if asciiEqualFold(name, "content-length") {
			if hs.clFields == 0 {
				hs.clStart, hs.clEnd = vs, ve
			} else if !bytes.Equal(b[vs:ve], b[hs.clStart:hs.clEnd]) {
				hs.clDiffer = true
			}
			hs.clFields++
		}
	case len("transfer-encoding"):
		if asciiEqualFold(name, "transfer-encoding") {
			if hs.teFields == 0 {
				hs.teStart, hs.teEnd = vs, ve
			}
			hs.teFields++
		}
	case len("upgrade"):
		if asciiEqualFold(name, "upgrade") {
			hs.upgrade = true
		}
	case len("connection"):
		if asciiEqualFold(name, "connection") && hasToken(b[vs:ve], "upgrade") {
			hs.connUp = true
		}
	}
	return false
}

// requestLine takes the request line l, whose LF is at lf.
func (c *h1Conn) requestLine(l []byte, crlf bool, lf int) bool {
	hs := &c.hs
	if len(l) > c.lim.maxRequestLine {
		c.reject(http.StatusRequestURITooLong, fmt.Sprintf("request line of %d bytes, longer than %d", len(l), c.lim.maxRequestLine))
		return true
	}
	if c.heads == 0 && !lastWordIsVersion(l) {
		if !crlf {
			// Maybe a request line broken by a bare LF: the next line
			// decides.
			hs.bareLF = true
			return false
		}
		// Not HTTP/1: close without answering.
		c.state = h1Done
		c.start, c.end = 0, 0
		return true
	}
	// As net/http's parseRequestLine and ParseHTTPVersion.
	sp1 := bytes.IndexByte(l, ' ')
	sp2 := -1
	if sp1 >= 0 {
		if sp2 = bytes.IndexByte(l[sp1+1:], ' '); sp2 >= 0 {
			sp2 += sp1 + 1
		}
	}
	var major, minor int
	ok := sp2 >= 0
	if ok {
		major, minor, ok = parseVersion(l[sp2+1:])
	}
	if !ok {
		// net/http answers 400 on the request line alone.
		c.ready = lf + 1
		c.state = h1Done
		return true
	}
	hs.major, hs.minor = major, minor
	hs.doomed = major != 1 // net/http answers 505 once it has the head
	method := l[:sp1]
	hs.connect = string(method) == "CONNECT"
	hs.post = string(method) == "POST"
	return false
}

// endHead decides about a complete head of n bytes from start: reject it,
// or release it and expect what net/http will frame after it.
func (c *h1Conn) endHead(n int) bool {
	c.clearHeadDeadline()
	hs := &c.hs
	b := c.buf[c.start : c.start+n]
	te := hs.teFields > 0
	switch {
	case te && (hs.major < 1 || hs.major == 1 && hs.minor < 1):
		c.reject(http.StatusBadRequest, fmt.Sprintf("Transfer-Encoding in an HTTP/%d.%d request", hs.major, hs.minor))
		return true
	case te && hs.clFields > 0:
		c.reject(http.StatusBadRequest, "both Content-Length and Transfer-Encoding")
		return true
	case hs.teFields > 1:
		c.reject(http.StatusNotImplemented, "more than one Transfer-Encoding field")
		return true
	case te && !asciiEqualFold(b[hs.teStart:hs.teEnd], "chunked"):
		c.reject(http.StatusNotImplemented, "transfer coding "+printable(b[hs.teStart:hs.teEnd])+" not implemented")
		return true
	case hs.clDiffer:
		c.reject(http.StatusBadRequest, "differing Content-Length values")
		return true
	}
	var length uint64
	if hs.clFields > 0 {
		v, ok := parseLength(b[hs.clStart:hs.clEnd])
		if !ok {
			c.reject(http.StatusBadRequest, "invalid Content-Length "+printable(b[hs.clStart:hs.clEnd]))
			return true
		}
		length = v
	}
	c.ready = n
	c.heads++
	c.postSkip = hs.post
	switch {
	case hs.doomed:
		c.state = h1Done
	case hs.connect || hs.upgrade && hs.connUp:
		c.upgraded.Store(true)
		c.state = h1Pass
	case te:
		c.state = h1Chunked
		c.chunk, c.chLine, c.chTotal, c.chSize, c.remain = chSize, 0, 0, 0, 0
	case length > 0:
		c.state = h1Length
		c.remain = length
	default:
		c.nextHead()
	}
	return true
}

// reject replaces the head being read, and everything after it, by the
// stand-in request.
//
// Why a stand-in: the error response must come from net/http, in order
// after any response to an earlier pipelined request, and h1Conn may be
// read from net/http's background reader while a handler writes, so it
// must never write to the connection itself. The stand-in is a request
// net/http parses without fail, asks for the connection to be closed, and
// carries a token made now from crypto/rand, so that answerRejection
// recognises it (a client cannot forge the header: it does not know the
// token, and h1Conn only ever emits the stand-in it made).
func (c *h1Conn) reject(status int, reason string) {
	c.clearHeadDeadline()
	var raw [16]byte
	rand.Read(raw[:])
	tok := hex.EncodeToString(raw[:])
	c.rejected.Store(&h1Rejection{token: tok, status: status, reason: reason})
	c.standIn = []byte("GET / HTTP/1.1\r\nHost: paf.invalid\r\nConnection: close\r\n" + h1RejectHeader + ": " + tok + "\r\n\r\n")
	c.state = h1StandIn
	c.start, c.end, c.ready = 0, 0, 0
}

// chunked advances through chunked-body bytes b (RFC 9112 §7.1, CRLF line
// ends only, as net/http requires). It returns how many belong to the
// body: fewer than len(b) when the body ended, after which the state is
// h1Head. A malformed body returns an error after the bytes before it.
func (c *h1Conn) chunked(b []byte) (int, error) {
	i := 0
	for i < len(b) {
		if c.chunk == chData {
			k := min(uint64(len(b)-i), c.remain)
			i += int(k)
			c.remain -= k
			if c.remain == 0 {
				c.chunk = chDataCR
			}
			continue
		}
		ch := b[i]
		i++
		switch c.chunk {
		case chSize:
			c.chLine++
			switch {
			case unhex(ch) >= 0:
				if c.chSize == 16 {
					return i - 1, errors.New("server: chunked body: chunk size too large")
				}
				c.remain = c.remain<<4 | uint64(unhex(ch))
				c.chSize++
			case c.chSize == 0:
				return i - 1, errors.New("server: chunked body: chunk size missing")
			case ch == ';':
				c.chunk = chExt
			case ch == '\r':
				c.chunk = chSizeLF
			default:
				return i - 1, fmt.Errorf("server: chunked body: byte %q in chunk size", ch)
			}
		case chExt:
			c.chLine++
			switch {
			case c.chLine > h1MaxChunkLine:
				return i - 1, errors.New("server: chunked body: chunk extension too long")
			case ch == '\r':
				c.chunk = chSizeLF
			case ch < ' ' && ch != '\t' || ch == 0x7f:
				return i - 1, fmt.Errorf("server: chunked body: byte %q in chunk extension", ch)
			}
		case chSizeLF:
			if ch != '\n' {
				return i - 1, errors.New("server: chunked body: bare CR in chunk size line")
			}
			c.chLine, c.chSize = 0, 0
			if c.remain == 0 {
				c.chunk = chTrailer
			} else {
				c.chunk = chData
			}
		case chDataCR:
			if ch != '\r' {
				return i - 1, errors.New("server: chunked body: chunk data longer than its size")
			}
			c.chunk = chDataLF
		case chDataLF:
			if ch != '\n' {
				return i - 1, errors.New("server: chunked body: chunk data not followed by CRLF")
			}
			c.chunk = chSize
		case chTrailer:
			c.chTotal++
			switch ch {
			case '\r':
				c.chunk = chEndLF
			case ' ', '\t':
				return i - 1, errors.New("server: chunked body: obsolete line folding in trailer")
			case '\n':
				return i - 1, errors.New("server: chunked body: bare LF in trailer")
			default:
				c.chunk = chTrailerRest
			}
		case chTrailerRest:
			c.chTotal++
			switch {
			case c.chTotal > c.lim.maxHead:
				return i - 1, errors.New("server: chunked body: trailer section too long")
			case ch == '\r':
				c.chunk = chTrailerLF
			case ch == '\n':
				return i - 1, errors.New("server: chunked body: bare LF in trailer")
			}
		case chTrailerLF:
			if ch != '\n' {
				return i - 1, errors.New("server: chunked body: bare CR in trailer")
			}
			c.chunk = chTrailer
		case chEndLF:
			if ch != '\n' {
				return i - 1, errors.New("server: chunked body: bare CR ending the body")
			}
			c.nextHead()
			return i, nil
		}
	}
	return i, nil
}

// unhex returns the value of a hex digit, -1 for another byte.
func unhex(ch byte) int {
	switch {
	case '0' <= ch && ch <= '9':
		return int(ch - '0')
	case 'a' <= ch && ch <= 'f':
		return int(ch - 'a' + 10)
	case 'A' <= ch && ch <= 'F':
		return int(ch - 'A' + 10)
	}
	return -1
}

// lastWordIsVersion reports whether the last space-separated word of a
// request line starts with "HTTP/", as an HTTP/1 request line's does.
func lastWordIsVersion(l []byte) bool {
	return bytes.HasPrefix(l[bytes.LastIndexByte(l, ' ')+1:], []byte("HTTP/"))
}

// parseVersion parses "HTTP/x.y" as net/http's ParseHTTPVersion does.
func parseVersion(v []byte) (major, minor int, ok bool) {
	if len(v) != len("HTTP/1.1") || string(v[:5]) != "HTTP/" || v[6] != '.' ||
		v[5] < '0' || v[5] > '9' || v[7] < '0' || v[7] > '9' {
		return 0, 0, false
	}
	return int(v[5] - '0'), int(v[7] - '0'), true
}

// parseLength parses a Content-Length value as net/http does
// (strconv.ParseUint(v, 10, 63)), digits only.
func parseLength(v []byte) (uint64, bool) {
	if len(v) == 0 || len(v) > 19 {
		return 0, false
	}
	var n uint64
	for _, ch := range v {
		if ch < '0' || ch > '9' {
			return 0, false
		}
		n = n*10 + uint64(ch-'0')
	}
	return n, n <= 1<<63-1
}

// trimOWS returns the bounds of b[s:e] without leading and trailing
// spaces and tabs.
func trimOWS(b []byte, s, e int) (int, int) {
	for s < e && (b[s] == ' ' || b[s] == '\t') {
		s++
	}
	for e > s && (b[e-1] == ' ' || b[e-1] == '\t') {
		e--
	}
	return s, e
}

// asciiEqualFold reports whether b equals the lower-case ASCII s, ignoring
// ASCII case.
func asciiEqualFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i, ch := range b {
		if 'A' <= ch && ch <= 'Z' {
			ch += 'a' - 'A'
		}
		if ch != s[i] {
			return false
		}
	}
	return true
}

// hasToken reports whether the comma-separated list v has the lower-case
// token tok, ignoring ASCII case.
func hasToken(v []byte, tok string) bool {
	for len(v) > 0 {
		var item []byte
		item, v, _ = bytes.Cut(v, []byte(","))
		s, e := trimOWS(item, 0, len(item))
		if asciiEqualFold(item[s:e], tok) {
			return true
		}
	}
	return false
}

// printable returns b for a message: as is when it is a short token,
// quoted and cut otherwise.
func printable(b []byte) string {
	const maxLen = 64
	clean := len(b) > 0 && len(b) <= maxLen
	for _, ch := range b {
		if ch <= ' ' || ch >= 0x7f || ch == '"' || ch == '\\' {
			clean = false
			break
		}
	}
	if clean {
		return string(b)
	}
	if len(b) > maxLen {
		return strconv.Quote(string(b[:maxLen])) + "..."
	}
	return strconv.Quote(string(b))
}

// h1ConnKey is the context key of the h1Conn serving a request.
type h1ConnKey struct{}

// h1ConnContext is the http.Server's ConnContext: it keeps the h1Conn of a
// connection in its context, for answerRejection.
func h1ConnContext(ctx context.Context, c net.Conn) context.Context {
	var h *h1Conn
	switch c := c.(type) {
	case *h1PlainConn:
		h = c.h1Conn
	case *h1TLSConn:
		h = c.h1Conn
	default:
		return ctx
	}
	return context.WithValue(ctx, h1ConnKey{}, h)
}

// answerRejection answers r, and returns true, when r is the stand-in
// request of a head its connection rejected: with the rejection's status
// and reason, and Connection: close. Any other request, including one that
// merely carries a Paf-Reject header, is left alone (false). The access
// log calls it first thing, rather than a handler of its own wrapping the
// chain: every handler frame deepens each request's goroutine, and one
// more frame costs HTTP/2 a stack growth per request (measured: about 5%
// of the CPU at 4 KiB). The stand-in is not the client's request, so it is
// logged as what it stands for, a rejection with its reason, not as
// "GET /" for paf.invalid.
func answerRejection(w http.ResponseWriter, r *http.Request, log *slog.Logger) bool {
	tok := r.Header[h1RejectHeader]
	if len(tok) != 1 {
		return false
	}
	c, ok := r.Context().Value(h1ConnKey{}).(*h1Conn)
	if !ok {
		return false
	}
	rej := c.rejection()
	if rej == nil || subtle.ConstantTimeCompare([]byte(tok[0]), []byte(rej.token)) != 1 {
		return false
	}
	hd := w.Header()
	hd.Set("Connection", "close")
	hd.Set("Content-Type", "text/plain; charset=utf-8")
	hd.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(rej.status)
	io.WriteString(w, http.StatusText(rej.status)+": "+rej.reason+"\n")
	log.LogAttrs(r.Context(), slog.LevelInfo, "request rejected",
		slog.String("remote", r.RemoteAddr),
		slog.Int("status", rej.status),
		slog.String("reason", rej.reason))
	return true
}

// closeUnlessHijacked returns the ResponseWriter for r: w itself, unless
// r is the CONNECT or Upgrade request that put its connection in
// passthrough. Then the response asks for the connection to be closed
// (Connection: close), unless the handler hijacks the connection to switch
// protocols: the bytes after such a request are never checked, so they
// must be either the new protocol or nothing.
func closeUnlessHijacked(w http.ResponseWriter, r *http.Request) http.ResponseWriter {
	if r.Method != http.MethodConnect && len(r.Header["Upgrade"]) == 0 {
		return w
	}
	c, ok := r.Context().Value(h1ConnKey{}).(*h1Conn)
	if !ok || !c.upgraded.Load() {
		return w
	}
	w.Header().Set("Connection", "close")
	return &upgradeWriter{w}
}

// upgradeWriter is the ResponseWriter of an upgrade request: hijacking
// withdraws the Connection: close closeUnlessHijacked set, since the
// handler then writes its own response (a 101) on the connection.
type upgradeWriter struct{ http.ResponseWriter }

// Hijack takes the connection over.
func (w *upgradeWriter) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	if v := w.Header()["Connection"]; len(v) == 1 && v[0] == "close" {
		w.Header().Del("Connection")
	}
	return http.NewResponseController(w.ResponseWriter).Hijack()
}

// Unwrap returns the underlying writer, for http.ResponseController.
func (w *upgradeWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// h1Listener wraps every connection it accepts in an h1Conn.
type h1Listener struct {
	net.Listener
	lim h1Limits
}

// Accept returns the next connection, wrapped.
func (l *h1Listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return newH1Conn(c, l.lim), nil
}
