package server

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// secondRequest is pipelined after each malformed request: a server that
// closes the connection after rejecting the first never answers it, and a
// server that misjudged where the first ended (desynchronisation) answers
// something else.
const secondRequest = "GET /second HTTP/1.1\r\nHost: localhost\r\n\r\n"

// rfc9112Case is one malformed (or borderline) HTTP/1.1 request.
type rfc9112Case struct {
	name string
	req  string
	// want is the status paf answers with; allowed are the statuses
	// issue 6 accepts for this kind of request.
	want    int
	allowed []int
}

// rfc9112Cases covers RFC 9112's message framing and parsing rules that
// decide where a request ends or whether it is one at all.
func rfc9112Cases() []rfc9112Case {
	const host = "Host: localhost\r\n"
	bad := []int{http.StatusBadRequest}
	tooBig := strings.Repeat("a", 100<<10)
	return []rfc9112Case{
		// §6.1: both Content-Length and Transfer-Encoding. A server MAY
		// reject it or process the Transfer-Encoding alone; either way it
		// MUST close the connection after responding. h1Conn rejects it.
		{name: "Content-Length and Transfer-Encoding",
			req:  "POST / HTTP/1.1\r\n" + host + "Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
			want: http.StatusBadRequest, allowed: bad},
		{name: "Transfer-Encoding and Content-Length",
			req:  "POST / HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\nContent-Length: 40\r\n\r\n0\r\n\r\n",
			want: http.StatusBadRequest, allowed: bad},
		// §6.1: HTTP/1.0 with Transfer-Encoding: the framing MUST be
		// treated as faulty and the connection closed. net/http ignores
		// the field (golang/go#12785); h1Conn rejects the request.
		{name: "HTTP/1.0 keep-alive with Transfer-Encoding",
			req:  "POST / HTTP/1.0\r\n" + host + "Connection: keep-alive\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
			want: http.StatusBadRequest, allowed: bad},
		{name: "HTTP/1.0 keep-alive with Transfer-Encoding alone",
			req:  "POST / HTTP/1.0\r\n" + host + "Connection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
			want: http.StatusBadRequest, allowed: bad},
		// §6.3 item 5 and §8.6.
		{name: "two differing Content-Length fields",
			req:  "POST / HTTP/1.1\r\n" + host + "Content-Length: 1\r\nContent-Length: 2\r\n\r\nxx",
			want: http.StatusBadRequest, allowed: bad},
		{name: "Content-Length list of differing values",
			req:  "POST / HTTP/1.1\r\n" + host + "Content-Length: 1, 2\r\n\r\nxx",
			want: http.StatusBadRequest, allowed: bad},
		{name: "Content-Length list of equal values",
			req:  "POST / HTTP/1.1\r\n" + host + "Content-Length: 1, 1\r\n\r\nx",
			want: http.StatusBadRequest, allowed: bad},
		{name: "Content-Length not a number",
			req:  "POST / HTTP/1.1\r\n" + host + "Content-Length: abc\r\n\r\n",
			want: http.StatusBadRequest, allowed: bad},
		{name: "Content-Length negative",
			req:  "POST / HTTP/1.1\r\n" + host + "Content-Length: -1\r\n\r\n",
			want: http.StatusBadRequest, allowed: bad},
		{name: "Content-Length with sign",
			req:  "POST / HTTP/1.1\r\n" + host + "Content-Length: +1\r\n\r\nx",
			want: http.StatusBadRequest, allowed: bad},
		{name: "Content-Length hexadecimal",
			req:  "POST / HTTP/1.1\r\n" + host + "Content-Length: 0x1\r\n\r\nx",
			want: http.StatusBadRequest, allowed: bad},
		{name: "Content-Length with inner space",
			req:  "POST / HTTP/1.1\r\n" + host + "Content-Length: 1 1\r\n\r\nx",
			want: http.StatusBadRequest, allowed: bad},
		{name: "Content-Length empty",
			req:  "POST / HTTP/1.1\r\n" + host + "Content-Length: \r\n\r\n",
			want: http.StatusBadRequest, allowed: bad},
		{name: "Content-Length overflowing int64",
			req:  "POST / HTTP/1.1\r\n" + host + "Content-Length: 99999999999999999999\r\n\r\n",
			want: http.StatusBadRequest, allowed: bad},
		// §5.2: obs-fold. A server MUST reject it with 400 or replace it
		// with spaces; the first field line cannot be a continuation.
		// net/http replaces it in later fields; h1Conn rejects it.
		{name: "obsolete line folding of the first field",
			req:  "GET / HTTP/1.1\r\n Host: localhost\r\n\r\n",
			want: http.StatusBadRequest, allowed: bad},
		{name: "obsolete line folding",
			req:  "GET / HTTP/1.1\r\n" + host + "X-Folded: a\r\n b\r\n\t c\r\n\r\n",
			want: http.StatusBadRequest, allowed: bad},
		{name: "obsolete line folding of Content-Length",
			req:  "POST / HTTP/1.1\r\n" + host + "Content-Length:\r\n 1\r\n\r\nx",
			want: http.StatusBadRequest, allowed: bad},
		// §2.2: a bare CR MUST be rejected or replaced by SP before the
		// message is interpreted; a bare LF MAY be taken as a line end,
		// but not inside the request line.
		{name: "bare CR in a field value",
			req:  "GET / HTTP/1.1\r\n" + host + "X-A: a\rb\r\n\r\n",
			want: http.StatusBadRequest, allowed: bad},
		{name: "bare CR ending the request line",
			req:  "GET / HTTP/1.1\r" + host + "\r\n",
			want: http.StatusBadRequest, allowed: bad},
		{name: "bare LF inside the request target",
			req:  "GET /a\nb HTTP/1.1\r\n" + host + "\r\n",
			want: http.StatusBadRequest, allowed: bad},
		{name: "bare LF inside the request line before the version",
			req:  "GET / \nHTTP/1.1\r\n" + host + "\r\n",
			want: http.StatusBadRequest, allowed: bad},
		// §5.1: no whitespace between field name and colon.
		{name: "space before the colon",
			req:  "GET / HTTP/1.1\r\nHost : localhost\r\n\r\n",
			want: http.StatusBadRequest, allowed: bad},
		{name: "tab before the colon",
			req:  "GET / HTTP/1.1\r\n" + host + "X-A\t: b\r\n\r\n",
			want: http.StatusBadRequest, allowed: bad},
		{name: "space before the colon of Transfer-Encoding",
			req:  "POST / HTTP/1.1\r\n" + host + "Transfer-Encoding : chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
			want: http.StatusBadRequest, allowed: bad},
		// RFC 9110 §5.1, §5.5: field names are tokens, values have no CTLs.
		{name: "separator in a field name",
			req:  "GET / HTTP/1.1\r\n" + host + "X(A): b\r\n\r\n",
			want: http.StatusBadRequest, allowed: bad},
		{name: "space in a field name",
			req:  "GET / HTTP/1.1\r\n" + host + "X A: b\r\n\r\n",
			want: http.StatusBadRequest, allowed: bad},
		{name: "NUL in a field name",
			req:  "GET / HTTP/1.1\r\n" + host + "X\x00A: b\r\n\r\n",
			want: http.StatusBadRequest, allowed: bad},
		{name: "empty field name",
			req:  "GET / HTTP/1.1\r\n" + host + ": b\r\n\r\n",
			want: http.StatusBadRequest, allowed: bad},
		{name: "NUL in a field value",
			req:  "GET / HTTP/1.1\r\n" + host + "X-A: a\x00b\r\n\r\n",
			want: http.StatusBadRequest, allowed: bad},
		{name: "DEL in a field value",
			req:  "GET / HTTP/1.1\r\n" + host + "X-A: a\x7fb\r\n\r\n",
			want: http.StatusBadRequest, allowed: bad},
		{name: "escape in a field value",
			req:  "GET / HTTP/1.1\r\n" + host + "X-A: a\x1b[2Jb\r\n\r\n",
			want: http.StatusBadRequest, allowed: bad},
		// §3: the request line.
		{name: "separator in the method",
			req:  "G(T / HTTP/1.1\r\n" + host + "\r\n",
			want: http.StatusBadRequest, allowed: bad},
		{name: "two spaces after the method",
			req:  "GET  / HTTP/1.1\r\n" + host + "\r\n",
			want: http.StatusBadRequest, allowed: bad},
		{name: "malformed version",
			req:  "GET / HTTP/1.1x\r\n" + host + "\r\n",
			want: http.StatusBadRequest, allowed: bad},
		{name: "HTTP/2.0 request line",
			req:  "GET / HTTP/2.0\r\n" + host + "\r\n",
			want: http.StatusHTTPVersionNotSupported, allowed: []int{http.StatusBadRequest, http.StatusHTTPVersionNotSupported}},
		// §3.2: exactly one Host.
		{name: "no Host",
			req:  "GET / HTTP/1.1\r\n\r\n",
			want: http.StatusBadRequest, allowed: bad},
		{name: "two Host fields",
			req:  "GET / HTTP/1.1\r\n" + host + "Host: example.org\r\n\r\n",
			want: http.StatusBadRequest, allowed: bad},
		{name: "Host with a space",
			req:  "GET / HTTP/1.1\r\nHost: local host\r\n\r\n",
			want: http.StatusBadRequest, allowed: bad},
		// Size limits. net/http's MaxHeaderBytes covers the request line
		// too and it answers 431 for both; h1Conn answers 414 for a
		// request line over maxRequestLine (8 KiB), like nginx.
		{name: "oversize request line",
			req:  "GET /" + tooBig + " HTTP/1.1\r\n" + host + "\r\n",
			want: http.StatusRequestURITooLong, allowed: []int{http.StatusRequestURITooLong}},
		{name: "request line just over 8 KiB",
			req:  "GET /" + strings.Repeat("a", maxRequestLine-len("GET / HTTP/1.1")+1) + " HTTP/1.1\r\n" + host + "\r\n",
			want: http.StatusRequestURITooLong, allowed: []int{http.StatusRequestURITooLong}},
		{name: "oversize head of short fields",
			req:  "GET / HTTP/1.1\r\n" + host + strings.Repeat("X-Many: "+strings.Repeat("a", 100)+"\r\n", 700) + "\r\n",
			want: http.StatusRequestHeaderFieldsTooLarge, allowed: []int{http.StatusRequestHeaderFieldsTooLarge}},
		{name: "oversize field",
			req:  "GET / HTTP/1.1\r\n" + host + "X-Big: " + tooBig + "\r\n\r\n",
			want: http.StatusRequestHeaderFieldsTooLarge, allowed: []int{http.StatusRequestHeaderFieldsTooLarge}},
		{name: "too many fields",
			req:  "GET / HTTP/1.1\r\n" + host + strings.Repeat("X-Many: aaaaaaaaaaaaaaaa\r\n", 5000) + "\r\n",
			want: http.StatusRequestHeaderFieldsTooLarge, allowed: []int{http.StatusRequestHeaderFieldsTooLarge}},
		// §6.1: transfer codings other than chunked.
		{name: "unknown transfer coding",
			req:  "POST / HTTP/1.1\r\n" + host + "Transfer-Encoding: gzip\r\n\r\n",
			want: http.StatusNotImplemented, allowed: []int{http.StatusNotImplemented, http.StatusBadRequest}},
		{name: "chunked not last",
			req:  "POST / HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked, gzip\r\n\r\n0\r\n\r\n",
			want: http.StatusNotImplemented, allowed: []int{http.StatusNotImplemented, http.StatusBadRequest}},
		{name: "coding list ending in chunked",
			req:  "POST / HTTP/1.1\r\n" + host + "Transfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n",
			want: http.StatusNotImplemented, allowed: []int{http.StatusNotImplemented, http.StatusBadRequest}},
		{name: "two Transfer-Encoding fields",
			req:  "POST / HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
			want: http.StatusNotImplemented, allowed: []int{http.StatusNotImplemented, http.StatusBadRequest}},
		{name: "obfuscated chunked",
			req:  "POST / HTTP/1.1\r\n" + host + "Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n",
			want: http.StatusNotImplemented, allowed: []int{http.StatusNotImplemented, http.StatusBadRequest}},
		{name: "identity transfer coding",
			req:  "POST / HTTP/1.1\r\n" + host + "Transfer-Encoding: identity\r\n\r\n",
			want: http.StatusNotImplemented, allowed: []int{http.StatusNotImplemented, http.StatusBadRequest}},
	}
}

