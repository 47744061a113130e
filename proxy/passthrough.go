package proxy

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"sync"
	"time"

	"github.com/pafhq/paf/stack"
)

// DefaultPeekTimeout bounds the wait for a client's ClientHello when the
// listener must look at it before deciding where the connection goes.
const DefaultPeekTimeout = 10 * time.Second

// Listener wraps the raw TCP listener of the HTTPS port. While the table
// has passthrough routes, it reads each connection's TLS ClientHello,
// forwards connections whose SNI names a passthrough route, unread and
// undecrypted, to that route's backend, and hands every other connection,
// ClientHello replayed, to Accept for the TLS server. Without passthrough
// routes connections go straight through. peekTimeout bounds reading the
// ClientHello; zero means DefaultPeekTimeout.
func (p *Proxy) Listener(inner net.Listener, peekTimeout time.Duration) net.Listener {
	if peekTimeout <= 0 {
		peekTimeout = DefaultPeekTimeout
	}
	ctx, cancel := context.WithCancel(p.baseCtx)
	l := &sniListener{
		inner: inner, p: p, timeout: peekTimeout,
		ctx: ctx, cancel: cancel,
		conns:  make(chan net.Conn),
		errc:   make(chan error, 1),
		splice: map[net.Conn]struct{}{},
	}
	l.wg.Add(1)
	go l.acceptLoop()
	return l
}

// WrapStack returns a Stack whose Listen wraps the listener bound at
// httpsAddr with Listener, so that a server.Server built on it gets
// passthrough by SNI without knowing about it. Other listeners and dials
// are st's.
func (p *Proxy) WrapStack(st stack.Stack, httpsAddr string, peekTimeout time.Duration) stack.Stack {
	return &wrapStack{Stack: st, p: p, addr: httpsAddr, timeout: peekTimeout}
}

type wrapStack struct {
	stack.Stack
	p       *Proxy
	addr    string
	timeout time.Duration
}

func (w *wrapStack) Listen(ctx context.Context, network, address string) (net.Listener, error) {
	ln, err := w.Stack.Listen(ctx, network, address)
	if err != nil || address != w.addr {
		return ln, err
	}
	return w.p.Listener(ln, w.timeout), nil
}

type sniListener struct {
	inner   net.Listener
	p       *Proxy
	timeout time.Duration

	ctx    context.Context
	cancel context.CancelFunc
	conns  chan net.Conn
	errc   chan error
	wg     sync.WaitGroup
	once   sync.Once

	mu     sync.Mutex
	splice map[net.Conn]struct{} // passthrough client connections, closed by Close
}

func (l *sniListener) acceptLoop() {
	defer l.wg.Done()
	var delay time.Duration
	for {
		c, err := l.inner.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Temporary() && l.ctx.Err() == nil { //nolint:staticcheck // as net/http
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				t := time.NewTimer(delay)
				select {
				case <-t.C:
					continue
				case <-l.ctx.Done():
					t.Stop()
				}
			}
			l.errc <- err
			return
		}
		delay = 0
		if !l.p.state.Load().passthrough {
			l.deliver(c)
			continue
		}
		l.wg.Add(1)
		go func() {
			defer l.wg.Done()
			l.route(c)
		}()
	}
}

// deliver hands c to Accept.
func (l *sniListener) deliver(c net.Conn) {
	select {
	case l.conns <- c:
	case <-l.ctx.Done():
		c.Close()
	}
}

// errPeeked stops the throwaway TLS server once it has parsed the
// ClientHello.
var errPeeked = errors.New("proxy: ClientHello peeked")

// route reads c's ClientHello and sends c to a passthrough backend or to
// Accept.
func (l *sniListener) route(c net.Conn) {
	c.SetReadDeadline(time.Now().Add(l.timeout))
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
		if pl := l.p.state.Load().pools[sni]; pl != nil && pl.route.Passthrough {
			l.passthrough(pc, pl)
			return
		}
	}
	l.deliver(pc)
}

// passthrough splices c to a backend of pl, trying the next healthy one
// when a dial fails.
func (l *sniListener) passthrough(c *prefixConn, pl *pool) {
	defer c.Close()
	var tried []*upstream
	var b net.Conn
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
			b = conn
			break
		}
		pl.failed(u, err)
	}
	defer b.Close()
	l.mu.Lock()
	if l.ctx.Err() != nil {
		l.mu.Unlock()
		return
	}
	l.splice[c] = struct{}{}
	l.mu.Unlock()
	defer func() {
		l.mu.Lock()
		delete(l.splice, c)
		l.mu.Unlock()
	}()
	done := make(chan struct{})
	go func() {
		io.Copy(b, c)
		closeWrite(b)
		close(done)
	}()
	io.Copy(c.Conn, b)
	closeWrite(c.Conn)
	<-done
}

func closeWrite(c net.Conn) {
	if cw, ok := c.(interface{ CloseWrite() error }); ok {
		cw.CloseWrite()
	} else {
		c.Close()
	}
}

func (l *sniListener) Accept() (net.Conn, error) {
	select {
	case c := <-l.conns:
		return c, nil
	case err := <-l.errc:
		l.errc <- err
		return nil, err
	case <-l.ctx.Done():
		return nil, net.ErrClosed
	}
}

// Close stops accepting, aborts ClientHello reads and closes passthrough
// connections, and waits for their goroutines.
func (l *sniListener) Close() error {
	var err error
	l.once.Do(func() {
		l.cancel()
		err = l.inner.Close()
		l.mu.Lock()
		for c := range l.splice {
			c.Close()
		}
		l.mu.Unlock()
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
