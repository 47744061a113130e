package server

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
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
	// want is the status net/http answers with; allowed are the statuses
	// issue 6 accepts for this kind of request.
	want    int
	allowed []int
	// bug, when set, names a known defect: the subtest asserts the
	// behaviour the issue requires and is skipped until it is fixed.
	bug string
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
		// MUST close the connection after responding.
		{name: "Content-Length and Transfer-Encoding",
			req:  "POST / HTTP/1.1\r\n" + host + "Content-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
			want: http.StatusOK, allowed: []int{http.StatusOK, http.StatusBadRequest}},
		{name: "Transfer-Encoding and Content-Length",
			req:  "POST / HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\nContent-Length: 40\r\n\r\n0\r\n\r\n",
			want: http.StatusOK, allowed: []int{http.StatusOK, http.StatusBadRequest}},
		// §6.1: HTTP/1.0 with Transfer-Encoding: the framing MUST be
		// treated as faulty and the connection closed.
		{name: "HTTP/1.0 keep-alive with Transfer-Encoding",
			req:  "POST / HTTP/1.0\r\n" + host + "Connection: keep-alive\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n",
			want: http.StatusOK, allowed: []int{http.StatusOK, http.StatusBadRequest},
			bug: "net/http ignores Transfer-Encoding on HTTP/1.0 (golang/go#12785), frames by Content-Length and keeps a keep-alive connection open; the handler cannot see the removed field, so only a check before net/http's parser (or upstream) can fix it"},
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
		{name: "obsolete line folding of the first field",
			req:  "GET / HTTP/1.1\r\n Host: localhost\r\n\r\n",
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
		// too and it answers 431 for both; issue 6 asks 414 or 400 for an
		// oversize request line, which net/http cannot be told to send
		// (the request never reaches a handler), so 431 is accepted here.
		{name: "oversize request line",
			req:  "GET /" + tooBig + " HTTP/1.1\r\n" + host + "\r\n",
			want: http.StatusRequestHeaderFieldsTooLarge, allowed: []int{http.StatusRequestURITooLong, http.StatusBadRequest, http.StatusRequestHeaderFieldsTooLarge}},
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

// TestRFC9112 sends each malformed request over raw TCP, with a valid
// request pipelined behind it, and checks the answer is the expected
// 4xx/5xx and the connection is closed after it: the pipelined request is
// never answered.
func TestRFC9112(t *testing.T) {
	// Long read timeouts, so that a connection the server keeps open
	// shows as a read timeout on the client rather than a late close.
	r := start(t, Config{ReadHeaderTimeout: time.Minute, IdleTimeout: time.Minute}, true, false)
	addr := r.srv.HTTPAddr().String()
	for _, tt := range rfc9112Cases() {
		t.Run(tt.name, func(t *testing.T) {
			if !slices.Contains(tt.allowed, tt.want) {
				t.Fatalf("table error: net/http's %d is not among the allowed %v", tt.want, tt.allowed)
			}
			if tt.bug != "" && os.Getenv("PAF_TEST_KNOWN_BUGS") == "" {
				t.Skip("known bug (PAF_TEST_KNOWN_BUGS=1 runs it): " + tt.bug)
			}
			statuses, closed, raw := exchange(t, addr, tt.req+secondRequest)
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

// TestRFC9112Accepted pins down requests RFC 9112 lets a server accept,
// which net/http does: the answer must then be framed right (the pipelined
// request is answered as itself, never smuggled into or out of a body) and
// what the handler sees must be clean.
func TestRFC9112Accepted(t *testing.T) {
	echo := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "%s folded=%q\n", r.URL.Path, r.Header.Get("X-Folded"))
	})
	r := start(t, Config{Handler: echo, ReadHeaderTimeout: time.Minute, IdleTimeout: time.Minute}, true, false)
	addr := r.srv.HTTPAddr().String()
	tests := []struct {
		name, req, want string
	}{
		// §6.3 item 5: identical duplicates MAY be collapsed into one.
		{"two equal Content-Length fields", "POST / HTTP/1.1\r\nHost: localhost\r\nContent-Length: 1\r\nContent-Length: 1\r\n\r\nx", `/ folded=""`},
		// §2.2: a recipient MAY take a bare LF as the line terminator.
		{"bare LF line ends", "GET / HTTP/1.1\nHost: localhost\n\n", `/ folded=""`},
		// §5.2: a server MUST reject obs-fold with 400 or replace it with
		// spaces before interpreting the value; net/http replaces it.
		// (Issue 6 asks for 400; the handler cannot tell a folded value
		// from a plain one, so that would need a check before net/http.)
		{"obsolete line folding", "GET / HTTP/1.1\r\nHost: localhost\r\nX-Folded: a\r\n b\r\n\t c\r\n\r\n", `/ folded="a b c"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Connection: close on the second request, so that a correct
			// exchange ends with the server closing.
			second := strings.Replace(secondRequest, "\r\n\r\n", "\r\nConnection: close\r\n\r\n", 1)
			statuses, closed, raw := exchange(t, addr, tt.req+second)
			if !slices.Equal(statuses, []int{200, 200}) || !closed {
				t.Fatalf("statuses %v closed %v, want [200 200] then closed; read %q", statuses, closed, truncate(raw))
			}
			if !strings.Contains(raw, tt.want+"\n") || !strings.Contains(raw, "/second folded") {
				t.Errorf("want %q then the pipelined request answered as itself; read %q", tt.want, raw)
			}
		})
	}
}

// exchange writes req on a new connection to addr and reads until the
// server closes it (closed) or a bounding deadline passes (not closed),
// returning the status of each response read.
func exchange(t *testing.T, addr, req string) (statuses []int, closed bool, raw string) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
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
	for range 10 {
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
