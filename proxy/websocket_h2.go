package proxy

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha1"
	"crypto/tls"
	"encoding/base64"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/textproto"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http/httpguts"
	"golang.org/x/net/http2"
)

// WebSocket over HTTP/2 (RFC 8441). A client opens it with an extended
// CONNECT stream (:method CONNECT, :protocol websocket); the stream's DATA
// then carries the WebSocket frames both ways. The HTTP/2 server offers it
// only when the program imports internal/xconnect (see there why).
//
// To the backend, the stream goes as extended CONNECT too when the backend
// speaks HTTP/2 (h2c://, or https:// negotiating h2) and its SETTINGS allow
// it; otherwise it is turned into an HTTP/1.1 Upgrade on a connection of
// its own, and the client gets 200 once the backend has answered 101.
//
// net/http's Transport refuses the ":protocol" header (it validates header
// names before choosing a protocol), so the HTTP/2 leg uses
// golang.org/x/net/http2's client on a connection dialled for the stream.
// A WebSocket lives long and holds a connection either way, as HTTP/1.1
// upgrades do.

// errNoExtendedConnect is what x/net/http2 answers when the backend's
// SETTINGS do not allow extended CONNECT. The library does not export it.
const errNoExtendedConnect = "extended connect not supported by peer"

// maxRefusal bounds the body of a backend's refusal relayed to the
// client: an error page, not a stream.
const maxRefusal = 1 << 20

// wsGUID is the key suffix of RFC 6455 section 1.3.
const wsGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

// isExtendedConnect reports whether r opens an RFC 8441 tunnel. net/http's
// HTTP/2 server puts the :protocol pseudo-header in r.Header.
func isExtendedConnect(r *http.Request) bool {
	return r.Method == http.MethodConnect && r.ProtoMajor == 2 && len(r.Header[":protocol"]) > 0
}

// serveExtendedConnect handles an extended CONNECT request for the pool's
// route: only WebSocket, only where the route allows it, only to backends
// (an in-process site has no WebSocket to offer).
func (pl *pool) serveExtendedConnect(w http.ResponseWriter, r *http.Request) {
	switch {
	case !strings.EqualFold(r.Header.Get(":protocol"), "websocket"):
		errorPage(w, r, http.StatusNotImplemented, "Only WebSocket can be tunnelled through HTTP/2 CONNECT here.")
		return
	case !pl.route.WebSocket:
		errorPage(w, r, http.StatusForbidden, "Connection upgrades (WebSocket) are not allowed on this site.")
		return
	case pl.site != nil:
		errorPage(w, r, http.StatusNotImplemented, "This site does not accept WebSocket connections.")
		return
	}
	// A tunnel is not one response: the server's whole-response deadlines
	// would cut it. The route's idle timeout bounds it instead.
	rc := http.NewResponseController(w)
	rc.SetReadDeadline(time.Time{})
	rc.SetWriteDeadline(time.Time{})
	rc.EnableFullDuplex() // HTTP/2 is full duplex already; harmless if unsupported

	hdr := pl.tunnelHeader(r)
	var tried []*upstream
	var lastErr error
	for {
		u := pl.pick(tried)
		if u == nil {
			if lastErr == nil {
				lastErr = errAllDown
			}
			pl.errorHandler(w, r, lastErr)
			return
		}
		tried = append(tried, u)
		u.inflight.Add(1)
		err := pl.tunnel(w, rc, r, u, hdr)
		u.inflight.Add(-1)
		if err == nil {
			pl.succeeded(u)
			return
		}
		if r.Context().Err() != nil {
			return // the client went away
		}
		pl.failed(u, err)
		lastErr = err
		if !isDialError(err) {
			pl.errorHandler(w, r, err)
			return
		}
	}
}