// rfc9112Conn opens a connection to a running server on which one exchange
// takes place.
type rfc9112Conn func(t *testing.T) net.Conn

// rfc9112Servers starts cfg twice, HTTP only and HTTPS only, and returns
// how to reach each: plain TCP, and TLS offering only ALPN http/1.1 so
// that the HTTPS listener serves HTTP/1.1 through its h1Conn.
func rfc9112Servers(t *testing.T, cfg Config) map[string]rfc9112Conn {
	t.Helper()
	plain := start(t, cfg, true, false)
	cfg.H2C = false // needs an HTTP listener
	secure := start(t, cfg, false, true)
	return map[string]rfc9112Conn{
		"http": func(t *testing.T) net.Conn {
			t.Helper()
			c, err := net.Dial("tcp", plain.srv.HTTPAddr().String())
			if err != nil {
				t.Fatal(err)
			}
			return c
		},
		"https": func(t *testing.T) net.Conn {
			t.Helper()
			c, err := tlsDial(t, secure, secure.srv.HTTPSAddr().String())
			if err != nil {
				t.Fatal(err)
			}
			if p := c.(*tls.Conn).ConnectionState().NegotiatedProtocol; p != "http/1.1" {
				t.Fatalf("ALPN chose %q", p)
			}
			return c
		},
	}
}

