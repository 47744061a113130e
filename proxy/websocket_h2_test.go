package proxy

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
	"golang.org/x/net/websocket"

	// net/http's HTTP/2 server offers extended CONNECT only with it, as in
	// cmd/paf.
	_ "github.com/pafhq/paf/internal/xconnect"
)

// A WebSocket frame, as much of RFC 6455 section 5 as the tests need:
// single-frame messages, payloads under 64 KiB.
type wsFrame struct {
	op      byte // 1 text, 2 binary, 8 close
	payload []byte
}

// writeWSFrame writes f, masked as a client must (RFC 6455 5.3).
func writeWSFrame(w io.Writer, f wsFrame, masked bool) error {
	var b bytes.Buffer
	b.WriteByte(0x80 | f.op)
	mbit := byte(0)
	if masked {
		mbit = 0x80
	}
	switch n := len(f.payload); {
	case n < 126:
		b.WriteByte(mbit | byte(n))
	case n < 1<<16:
		b.WriteByte(mbit | 126)
		binary.Write(&b, binary.BigEndian, uint16(n))
	default:
		return errors.New("frame too large for the test codec")
	}
	p := append([]byte(nil), f.payload...)
	if masked {
		var key [4]byte
		rand.Read(key[:])
		b.Write(key[:])
		for i := range p {
			p[i] ^= key[i%4]
		}
	}
	b.Write(p)
	_, err := w.Write(b.Bytes())
	return err
}

// readWSFrame reads one unfragmented frame, masked or not.
func readWSFrame(r io.Reader) (wsFrame, error) {
	var h [2]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return wsFrame{}, err
	}
	if h[0]&0x80 == 0 {
		return wsFrame{}, errors.New("fragmented frame")
	}
	n := uint64(h[1] & 0x7f)
	switch n {
	case 126:
		var x uint16
		if err := binary.Read(r, binary.BigEndian, &x); err != nil {
			return wsFrame{}, err
		}
		n = uint64(x)
	case 127:
		return wsFrame{}, errors.New("frame too large for the test codec")
	}
	var key [4]byte
	masked := h[1]&0x80 != 0
	if masked {
		if _, err := io.ReadFull(r, key[:]); err != nil {
			return wsFrame{}, err
		}
	}
	p := make([]byte, n)
	if _, err := io.ReadFull(r, p); err != nil {
		return wsFrame{}, err
	}
	if masked {
		for i := range p {
			p[i] ^= key[i%4]
		}
	}
	return wsFrame{op: h[0] & 0x0f, payload: p}, nil
}

// h2Client is an HTTP/2 client written with x/net/http2's Framer, so that
// the test controls every frame: net/http's client cannot send :protocol.
// One stream at a time.
type h2Client struct {
	t    *testing.T
	c    net.Conn
	fr   *http2.Framer
	henc *hpack.Encoder
	hbuf bytes.Buffer

	xconnect uint32 // the server's SETTINGS_ENABLE_CONNECT_PROTOCOL
	stream   uint32
	data     bytes.Buffer // DATA received on stream, not yet read
	ended    bool         // END_STREAM or RST_STREAM seen on stream
}

