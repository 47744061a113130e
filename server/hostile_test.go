package server

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// Hostile-client tests. Every loop is bounded and every wait has a
// deadline that fails the test rather than hanging it; nothing asserts how
// fast anything is.

// hostileDeadline bounds any single wait in these tests; reaching it means
// the server hung or kept something open it should have closed.
const hostileDeadline = time.Minute

// raiseFDLimit makes room for n more descriptors, raising the soft limit
// up to the hard one, and returns how many connections the test may open
// (each costs two descriptors in this process: client and server side).
func raiseFDLimit(t *testing.T, want int) int {
	t.Helper()
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Logf("getrlimit: %v; trying %d connections anyway", err, want)
		return want
	}
	need := uint64(2*want + 256)
	if lim.Cur < need {
		old := lim.Cur
		lim.Cur = min(need, lim.Max)
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			t.Logf("setrlimit: %v", err)
			lim.Cur = old
		}
	}
	if lim.Cur < need {
		n := int(lim.Cur-256) / 2
		t.Logf("descriptor limit %d: scaled down from %d to %d connections", lim.Cur, want, n)
		return n
	}
	return want
}

// clientFor returns an HTTP client trusting the test CA, with a fresh
// transport (no connection shared with other tests), HTTP/2 over TLS
// when h2 is set, and a deadline bounding each request.
func clientFor(t *testing.T, r *running, h2 bool) *http.Client {
	t.Helper()
	tr := &http.Transport{DisableKeepAlives: !h2, ForceAttemptHTTP2: h2}
	if r.caFile != "" {
		tr.TLSClientConfig = &tls.Config{RootCAs: caPool(t, r), ServerName: "localhost"}
	}
	if !h2 {
		tr.Protocols = new(http.Protocols)
		tr.Protocols.SetHTTP1(true)
	}
	t.Cleanup(tr.CloseIdleConnections)
	return &http.Client{Transport: tr, Timeout: hostileDeadline}
}

// caPool returns the pool of the test CA.
func caPool(t *testing.T, r *running) *x509.CertPool {
	t.Helper()
	pem, err := os.ReadFile(r.caFile)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		t.Fatal("no CA certificate in", r.caFile)
	}
	return pool
}

// getOK fetches url and fails unless the site answers 200 with its
// greeting for path.
func getOK(client *http.Client, url, path string) error {
	resp, err := client.Get(url + path)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("GET %s: body: %w", path, err)
	}
	if resp.StatusCode != 200 || !strings.HasSuffix(string(b), " "+path+"\n") {
		return fmt.Errorf("GET %s: %s %q", path, resp.Status, b)
	}
	return nil
}

