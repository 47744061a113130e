package server

import (
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"testing"
	"time"
)

// TestLimitConns opens MaxConns+50 idle connections: exactly MaxConns stay
// open, the others are closed at once by the server (EOF), on the HTTPS
// listener too as the budget is shared. Once some close, a normal client
// is served again, and after all close the descriptors are back to where
// they were.
func TestLimitConns(t *testing.T) {
	const maxConns, extra = 20, 50
	r := start(t, Config{MaxConns: maxConns, ReadHeaderTimeout: time.Minute, IdleTimeout: time.Minute}, true, true)
	addr := r.srv.HTTPAddr().String()
	// With HTTPS on, the plain listener answers with a redirect: that
	// is being served.
	noKeepAlive := &http.Client{
		Transport:     &http.Transport{DisableKeepAlives: true},
		Timeout:       30 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	// A first request, so that lazily opened descriptors count in the
	// baseline (openFDs is hostile_test.go's).
	if resp, err := noKeepAlive.Get("http://" + addr + "/"); err != nil {
		t.Fatal(err)
	} else {
		resp.Body.Close()
	}
	baseline := openFDs(t)

	conns := make([]net.Conn, maxConns+extra)
	for i := range conns {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatalf("dial %d: %v", i, err)
		}
		conns[i] = c
	}
	closeAll := func() {
		for _, c := range conns {
			if c != nil {
				c.Close()
			}
		}
	}
	t.Cleanup(closeAll)

	// Every connection blocks in Read: refused ones return EOF, the
	// deadline only bounds a broken server.
	type result struct {
		i   int
		err error
	}
	results := make(chan result, len(conns))
	for i, c := range conns {
		c.SetReadDeadline(time.Now().Add(30 * time.Second))
		go func() {
			_, err := c.Read(make([]byte, 1))
			results <- result{i, err}
		}()
	}
	admitted := map[int]bool{}
	for i := range conns {
		admitted[i] = true
	}
	for range extra {
		res := <-results
		if !errors.Is(res.err, io.EOF) {
			t.Fatalf("connection %d: %v, want EOF from a refused connection (%d refused so far)", res.i, res.err, maxConns+extra-len(admitted))
		}
		delete(admitted, res.i)
	}
	// The others are still open: made to time out now, they report a
	// timeout, not EOF.
	for i := range admitted {
		conns[i].SetReadDeadline(time.Now())
	}
	for range maxConns {
		res := <-results
		var ne net.Error
		if !errors.As(res.err, &ne) || !ne.Timeout() {
			t.Errorf("admitted connection %d: %v, want it still open", res.i, res.err)
		}
	}

	// Full: a new client is refused on both listeners.
	if resp, err := noKeepAlive.Get("http://" + addr + "/"); err == nil {
		resp.Body.Close()
		t.Errorf("served past the limit: %s", resp.Status)
	}
	if c, err := tls.Dial("tcp", r.srv.HTTPSAddr().String(), &tls.Config{InsecureSkipVerify: true}); err == nil {
		c.Close()
		t.Error("TLS handshake past the limit")
	}

	// Closing some admitted connections makes room; the server notices
	// the close asynchronously, hence the bounded retries.
	closed := 0
	for i := range admitted {
		if closed == 5 {
			break
		}
		conns[i].Close()
		conns[i] = nil
		closed++
	}
	served := false
	for range 500 {
		resp, err := noKeepAlive.Get("http://" + addr + "/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode != http.StatusPermanentRedirect && resp.StatusCode != http.StatusMovedPermanently {
				t.Fatalf("after closing some: %s", resp.Status)
			}
			served = true
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if !served {
		t.Fatal("a normal client was never served after connections closed")
	}

	closeAll()
	var fds int
	for range 500 {
		if fds = openFDs(t); fds <= baseline {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if fds > baseline {
		t.Errorf("%d file descriptors open after all connections closed, %d before", fds, baseline)
	}
	// And the budget is whole again: MaxConns connections are admitted.
	for i := range maxConns {
		resp, err := noKeepAlive.Get("http://" + addr + "/")
		if err != nil {
			t.Fatalf("request %d after all closed: %v", i, err)
		}
		resp.Body.Close()
	}
}