// tunnelHeader returns the header sent to the backend: the client's,
// without hop-by-hop fields, :protocol and the WebSocket handshake fields
// that belong to one leg (Sec-WebSocket-Key), with the forwarding headers
// and the route's request headers.
func (pl *pool) tunnelHeader(r *http.Request) http.Header {
	h := r.Header.Clone()
	for _, f := range h.Values("Connection") {
		for _, name := range strings.Split(f, ",") {
			if name = textproto.TrimString(name); name != "" {
				h.Del(name)
			}
		}
	}
	for _, name := range []string{"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
		"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade", "Content-Length",
		"Sec-Websocket-Key", "Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto"} {
		h.Del(name)
	}
	delete(h, ":protocol")
	pl.p.forwarded(&httputil.ProxyRequest{In: r, Out: &http.Request{Header: h}})
	setHeaders(h, pl.route.RequestHeaders)
	return h
}

// tunnel carries one WebSocket between r's stream and backend u. A nil
// error means the client got the backend's answer (a tunnel that ran and
// ended, or the backend's refusal); an error means it got nothing yet.
func (pl *pool) tunnel(w http.ResponseWriter, rc *http.ResponseController, r *http.Request, u *upstream, hdr http.Header) error {
	c, h2, err := pl.dialTunnel(r, u, false)
	if err != nil {
		return err
	}
	if h2 {
		err = pl.tunnelH2(w, rc, r, c, u, hdr)
		if err == nil || !strings.Contains(err.Error(), errNoExtendedConnect) {
			return err
		}
		// The backend speaks HTTP/2 without RFC 8441: try HTTP/1.1.
		if c, _, err = pl.dialTunnel(r, u, true); err != nil {
			return err
		}
	}
	return pl.tunnelH1(w, rc, r, c, hdr)
}

// dialTunnel opens a connection of its own to u, with the route's
// transport settings (dialer, PROXY header, TLS verification), and
// reports whether it speaks HTTP/2. With h1 set, HTTP/2 is not offered.
func (pl *pool) dialTunnel(r *http.Request, u *upstream, h1 bool) (net.Conn, bool, error) {
	tr := u.tr
	ctx := r.Context()
	if pl.route.ProxyProtocol != "" {
		ctx = context.WithValue(ctx, clientAddrsKey{}, requestAddrs(r))
	}
	c, err := tr.DialContext(ctx, "tcp", u.backend.Addr)
	if err != nil {
		return nil, false, err
	}
	switch u.backend.Scheme {
	case "h2c":
		return c, !h1, nil
	case "https":
		cfg := tr.TLSClientConfig.Clone()
		cfg.NextProtos = []string{"h2", "http/1.1"}
		if h1 {
			cfg.NextProtos = []string{"http/1.1"}
		}
		tc := tls.Client(c, cfg)
		hctx, cancel := context.WithTimeout(ctx, pl.route.Timeouts.Dial)
		defer cancel()
		if err := tc.HandshakeContext(hctx); err != nil {
			c.Close()
			// A handshake that fails is the backend's dial failing:
			// another backend may be tried.
			return nil, false, &net.OpError{Op: "dial", Net: "tcp", Addr: c.RemoteAddr(), Err: err}
		}
		return tc, tc.ConnectionState().NegotiatedProtocol == "h2", nil
	}
	return c, false, nil
}