// TestHostileSlowloris holds 1000 connections that send their headers a
// byte at a time while a normal client makes 20 requests on new
// connections: all 20 succeed, and the header timeout then closes every
// slow connection.
func TestHostileSlowloris(t *testing.T) {
	if testing.Short() {
		t.Skip("opens 1000 connections")
	}
	n := raiseFDLimit(t, 1000)
	for _, https := range []bool{false, true} {
		name := map[bool]string{false: "http", true: "https"}[https]
		t.Run(name, func(t *testing.T) {
			r := start(t, Config{ReadHeaderTimeout: 2 * time.Second}, !https, https)
			var addr, url string
			if https {
				addr, url = r.srv.HTTPSAddr().String(), fmt.Sprintf("https://localhost:%d", r.httpsPort())
			} else {
				addr, url = r.srv.HTTPAddr().String(), fmt.Sprintf("http://127.0.0.1:%d", r.httpPort())
			}
			pool := (*x509.CertPool)(nil)
			if https {
				pool = caPool(t, r)
			}
			dial := func() (net.Conn, error) {
				d := &net.Dialer{Timeout: hostileDeadline}
				if !https {
					return d.Dial("tcp", addr)
				}
				return tls.DialWithDialer(d, "tcp", addr, &tls.Config{RootCAs: pool, ServerName: "localhost", NextProtos: []string{"http/1.1"}})
			}

			const prefix = "GET / HTTP/1.1\r\nHost: localhost\r\nX-Slow: "
			type slow struct {
				c    net.Conn
				done atomic.Bool // the server closed it (or it failed)
			}
			conns := make([]*slow, 0, n)
			var wg sync.WaitGroup
			var stillOpen, answered atomic.Int32
			t.Cleanup(func() {
				for _, s := range conns {
					s.c.Close()
				}
				wg.Wait()
			})
			for range n {
				c, err := dial()
				if err != nil {
					t.Fatalf("dial slow connection %d: %v", len(conns), err)
				}
				s := &slow{c: c}
				conns = append(conns, s)
				wg.Go(func() {
					// Read until the server hangs up; the deadline only
					// bounds a broken server.
					c.SetReadDeadline(time.Now().Add(hostileDeadline))
					b, err := io.ReadAll(c)
					var ne net.Error
					if errors.As(err, &ne) && ne.Timeout() {
						stillOpen.Add(1)
					}
					// net/http hangs up silently, or, when the timeout
					// cuts a line, answers 400 before hanging up.
					if len(b) > 0 && !strings.HasPrefix(string(b), "HTTP/1.1 400 ") && !strings.HasPrefix(string(b), "HTTP/1.1 408 ") {
						answered.Add(1)
						t.Logf("slow connection got %q", b)
					}
					s.done.Store(true)
				})
			}

			// Trickle: one byte per connection per round, until every
			// connection is closed. Bounded by rounds, not by time.
			stop := make(chan struct{})
			trickled := make(chan int, 1)
			go func() {
				rounds := 0
				defer func() { trickled <- rounds }()
				msg := prefix + strings.Repeat("a", 1<<16)
				for i := range len(msg) {
					select {
					case <-stop:
						return
					case <-time.After(50 * time.Millisecond):
					}
					rounds++
					open := 0
					for _, s := range conns {
						if s.done.Load() {
							continue
						}
						open++
						s.c.SetWriteDeadline(time.Now().Add(time.Second))
						s.c.Write([]byte{msg[i]})
					}
					if open == 0 {
						return
					}
				}
			}()

			client := clientFor(t, r, false)
			for i := range 20 {
				if err := getOK(client, url, fmt.Sprintf("/normal%d", i)); err != nil {
					t.Errorf("normal client request %d with %d slow connections: %v", i, n, err)
				}
			}

			waited := make(chan struct{})
			go func() { wg.Wait(); close(waited) }()
			select {
			case <-waited:
			case <-time.After(2 * hostileDeadline):
				t.Fatal("slow connections neither closed nor timed out")
			}
			close(stop)
			rounds := <-trickled
			if c := stillOpen.Load(); c > 0 {
				t.Errorf("%d of %d slow connections still open after %v", c, n, hostileDeadline)
			}
			if c := answered.Load(); c > 0 {
				t.Errorf("%d slow connections got something other than 400, 408 or nothing", c)
			}
			t.Logf("%d slow connections closed by the header timeout after %d one-byte rounds", n, rounds)
		})
	}
}

// TestHostileStalledHandshake: clients stalling mid-handshake, after a
// partial ClientHello, block nobody else, and the handshake timeout then
// drops them (the originals' issue #60).
func TestHostileStalledHandshake(t *testing.T) {
	r := start(t, Config{TLSHandshakeTimeout: 2 * time.Second}, false, true)
	addr := r.srv.HTTPSAddr().String()
	partial := []byte{0x16, 0x03, 0x01, 0x00, 0xc8, 0x01} // record header, then the start of a 200-byte ClientHello
	const stalled = 50
	var wg sync.WaitGroup
	var stillOpen, answered atomic.Int32
	for range stalled {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		if _, err := c.Write(partial); err != nil {
			t.Fatal(err)
		}
		wg.Go(func() {
			c.SetReadDeadline(time.Now().Add(hostileDeadline))
			b, err := io.ReadAll(c)
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				stillOpen.Add(1)
			}
			if len(b) > 0 {
				answered.Add(1)
			}
		})
	}
	url := fmt.Sprintf("https://localhost:%d", r.httpsPort())
	for _, h2 := range []bool{false, true} {
		client := clientFor(t, r, h2)
		for i := range 5 {
			if err := getOK(client, url, fmt.Sprintf("/other%d", i)); err != nil {
				t.Errorf("h2=%v: request %d while %d handshakes stall: %v", h2, i, stalled, err)
			}
		}
	}
	wg.Wait()
	if c := stillOpen.Load(); c > 0 {
		t.Errorf("%d stalled handshakes still open after %v", c, hostileDeadline)
	}
	if c := answered.Load(); c > 0 {
		t.Errorf("%d stalled handshakes were sent data", c)
	}
}

// h2Conn is a raw HTTP/2 client connection over TLS for sending what no
// well-behaved client would.
type h2Conn struct {
	c   *tls.Conn
	fr  *http2.Framer
	enc *hpack.Encoder
	buf bytes.Buffer
}