// TestRFC9112 sends each malformed request over raw TCP and over TLS with
// ALPN http/1.1, with a valid request pipelined behind it, and checks the
// answer is the expected 4xx/5xx and the connection is closed after it:
// the pipelined request is never answered.
func TestRFC9112(t *testing.T) {
	// Long read timeouts, so that a connection the server keeps open
	// shows as a read timeout on the client rather than a late close.
	servers := rfc9112Servers(t, Config{ReadHeaderTimeout: time.Minute, IdleTimeout: time.Minute})
	for _, scheme := range []string{"http", "https"} {
		dial := servers[scheme]
		for _, tt := range rfc9112Cases() {
			t.Run(scheme+"/"+tt.name, func(t *testing.T) {
				if !slices.Contains(tt.allowed, tt.want) {
					t.Fatalf("table error: the expected %d is not among the allowed %v", tt.want, tt.allowed)
				}
				statuses, closed, raw := exchange(t, dial(t), tt.req+secondRequest)
				if len(statuses) == 0 {
					t.Fatalf("no response; read %q", raw)
				}
				if statuses[0] != tt.want {
					t.Errorf("status %d, want %d (read %q)", statuses[0], tt.want, truncate(raw))
				}
				if len(statuses) > 1 {
					t.Errorf("the pipelined request was answered too: statuses %v", statuses)
				}
				if !closed {
					t.Errorf("connection still open after the response")
				}
			})
		}
	}
}

