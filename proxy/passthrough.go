package proxy

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pafhq/paf/internal/acceptq"
	"github.com/pafhq/paf/route"
	"github.com/pafhq/paf/stack"
)

// Defaults applied to zero ListenerConfig fields.
const (
	// DefaultPeekTimeout bounds the wait for a client's ClientHello when
	// the listener must look at it before deciding where the connection
	// goes.
	DefaultPeekTimeout = 10 * time.Second
	// DefaultPassthroughIdle closes passthrough connections that carried
	// no byte either way for this long.
	DefaultPassthroughIdle = 5 * time.Minute
	// DefaultGrace is how long passthrough connections may go on after
	// the listener closed (graceful shutdown).
	DefaultGrace = 10 * time.Second
)

// ListenerConfig configures the listeners of Listener and WrapStack. The
// zero value applies the defaults and trusts no PROXY headers.
type ListenerConfig struct {
	// PeekTimeout bounds reading a ClientHello. Zero means
	// DefaultPeekTimeout.
	PeekTimeout time.Duration
	// IdleTimeout closes a passthrough connection after this long
	// without a byte in either direction. Zero means
	// DefaultPassthroughIdle.
	IdleTimeout time.Duration
	// Grace is how long passthrough connections still open when the
	// listener is closed may go on before they are cut, as the HTTP
	// server gives its requests. Zero means DefaultGrace.
	Grace time.Duration
	// ProxyProtocolFrom are the addresses of front balancers whose PROXY
	// protocol headers are read (see ProxyProtocolListener). Empty: no
	// header is read, the listeners see what arrives as is.
	ProxyProtocolFrom []netip.Prefix
	// ProxyHeaderTimeout bounds reading a PROXY header. Zero means
	// DefaultProxyHeaderTimeout.
	ProxyHeaderTimeout time.Duration
}

func (c ListenerConfig) withDefaults() ListenerConfig {
	if c.PeekTimeout <= 0 {
		c.PeekTimeout = DefaultPeekTimeout
	}
	if c.IdleTimeout <= 0 {
		c.IdleTimeout = DefaultPassthroughIdle
	}
	if c.Grace <= 0 {
		c.Grace = DefaultGrace
	}
	return c
}

// Listener wraps the raw TCP listener of the HTTPS port. While the table
// has passthrough routes, it reads each connection's TLS ClientHello,
// forwards connections whose SNI names a passthrough route, unread and
// undecrypted, to that route's backend, and hands every other connection,
// ClientHello replayed, to Accept for the TLS server. Without passthrough
// routes connections go straight through.
//
// Closing the listener stops accepting at once; passthrough connections
// then get cfg.Grace to end before they are cut, and Proxy.Wait returns
// once they are all gone.
func (p *Proxy) Listener(inner net.Listener, cfg ListenerConfig) net.Listener {
	cfg = cfg.withDefaults()
	ctx, cancel := context.WithCancel(p.baseCtx)
	l := &sniListener{
		inner: inner, p: p, cfg: cfg,
		ctx: ctx, cancel: cancel,
		q:      acceptq.New(ctx),
		splice: map[net.Conn]net.Conn{},
	}
	p.listeners.Add(1)
	l.wg.Add(1)
	go l.acceptLoop()
	return l
}

// Wait blocks until every listener made by Listener was closed and its
// passthrough connections ended (cut at most Grace after the close). Call
// it after the server using the listeners has shut down.
func (p *Proxy) Wait() { p.listeners.Wait() }

// WrapStack returns a Stack whose Listen wraps the listener bound at
// httpsAddr with Listener, so that a server.Server built on it gets
// passthrough by SNI without knowing about it; with
// cfg.ProxyProtocolFrom, every listener (HTTP too) first reads PROXY
// headers from those balancers. Dials are st's.
func (p *Proxy) WrapStack(st stack.Stack, httpsAddr string, cfg ListenerConfig) stack.Stack {
	return &wrapStack{Stack: st, p: p, addr: httpsAddr, cfg: cfg}
}

type wrapStack struct {
	stack.Stack
	p    *Proxy
	addr string
	cfg  ListenerConfig
}

