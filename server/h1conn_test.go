package server

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

// standIn is the start of the stand-in head h1Conn emits for a rejected
// one, before the token.
const standIn = "GET / HTTP/1.1\r\nHost: paf.invalid\r\nConnection: close\r\nPaf-Reject: "

// frontResult is what came out of an h1Conn fed some input.
type frontResult struct {
	out string       // every byte Read returned
	err error        // the error that ended reading
	rej *h1Rejection // the rejection, if any
	c   *h1Conn      // for its buffer
}

// front writes input in writes of at most wsize bytes into one end of a
// net.Pipe, the client closing after, and reads the other end through an
// h1Conn with reads of rsize bytes until an error.
func front(t testing.TB, input string, lim h1Limits, wsize, rsize int) frontResult {
	t.Helper()
	client, server := net.Pipe()
	wrapped := newH1Conn(server, lim)
	h := wrapped.(*h1PlainConn).h1Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		defer client.Close()
		for s := input; len(s) > 0; {
			n := min(len(s), wsize)
			if _, err := io.WriteString(client, s[:n]); err != nil {
				return // the front stopped reading
			}
			s = s[n:]
		}
	}()
	var out bytes.Buffer
	p := make([]byte, rsize)
	var err error
	for range len(input) + 1<<16 { // bounded: each round returns a byte or ends
		var n int
		n, err = wrapped.Read(p)
		out.Write(p[:n])
		if err != nil {
			break
		}
		if n == 0 {
			err = errors.New("Read returned 0, nil")
			break
		}
	}
	server.Close() // unblocks the writer; Close (lingering) is tested apart
	<-done
	return frontResult{out: out.String(), err: err, rej: h.rejection(), c: h}
}