// TestRFC9112NotHTTP1 checks that a connection whose first line is not an
// HTTP/1 request line is closed without a byte written (an HTTP/1 error
// would be garbage to an HTTP/2 peer with a bad preface), while one that
// merely has a malformed version still gets its 400.
func TestRFC9112NotHTTP1(t *testing.T) {
	servers := rfc9112Servers(t, Config{H2C: true, ReadHeaderTimeout: time.Minute, IdleTimeout: time.Minute})
	tests := []struct {
		name, req string
		want      int // 0: closed, nothing written
	}{
		{"invalid HTTP/2 preface", "INVALID CONNECTION PREFACE\r\n\r\n", 0},
		{"HTTP/0.9 request", "GET /\r\n", 0},
		{"binary", "\x16\x03\x01\x00\x05hello\r\n\r\n", 0},
		{"empty first line", "\r\n" + secondRequest, 0},
		{"malformed version", "GET / HTTP/1.1x\r\nHost: localhost\r\n\r\n", http.StatusBadRequest},
	}
	for _, scheme := range []string{"http", "https"} {
		for _, tt := range tests {
			t.Run(scheme+"/"+tt.name, func(t *testing.T) {
				statuses, closed, raw := exchange(t, servers[scheme](t), tt.req+secondRequest)
				if !closed {
					t.Fatalf("connection still open; read %q", raw)
				}
				switch {
				case tt.want == 0 && raw != "":
					t.Errorf("wrote %q, want nothing", truncate(raw))
				case tt.want != 0 && !slices.Equal(statuses, []int{tt.want}):
					t.Errorf("statuses %v, want [%d]; read %q", statuses, tt.want, truncate(raw))
				}
			})
		}
	}
}