// dialH2 opens a TLS connection with ALPN h2 to addr and exchanges
// SETTINGS.
func dialH2(t *testing.T, addr, serverName string) *h2Client {
	t.Helper()
	c, err := tls.Dial("tcp", addr, &tls.Config{
		InsecureSkipVerify: true, ServerName: serverName, NextProtos: []string{"h2"},
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	if p := c.ConnectionState().NegotiatedProtocol; p != "h2" {
		t.Fatalf("ALPN %q, want h2", p)
	}
	// A bound on a test that would otherwise hang, not a measure.
	c.SetDeadline(time.Now().Add(2 * time.Minute))
	hc := &h2Client{t: t, c: c, fr: http2.NewFramer(c, c)}
	hc.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	hc.henc = hpack.NewEncoder(&hc.hbuf)
	if _, err := io.WriteString(c, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	if err := hc.fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	f, err := hc.fr.ReadFrame()
	if err != nil {
		t.Fatal(err)
	}
	sf, ok := f.(*http2.SettingsFrame)
	if !ok || sf.IsAck() {
		t.Fatalf("first frame %v, want SETTINGS", f)
	}
	hc.xconnect, _ = sf.Value(http2.SettingEnableConnectProtocol)
	if err := hc.fr.WriteSettingsAck(); err != nil {
		t.Fatal(err)
	}
	return hc
}

// next reads frames until one concerns the current stream (HEADERS, DATA,
// RST_STREAM) and returns it, answering SETTINGS and PING on the way.
func (hc *h2Client) next() (http2.Frame, error) {
	for {
		f, err := hc.fr.ReadFrame()
		if err != nil {
			return nil, err
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				hc.fr.WriteSettingsAck()
			}
		case *http2.PingFrame:
			if !f.IsAck() {
				hc.fr.WritePing(true, f.Data)
			}
		case *http2.GoAwayFrame:
			return nil, fmt.Errorf("GOAWAY %v", f.ErrCode)
		case *http2.MetaHeadersFrame, *http2.DataFrame, *http2.RSTStreamFrame:
			if f.Header().StreamID == hc.stream {
				return f, nil
			}
		}
	}
}

// connect opens a stream with an extended CONNECT for protocol on
// authority/path and returns the response's status and header.
func (hc *h2Client) connect(authority, path, protocol string, extra ...hpack.HeaderField) (int, http.Header) {
	hc.t.Helper()
	hc.stream += 2
	if hc.stream == 2 {
		hc.stream = 1
	}
	hc.data.Reset()
	hc.ended = false
	hc.hbuf.Reset()
	for _, hf := range append([]hpack.HeaderField{
		{Name: ":method", Value: "CONNECT"},
		{Name: ":protocol", Value: protocol},
		{Name: ":scheme", Value: "https"},
		{Name: ":path", Value: path},
		{Name: ":authority", Value: authority},
		{Name: "sec-websocket-version", Value: "13"},
		{Name: "origin", Value: "https://" + authority},
	}, extra...) {
		hc.henc.WriteField(hf)
	}
	if err := hc.fr.WriteHeaders(http2.HeadersFrameParam{
		StreamID: hc.stream, BlockFragment: hc.hbuf.Bytes(), EndHeaders: true,
	}); err != nil {
		hc.t.Fatal(err)
	}
	f, err := hc.next()
	if err != nil {
		hc.t.Fatal(err)
	}
	mh, ok := f.(*http2.MetaHeadersFrame)
	if !ok {
		hc.t.Fatalf("answer to CONNECT: %v, want HEADERS", f)
	}
	h := http.Header{}
	status := 0
	for _, hf := range mh.Fields {
		if hf.Name == ":status" {
			fmt.Sscan(hf.Value, &status)
		} else if !hf.IsPseudo() {
			h.Add(hf.Name, hf.Value)
		}
	}
	hc.ended = mh.StreamEnded()
	return status, h
}

// Write sends p as DATA on the stream.
func (hc *h2Client) Write(p []byte) (int, error) {
	if err := hc.fr.WriteData(hc.stream, false, p); err != nil {
		return 0, err
	}
	return len(p), nil
}

// closeStream ends the client's side of the stream.
func (hc *h2Client) closeStream() error { return hc.fr.WriteData(hc.stream, true, nil) }

// Read returns the stream's DATA, io.EOF at its end.
func (hc *h2Client) Read(p []byte) (int, error) {
	for hc.data.Len() == 0 {
		if hc.ended {
			return 0, io.EOF
		}
		f, err := hc.next()
		if err != nil {
			return 0, err
		}
		switch f := f.(type) {
		case *http2.DataFrame:
			hc.data.Write(f.Data())
			if n := uint32(len(f.Data())); n > 0 {
				hc.fr.WriteWindowUpdate(0, n)
				hc.fr.WriteWindowUpdate(hc.stream, n)
			}
			hc.ended = f.StreamEnded()
		case *http2.RSTStreamFrame:
			return 0, fmt.Errorf("RST_STREAM %v", f.ErrCode)
		case *http2.MetaHeadersFrame:
			hc.ended = f.StreamEnded() // trailers
		}
	}
	return hc.data.Read(p)
}

// frontTLS serves p over TLS with ALPN h2 and http/1.1, as paf proxy does.
func frontTLS(t *testing.T, p *Proxy) string {
	t.Helper()
	srv := httptest.NewUnstartedServer(p)
	srv.EnableHTTP2 = true
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String()
}

// seen records the requests a backend got.
type seen struct {
	mu   sync.Mutex
	reqs []string // "PROTO METHOD :protocol Host Sec-WebSocket-Protocol X-Forwarded-Proto"
}

func (s *seen) add(r *http.Request) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.reqs = append(s.reqs, strings.Join([]string{r.Proto, r.Method, r.Header.Get(":protocol"), r.Host,
		r.Header.Get("Sec-WebSocket-Protocol"), r.Header.Get("X-Forwarded-Proto")}, " "))
}

func (s *seen) all() []string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]string(nil), s.reqs...)
}