// TestH1Conn feeds request streams through an h1Conn, in writes and reads
// of several sizes, and checks what it lets through.
func TestH1Conn(t *testing.T) {
	const host = "Host: localhost\r\n"
	get := "GET / HTTP/1.1\r\n" + host + "\r\n"
	chunkedPost := "POST /c HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\n\r\n" +
		"5;a=b\r\nhello\r\n" + "1a\r\nabcdefghijklmnopqrstuvwxyz\r\n" + "0\r\nX-T: 1\r\n\r\n"
	small := h1Limits{maxRequestLine: 256, maxHead: 1024}
	tests := []struct {
		name  string
		in    string
		lim   h1Limits
		out   string // what passes, before any stand-in
		rej   int    // status of the rejection; 0: none
		why   string // in the rejection's reason
		isEOF bool   // reading ends in io.EOF (else another error)
	}{
		{name: "one request", in: get, out: get, isEOF: true},
		{name: "pipelined", in: get + get + get, out: get + get + get, isEOF: true},
		{name: "Content-Length body", in: "POST / HTTP/1.1\r\n" + host + "Content-Length: 5\r\n\r\nhello" + get,
			out: "POST / HTTP/1.1\r\n" + host + "Content-Length: 5\r\n\r\nhello" + get, isEOF: true},
		{name: "body like a bad head", in: "POST / HTTP/1.1\r\n" + host + "Content-Length: 18\r\n\r\nGET / HTTP/1.1\r\n x" + get,
			out: "POST / HTTP/1.1\r\n" + host + "Content-Length: 18\r\n\r\nGET / HTTP/1.1\r\n x" + get, isEOF: true},
		{name: "chunked body then request", in: chunkedPost + get + chunkedPost, out: chunkedPost + get + chunkedPost, isEOF: true},
		{name: "CR LF after a POST", in: "POST / HTTP/1.1\r\n" + host + "Content-Length: 1\r\n\r\nx\r\n\r\n" + get,
			out: "POST / HTTP/1.1\r\n" + host + "Content-Length: 1\r\n\r\nx\r\n\r\n" + get, isEOF: true},
		{name: "bare LF line ends", in: "GET / HTTP/1.1\nHost: a\n\n" + get, out: "GET / HTTP/1.1\nHost: a\n\n" + get, isEOF: true},
		{name: "equal Content-Length fields", in: "POST / HTTP/1.1\r\nContent-Length: 1\r\ncontent-length:1 \r\n\r\nx" + get,
			out: "POST / HTTP/1.1\r\nContent-Length: 1\r\ncontent-length:1 \r\n\r\nx" + get, isEOF: true},
		{name: "h2 preface", in: http2.ClientPreface + "\x00\x00\x00\x04\x00\x00\x00\x00\x00 INVALID\r\n \r\n",
			out: http2.ClientPreface + "\x00\x00\x00\x04\x00\x00\x00\x00\x00 INVALID\r\n \r\n", isEOF: true},
		{name: "CONNECT passes the rest", in: "CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n\x16\x03\x01 x\r\n\r\n",
			out: "CONNECT a:443 HTTP/1.1\r\nHost: a:443\r\n\r\n\x16\x03\x01 x\r\n\r\n", isEOF: true},
		{name: "Upgrade passes the rest", in: "GET / HTTP/1.1\r\n" + host + "Upgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n\r\n\x81\x05 x\r\n\r\n",
			out: "GET / HTTP/1.1\r\n" + host + "Upgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n\r\n\x81\x05 x\r\n\r\n", isEOF: true},
		{name: "Upgrade without Connection", in: "GET / HTTP/1.1\r\n" + host + "Upgrade: websocket\r\n\r\nGET / HTTP/1.1\r\n x\r\n\r\n",
			out: "GET / HTTP/1.1\r\n" + host + "Upgrade: websocket\r\n\r\n", rej: 400, why: "folding", isEOF: true},

		{name: "obs-fold", in: get + "GET / HTTP/1.1\r\n" + host + "X-A: a\r\n b\r\n\r\n" + get, out: get, rej: 400, why: "obsolete line folding in field X-A", isEOF: true},
		{name: "obs-fold first", in: "GET / HTTP/1.1\r\n\tX: a\r\n\r\n", rej: 400, why: "before the first field", isEOF: true},
		{name: "bare CR", in: "GET / HTTP/1.1\r\nX-A: a\rb\r\n\r\n", rej: 400, why: "bare CR", isEOF: true},
		{name: "long request line", in: "GET /" + strings.Repeat("a", 300) + " HTTP/1.1\r\n\r\n", lim: small, rej: 414, isEOF: true},
		{name: "long request line unfinished", in: "GET /" + strings.Repeat("a", 3000), lim: small, rej: 414, isEOF: true},
		{name: "long head", in: "GET / HTTP/1.1\r\n" + strings.Repeat("X-A: aaaaaaaaaaaaaaaa\r\n", 100) + "\r\n", lim: small, rej: 431, isEOF: true},
		{name: "long head unfinished", in: "GET / HTTP/1.1\r\nX-A: " + strings.Repeat("a", 3000), lim: small, rej: 431, isEOF: true},
		{name: "HTTP/1.0 chunked", in: "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", rej: 400, why: "HTTP/1.0", isEOF: true},
		{name: "Content-Length and Transfer-Encoding", in: "POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", rej: 400, why: "both", isEOF: true},
		{name: "gzip", in: "POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", rej: 501, why: "gzip", isEOF: true},
		{name: "two codings", in: "POST / HTTP/1.1\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", rej: 501, isEOF: true},
		{name: "two Transfer-Encoding fields", in: "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", rej: 501, isEOF: true},
		{name: "Content-Length list", in: "POST / HTTP/1.1\r\nContent-Length: 1,1\r\n\r\nx", rej: 400, isEOF: true},
		{name: "Content-Length differing", in: "POST / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 01\r\n\r\nx", rej: 400, isEOF: true},
		{name: "Content-Length too large", in: "POST / HTTP/1.1\r\nContent-Length: 9223372036854775808\r\n\r\nx", rej: 400, isEOF: true},

		{name: "not HTTP/1", in: "INVALID CONNECTION PREFACE\r\n\r\n", isEOF: true},
		{name: "HTTP/0.9", in: "GET /\r\n", isEOF: true},
		{name: "not HTTP/1 after a request", in: get + "GET /\r\n\r\n", out: get + "GET /\r\n", isEOF: true},
		{name: "bare LF in the request line", in: "GET /a\nb HTTP/1.1\r\n" + host + "\r\n", out: "GET /a\nb HTTP/1.1\r\n", isEOF: true},
		{name: "malformed version", in: "GET / HTTP/1.1x\r\n" + host + "\r\n" + get, out: "GET / HTTP/1.1x\r\n", isEOF: true},
		{name: "HTTP/2.0 request line", in: "GET / HTTP/2.0\r\n" + host + "\r\n" + get, out: "GET / HTTP/2.0\r\n" + host + "\r\n", isEOF: true},
		{name: "preface lookalike", in: "PRI * HTTP/2.0\r\n\r\nXX\r\n\r\n", out: "PRI * HTTP/2.0\r\n\r\n", isEOF: true},

		{name: "malformed chunk", in: "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhelloX\r\n" + get,
			out: "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello"},
		{name: "chunk size line bare LF", in: "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n",
			out: "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5"},
		{name: "chunk extension too long", in: "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5;" + strings.Repeat("x", 5000) + "\r\nhello\r\n0\r\n\r\n",
			out: "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5;" + strings.Repeat("x", h1MaxChunkLine-2)},
		{name: "truncated body", in: "POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc", out: "POST / HTTP/1.1\r\nContent-Length: 10\r\n\r\nabc", isEOF: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			for _, sizes := range [][2]int{{1 << 20, 4096}, {1, 4096}, {1 << 20, 1}, {7, 3}} {
				r := front(t, tt.in, tt.lim, sizes[0], sizes[1])
				out := r.out
				if tt.rej != 0 {
					if r.rej == nil {
						t.Fatalf("writes of %d, reads of %d: no rejection; out %q", sizes[0], sizes[1], truncate(out))
					}
					if r.rej.status != tt.rej || !strings.Contains(r.rej.reason, tt.why) {
						t.Errorf("rejected %d %q, want %d with %q", r.rej.status, r.rej.reason, tt.rej, tt.why)
					}
					want := standIn + r.rej.token + "\r\n\r\n"
					if !strings.HasSuffix(out, want) {
						t.Fatalf("writes of %d, reads of %d: out %q does not end with the stand-in", sizes[0], sizes[1], truncate(out))
					}
					out = strings.TrimSuffix(out, want)
				} else if r.rej != nil {
					t.Fatalf("writes of %d, reads of %d: rejected %d %q", sizes[0], sizes[1], r.rej.status, r.rej.reason)
				}
				if out != tt.out {
					t.Errorf("writes of %d, reads of %d: out\n%q\nwant\n%q", sizes[0], sizes[1], truncate(out), truncate(tt.out))
				}
				if (r.err == io.EOF) != tt.isEOF {
					t.Errorf("writes of %d, reads of %d: ended with %v, want EOF %v", sizes[0], sizes[1], r.err, tt.isEOF)
				}
				if len(r.c.buf) > r.c.bufMax {
					t.Errorf("buffer grew to %d, beyond %d", len(r.c.buf), r.c.bufMax)
				}
			}
		})
	}
}