func (w *wrapStack) Listen(ctx context.Context, network, address string) (net.Listener, error) {
	ln, err := w.Stack.Listen(ctx, network, address)
	if err != nil {
		return ln, err
	}
	if len(w.cfg.ProxyProtocolFrom) > 0 {
		ln = ProxyProtocolListener(ln, w.cfg.ProxyProtocolFrom, w.cfg.ProxyHeaderTimeout)
	}
	if address != w.addr {
		return ln, nil
	}
	return w.p.Listener(ln, w.cfg), nil
}

type sniListener struct {
	inner net.Listener
	p     *Proxy
	cfg   ListenerConfig

	ctx    context.Context
	cancel context.CancelFunc
	q      *acceptq.Queue
	wg     sync.WaitGroup
	once   sync.Once

	mu     sync.Mutex
	splice map[net.Conn]net.Conn // passthrough client connection -> its backend, closed by Close
}

func (l *sniListener) acceptLoop() {
	defer l.wg.Done()
	l.q.Loop(l.inner, nil, func(c net.Conn) {
		if !l.p.state.Load().passthrough {
			l.q.Deliver(c)
			return
		}
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			l.route(c)
		}()
	})
}

// errPeeked stops the throwaway TLS server once it has parsed the
// ClientHello.
var errPeeked = errors.New("proxy: ClientHello peeked")

// route reads c's ClientHello and sends c to a passthrough backend or to
// Accept.
func (l *sniListener) route(c net.Conn) {
	c.SetReadDeadline(time.Now().Add(l.cfg.PeekTimeout))
	rec := &recordingConn{Conn: c}
	sni := ""
	// crypto/tls parses the ClientHello (fragmented records and all);
	// GetConfigForClient sees it and stops the handshake before anything
	// is sent. The alert tls then writes goes nowhere.
	tls.Server(rec, &tls.Config{GetConfigForClient: func(h *tls.ClientHelloInfo) (*tls.Config, error) {
		sni = h.ServerName
		return nil, errPeeked
	}}).HandshakeContext(l.ctx)
	c.SetReadDeadline(time.Time{})
	pc := &prefixConn{Conn: c, prefix: rec.buf.Bytes()}
	if sni != "" {
		if pl := l.p.state.Load().pools[route.NormalizeHost(sni)]; pl != nil && pl.route.Passthrough {
			l.passthrough(pc, pl)
			return
		}
	}
	l.q.Deliver(pc)
}

// passthrough splices c to a backend of pl, trying the next healthy one
// when a dial fails.
func (l *sniListener) passthrough(c *prefixConn, pl *pool) {
	defer c.Close()
	var tried []*upstream
	var b net.Conn
	var chosen *upstream
	for {
		u := pl.pick(tried)
		if u == nil {
			l.p.log.Warn("passthrough: no backend reachable", "host", pl.route.Host, "remote", c.RemoteAddr().String())
			return
		}
		tried = append(tried, u)
		ctx, cancel := context.WithTimeout(l.ctx, pl.route.Timeouts.Dial)
		conn, err := l.p.cfg.Stack.Dial(ctx, "tcp", u.backend.Addr)
		cancel()
		if err == nil {
			pl.succeeded(u)
			u.inflight.Add(1)
			defer u.inflight.Add(-1)
			b, chosen = conn, u
			break
		}
		pl.failed(u, err)
	}
	defer b.Close()
	if v := pl.route.ProxyProtocol; v != "" {
		hdr, err := ProxyHeader(v, c.RemoteAddr(), c.LocalAddr())
		if err == nil {
			b.SetWriteDeadline(time.Now().Add(pl.route.Timeouts.Dial))
			_, err = b.Write(hdr)
			b.SetWriteDeadline(time.Time{})
		}
		if err != nil {
			l.p.log.Warn("passthrough: PROXY header not sent", "host", pl.route.Host, "backend", chosen.backend.URL, "error", err.Error())
			return
		}
	}
	l.mu.Lock()
	if l.ctx.Err() != nil {
		l.mu.Unlock()
		return
	}
	l.splice[c] = b
	l.mu.Unlock()
	defer func() {
		l.mu.Lock()
		delete(l.splice, c)
		l.mu.Unlock()
	}()
	idle := newIdleTimer(l.cfg.IdleTimeout, func() { c.Close(); b.Close() })
	defer idle.stop()
	done := make(chan struct{})
	go func() {
		buf := l.p.bufPool.Get()
		io.CopyBuffer(b, idleReader{c, idle}, buf)
		l.p.bufPool.Put(buf)
		closeWrite(b)
		close(done)
	}()
	buf := l.p.bufPool.Get()
	io.CopyBuffer(c.Conn, idleReader{b, idle}, buf)
	l.p.bufPool.Put(buf)
	closeWrite(c.Conn)
	<-done
}