// wsEchoH1 is an x/net/websocket echo server choosing the "chat"
// subprotocol when offered.
func wsEchoH1(s *seen) http.Handler {
	return websocket.Server{
		Handshake: func(cfg *websocket.Config, r *http.Request) error {
			s.add(r)
			for _, p := range cfg.Protocol {
				if p == "chat" {
					cfg.Protocol = []string{"chat"}
					return nil
				}
			}
			cfg.Protocol = nil
			return nil
		},
		Handler: func(ws *websocket.Conn) { io.Copy(ws, ws) },
	}
}

// wsEchoH2 answers RFC 8441 extended CONNECT itself and echoes WebSocket
// frames, with the "chat" subprotocol when offered. Other requests go to
// h1 (nil: 404).
func wsEchoH2(s *seen, h1 http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodConnect {
			if h1 == nil {
				http.NotFound(w, r)
			} else {
				h1.ServeHTTP(w, r)
			}
			return
		}
		s.add(r)
		if r.Header.Get(":protocol") != "websocket" || r.ProtoMajor != 2 {
			http.Error(w, "not a websocket", http.StatusBadRequest)
			return
		}
		if strings.Contains(r.Header.Get("Sec-WebSocket-Protocol"), "chat") {
			w.Header().Set("Sec-WebSocket-Protocol", "chat")
		}
		w.WriteHeader(http.StatusOK)
		rc := http.NewResponseController(w)
		rc.Flush()
		br := bufio.NewReader(r.Body)
		for {
			f, err := readWSFrame(br)
			if err != nil {
				return
			}
			if err := writeWSFrame(w, f, false); err != nil {
				return
			}
			rc.Flush()
			if f.op == 8 {
				return
			}
		}
	})
}

// noXConnectH2C is a listener's worth of backend that speaks HTTP/1.1
// through h1 and, to connections opening with the HTTP/2 preface, answers
// SETTINGS without SETTINGS_ENABLE_CONNECT_PROTOCOL and nothing else: an
// HTTP/2 server without RFC 8441, which net/http cannot be made into once
// the test binary has turned it on.
func noXConnectH2C(t *testing.T, h1 http.Handler) (addr string, h2conns func() int) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hl := &chanListener{addr: ln.Addr(), conns: make(chan net.Conn), done: make(chan struct{})}
	srv := &http.Server{Handler: h1}
	go srv.Serve(hl)
	var mu sync.Mutex
	n := 0
	var wg sync.WaitGroup
	t.Cleanup(func() {
		ln.Close()
		srv.Close()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				hl.Close()
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				br := bufio.NewReader(c)
				pre, err := br.Peek(len(http2.ClientPreface))
				if err != nil || string(pre) != http2.ClientPreface {
					select {
					case hl.conns <- &peekedConn{Conn: c, r: br}:
					case <-hl.done:
						c.Close()
					}
					return
				}
				defer c.Close()
				mu.Lock()
				n++
				mu.Unlock()
				br.Discard(len(pre))
				fr := http2.NewFramer(c, br)
				fr.WriteSettings(http2.Setting{ID: http2.SettingMaxConcurrentStreams, Val: 100})
				for {
					f, err := fr.ReadFrame()
					if err != nil {
						return
					}
					if sf, ok := f.(*http2.SettingsFrame); ok && !sf.IsAck() {
						fr.WriteSettingsAck()
					}
				}
			}()
		}
	}()
	return ln.Addr().String(), func() int { mu.Lock(); defer mu.Unlock(); return n }
}

type peekedConn struct {
	net.Conn
	r io.Reader
}

func (c *peekedConn) Read(p []byte) (int, error) { return c.r.Read(p) }

// chanListener hands http.Server the connections put on conns.
type chanListener struct {
	addr  net.Addr
	conns chan net.Conn
	once  sync.Once
	done  chan struct{}
}