// TestH1ConnInterfaces checks the wrapper keeps what net/http looks for:
// ConnectionState exactly over TLS (Request.TLS), ReadFrom exactly over
// plain TCP (sendfile), and NetConn and CloseWrite always.
func TestH1ConnInterfaces(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	type stater interface {
		ConnectionState() tls.ConnectionState
	}
	plain := newH1Conn(a, h1Limits{})
	if _, ok := plain.(stater); ok {
		t.Error("plain connection has ConnectionState")
	}
	if _, ok := plain.(io.ReaderFrom); !ok {
		t.Error("plain connection lost ReadFrom")
	}
	secure := newH1Conn(tls.Server(b, &tls.Config{}), h1Limits{})
	if _, ok := secure.(stater); !ok {
		t.Error("TLS connection lost ConnectionState")
	}
	if _, ok := secure.(io.ReaderFrom); ok {
		t.Error("TLS connection has ReadFrom")
	}
	for _, c := range []net.Conn{plain, secure} {
		nc, ok := c.(interface{ NetConn() net.Conn })
		if !ok || nc.NetConn() == nil {
			t.Errorf("%T: no NetConn", c)
		}
		if _, ok := c.(interface{ CloseWrite() error }); !ok {
			t.Errorf("%T: no CloseWrite", c)
		}
	}
}

