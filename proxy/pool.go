package proxy

import (
	"context"
	"errors"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pafhq/paf/route"
)

// upstream is one backend of a pool with its health.
type upstream struct {
	backend route.Backend
	tr      *http.Transport // nil for passthrough

	inflight  atomic.Int64
	fails     atomic.Int64 // consecutive failures (passive)
	downUntil atomic.Int64 // unix nanoseconds; passive
	activeUp  atomic.Bool  // last active check result; true without checks
}

// pool is the live state of one route: its upstreams, transports and
// reverse proxy.
type pool struct {
	p     *Proxy
	route *route.Route
	ups   []*upstream
	rr    atomic.Uint64
	rp    *httputil.ReverseProxy
	site  http.Handler
	stop  func() // stops the site; nil otherwise

	ctx    context.Context // cancelled on retire: stops health checks
	cancel context.CancelFunc
	once   sync.Once
}

// errAllDown is returned when every backend is marked down.
var errAllDown = errors.New("no healthy backend")

func (p *Proxy) newPool(r *route.Route) (*pool, error) {
	ctx, cancel := context.WithCancel(p.baseCtx)
	pl := &pool{p: p, route: r, ctx: ctx, cancel: cancel}
	if r.Site != "" {
		if p.cfg.Sites == nil {
			cancel()
			return nil, errors.New("site routes are not enabled")
		}
		h, stop, err := p.cfg.Sites.Open(ctx, r)
		if err != nil {
			cancel()
			return nil, err
		}
		pl.site, pl.stop = h, stop
		return pl, nil
	}
	for _, b := range r.Backends {
		u := &upstream{backend: b}
		u.activeUp.Store(true)
		if !r.Passthrough {
			tr, err := newTransport(p.cfg.Stack, r, b)
			if err != nil {
				cancel()
				return nil, err
			}
			u.tr = tr
		}
		pl.ups = append(pl.ups, u)
	}
	if !r.Passthrough {
		pl.rp = &httputil.ReverseProxy{
			Rewrite:        pl.rewrite,
			Transport:      pl,
			ModifyResponse: pl.modifyResponse,
			ErrorHandler:   pl.errorHandler,
			BufferPool:     &p.bufPool,
			ErrorLog:       log.New(logWriter{p.log}, "", 0),
		}
	}
	return pl, nil
}

// start begins active health checks, once the pool is in the table.
func (pl *pool) start() {
	if pl.route.Health.Path == "" || pl.route.Passthrough {
		return
	}
	for _, u := range pl.ups {
		go pl.check(u)
	}
}

// retire stops the pool's background work and closes idle connections;
// requests in flight finish.
func (pl *pool) retire() {
	pl.once.Do(func() {
		pl.cancel()
		if pl.stop != nil {
			pl.stop()
		}
		for _, u := range pl.ups {
			if u.tr != nil {
				u.tr.CloseIdleConnections()
			}
		}
	})
}

// attempt records the upstream a request is using, for least_conn
// accounting that lasts as long as the response (upgraded connections
// included).
type attempt struct{ u *upstream }

type attemptKey struct{}

// serve handles one request for the pool's route.
func (pl *pool) serve(w http.ResponseWriter, r *http.Request) {
	rt := pl.route
	if rt.MaxBody > 0 {
		if r.ContentLength > rt.MaxBody {
			errorPage(w, r, http.StatusRequestEntityTooLarge, "The request body is larger than this site accepts.")
			return
		}
		r.Body = http.MaxBytesReader(w, r.Body, rt.MaxBody)
	}
	if up := r.Header.Get("Upgrade"); up != "" {
		switch {
		case !strings.EqualFold(strings.TrimSpace(up), "websocket"):
			// h2c and any other upgrade: once the backend answered 101,
			// the spliced bytes would bypass everything the proxy does per
			// request (Host check, X-Forwarded-*, max_body). Forward the
			// request as a plain one instead.
			r.Header.Del("Upgrade")
		case !rt.WebSocket:
			errorPage(w, r, http.StatusForbidden, "Connection upgrades (WebSocket) are not allowed on this site.")
			return
		}
	}
	if pl.site != nil {
		if len(rt.ResponseHeaders) > 0 {
			setHeaders(w.Header(), rt.ResponseHeaders)
		}
		pl.site.ServeHTTP(w, r)
		return
	}
	a := &attempt{}
	r = r.WithContext(context.WithValue(r.Context(), attemptKey{}, a))
	pl.rp.ServeHTTP(w, r)
	if a.u != nil {
		a.u.inflight.Add(-1)
	}
}