// echoHandler answers "PATH body=LEN tls=BOOL folded=VALUE" after reading
// the whole body, or 400 naming the error if the body could not be read.
var echoHandler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
	b, err := io.ReadAll(r.Body)
	if err != nil {
		http.Error(w, "body: "+err.Error(), http.StatusBadRequest)
		return
	}
	fmt.Fprintf(w, "%s body=%d tls=%v folded=%q\n", r.URL.Path, len(b), r.TLS != nil, r.Header.Get("X-Folded"))
})

// TestRFC9112Accepted pins down requests RFC 9112 lets a server accept,
// which net/http does: the answer must then be framed right (the pipelined
// request is answered as itself, never smuggled into or out of a body) and
// what the handler sees must be clean.
func TestRFC9112Accepted(t *testing.T) {
	servers := rfc9112Servers(t, Config{Handler: echoHandler, ReadHeaderTimeout: time.Minute, IdleTimeout: time.Minute})
	tests := []struct {
		name, req, want string
	}{
		// §6.3 item 5: identical duplicates MAY be collapsed into one.
		{"two equal Content-Length fields", "POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx", `/ body=1`},
		// §2.2: a recipient MAY take a bare LF as the line terminator.
		{"bare LF line ends", "GET / HTTP/1.1\nHost: localhost\n\n", `/ body=0`},
		// h1Conn rejects obs-fold (see rfc9112Cases); a value that only
		// looks folded, with inner spaces and tabs, is fine.
		{"folded-looking value", "GET / HTTP/1.1\r\nHost: localhost\r\nX-Folded: a \t b\r\n\r\n", `/ body=0 tls=%v folded="a \t b"`},
		// A body that looks like a request head is a body.
		{"body that looks like a request", "POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 41\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: localhost\r\n\r\n", `/ body=41`},
		// After a POST, net/http skips CR and LF left before the next
		// request line; h1Conn must agree on where it starts.
		{"CRLF after a POST body", "POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1\r\n\r\nx\r\n", `/ body=1`},
		// The longest request line h1Conn lets through (maxRequestLine).
		{"request line of 8 KiB", "GET /" + strings.Repeat("a", maxRequestLine-len("GET / HTTP/1.1")) + " HTTP/1.1\r\nHost: localhost\r\n\r\n", `/aaaa`},
		// Content-Length on a GET frames a body too.
		{"GET with a body", "GET / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 5\r\n\r\nGET /", `/ body=5`},
	}
	for _, scheme := range []string{"http", "https"} {
		for _, tt := range tests {
			t.Run(scheme+"/"+tt.name, func(t *testing.T) {
				// Connection: close on the second request, so that a correct
				// exchange ends with the server closing.
				second := strings.Replace(secondRequest, "\r\n\r\n", "\r\nConnection: close\r\n\r\n", 1)
				statuses, closed, raw := exchange(t, servers[scheme](t), tt.req+second)
				if !slices.Equal(statuses, []int{200, 200}) || !closed {
					t.Fatalf("statuses %v closed %v, want [200 200] then closed; read %q", statuses, closed, truncate(raw))
				}
				want := tt.want
				if strings.Contains(want, "%v") {
					want = fmt.Sprintf(want, scheme == "https")
				}
				if !strings.Contains(raw, want) || !strings.Contains(raw, fmt.Sprintf("/second body=0 tls=%v", scheme == "https")) {
					t.Errorf("want %q then the pipelined request answered as itself over TLS=%v; read %q", want, scheme == "https", raw)
				}
			})
		}
	}
}