func (l *chanListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case <-l.done:
		return nil, net.ErrClosed
	}
}

func (l *chanListener) Close() error {
	l.once.Do(func() { close(l.done) })
	return nil
}

func (l *chanListener) Addr() net.Addr { return l.addr }

// tlsBackend serves h over TLS, offering h2 when h2 is set, and returns
// its address.
func tlsBackend(t *testing.T, h http.Handler, h2 bool) string {
	t.Helper()
	srv := httptest.NewUnstartedServer(h)
	srv.EnableHTTP2 = h2
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String()
}

// TestWebSocketOverHTTP2 opens WebSockets with RFC 8441 extended CONNECT
// on an HTTP/2 connection to the proxy and exchanges messages with echo
// backends of each kind: an HTTP/1.1 x/net/websocket server (the proxy
// translates to an Upgrade), the same over TLS, HTTP/2 servers with
// extended CONNECT in cleartext and over TLS (the proxy forwards the
// extended CONNECT), and an HTTP/2 server without it (the proxy falls
// back to HTTP/1.1 on the same address).
func TestWebSocketOverHTTP2(t *testing.T) {
	type backendKind struct {
		name    string
		start   func(t *testing.T, s *seen) (url string, extra func(t *testing.T))
		wantReq string // what the backend saw, from "PROTO METHOD :protocol"
	}
	kinds := []backendKind{
		{"h1", func(t *testing.T, s *seen) (string, func(*testing.T)) {
			return "http://" + backend(t, wsEchoH1(s), false), nil
		}, "HTTP/1.1 GET "},
		{"h1 over TLS", func(t *testing.T, s *seen) (string, func(*testing.T)) {
			return "https://" + tlsBackend(t, wsEchoH1(s), false), nil
		}, "HTTP/1.1 GET "},
		{"h2c extended CONNECT", func(t *testing.T, s *seen) (string, func(*testing.T)) {
			return "h2c://" + backend(t, wsEchoH2(s, nil), true), nil
		}, "HTTP/2.0 CONNECT websocket"},
		{"h2 over TLS extended CONNECT", func(t *testing.T, s *seen) (string, func(*testing.T)) {
			return "https://" + tlsBackend(t, wsEchoH2(s, nil), true), nil
		}, "HTTP/2.0 CONNECT websocket"},
		{"h2c without extended CONNECT", func(t *testing.T, s *seen) (string, func(*testing.T)) {
			addr, h2conns := noXConnectH2C(t, wsEchoH1(s))
			return "h2c://" + addr, func(t *testing.T) {
				if h2conns() == 0 {
					t.Error("the proxy never tried HTTP/2 on the h2c backend")
				}
			}
		}, "HTTP/1.1 GET "},
	}
	for _, k := range kinds {
		t.Run(k.name, func(t *testing.T) {
			s := &seen{}
			url, extra := k.start(t, s)
			p := newProxy(t, Config{})
			apply(t, p, map[string]string{
				"ws.test": fmt.Sprintf("backends = [%q]\n[tls]\ninsecure = true\n[response_headers]\nX-Route = \"ws\"\n", url),
			})
			hc := dialH2(t, frontTLS(t, p), "ws.test")
			if hc.xconnect != 1 {
				t.Fatalf("proxy SETTINGS_ENABLE_CONNECT_PROTOCOL = %d, want 1", hc.xconnect)
			}
			status, h := hc.connect("ws.test", "/echo?x=1", "websocket",
				hpack.HeaderField{Name: "sec-websocket-protocol", Value: "superchat, chat"})
			if status != http.StatusOK {
				t.Fatalf("extended CONNECT: status %d, want 200", status)
			}
			if got := h.Get("Sec-WebSocket-Protocol"); got != "chat" {
				t.Errorf("Sec-WebSocket-Protocol %q, want chat", got)
			}
			if h.Get("Sec-WebSocket-Accept") != "" || h.Get("Upgrade") != "" || h.Get("Connection") != "" {
				t.Errorf("HTTP/1.1 handshake fields reached the HTTP/2 client: %v", h)
			}
			if h.Get("X-Route") != "ws" {
				t.Errorf("route response header missing: %v", h)
			}
			br := bufio.NewReader(hc)
			for i, msg := range []string{"hello", strings.Repeat("x", 300), "ça va"} {
				if err := writeWSFrame(hc, wsFrame{op: 1, payload: []byte(msg)}, true); err != nil {
					t.Fatal(err)
				}
				f, err := readWSFrame(br)
				if err != nil {
					t.Fatalf("message %d: %v", i, err)
				}
				if f.op != 1 || string(f.payload) != msg {
					t.Fatalf("message %d: echo op %d %q, want %q", i, f.op, f.payload, msg)
				}
			}
			// Close: the client's close frame and end of stream; the
			// backend answers, ends, and the proxy ends the stream.
			writeWSFrame(hc, wsFrame{op: 8, payload: []byte{0x03, 0xe8}}, true)
			hc.closeStream()
			for {
				if _, err := readWSFrame(br); err != nil {
					if err != io.EOF {
						t.Errorf("after close: %v, want the end of the stream", err)
					}
					break
				}
			}
			reqs := s.all()
			if len(reqs) != 1 {
				t.Fatalf("backend saw %d WebSocket requests, want 1: %q", len(reqs), reqs)
			}
			want := k.wantReq + " ws.test superchat, chat https"
			if reqs[0] != want {
				t.Errorf("backend saw %q, want %q", reqs[0], want)
			}
			if extra != nil {
				extra(t)
			}
		})
	}
}