// rewrite prepares the outgoing request; the backend itself is chosen in
// RoundTrip so that a refused connection can move on to the next one.
func (pl *pool) rewrite(pr *httputil.ProxyRequest) {
	pr.Out.URL.Scheme = "http"
	pr.Out.URL.Host = pl.route.Host
	pl.p.forwarded(pr)
	setHeaders(pr.Out.Header, pl.route.RequestHeaders)
}

func (pl *pool) modifyResponse(resp *http.Response) error {
	setHeaders(resp.Header, pl.route.ResponseHeaders)
	if resp.StatusCode == http.StatusSwitchingProtocols {
		// httputil.ReverseProxy copies an HTTP/1.1 upgrade (WebSocket)
		// between the hijacked client connection and this body, with no
		// deadline: the route's idle timeout bounds it, as it bounds
		// WebSockets over HTTP/2 (serveExtendedConnect).
		if rwc, ok := resp.Body.(io.ReadWriteCloser); ok {
			resp.Body = newIdleTunnel(rwc, pl.route.Timeouts.Idle)
		}
	}
	return nil
}

// idleTunnel is the backend side of an upgraded HTTP/1.1 connection: it
// sees both directions (writes carry the client's bytes, reads the
// backend's), so it counts both as activity and closes the backend
// connection after the idle timeout without any. ReverseProxy then ends
// the client side too.
type idleTunnel struct {
	io.ReadWriteCloser
	idle *idleTimer // nil: no timeout
}

func newIdleTunnel(rwc io.ReadWriteCloser, d time.Duration) *idleTunnel {
	t := &idleTunnel{ReadWriteCloser: rwc}
	t.idle = tunnelIdle(d, func() { rwc.Close() })
	return t
}

func (t *idleTunnel) Read(p []byte) (int, error) {
	n, err := t.ReadWriteCloser.Read(p)
	if n > 0 {
		touchIdle(t.idle)
	}
	return n, err
}

func (t *idleTunnel) Write(p []byte) (int, error) {
	n, err := t.ReadWriteCloser.Write(p)
	if n > 0 {
		touchIdle(t.idle)
	}
	return n, err
}

// Close stops the timer and closes the backend connection.
func (t *idleTunnel) Close() error {
	stopIdle(t.idle)
	return t.ReadWriteCloser.Close()
}

// setHeaders applies a route's extra headers; an empty value removes.
func setHeaders(h http.Header, hs []route.Header) {
	for _, x := range hs {
		if x.Value == "" {
			h.Del(x.Name)
		} else {
			h[x.Name] = []string{x.Value}
		}
	}
}

// RoundTrip implements http.RoundTripper: pick a healthy backend, send, and
// on a connection that could not even be opened, mark a failure and try
// the next one (when the request has no body to replay).
func (pl *pool) RoundTrip(req *http.Request) (*http.Response, error) {
	a, _ := req.Context().Value(attemptKey{}).(*attempt)
	if a == nil {
		a = &attempt{}
	}
	var tried []*upstream
	var lastErr error
	for {
		u := pl.pick(tried)
		if u == nil {
			if lastErr == nil {
				lastErr = errAllDown
			}
			return nil, lastErr
		}
		tried = append(tried, u)
		u.inflight.Add(1)
		if a.u != nil {
			a.u.inflight.Add(-1)
		}
		a.u = u
		out := *req
		if pl.route.ProxyProtocol != "" {
			out = *req.WithContext(context.WithValue(req.Context(), clientAddrsKey{}, requestAddrs(req)))
		}
		url := *req.URL
		url.Host = u.backend.Addr
		url.Scheme = "http"
		if u.backend.Scheme == "https" {
			url.Scheme = "https"
		}
		out.URL = &url
		resp, err := u.tr.RoundTrip(&out)
		if err == nil {
			pl.succeeded(u)
			return resp, nil
		}
		if req.Context().Err() != nil {
			return nil, err // the client went away: not the backend's fault
		}
		if tooBig := new(http.MaxBytesError); errors.As(err, &tooBig) {
			return nil, err // the client's body was over max_body: not the backend's fault
		}
		pl.failed(u, err)
		lastErr = err
		if !isDialError(err) || (req.Body != nil && req.Body != http.NoBody) {
			return nil, err
		}
	}
}

