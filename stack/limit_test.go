package stack

import (
	"context"
	"io"
	"net"
	"testing"
	"time"
)

// TestLimit checks the budget is shared by every listener of the stack,
// that connections beyond it are closed before anything is read, and that
// a closed connection gives its place back.
func TestLimit(t *testing.T) {
	ctx := context.Background()
	host := &Host{}
	if Limit(host, 0) != Stack(host) || Limit(host, -1) != Stack(host) {
		t.Fatal("Limit with max <= 0 wrapped the stack")
	}
	st := Limit(host, 2)
	var lns []net.Listener
	for range 2 {
		ln, err := st.Listen(ctx, "tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { ln.Close() })
		lns = append(lns, ln)
	}
	accepted := make(chan net.Conn, 8)
	for _, ln := range lns {
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return
				}
				accepted <- c
			}
		}()
	}
	dial := func(ln net.Listener) net.Conn {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	// refused reports whether the server end closed c unread.
	refused := func(c net.Conn) bool {
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err := c.Read(make([]byte, 1))
		return err == io.EOF
	}
	next := func() net.Conn {
		select {
		case c := <-accepted:
			return c
		case <-time.After(10 * time.Second):
			t.Fatal("no connection accepted")
			return nil
		}
	}
	dial(lns[0])
	first := next()
	dial(lns[1])
	next()
	// Both listeners together hold the budget: a third, on either, is refused.
	for _, ln := range lns {
		if c := dial(ln); !refused(c) {
			t.Fatalf("a connection beyond the limit on %v was kept open", ln.Addr())
		}
	}
	// Closing one (twice: the place is returned once) lets one more in.
	first.Close()
	first.Close()
	c := dial(lns[1])
	got := next()
	if _, err := got.Write([]byte("x")); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.ReadFull(c, make([]byte, 1)); err != nil {
		t.Fatalf("after a close, a new connection was not served: %v", err)
	}
	if d := dial(lns[0]); !refused(d) {
		t.Fatal("the freed place was given out twice")
	}
}