// TestH1ConnCloseLingers checks that closing a rejected connection drains
// what the client still sends before closing (so the error response is not
// lost to a reset), while any other connection closes at once.
func TestH1ConnCloseLingers(t *testing.T) {
	client, server := net.Pipe()
	defer client.Close()
	c := newH1Conn(server, h1Limits{})
	c.(*h1PlainConn).reject(http.StatusBadRequest, "test")
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	// Still read (drained) after Close...
	if _, err := io.WriteString(client, "rest of a rejected head"); err != nil {
		t.Fatalf("write after Close: %v", err)
	}
	// ...then closed for good, after h1Linger.
	if _, err := client.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("read %v, want io.EOF", err)
	}

	client2, server2 := net.Pipe()
	defer client2.Close()
	c2 := newH1Conn(server2, h1Limits{})
	c2.Close()
	if _, err := io.WriteString(client2, "x"); err == nil {
		t.Error("a connection without rejection was not closed at once")
	}
}

// TestRejectMalformed checks that only the stand-in with the token of the
// request's own connection gets the rejection, never a forged header.
func TestRejectMalformed(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	c := newH1Conn(a, h1Limits{})
	h := c.(*h1PlainConn).h1Conn
	h.reject(http.StatusRequestURITooLong, "request line too long")
	tok := h.rejection().token
	other := newH1Conn(b, h1Limits{})
	next := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "next") })
	tests := []struct {
		name   string
		conn   net.Conn // in the request's context; nil: none
		header string
		status int
		body   string
	}{
		{"stand-in", c, tok, 414, "Request URI Too Long: request line too long\n"},
		{"wrong token", c, strings.Repeat("0", 32), 200, "next"},
		{"no rejection on that connection", other, tok, 200, "next"},
		{"no connection", nil, tok, 200, "next"},
		{"no header", c, "", 200, "next"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			req := httptest.NewRequest("GET", "/", nil)
			if tt.conn != nil {
				req = req.WithContext(h1ConnContext(context.Background(), tt.conn))
			}
			if tt.header != "" {
				req.Header.Set("Paf-Reject", tt.header)
			}
			rec := httptest.NewRecorder()
			accessLog(next, slog.New(slog.DiscardHandler)).ServeHTTP(rec, req)
			if rec.Code != tt.status || rec.Body.String() != tt.body {
				t.Errorf("got %d %q, want %d %q", rec.Code, rec.Body.String(), tt.status, tt.body)
			}
			if tt.status != 200 && rec.Header().Get("Connection") != "close" {
				t.Errorf("no Connection: close")
			}
		})
	}
}

// TestH1ConnPipelinedServer runs net/http without paf's guard (which closes
// after any Transfer-Encoding) behind h1Listener, so that requests
// pipelined after chunked bodies are answered: each in order, as itself.
func TestH1ConnPipelinedServer(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: accessLog(echoHandler, slog.New(slog.DiscardHandler)), ConnContext: h1ConnContext}
	go hs.Serve(&h1Listener{Listener: ln, lim: h1Limits{}})
	t.Cleanup(func() { hs.Close() })
	const host = "Host: localhost\r\n"
	in := "POST /1 HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\n\r\n5;ext\r\nhello\r\n0\r\nX-T: 1\r\n\r\n" +
		"GET /2 HTTP/1.1\r\n" + host + "\r\n" +
		"POST /3 HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\n\r\n" + "3\r\nGET\r\n0\r\n\r\n" +
		"POST /4 HTTP/1.1\r\n" + host + "Content-Length: 4\r\n\r\nabcd" +
		"GET /5 HTTP/1.1\r\n" + host + "X-A: a\r\n b\r\n\r\n" +
		"GET /6 HTTP/1.1\r\n" + host + "\r\n"
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	statuses, closed, raw := exchange(t, c, in)
	if !closed || len(statuses) != 5 || statuses[4] != 400 {
		t.Fatalf("statuses %v closed %v, want 4 answers and a 400 then closed; read %q", statuses, closed, raw)
	}
	rest := raw
	for _, w := range []string{"/1 body=5", "/2 body=0", "/3 body=3", "/4 body=4", "obsolete line folding in field X-A"} {
		i := strings.Index(rest, w)
		if i < 0 {
			t.Fatalf("%q missing or out of order in %q", w, raw)
		}
		rest = rest[i:]
	}
}