// TestWebSocketOverHTTP2Refused checks what is not tunnelled: a route with
// websocket = false, another protocol than WebSocket, and a backend that
// refuses the handshake (its answer reaches the client).
func TestWebSocketOverHTTP2Refused(t *testing.T) {
	s := &seen{}
	h1 := backend(t, wsEchoH1(s), false)
	h2 := backend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.add(r)
		http.Error(w, "go away", http.StatusForbidden)
	}), true)
	p := newProxy(t, Config{})
	apply(t, p, map[string]string{
		"nows.test":   fmt.Sprintf("backends = [%q]\nwebsocket = false\n", "http://"+h1),
		"ws.test":     fmt.Sprintf("backends = [%q]\n", "http://"+h1),
		"refuse.test": fmt.Sprintf("backends = [%q]\n", "h2c://"+h2),
		"refuse1.test": fmt.Sprintf("backends = [%q]\n", "http://"+backend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			s.add(r)
			http.Error(w, "go away", http.StatusForbidden)
		}), false)),
	})
	addr := frontTLS(t, p)
	for _, tc := range []struct {
		host, protocol string
		want           int
	}{
		{"nows.test", "websocket", http.StatusForbidden},
		{"ws.test", "connect-udp", http.StatusNotImplemented},
		{"refuse.test", "websocket", http.StatusForbidden},
		{"refuse1.test", "websocket", http.StatusForbidden},
		{"unknown.test", "websocket", http.StatusMisdirectedRequest},
	} {
		hc := dialH2(t, addr, tc.host)
		status, _ := hc.connect(tc.host, "/", tc.protocol)
		if status != tc.want {
			t.Errorf("%s %s: status %d, want %d", tc.host, tc.protocol, status, tc.want)
		}
	}
	got := s.all()
	want := []string{"HTTP/2.0 CONNECT websocket refuse.test  https", "HTTP/1.1 GET  refuse1.test  https"}
	if strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("backends saw %q, want %q", got, want)
	}
}

// TestWebSocketOverHTTP2Idle checks that a tunnel without traffic either
// way is closed after the route's idle timeout, so that neither side
// holds the other forever.
func TestWebSocketOverHTTP2Idle(t *testing.T) {
	s := &seen{}
	be := backend(t, wsEchoH1(s), false)
	p := newProxy(t, Config{})
	apply(t, p, map[string]string{
		"ws.test": fmt.Sprintf("backends = [%q]\n[timeouts]\nidle = \"200ms\"\n", "http://"+be),
	})
	hc := dialH2(t, frontTLS(t, p), "ws.test")
	if status, _ := hc.connect("ws.test", "/", "websocket"); status != http.StatusOK {
		t.Fatalf("status %d, want 200", status)
	}
	br := bufio.NewReader(hc)
	// Silence from both sides: the proxy must end the stream by itself.
	if _, err := readWSFrame(br); err == nil {
		t.Fatal("a frame arrived on an idle tunnel")
	} else if err != io.EOF && !strings.Contains(err.Error(), "RST_STREAM") {
		t.Fatalf("idle tunnel: %v, want the stream ended", err)
	}
}