// idleTimer calls its function once no activity was recorded for d.
type idleTimer struct {
	d    time.Duration
	f    func()
	last atomic.Int64 // unix nanoseconds of the last activity

	mu      sync.Mutex
	t       *time.Timer
	stopped bool
}

func newIdleTimer(d time.Duration, f func()) *idleTimer {
	it := &idleTimer{d: d, f: f}
	it.last.Store(time.Now().UnixNano())
	it.mu.Lock()
	it.t = time.AfterFunc(d, it.fire)
	it.mu.Unlock()
	return it
}

// fire calls f if the connection was idle for d, else re-arms for the
// rest of the period (unless stop came in between: a timer re-armed after
// stop would fire once more on a connection long closed).
func (it *idleTimer) fire() {
	left := time.Until(time.Unix(0, it.last.Load()).Add(it.d))
	if left <= 0 {
		it.f()
		return
	}
	it.mu.Lock()
	if !it.stopped {
		it.t.Reset(left)
	}
	it.mu.Unlock()
}

func (it *idleTimer) touch() { it.last.Store(time.Now().UnixNano()) }
func (it *idleTimer) stop() {
	it.mu.Lock()
	it.stopped = true
	it.t.Stop()
	it.mu.Unlock()
}

// idleReader records activity on each read.
type idleReader struct {
	r  io.Reader
	it *idleTimer
}

func (r idleReader) Read(b []byte) (int, error) {
	n, err := r.r.Read(b)
	if n > 0 {
		r.it.touch()
	}
	return n, err
}

func closeWrite(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	} else {
		c.Close()
	}
}

func (l *sniListener) Accept() (net.Conn, error) { return l.q.Accept() }

// Close stops accepting and aborts ClientHello reads at once; passthrough
// connections get Grace to end, then are cut. It does not wait: Proxy.Wait
// does.
func (l *sniListener) Close() error {
	var err error
	l.once.Do(func() {
		l.cancel()
		err = l.inner.Close()
		cut := time.AfterFunc(l.cfg.Grace, func() {
			l.mu.Lock()
			// Both ends: a backend that ignores the half-close would
			// otherwise hold the copy until the idle timeout.
			for c, b := range l.splice {
				c.Close()
				b.Close()
			}
			l.mu.Unlock()
		})
		go func() {
			l.wg.Wait()
			cut.Stop()
			l.p.listeners.Done()
		}()
	})
	return err
}

func (l *sniListener) Addr() net.Addr { return l.inner.Addr() }

// recordingConn records what is read and swallows writes: the throwaway
// TLS server must not answer the client.
type recordingConn struct {
	net.Conn
	buf bytes.Buffer
}

func (r *recordingConn) Read(b []byte) (int, error) {
	if r.buf.Len() > 64<<10 {
		return 0, errors.New("proxy: ClientHello too large")
	}
	n, err := r.Conn.Read(b)
	r.buf.Write(b[:n])
	return n, err
}

func (r *recordingConn) Write(b []byte) (int, error) { return len(b), nil }

// prefixConn replays the bytes read while peeking before reading on.
type prefixConn struct {
	net.Conn
	prefix []byte
}

func (c *prefixConn) Read(b []byte) (int, error) {
	if len(c.prefix) > 0 {
		n := copy(b, c.prefix)
		c.prefix = c.prefix[n:]
		return n, nil
	}
	return c.Conn.Read(b)
}
