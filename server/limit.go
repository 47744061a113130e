package server

import (
	"io"
	"net"
	"sync"
	"sync/atomic"
)

// connLimit counts the client connections open on a Server's listeners,
// against one budget shared by both: the limit protects the process's file
// descriptors and memory, which both listeners draw on.
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

// limitConns wraps ln with limit; a nil limit (no limit) returns ln.
func limitConns(ln net.Listener, limit *connLimit) net.Listener {
	if limit == nil || ln == nil {
		return ln
	}
	return &limitListener{Listener: ln, limit: limit}
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
