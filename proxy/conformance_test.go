package proxy

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pafhq/paf/certs"
	"github.com/pafhq/paf/internal/testpeer"
	"github.com/pafhq/paf/server"
	"github.com/pafhq/paf/stack"
)

// frontServer runs p the way `paf proxy` does: server.Server on loopback
// with a plain listener (h2c when h2c is set) and, when withTLS is set, an
// HTTPS listener with certificates from a local CA, through p.WrapStack.
// It routes "localhost" and "127.0.0.1" to backendURL and returns the
// server.
func frontServer(t *testing.T, backendURL string, h2c, withTLS bool, cfg server.Config) *server.Server {
	t.Helper()
	p := newProxy(t, Config{})
	route := fmt.Sprintf("backends = [%q]", backendURL)
	apply(t, p, map[string]string{"localhost": route, "127.0.0.1": route})
	cfg.HTTPAddr = "127.0.0.1:0"
	cfg.H2C = h2c
	cfg.Handler = p
	cfg.NextProtosForName = p.NextProtos
	if withTLS {
		// With both listeners the plain one would only redirect.
		cfg.HTTPAddr = ""
		cfg.HTTPSAddr = "127.0.0.1:0"
		ca, _ := localCA(t)
		is, err := ca.Issuer([]string{"localhost", "127.0.0.1"})
		if err != nil {
			t.Fatal(err)
		}
		// h2spec dials an IP address, so sends no SNI: the fallback
		// answers.
		cfg.Certificates = &Certificates{Proxy: p,
			Default:  &PerHost{New: func(string) (certs.Getter, error) { return is, nil }},
			Fallback: is}
	}
	cfg.Stack = p.WrapStack(&stack.Host{}, cfg.HTTPSAddr, ListenerConfig{})
	srv, err := server.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := srv.Listen(ctx); err != nil {
		cancel()
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("proxy server: %v", err)
		}
		p.Wait()
	})
	return srv
}

// TestConformanceH2spec runs h2spec against the proxy's own HTTP/2 server
// over TLS and h2c, with every request forwarded to a Go backend: every
// case must pass. -short skips it.
//
// The backend reads each request's body to its end before answering, so
// that a stream h2spec leaves open (HEADERS without END_STREAM, then the
// frame under test) stays open at the proxy too: see server's TestH2spec
// for why an immediate answer makes cases 6.9.1 and 8.1.2.6 depend on
// timing.
func TestConformanceH2spec(t *testing.T) {
	if testing.Short() {
		t.Skip("h2spec runs 145 cases with timeouts")
	}
	testpeer.Need(t, "h2spec")
	be := "http://" + backend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		io.WriteString(w, "from the backend\n")
	}), false)
	tlsSrv := frontServer(t, be, false, true, server.Config{})
	h2cSrv := frontServer(t, be, true, false, server.Config{})
	t.Run("tls", func(t *testing.T) { testpeer.H2spec(t, tlsSrv.HTTPSAddr().(*net.TCPAddr).Port, true) })
	t.Run("h2c", func(t *testing.T) { testpeer.H2spec(t, h2cSrv.HTTPAddr().(*net.TCPAddr).Port, false) })
}

// recordingBackend is a raw TCP HTTP/1.1 backend that keeps every byte it
// receives, connection by connection, and answers each request it parses
// with 200 and the request's path as the body. It is not net/http's
// server, so that what the proxy sends is judged byte for byte.
type recordingBackend struct {
	ln net.Listener

	mu      sync.Mutex
	streams []*bytes.Buffer // one per connection
	paths   []string        // requests parsed, in order
	wg      sync.WaitGroup
}

func newRecordingBackend(t *testing.T) *recordingBackend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &recordingBackend{ln: ln}
	b.wg.Add(1)
	go b.accept()
	t.Cleanup(func() { ln.Close(); b.wg.Wait() })
	return b
}

// lockedWriter appends to a buffer under the backend's lock.
type lockedWriter struct {
	mu  *sync.Mutex
	buf *bytes.Buffer
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.Write(p)
}

func (b *recordingBackend) accept() {
	defer b.wg.Done()
	var conns []net.Conn
	defer func() {
		for _, c := range conns {
			c.Close()
		}
	}()
	for {
		c, err := b.ln.Accept()
		if err != nil {
			return
		}
		conns = append(conns, c)
		buf := new(bytes.Buffer)
		b.mu.Lock()
		b.streams = append(b.streams, buf)
		b.mu.Unlock()
		b.wg.Add(1)
		go b.serve(c, buf)
	}
}

