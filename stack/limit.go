package stack

import (
	"context"
	"io"
	"net"
	"sync"
	"sync/atomic"
)

// Limit returns st with a budget of max client connections open at once,
// shared by every listener it makes: beyond it, new connections are
// accepted and closed at once, before any goroutine, handshake or read is
// spent on them, and a closed connection gives its place back. It bounds
// file descriptors and memory under a connection flood. Wrapping the stack
// rather than a server's listeners puts the count before anything a
// listener layered on top does with a connection (a proxy peeking at the
// TLS ClientHello, then splicing it elsewhere), so those connections count
// too. Dials are not counted. A max of zero or less returns st.
func Limit(st Stack, max int) Stack {
	if max <= 0 {
		return st
	}
	return &limitStack{Stack: st, limit: &connLimit{max: int64(max)}}
}

type limitStack struct {
	Stack
	limit *connLimit
}

// Listen listens on the inner stack and counts what it accepts.
func (s *limitStack) Listen(ctx context.Context, network, address string) (net.Listener, error) {
	ln, err := s.Stack.Listen(ctx, network, address)
	if err != nil {
		return nil, err
	}
	return &limitListener{Listener: ln, limit: s.limit}, nil
}

// connLimit counts the connections open on a limitStack's listeners,
// against one budget shared by all: the limit protects the process's file
// descriptors and memory, which every listener draws on.
type connLimit struct {
	max  int64
	open atomic.Int64
}

// limitListener refuses connections beyond its connLimit: such a
// connection is accepted and closed at once inside Accept, before any
// goroutine, TLS handshake or read is spent on it, so the client sees the
// connection closed (EOF, or a reset if it had already sent data) rather
// than a backlog that hangs. Connections it returns give their place back
// when closed, once, however often Close is called.
type limitListener struct {
	net.Listener
	limit *connLimit
}

// Accept returns the next connection within the limit, closing those
// beyond it as they come. Errors are the inner listener's.
func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if l.limit.open.Add(1) > l.limit.max {
			l.limit.open.Add(-1)
			c.Close()
			continue
		}
		return &limitConn{Conn: c, limit: l.limit}, nil
	}
}

// limitConn is a connection counted by a connLimit. It keeps the optional
// methods of *net.TCPConn that net/http and the proxy use: ReadFrom
// (sendfile), WriteTo (splice) and CloseWrite (lingering close,
// half-closes passed on).
type limitConn struct {
	net.Conn
	limit *connLimit
	once  sync.Once
}

// Close closes the connection and returns its place to the limit.
func (c *limitConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.limit.open.Add(-1) })
	return err
}

// ReadFrom lets net/http send files with sendfile through the wrapper.
func (c *limitConn) ReadFrom(r io.Reader) (int64, error) {
	if rf, ok := c.Conn.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	return io.Copy(writerOnly{c.Conn}, r)
}

// WriteTo lets io.Copy from the connection splice.
func (c *limitConn) WriteTo(w io.Writer) (int64, error) {
	if wt, ok := c.Conn.(io.WriterTo); ok {
		return wt.WriteTo(w)
	}
	return io.Copy(w, readerOnly{c.Conn})
}

// CloseWrite half-closes the connection when the inner one can.
func (c *limitConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

// readerOnly hides a reader's WriteTo so io.Copy does not recurse.
type readerOnly struct{ io.Reader }

// writerOnly hides a writer's ReadFrom so io.Copy does not recurse.
type writerOnly struct{ io.Writer }