// requestAddrs returns the addresses of the client connection r came
// on, for a PROXY header.
func requestAddrs(r *http.Request) clientAddrs {
	var ca clientAddrs
	if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
		ca.src = net.TCPAddrFromAddrPort(ap)
	}
	ca.dst, _ = r.Context().Value(http.LocalAddrContextKey).(net.Addr)
	return ca
}

// isDialError reports whether err happened before anything was sent:
// safe to retry on another backend.
func isDialError(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}

// pick returns a healthy upstream not in skip, by the route's policy, or
// nil.
func (pl *pool) pick(skip []*upstream) *upstream {
	now := time.Now().UnixNano()
	ok := func(u *upstream) bool {
		if !u.activeUp.Load() || u.downUntil.Load() > now {
			return false
		}
		for _, s := range skip {
			if s == u {
				return false
			}
		}
		return true
	}
	n := len(pl.ups)
	switch pl.route.LB {
	case route.First:
		for _, u := range pl.ups {
			if ok(u) {
				return u
			}
		}
	case route.LeastConn:
		var best *upstream
		for _, u := range pl.ups {
			if ok(u) && (best == nil || u.inflight.Load() < best.inflight.Load()) {
				best = u
			}
		}
		return best
	default:
		start := pl.rr.Add(1)
		for i := 0; i < n; i++ {
			if u := pl.ups[(start+uint64(i))%uint64(n)]; ok(u) {
				return u
			}
		}
	}
	return nil
}

// failed counts a passive failure; enough in a row mark u down.
func (pl *pool) failed(u *upstream, err error) {
	if u.fails.Add(1) >= int64(pl.route.Health.Fails) {
		u.fails.Store(0)
		until := time.Now().Add(pl.route.Health.FailDuration)
		if u.downUntil.Swap(until.UnixNano()) < time.Now().UnixNano() {
			pl.p.log.Warn("backend down", "host", pl.route.Host, "backend", u.backend.URL,
				"for", pl.route.Health.FailDuration.String(), "error", err.Error())
		}
	}
}

func (pl *pool) succeeded(u *upstream) {
	if u.fails.Load() != 0 {
		u.fails.Store(0)
	}
}

// check runs active health checks of u until the pool retires.
func (pl *pool) check(u *upstream) {
	rt := pl.route
	tick := time.NewTicker(rt.Health.Interval)
	defer tick.Stop()
	for {
		up := pl.probe(u)
		if was := u.activeUp.Swap(up); was != up {
			if up {
				pl.p.log.Info("backend up", "host", rt.Host, "backend", u.backend.URL)
			} else {
				pl.p.log.Warn("backend down", "host", rt.Host, "backend", u.backend.URL, "check", rt.Health.Path)
			}
		}
		if up {
			u.downUntil.Store(0)
			u.fails.Store(0)
		}
		select {
		case <-pl.ctx.Done():
			return
		case <-tick.C:
		}
	}
}

// probe sends one health check request; 2xx and 3xx mean up.
func (pl *pool) probe(u *upstream) bool {
	rt := pl.route
	timeout := min(rt.Health.Interval, rt.Timeouts.ResponseHeader)
	ctx, cancel := context.WithTimeout(pl.ctx, timeout)
	defer cancel()
	scheme := "http"
	if u.backend.Scheme == "https" {
		scheme = "https"
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, scheme+"://"+u.backend.Addr+rt.Health.Path, nil)
	if err != nil {
		return false
	}
	req.Host = rt.Host
	req.Header.Set("User-Agent", "paf-health-check")
	resp, err := u.tr.RoundTrip(req)
	if err != nil {
		return false
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	resp.Body.Close()
	return resp.StatusCode >= 200 && resp.StatusCode < 400
}

// logWriter sends ReverseProxy's log lines to slog at Debug: they repeat
// what the error handler already reports.
type logWriter struct{ log *slog.Logger }

func (w logWriter) Write(b []byte) (int, error) {
	w.log.Debug("proxy", "msg", strings.TrimSpace(string(b)))
	return len(b), nil
}

// bufferPool recycles ReverseProxy's copy buffers.
type bufferPool struct{ p sync.Pool }

func (b *bufferPool) Get() []byte {
	if v, ok := b.p.Get().(*[]byte); ok {
		return *v
	}
	return make([]byte, 32<<10)
}

func (b *bufferPool) Put(buf []byte) { b.p.Put(&buf) }