func (b *recordingBackend) serve(c net.Conn, buf *bytes.Buffer) {
	defer b.wg.Done()
	defer c.Close()
	br := bufio.NewReader(io.TeeReader(c, lockedWriter{&b.mu, buf}))
	for range 100 {
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		if _, err := io.Copy(io.Discard, req.Body); err != nil {
			return // aborted mid-body: not a request, and the connection ends
		}
		b.mu.Lock()
		b.paths = append(b.paths, req.URL.Path)
		b.mu.Unlock()
		fmt.Fprintf(c, "HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s", len(req.URL.Path), req.URL.Path)
	}
}

// received returns the paths of the requests parsed so far, and checks
// that each connection's bytes parse, with http.ReadRequest in a loop,
// into exactly those requests with nothing left over but, at most, one
// request cut off mid-body as its connection was aborted.
func (b *recordingBackend) received(t *testing.T) []string {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	var reparsed []string
	for i, s := range b.streams {
		br := bufio.NewReader(bytes.NewReader(s.Bytes()))
		for range 100 {
			if _, err := br.Peek(1); err == io.EOF {
				break
			}
			req, err := http.ReadRequest(br)
			if err != nil {
				t.Errorf("backend connection %d: bytes that are not a request: %v\n%q", i, err, s.String())
				break
			}
			if _, err := io.Copy(io.Discard, req.Body); err != nil {
				// The proxy streams bodies: when one turns out malformed
				// it aborts the backend connection mid-body. Allowed as
				// the last thing on a connection, never answered.
				if _, more := br.Peek(1); more == nil || !errors.Is(err, io.ErrUnexpectedEOF) {
					t.Errorf("backend connection %d: bad body: %v\n%q", i, err, s.String())
				}
				break
			}
			reparsed = append(reparsed, req.URL.Path)
		}
	}
	if !slices.Equal(slices.Sorted(slices.Values(reparsed)), slices.Sorted(slices.Values(b.paths))) {
		t.Errorf("backend bytes reparse into %v, the backend answered %v", reparsed, b.paths)
	}
	return slices.Clone(b.paths)
}

// smuggled is hidden in the bodies of the malformed requests: a proxy
// that frames a body differently from its backend would let it through.
const smuggled = "GET /smuggled HTTP/1.1\r\nHost: localhost\r\n\r\n"

// pipelined follows each malformed request on the client connection.
const pipelined = "GET /second HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"