// TestRFC9112Pipelined sends several valid requests with bodies in one
// write and checks each is answered, in order, as itself: h1Conn and
// net/http agree on where every request ends. A request with
// Transfer-Encoding closes the connection after its response (guard), so
// the chunked one comes last.
func TestRFC9112Pipelined(t *testing.T) {
	servers := rfc9112Servers(t, Config{Handler: echoHandler, ReadHeaderTimeout: time.Minute, IdleTimeout: time.Minute})
	const host = "Host: localhost\r\n"
	const lookalike = "POST /x HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\n\r\n"
	reqs := []string{
		"POST /1 HTTP/1.1\r\n" + host + "Content-Length: 11\r\n\r\nhello world",
		"GET /2 HTTP/1.1\r\n" + host + "\r\n",
		"POST /3 HTTP/1.1\r\n" + host + "Content-Length: 0\r\n\r\n",
		"PUT /4 HTTP/1.1\r\n" + host + "Content-Length: " + strconv.Itoa(len(lookalike)) + "\r\n\r\n" + lookalike,
		"POST /5 HTTP/1.1\r\n" + host + "Content-Length:  3 \r\nContent-Length: 3\r\n\r\nabc\r\n",
		"OPTIONS /6 HTTP/1.1\r\n" + host + "\r\n",
		"POST /7 HTTP/1.1\r\n" + host + "Transfer-Encoding: Chunked\r\n\r\n" +
			"5;name=value;x\r\nhello\r\n" + "A\r\n0123456789\r\n" + "0;last\r\nX-Trailer: t\r\nX-Other: u\r\n\r\n",
	}
	want := []string{"/1 body=11", "/2 body=0", "/3 body=0", "/4 body=" + strconv.Itoa(len(lookalike)), "/5 body=3", "/6 body=0", "/7 body=15"}
	for _, scheme := range []string{"http", "https"} {
		t.Run(scheme, func(t *testing.T) {
			statuses, closed, raw := exchange(t, servers[scheme](t), strings.Join(reqs, ""))
			if len(statuses) != len(reqs) || !closed {
				t.Fatalf("statuses %v closed %v, want %d answers then closed; read %q", statuses, closed, len(reqs), raw)
			}
			rest := raw
			for _, w := range want {
				i := strings.Index(rest, w)
				if i < 0 {
					t.Fatalf("answer %q missing or out of order in %q", w, raw)
				}
				rest = rest[i:]
			}
		})
	}
}

// TestRFC9112MalformedChunk checks that a chunked body h1Conn cannot parse
// fails the handler's body read and closes the connection, without the
// pipelined request being answered.
func TestRFC9112MalformedChunk(t *testing.T) {
	servers := rfc9112Servers(t, Config{Handler: echoHandler, ReadHeaderTimeout: time.Minute, IdleTimeout: time.Minute})
	const head = "POST / HTTP/1.1\r\nHost: localhost\r\nTransfer-Encoding: chunked\r\n\r\n"
	bodies := map[string]string{
		"size not hex":          "5\r\nhello\r\nzz\r\n",
		"data longer than size": "3\r\nhello\r\n0\r\n\r\n",
		"bare LF after size":    "5\nhello\r\n0\r\n\r\n",
		"space after size":      "5 \r\nhello\r\n0\r\n\r\n",
		"folded trailer":        "0\r\nX-A: a\r\n b\r\n\r\n",
		"size too large":        "10000000000000000\r\n",
	}
	for _, scheme := range []string{"http", "https"} {
		for name, body := range bodies {
			t.Run(scheme+"/"+name, func(t *testing.T) {
				statuses, closed, raw := exchange(t, servers[scheme](t), head+body+secondRequest)
				if !closed {
					t.Fatalf("connection still open; read %q", raw)
				}
				if len(statuses) > 1 || strings.Contains(raw, "/second") {
					t.Errorf("the pipelined request was answered: %q", raw)
				}
				if len(statuses) == 1 && (statuses[0] != http.StatusBadRequest || !strings.Contains(raw, "body: ")) {
					t.Errorf("want the body read to fail; read %q", raw)
				}
			})
		}
	}
}