// FuzzH1Conn feeds arbitrary bytes through an h1Conn and checks it never
// panics, never buffers beyond its limits, and only ever lets through a
// prefix of its input, possibly followed by its stand-in head.
func FuzzH1Conn(f *testing.F) {
	f.Add([]byte("GET / HTTP/1.1\r\nHost: a\r\n\r\n"), uint8(0))
	f.Add([]byte("POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5;x\r\nhello\r\n0\r\nT: 1\r\n\r\nGET / HTTP/1.1\r\n\r\n"), uint8(3))
	f.Add([]byte("POST / HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc\r\nGET / HTTP/1.1\r\n a\r\n\r\n"), uint8(1))
	f.Add([]byte(http2.ClientPreface+"\x00\x00\x00\x04"), uint8(2))
	f.Fuzz(func(t *testing.T, in []byte, wsize uint8) {
		lim := h1Limits{maxRequestLine: 64, maxHead: 256}
		r := front(t, string(in), lim, int(wsize)+1, 4096)
		if len(r.c.buf) > r.c.bufMax || r.c.bufMax > max(lim.maxHead, h1MinBuf) {
			t.Fatalf("buffer %d, bound %d", len(r.c.buf), r.c.bufMax)
		}
		out := r.out
		if r.rej != nil {
			s := standIn + r.rej.token + "\r\n\r\n"
			if !strings.HasSuffix(out, s) {
				t.Fatalf("rejected but out %q lacks the stand-in", out)
			}
			out = strings.TrimSuffix(out, s)
		}
		if !strings.HasPrefix(string(in), out) {
			t.Fatalf("out %q is not a prefix of the input", out)
		}
		// Where h1Conn let everything through and ended between
		// requests, net/http's parser must find as many requests in
		// the same bytes: the two agree on where each one ends.
		if r.rej == nil && r.err == io.EOF && r.c.state == h1Head && r.out == string(in) {
			if n, ok := netHTTPRequests(in); ok && n != r.c.heads {
				t.Fatalf("h1Conn saw %d requests, net/http %d, in %q", r.c.heads, n, in)
			}
		}
	})
}

// netHTTPRequests parses in as net/http's server does, reading each body
// whole, and returns how many requests it found and whether it ended
// cleanly at the end of a request.
func netHTTPRequests(in []byte) (int, bool) {
	br := bufio.NewReader(bytes.NewReader(in))
	post := false
	for n := 0; ; n++ {
		if post {
			// As net/http's conn.readRequest after a POST.
			peek, _ := br.Peek(4)
			k := 0
			for k < len(peek) && (peek[k] == '\r' || peek[k] == '\n') {
				k++
			}
			br.Discard(k)
		}
		if _, err := br.Peek(1); err == io.EOF {
			return n, true
		}
		req, err := http.ReadRequest(br)
		if err != nil {
			return n, false
		}
		if _, err := io.Copy(io.Discard, req.Body); err != nil {
			return n, false
		}
		post = req.Method == "POST"
	}
}

// repeatConn is a connection on which a client sends req again each time
// the server reads, as wrk does on a keep-alive connection.
type repeatConn struct {
	net.Conn
	req []byte
}

func (c *repeatConn) Read(p []byte) (int, error) { return copy(p, c.req), nil }

// BenchmarkH1ConnHead measures the front's cost per request head of a
// typical wrk keep-alive GET: one Read by net/http's bufio.Reader each.
func BenchmarkH1ConnHead(b *testing.B) {
	req := []byte("GET /index.html HTTP/1.1\r\nHost: 127.0.0.1:8080\r\n\r\n")
	for _, bc := range []struct {
		name string
		wrap bool
	}{{"direct", false}, {"h1conn", true}} {
		b.Run(bc.name, func(b *testing.B) {
			var c net.Conn = &repeatConn{req: req}
			if bc.wrap {
				c = newH1Conn(c, h1Limits{})
			}
			p := make([]byte, 4096)
			b.SetBytes(int64(len(req)))
			b.ReportAllocs()
			for b.Loop() {
				if n, err := c.Read(p); n != len(req) || err != nil {
					b.Fatalf("read %d, %v", n, err)
				}
			}
		})
	}
}