// dialH2 opens a TLS connection negotiating h2, sends the preface and
// empty SETTINGS, and opens the connection flow-control window wide so
// that the server never waits on it.
func dialH2(t *testing.T, r *running) *h2Conn {
	t.Helper()
	c, err := tls.Dial("tcp", r.srv.HTTPSAddr().String(), &tls.Config{RootCAs: caPool(t, r), ServerName: "localhost", NextProtos: []string{"h2"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if p := c.ConnectionState().NegotiatedProtocol; p != "h2" {
		t.Fatalf("ALPN %q, want h2", p)
	}
	h := startH2(t, c)
	h.c = c
	return h
}

// startH2 sends the client preface, empty SETTINGS and a wide connection
// window on c, under hostileDeadline.
func startH2(t *testing.T, c net.Conn) *h2Conn {
	t.Helper()
	h := &h2Conn{fr: http2.NewFramer(c, c)}
	h.enc = hpack.NewEncoder(&h.buf)
	c.SetDeadline(time.Now().Add(hostileDeadline))
	if _, err := io.WriteString(c, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	if err := h.fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	if err := h.fr.WriteWindowUpdate(0, 1<<30); err != nil {
		t.Fatal(err)
	}
	return h
}

// block returns an HPACK header block for GET path plus extra fields.
func (h *h2Conn) block(path string, extra ...hpack.HeaderField) []byte {
	h.buf.Reset()
	for _, f := range append([]hpack.HeaderField{
		{Name: ":method", Value: "GET"},
		{Name: ":scheme", Value: "https"},
		{Name: ":authority", Value: "localhost"},
		{Name: ":path", Value: path},
	}, extra...) {
		h.enc.WriteField(f)
	}
	return bytes.Clone(h.buf.Bytes())
}

// h2Outcome is how the server ended (or did not end) an abusive
// connection.
type h2Outcome struct {
	frames  int
	goAway  *http2.ErrCode // nil: no GOAWAY seen
	lastErr error          // what ended reading: EOF, reset, or a timeout
}

func (o h2Outcome) closed() bool {
	var ne net.Error
	return !(errors.As(o.lastErr, &ne) && ne.Timeout())
}

func (o h2Outcome) String() string {
	g := "no GOAWAY"
	if o.goAway != nil {
		g = "GOAWAY " + o.goAway.String()
	}
	return fmt.Sprintf("%d frames read, %s, then %v", o.frames, g, o.lastErr)
}

// drain reads frames until the connection ends or the read deadline set
// on h.c passes.
func (h *h2Conn) drain() h2Outcome {
	var o h2Outcome
	for {
		f, err := h.fr.ReadFrame()
		if err != nil {
			o.lastErr = err
			return o
		}
		o.frames++
		if ga, ok := f.(*http2.GoAwayFrame); ok {
			code := ga.ErrCode
			o.goAway = &code
		}
	}
}

// heapInuse returns HeapInuse after a collection.
func heapInuse() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

// maxHeapGrowth is the memory an abusive HTTP/2 connection may leave the
// process holding. Generous: it catches unbounded growth (a flood of
// 10^5 frames buffered whole), not inefficiency.
const maxHeapGrowth = 256 << 20

// normalClientDuring runs requests from a well-behaved HTTP/2 client while
// abuse runs, until stop is closed (and at least once), and returns the
// first failure.
func normalClientDuring(t *testing.T, r *running, stop <-chan struct{}) <-chan error {
	client := clientFor(t, r, true)
	url := fmt.Sprintf("https://localhost:%d", r.httpsPort())
	errc := make(chan error, 1)
	go func() {
		for i := 0; i < 1000; i++ {
			if err := getOK(client, url, fmt.Sprintf("/normal%d", i)); err != nil {
				errc <- fmt.Errorf("request %d: %w", i, err)
				return
			}
			select {
			case <-stop:
				errc <- nil
				return
			default:
			}
		}
		errc <- nil
	}()
	return errc
}

// h2IdleTimeout is the IdleTimeout of the server TestHostileH2 attacks:
// short, so that a connection the server keeps after a flood it survived
// is seen to close, as an idle connection, within the test's deadline.
const h2IdleTimeout = 3 * time.Second

// TestHostileH2 floods HTTP/2 connections the ways known to hurt servers.
// For each: a normal client is served during and after the flood, the
// heap and the number of goroutines stay bounded, and the abusive
// connection is closed, by the server's reaction to the flood or at the
// latest by the idle timeout. What the server did is logged.
func TestHostileH2(t *testing.T) {
	if testing.Short() {
		t.Skip("sends 10^4..10^5 frames per case")
	}
	tests := []struct {
		name string
		// flood writes the abuse and returns how many units it sent
		// before the server stopped it (a write failed).
		flood func(h *h2Conn) (int, error)
		// readWhileFlooding: read the server's frames concurrently, as a
		// client would; false floods without reading, which is what
		// fills a server's queue of control frames.
		readWhileFlooding bool
	}{
		{
			// CVE-2023-44487: open streams and cancel them at once.
			name: "rapid reset", readWhileFlooding: true,
			flood: func(h *h2Conn) (int, error) {
				for i := range 10000 {
					id := uint32(2*i + 1)
					if err := h.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: h.block("/"), EndStream: true, EndHeaders: true}); err != nil {
						return i, err
					}
					if err := h.fr.WriteRSTStream(id, http2.ErrCodeCancel); err != nil {
						return i, err
					}
				}
				return 10000, nil
			},
		},
		{
			// CVE-2024-27316 and kin: a header block that never ends.
			name: "CONTINUATION flood", readWhileFlooding: true,
			flood: func(h *h2Conn) (int, error) {
				if err := h.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: h.block("/")}); err != nil {
					return 0, err
				}
				chunk := h.block("/", hpack.HeaderField{Name: "x-flood", Value: strings.Repeat("a", 4000)})
				for i := range 100000 {
					if err := h.fr.WriteContinuation(1, false, chunk); err != nil {
						return i, err
					}
				}
				return 100000, nil
			},
		},
		{
			name: "CONTINUATION flood of empty frames", readWhileFlooding: true,
			flood: func(h *h2Conn) (int, error) {
				if err := h.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: h.block("/")}); err != nil {
					return 0, err
				}
				for i := range 100000 {
					if err := h.fr.WriteContinuation(1, false, nil); err != nil {
						return i, err
					}
				}
				return 100000, nil
			},
		},
		{
			name: "SETTINGS flood without reading",
			flood: func(h *h2Conn) (int, error) {
				for i := range 100000 {
					if err := h.fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 65535}); err != nil {
						return i, err
					}
				}
				return 100000, nil
			},
		},
		{
			name: "PING flood without reading",
			flood: func(h *h2Conn) (int, error) {
				for i := range 100000 {
					if err := h.fr.WritePing(false, [8]byte{byte(i)}); err != nil {
						return i, err
					}
				}
				return 100000, nil
			},
		},
		{
			name: "PING flood while reading", readWhileFlooding: true,
			flood: func(h *h2Conn) (int, error) {
				for i := range 100000 {
					if err := h.fr.WritePing(false, [8]byte{byte(i)}); err != nil {
						return i, err
					}
				}
				return 100000, nil
			},
		},
		{
			// A client that opens streams but never lets the server send
			// a byte of their responses (flow-control window 0).
			// SendTimeout resets the stalled streams; the connection,
			// idle again, is closed by the idle timeout.
			name: "zero-window stall", readWhileFlooding: true,
			flood: zeroWindowStall,
		},
	}
	r := start(t, Config{MaxReadFrameSize: 16 << 10, IdleTimeout: h2IdleTimeout, SendTimeout: time.Second}, false, true)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := heapInuse()
			goroutines := runtime.NumGoroutine()
			stop := make(chan struct{})
			normal := normalClientDuring(t, r, stop)

			h := dialH2(t, r)
			// Whatever the server does, the connection must be closed by
			// this time: the idle timeout plus a wide margin for a
			// loaded machine.
			closeBy := 5 * h2IdleTimeout
			var outcome h2Outcome
			read := make(chan struct{})
			if tt.readWhileFlooding {
				h.c.SetReadDeadline(time.Now().Add(hostileDeadline))
				go func() { outcome = h.drain(); close(read) }()
			}
			// Sample the goroutine count while flooding: handlers must
			// stay bounded by the stream limits, not by the flood.
			var maxG atomic.Int64
			sampled := make(chan struct{})
			go func() {
				defer close(sampled)
				for range 100000 {
					maxG.Store(max(maxG.Load(), int64(runtime.NumGoroutine())))
					select {
					case <-stop:
						return
					case <-time.After(5 * time.Millisecond):
					}
				}
			}()
			sent, werr := tt.flood(h)
			if tt.readWhileFlooding {
				h.c.SetReadDeadline(time.Now().Add(closeBy))
			} else {
				h.c.SetReadDeadline(time.Now().Add(closeBy))
				outcome = h.drain()
				close(read)
			}
			<-read
			close(stop)
			<-sampled
			if err := <-normal; err != nil {
				t.Errorf("normal client during the flood: %v", err)
			}
			// And after it.
			if err := getOK(clientFor(t, r, true), fmt.Sprintf("https://localhost:%d", r.httpsPort()), "/after"); err != nil {
				t.Errorf("normal client after the flood: %v", err)
			}
			h.c.Close()
			after := heapInuse()
			t.Logf("sent %d (write error: %v); server: %s; goroutines %d -> max %d; HeapInuse %d -> %d KiB",
				sent, werr, outcome, goroutines, maxG.Load(), before>>10, after>>10)
			if after > before && after-before > maxHeapGrowth {
				t.Errorf("HeapInuse grew by %d MiB", (after-before)>>20)
			}
			// Each stream runs at most one handler goroutine and the
			// server admits DefaultMaxConcurrentStreams at once (it
			// queues more only up to its ENHANCE_YOUR_CALM limit, without
			// goroutines). NumGoroutine also counts handlers that have
			// reported done and are exiting while their successors start
			// (seen at 2x the limit under rapid reset), hence the margin:
			// what this catches is growth with the flood (10^4 streams).
			if g := maxG.Load(); g > int64(goroutines)+3*DefaultMaxConcurrentStreams+100 {
				t.Errorf("goroutines peaked at %d (from %d): not bounded by the stream limit", g, goroutines)
			}
			if !outcome.closed() {
				t.Errorf("abusive connection still open after %v (idle timeout %v): %s", closeBy, h2IdleTimeout, outcome)
			}
		})
	}
}