// TestRFC9112Upgrade checks that after a request with Upgrade and
// Connection: upgrade that a handler takes over with 101, arbitrary bytes
// (here ones that would be a malformed HTTP/1 head) pass both ways.
func TestRFC9112Upgrade(t *testing.T) {
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != "paf-test" {
			echoHandler(w, r)
			return
		}
		c, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			t.Errorf("hijack: %v", err)
			return
		}
		defer c.Close()
		io.WriteString(brw, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: paf-test\r\nConnection: Upgrade\r\n\r\n")
		brw.Flush()
		// Echo until the client half-closes.
		io.Copy(c, brw)
	})
	servers := rfc9112Servers(t, Config{Handler: h, ReadHeaderTimeout: time.Minute, IdleTimeout: time.Minute})
	payload := "GET / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n folded\r\nbare\rCR\x00\xff\r\n\r\nzz\r\n"
	for _, scheme := range []string{"http", "https"} {
		t.Run(scheme, func(t *testing.T) {
			c := servers[scheme](t)
			defer c.Close()
			c.SetDeadline(time.Now().Add(30 * time.Second))
			if _, err := io.WriteString(c, "GET /ws HTTP/1.1\r\nHost: localhost\r\nUpgrade: paf-test\r\nConnection: keep-alive, Upgrade\r\n\r\n"); err != nil {
				t.Fatal(err)
			}
			br := bufio.NewReader(c)
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatal(err)
			}
			if resp.StatusCode != http.StatusSwitchingProtocols {
				t.Fatalf("status %d, want 101", resp.StatusCode)
			}
			if _, err := io.WriteString(c, payload); err != nil {
				t.Fatal(err)
			}
			got := make([]byte, len(payload))
			if _, err := io.ReadFull(br, got); err != nil {
				t.Fatalf("echo: %v (read %q)", err, got)
			}
			if string(got) != payload {
				t.Errorf("echoed %q, want %q", got, payload)
			}
		})
	}
}

// TestRFC9112UpgradeRefused checks that a CONNECT or Upgrade request the
// handler does not take over closes its connection after the response:
// the bytes after such a request are not checked, so no further request
// may be read from them.
func TestRFC9112UpgradeRefused(t *testing.T) {
	servers := rfc9112Servers(t, Config{Handler: http.HandlerFunc(echoHandler), ReadHeaderTimeout: time.Minute, IdleTimeout: time.Minute})
	// What a refused upgrade could otherwise smuggle past the checks.
	const next = "GET /folded HTTP/1.1\r\nHost: localhost\r\nX-A: a\r\n b\r\n\r\n"
	for _, req := range []string{
		"GET /up HTTP/1.1\r\nHost: localhost\r\nUpgrade: other\r\nConnection: upgrade\r\n\r\n",
		"CONNECT localhost:1 HTTP/1.1\r\nHost: localhost:1\r\n\r\n",
	} {
		for _, scheme := range []string{"http", "https"} {
			t.Run(scheme+"/"+strings.Fields(req)[0], func(t *testing.T) {
				statuses, closed, raw := exchange(t, servers[scheme](t), req+next)
				if len(statuses) != 1 || !closed {
					t.Fatalf("statuses %v, closed %v, want one answer and the connection closed; read %q", statuses, closed, raw)
				}
				if !strings.Contains(raw, "Connection: close") {
					t.Errorf("the answer does not say Connection: close: %q", raw)
				}
			})
		}
	}
}

// exchange writes req on c and reads until the server closes it (closed)
// or a bounding deadline passes (not closed), returning the status of each
// response read. It closes c.
func exchange(t *testing.T, c net.Conn, req string) (statuses []int, closed bool, raw string) {
	t.Helper()
	defer c.Close()
	// Write in the background: for oversize requests the server answers
	// and hangs up before reading everything.
	werr := make(chan error, 1)
	go func() {
		_, err := io.WriteString(c, req)
		werr <- err
	}()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	b, err := io.ReadAll(c)
	var ne net.Error
	timedOut := errors.As(err, &ne) && ne.Timeout()
	if err != nil && !timedOut {
		// A reset after the answer (the server hung up with request
		// bytes unread) still counts as closed.
		t.Logf("read ended with %v", err)
	}
	c.Close()
	<-werr
	br := bufio.NewReader(bytes.NewReader(b))
	for range 20 {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			break
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		statuses = append(statuses, resp.StatusCode)
	}
	return statuses, !timedOut, string(b)
}

// truncate shortens raw responses for messages.
func truncate(s string) string {
	if len(s) > 300 {
		return s[:300] + "..."
	}
	return s
}