// TestRejectionLogged checks that a rejected head is logged as a
// rejection with its reason, and not as an access line for the stand-in.
func TestRejectionLogged(t *testing.T) {
	r := start(t, Config{}, true, false)
	c, err := net.Dial("tcp", r.srv.HTTPAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	statuses, _, raw := exchange(t, c, "GET / HTTP/1.1\r\nHost: localhost\r\nX-A: a\r\n b\r\n\r\n")
	if len(statuses) != 1 || statuses[0] != http.StatusBadRequest {
		t.Fatalf("statuses %v, want [400]; read %q", statuses, raw)
	}
	var rejected, access int
	for _, rec := range r.log.records(t) {
		switch rec["msg"] {
		case "request rejected":
			rejected++
			if rec["status"] != float64(400) || !strings.Contains(rec["reason"].(string), "folding") {
				t.Errorf("rejection record %v, want status 400 and the reason", rec)
			}
		case "request":
			access++
		}
	}
	if rejected != 1 || access != 0 {
		t.Fatalf("%d rejection and %d access records, want 1 and 0:\n%s", rejected, access, r.log.String())
	}
}

// TestH1ConnBufferShrinks checks a connection gives back the buffer a
// large head needed once the head is handed on.
func TestH1ConnBufferShrinks(t *testing.T) {
	client, srv := net.Pipe()
	defer client.Close()
	head := "GET / HTTP/1.1\r\nHost: localhost\r\nX-Big: " + strings.Repeat("b", 20<<10) + "\r\n\r\n"
	go io.WriteString(client, head)
	c := newH1Conn(srv, h1Limits{}).(*h1PlainConn)
	got := make([]byte, 0, len(head))
	buf := make([]byte, 4096)
	for len(got) < len(head) {
		n, err := c.Read(buf)
		if err != nil {
			t.Fatalf("after %d bytes: %v", len(got), err)
		}
		got = append(got, buf[:n]...)
	}
	if string(got) != head {
		t.Fatal("the head was not handed on unchanged")
	}
	if len(c.buf) > h1MinBuf {
		t.Fatalf("holding a %d-byte buffer after the head was read", len(c.buf))
	}
}

// TestH1ConnHeadTimeout checks ReadHeaderTimeout holds for every request
// of a keep-alive connection, not only the first: a head trickled after
// the first response gets 408 and the connection closed, and one trickled
// while a slow handler still writes does not disturb that response.
func TestH1ConnHeadTimeout(t *testing.T) {
	release := make(chan struct{})
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			select {
			case <-release:
			case <-r.Context().Done():
				http.Error(w, "cancelled", http.StatusServiceUnavailable)
				return
			}
		}
		io.WriteString(w, "ok "+r.URL.Path)
	})
	r := start(t, Config{Handler: h, ReadHeaderTimeout: 300 * time.Millisecond, IdleTimeout: time.Minute}, true, false)
	trickle := "GET /trickled HTTP/1.1\r\nHost: localhost\r\nX-Slow: " + strings.Repeat("s", 40) + "\r\n\r\n"
	for _, first := range []string{"/fast", "/slow"} {
		t.Run(first, func(t *testing.T) {
			c, err := net.Dial("tcp", r.srv.HTTPAddr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(20 * time.Second))
			br := bufio.NewReader(c)
			io.WriteString(c, "GET "+first+" HTTP/1.1\r\nHost: localhost\r\n\r\n")
			if first == "/fast" {
				resp, err := http.ReadResponse(br, nil)
				if err != nil || resp.StatusCode != 200 {
					t.Fatalf("first response: %v %v", resp, err)
				}
				io.Copy(io.Discard, resp.Body)
			}
			// A byte every 50 ms: the whole head would take 3 s, ten
			// times the header timeout.
			done := make(chan struct{})
			go func() {
				defer close(done)
				for i := range len(trickle) {
					if _, err := c.Write([]byte{trickle[i]}); err != nil {
						return
					}
					if first == "/slow" && i == 5 {
						// The head is under way while /slow is
						// still being answered.
						time.Sleep(600 * time.Millisecond)
						close(release)
					}
					time.Sleep(50 * time.Millisecond)
				}
			}()
			defer func() { <-done }()
			if first == "/slow" {
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					t.Fatal(err)
				}
				body, _ := io.ReadAll(resp.Body)
				if resp.StatusCode != 200 || string(body) != "ok /slow" {
					t.Fatalf("the slow response was disturbed: %d %q", resp.StatusCode, body)
				}
			}
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("no answer to the trickled head: %v", err)
			}
			if resp.StatusCode != http.StatusRequestTimeout {
				t.Fatalf("trickled head: %d, want 408", resp.StatusCode)
			}
			io.Copy(io.Discard, resp.Body)
			if _, err := br.ReadByte(); err != io.EOF {
				t.Fatalf("connection not closed after the 408: %v", err)
			}
		})
	}
}