// tunnelH2 forwards r as an extended CONNECT on c, an HTTP/2 connection,
// and relays the stream. c is closed on return.
func (pl *pool) tunnelH2(w http.ResponseWriter, rc *http.ResponseController, r *http.Request, c net.Conn, u *upstream, hdr http.Header) error {
	t := &http2.Transport{AllowHTTP: true, DisableCompression: true}
	cc, err := t.NewClientConn(c)
	if err != nil {
		c.Close()
		return fmt.Errorf("backend %s: %w", u.backend.URL, err)
	}
	defer cc.Close()
	scheme := "http"
	if u.backend.Scheme == "https" {
		scheme = "https"
	}
	h := hdr.Clone()
	h[":protocol"] = []string{"websocket"}
	body := &tunnelBody{r: r.Body, closed: make(chan struct{})}
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	out := (&http.Request{
		Method:     http.MethodConnect,
		URL:        &url.URL{Scheme: scheme, Host: u.backend.Addr, Path: r.URL.Path, RawPath: r.URL.RawPath, RawQuery: r.URL.RawQuery},
		Proto:      "HTTP/2.0",
		ProtoMajor: 2,
		Host:       r.Host,
		Header:     h,
		Body:       body,
	}).WithContext(ctx)

	stop := afterFunc(pl.route.Timeouts.ResponseHeader, func() { cc.Close() })
	resp, err := cc.RoundTrip(out)
	timedOut := !stop()
	if err != nil {
		cc.Close()
		if !strings.Contains(err.Error(), errNoExtendedConnect) {
			r.Body.Close() // no other attempt will read it
		}
		<-body.closed // x/net/http2 always closes a request body it took
		if timedOut {
			err = fmt.Errorf("%w (%v)", context.DeadlineExceeded, err)
		}
		return fmt.Errorf("backend %s: extended CONNECT: %w", u.backend.URL, err)
	}
	defer func() {
		// Stop the transport reading the client's stream and wait until
		// it has let go of it: no reader may outlive the handler.
		r.Body.Close()
		resp.Body.Close()
		cc.Close()
		<-body.closed
	}()

	wh := w.Header()
	copyHeader(wh, resp.Header)
	setHeaders(wh, pl.route.ResponseHeaders)
	w.WriteHeader(resp.StatusCode)
	if resp.StatusCode/100 != 2 {
		// A refusal: the backend's answer, as it is (its first MiB).
		io.Copy(w, io.LimitReader(resp.Body, maxRefusal))
		return nil
	}
	if rc.Flush() != nil {
		return nil
	}
	idle := tunnelIdle(pl.route.Timeouts.Idle, func() {
		cc.Close()
		r.Body.Close()
	})
	defer stopIdle(idle)
	body.setIdle(idle)
	copyFlush(w, rc, resp.Body, idle)
	return nil
}

// tunnelH1 turns r into an HTTP/1.1 WebSocket upgrade on c and, once the
// backend has switched protocols, relays between r's stream and c. c is
// closed on return.
func (pl *pool) tunnelH1(w http.ResponseWriter, rc *http.ResponseController, r *http.Request, c net.Conn, hdr http.Header) error {
	defer c.Close()
	keyBytes := make([]byte, 16)
	rand.Read(keyBytes)
	key := base64.StdEncoding.EncodeToString(keyBytes)
	h := hdr.Clone()
	h.Set("Connection", "Upgrade")
	h.Set("Upgrade", "websocket")
	h.Set("Sec-WebSocket-Key", key)
	if h.Get("Sec-WebSocket-Version") == "" {
		h.Set("Sec-WebSocket-Version", "13")
	}
	if _, ok := h["User-Agent"]; !ok {
		h["User-Agent"] = []string{""} // net/http would write its own
	}
	out := &http.Request{
		Method:     http.MethodGet,
		URL:        &url.URL{Path: r.URL.Path, RawPath: r.URL.RawPath, RawQuery: r.URL.RawQuery},
		Proto:      "HTTP/1.1",
		ProtoMajor: 1,
		ProtoMinor: 1,
		Host:       r.Host,
		Header:     h,
	}
	if d := pl.route.Timeouts.ResponseHeader; d > 0 {
		c.SetDeadline(time.Now().Add(d))
	}
	if err := out.Write(c); err != nil {
		return fmt.Errorf("websocket upgrade: %w", err)
	}
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, out)
	if err != nil {
		return fmt.Errorf("websocket upgrade: %w", err)
	}
	c.SetDeadline(time.Time{})
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusSwitchingProtocols {
		wh := w.Header()
		copyHeader(wh, resp.Header)
		setHeaders(wh, pl.route.ResponseHeaders)
		w.WriteHeader(resp.StatusCode)
		io.Copy(w, io.LimitReader(resp.Body, maxRefusal))
		return nil
	}
	if !strings.EqualFold(resp.Header.Get("Upgrade"), "websocket") ||
		!httpguts.HeaderValuesContainsToken(resp.Header["Connection"], "upgrade") ||
		resp.Header.Get("Sec-WebSocket-Accept") != acceptKey(key) {
		return fmt.Errorf("websocket upgrade: the backend switched protocols without a valid WebSocket handshake")
	}
	wh := w.Header()
	copyHeader(wh, resp.Header)
	wh.Del("Sec-Websocket-Accept")
	setHeaders(wh, pl.route.ResponseHeaders)
	w.WriteHeader(http.StatusOK)
	if err := rc.Flush(); err != nil {
		return nil
	}

	idle := tunnelIdle(pl.route.Timeouts.Idle, func() {
		c.Close()
		r.Body.Close()
	})
	up := make(chan struct{})
	go func() {
		defer close(up)
		body := &tunnelBody{r: r.Body}
		body.setIdle(idle)
		_, err := io.Copy(c, body)
		if cw, ok := c.(interface{ CloseWrite() error }); ok && err == nil {
			cw.CloseWrite() // the client ended its stream: pass the half-close on
		} else {
			c.Close()
		}
	}()
	copyFlush(w, rc, br, idle)
	stopIdle(idle)
	c.Close()
	r.Body.Close()
	<-up
	return nil
}