// zeroWindowStall sets the client's stream flow-control window to 0 and
// opens 100 streams whose responses therefore cannot be sent.
func zeroWindowStall(h *h2Conn) (int, error) {
	if err := h.fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 0}); err != nil {
		return 0, err
	}
	for i := range 100 {
		if err := h.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: uint32(2*i + 1), BlockFragment: h.block("/stall"), EndStream: true, EndHeaders: true}); err != nil {
			return i, err
		}
	}
	return 100, nil
}

// openFDs counts this process's open file descriptors.
func openFDs(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skipf("cannot count descriptors: %v", err)
	}
	return len(ents)
}

// TestHostileFDHandshakeStorm: 500 failing TLS handshakes (garbage, an
// immediate close, half a ClientHello then a close) leave no descriptor
// behind once the server has dealt with them.
func TestHostileFDHandshakeStorm(t *testing.T) {
	r := start(t, Config{TLSHandshakeTimeout: 5 * time.Second}, false, true)
	addr := r.srv.HTTPSAddr().String()
	// A first full request, so that lazily opened descriptors (the
	// certificate store, the CA) count in the baseline.
	client := clientFor(t, r, false)
	if err := getOK(client, fmt.Sprintf("https://localhost:%d", r.httpsPort()), "/warm"); err != nil {
		t.Fatal(err)
	}
	client.Transport.(*http.Transport).CloseIdleConnections()
	baseline := openFDs(t)

	kinds := []struct {
		name string
		send []byte
	}{
		{"garbage", bytes.Repeat([]byte{0xde, 0xad, 0xbe, 0xef}, 64)},
		{"immediate close", nil},
		{"half ClientHello", []byte{0x16, 0x03, 0x01, 0x00, 0xc8, 0x01, 0x00, 0x00, 0xc4, 0x03, 0x03}},
		{"plain HTTP", []byte("GET / HTTP/1.1\r\nHost: localhost\r\n\r\n")},
	}
	const storm = 500
	sem := make(chan struct{}, 50)
	var wg sync.WaitGroup
	var dialErrs atomic.Int32
	for i := range storm {
		k := kinds[i%len(kinds)]
		sem <- struct{}{}
		wg.Go(func() {
			defer func() { <-sem }()
			c, err := net.DialTimeout("tcp", addr, hostileDeadline)
			if err != nil {
				dialErrs.Add(1)
				return
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(hostileDeadline))
			c.Write(k.send)
			if k.name == "plain HTTP" || k.name == "garbage" {
				io.Copy(io.Discard, c) // the server answers or hangs up
			}
		})
	}
	wg.Wait()
	if n := dialErrs.Load(); n > 0 {
		t.Errorf("%d of %d connections could not be opened", n, storm)
	}
	// The server closes its side once each handshake fails; poll, with
	// a bound, until the count is back.
	const slack = 5
	var now int
	for range 600 {
		if now = openFDs(t); now <= baseline+slack {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if now > baseline+slack {
		t.Errorf("descriptors: %d before the storm, %d after it settled", baseline, now)
	}
	t.Logf("descriptors: %d before, %d after %d failing handshakes", baseline, now, storm)
	if err := getOK(client, fmt.Sprintf("https://localhost:%d", r.httpsPort()), "/after"); err != nil {
		t.Errorf("after the storm: %v", err)
	}
}