// TestSmugglingDesync sends RFC 9112's malformed framing over raw TCP to
// the proxy, with a request hidden in each body and a valid one pipelined
// behind, in front of a backend that records every byte. The client must
// get 4xx/5xx for what the proxy rejects, and the backend must receive
// exactly the requests the proxy answered from it: never /smuggled, and
// nothing the client was not answered for.
func TestSmugglingDesync(t *testing.T) {
	const host = "Host: localhost\r\n"
	chunkedSmuggle := fmt.Sprintf("%x\r\n%s\r\n0\r\n\r\n", len(smuggled), smuggled)
	tests := []struct {
		name string
		req  string
		// reject: the first response must be 4xx/5xx and the backend
		// see nothing. Otherwise want is the backend's paths.
		reject bool
		want   []string
	}{
		// §6.1: the server's HTTP/1 front rejects both framings at once,
		// and Transfer-Encoding in HTTP/1.0.
		{name: "CL.TE", req: "POST / HTTP/1.1\r\n" + host + "Content-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" + smuggled, reject: true},
		{name: "TE.CL", req: "POST / HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n" + chunkedSmuggle, reject: true},
		{name: "HTTP/1.0 with TE and CL", req: "POST / HTTP/1.0\r\n" + host + "Connection: keep-alive\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n0\r\n\r\n", reject: true},
		{name: "two differing Content-Length", req: "POST / HTTP/1.1\r\n" + host + "Content-Length: 0\r\nContent-Length: " + fmt.Sprint(len(smuggled)) + "\r\n\r\n" + smuggled, reject: true},
		{name: "Content-Length list", req: "POST / HTTP/1.1\r\n" + host + "Content-Length: 0, " + fmt.Sprint(len(smuggled)) + "\r\n\r\n" + smuggled, reject: true},
		{name: "Content-Length with sign", req: "POST / HTTP/1.1\r\n" + host + "Content-Length: +0\r\n\r\n" + smuggled, reject: true},
		{name: "Content-Length not a number", req: "POST / HTTP/1.1\r\n" + host + "Content-Length: 0x0\r\n\r\n" + smuggled, reject: true},
		{name: "two equal Content-Length", req: "POST / HTTP/1.1\r\n" + host + "Content-Length: 1\r\nContent-Length: 1\r\n\r\nx" + pipelined, want: []string{"/", "/second"}},
		{name: "obs-fold of the first field", req: "GET / HTTP/1.1\r\n Host: localhost\r\n\r\n", reject: true},
		// §5.2: obs-fold is rejected, whatever it folds.
		{name: "obs-fold hiding Transfer-Encoding", req: "POST / HTTP/1.1\r\n" + host + "X-A: a\r\n Transfer-Encoding: chunked\r\nContent-Length: 0\r\n\r\n" + chunkedSmuggle, reject: true},
		{name: "bare CR in a value", req: "GET / HTTP/1.1\r\n" + host + "X-A: a\rTransfer-Encoding: chunked\r\n\r\n", reject: true},
		{name: "bare CR ending the request line", req: "GET / HTTP/1.1\r" + host + "\r\n", reject: true},
		{name: "bare LF in the target", req: "GET /a\nb HTTP/1.1\r\n" + host + "\r\n", reject: true},
		{name: "bare LF line ends", req: "GET / HTTP/1.1\n" + host + "\n", want: []string{"/", "/second"}},
		{name: "space before the colon of Transfer-Encoding", req: "POST / HTTP/1.1\r\n" + host + "Transfer-Encoding : chunked\r\nContent-Length: 0\r\n\r\n" + chunkedSmuggle, reject: true},
		{name: "space before the colon of Content-Length", req: "POST / HTTP/1.1\r\n" + host + "Content-Length : " + fmt.Sprint(len(smuggled)) + "\r\n\r\n" + smuggled, reject: true},
		{name: "NUL in a field name", req: "GET / HTTP/1.1\r\n" + host + "X\x00A: b\r\n\r\n", reject: true},
		{name: "NUL in a field value", req: "GET / HTTP/1.1\r\n" + host + "X-A: a\x00b\r\n\r\n", reject: true},
		{name: "separator in a field name", req: "GET / HTTP/1.1\r\n" + host + "X(A): b\r\n\r\n", reject: true},
		{name: "unknown transfer coding", req: "POST / HTTP/1.1\r\n" + host + "Transfer-Encoding: gzip\r\n\r\n" + smuggled, reject: true},
		{name: "chunked not last", req: "POST / HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked, identity\r\n\r\n" + chunkedSmuggle, reject: true},
		{name: "obfuscated chunked", req: "POST / HTTP/1.1\r\n" + host + "Transfer-Encoding: xchunked\r\nContent-Length: 0\r\n\r\n" + chunkedSmuggle, reject: true},
		{name: "two Transfer-Encoding fields", req: "POST / HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n" + chunkedSmuggle, reject: true},
		{name: "bad chunk size", req: "POST / HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\n\r\n-1\r\n" + smuggled, want: nil},
		{name: "no Host", req: "GET / HTTP/1.1\r\n\r\n", reject: true},
		{name: "two Host fields", req: "GET / HTTP/1.1\r\n" + host + "Host: example.org\r\n\r\n", reject: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			be := newRecordingBackend(t)
			srv := frontServer(t, "http://"+be.ln.Addr().String(), false, false,
				server.Config{ReadHeaderTimeout: time.Minute, IdleTimeout: time.Minute})
			responses, raw := rawExchange(t, srv.HTTPAddr().String(), tt.req+pipelined)
			got := be.received(t)
			if slices.Contains(got, "/smuggled") && !slices.Contains(tt.want, "/smuggled") {
				t.Fatalf("a request hidden in a body reached the backend: %v", got)
			}
			// What the client was answered from the backend is what
			// the backend received, in order.
			var answered []string
			for _, r := range responses {
				if r.status == http.StatusOK {
					answered = append(answered, r.body)
				}
			}
			if !slices.Equal(answered, got) {
				t.Errorf("client got backend answers for %v, backend received %v; read %q", answered, got, raw)
			}
			if tt.reject {
				if len(responses) == 0 || responses[0].status < 400 {
					t.Errorf("want a 4xx/5xx first, read %q", raw)
				}
				if len(got) != 0 {
					t.Errorf("rejected request reached the backend: %v", got)
				}
				return
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("backend received %v, want %v; client read %q", got, tt.want, raw)
			}
		})
	}
}

// rawResponse is one response read back by rawExchange.
type rawResponse struct {
	status int
	body   string
}

// rawExchange writes req on a new connection to addr and reads until the
// proxy closes it or a bounding deadline passes, then parses the
// responses.
func rawExchange(t *testing.T, addr, req string) ([]rawResponse, string) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	werr := make(chan error, 1)
	go func() {
		_, err := io.WriteString(c, req)
		werr <- err
	}()
	// A proxy that keeps the connection open shows as the deadline; a
	// kept-open connection is allowed (the responses are what count).
	c.SetReadDeadline(time.Now().Add(3 * time.Second))
	b, err := io.ReadAll(c)
	var ne net.Error
	if err != nil && !(errors.As(err, &ne) && ne.Timeout()) {
		t.Logf("read ended with %v", err)
	}
	c.Close()
	<-werr
	var out []rawResponse
	br := bufio.NewReader(bytes.NewReader(b))
	for range 10 {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			break
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		out = append(out, rawResponse{resp.StatusCode, strings.TrimSpace(string(body))})
	}
	return out, string(b)
}