// acceptKey is the Sec-WebSocket-Accept value for key (RFC 6455 4.2.2).
func acceptKey(key string) string {
	s := sha1.Sum([]byte(key + wsGUID))
	return base64.StdEncoding.EncodeToString(s[:])
}

// copyHeader copies a backend response's header without hop-by-hop
// fields.
func copyHeader(dst, src http.Header) {
	drop := map[string]bool{}
	for _, f := range src.Values("Connection") {
		for _, name := range strings.Split(f, ",") {
			drop[textproto.CanonicalMIMEHeaderKey(textproto.TrimString(name))] = true
		}
	}
	for _, name := range []string{"Connection", "Proxy-Connection", "Keep-Alive", "Te", "Trailer",
		"Transfer-Encoding", "Upgrade", "Content-Length"} {
		drop[name] = true
	}
	for k, vv := range src {
		if !drop[k] {
			dst[k] = append([]string(nil), vv...)
		}
	}
}

// copyFlush copies from the backend to the client, flushing each read so
// that every WebSocket frame goes out as it comes. It returns at the
// backend's end of stream or the first error either side.
func copyFlush(w io.Writer, rc *http.ResponseController, src io.Reader, idle *idleTimer) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 {
			touchIdle(idle)
			if _, werr := w.Write(buf[:n]); werr != nil {
				return
			}
			if rc.Flush() != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// tunnelBody reads the client's stream for the backend leg: it counts as
// activity for the idle timer, and Close, which x/net/http2 calls when it
// is done with a request body, only records that it was called (the
// handler closes the real body, and may still need it after a failed
// attempt).
type tunnelBody struct {
	r      io.Reader
	idle   atomic.Pointer[idleTimer]
	once   sync.Once
	closed chan struct{} // closed by Close; nil when not needed
}

// setIdle starts counting reads as activity for it.
func (b *tunnelBody) setIdle(it *idleTimer) { b.idle.Store(it) }

func (b *tunnelBody) Read(p []byte) (int, error) {
	n, err := b.r.Read(p)
	if n > 0 {
		touchIdle(b.idle.Load())
	}
	return n, err
}

func (b *tunnelBody) Close() error {
	b.once.Do(func() {
		if b.closed != nil {
			close(b.closed)
		}
	})
	return nil
}

// tunnelIdle returns a timer calling fire after d without activity, nil
// (never firing) when d is not positive.
func tunnelIdle(d time.Duration, fire func()) *idleTimer {
	if d <= 0 {
		return nil
	}
	return newIdleTimer(d, fire)
}

// touchIdle records activity on it, which may be nil.
func touchIdle(it *idleTimer) {
	if it != nil {
		it.touch()
	}
}

// stopIdle stops it, which may be nil.
func stopIdle(it *idleTimer) {
	if it != nil {
		it.stop()
	}
}

// afterFunc calls f after d (never when d is not positive); the returned
// stop reports whether f was not called.
func afterFunc(d time.Duration, f func()) (stop func() bool) {
	if d <= 0 {
		return func() bool { return true }
	}
	var fired atomic.Bool
	t := time.AfterFunc(d, func() {
		fired.Store(true)
		f()
	})
	return func() bool {
		t.Stop()
		return !fired.Load()
	}
}
