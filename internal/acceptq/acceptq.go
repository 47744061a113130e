// Package acceptq is the accept side shared by listeners that prepare each
// connection in the background before handing it on (server's TLS
// handshake listener, proxy's SNI listener): an accept loop that backs off
// on temporary errors as net/http does, a queue Accept takes from, and the
// loop's terminal error, reported by every later Accept.
package acceptq

import (
	"context"
	"errors"
	"net"
	"time"
)

// Queue hands prepared connections to Accept. Its zero value is not
// usable: make one with New.
type Queue struct {
	ctx   context.Context
	conns chan net.Conn
	errc  chan error // the terminal accept error, sent once and put back
}

// New returns a Queue that stops when ctx is done (the listener's Close
// cancels it).
func New(ctx context.Context) *Queue {
	return &Queue{ctx: ctx, conns: make(chan net.Conn), errc: make(chan error, 1)}
}

// Loop accepts on inner until it fails for good, calling handle with each
// connection from the loop's own goroutine (handle starts a goroutine for
// anything that may block). On a temporary error (running out of file
// descriptors) it calls onRetry, when not nil, and tries again after a
// delay doubling from 5 ms to 1 s, as net/http does.
func (q *Queue) Loop(inner net.Listener, onRetry func(err error, delay time.Duration), handle func(net.Conn)) {
	var delay time.Duration
	for {
		c, err := inner.Accept()
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Temporary() && q.ctx.Err() == nil { //nolint:staticcheck // as net/http
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				if onRetry != nil {
					onRetry(err, delay)
				}
				t := time.NewTimer(delay)
				select {
				case <-t.C:
					continue
				case <-q.ctx.Done():
					t.Stop()
				}
			}
			q.errc <- err
			return
		}
		delay = 0
		handle(c)
	}
}

// Deliver hands c to Accept, or closes it if the queue stops first.
func (q *Queue) Deliver(c net.Conn) {
	select {
	case q.conns <- c:
	case <-q.ctx.Done():
		c.Close()
	}
}

// Accept returns the next delivered connection, the loop's terminal error
// (again on every call), or net.ErrClosed once the queue stopped.
func (q *Queue) Accept() (net.Conn, error) {
	select {
	case c := <-q.conns:
		return c, nil
	case err := <-q.errc:
		q.errc <- err
		return nil, err
	case <-q.ctx.Done():
		return nil, net.ErrClosed
	}
}
