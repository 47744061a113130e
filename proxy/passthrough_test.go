package proxy

import (
	"bufio"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"testing"
	"time"
)

// tlsEcho runs a TLS server for name that echoes lines back, and returns
// its address.
func tlsEcho(t *testing.T, name string) (string, *tls.Config) {
	t.Helper()
	ca, pool := localCA(t)
	cert, err := ca.Issuer([]string{name})
	if err != nil {
		t.Fatal(err)
	}
	ln, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{GetCertificate: cert.GetCertificate})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				io.Copy(c, c)
			}()
		}
	}()
	return ln.Addr().String(), &tls.Config{ServerName: name, RootCAs: pool}
}

// ptFront serves p's Listener with cfg on loopback and returns it.
func ptFront(t *testing.T, p *Proxy, cfg ListenerConfig) net.Listener {
	t.Helper()
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := p.Listener(raw, cfg)
	t.Cleanup(func() { ln.Close() })
	return ln
}

// echoOnce writes a line on c and reads it back.
func echoOnce(c net.Conn, r *bufio.Reader, s string) error {
	if _, err := fmt.Fprintln(c, s); err != nil {
		return err
	}
	got, err := r.ReadString('\n')
	if err != nil {
		return err
	}
	if got != s+"\n" {
		return fmt.Errorf("echoed %q, want %q", got, s)
	}
	return nil
}

// TestPassthroughIdleTimeout: a passthrough connection with no traffic is
// closed after IdleTimeout, while one kept busy past it stays open.
func TestPassthroughIdleTimeout(t *testing.T) {
	be, clientConf := tlsEcho(t, "pt.test")
	p := newProxy(t, Config{})
	apply(t, p, map[string]string{"pt.test": fmt.Sprintf("passthrough = true\nbackends = [%q]\n", "tcp://"+be)})
	idle := time.Second
	ln := ptFront(t, p, ListenerConfig{IdleTimeout: idle})

	c, err := tls.Dial("tcp", ln.Addr().String(), clientConf)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	r := bufio.NewReader(c)
	// Busy for two idle periods: never cut.
	for end := time.Now().Add(2 * idle); time.Now().Before(end); {
		if err := echoOnce(c, r, "busy"); err != nil {
			t.Fatalf("busy connection cut: %v", err)
		}
		time.Sleep(idle / 10)
	}
	// Then silent: the proxy closes it (the read ends well before the
	// test's own deadline).
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	_, err = r.ReadByte()
	var ne net.Error
	if err == nil || errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("idle connection not closed by the proxy: %v", err)
	}
}

// TestPassthroughGraceOnClose: closing the listener refuses new
// connections but lets open passthrough connections go on for Grace;
// Wait returns when they end, by themselves or cut at the end of Grace.
func TestPassthroughGraceOnClose(t *testing.T) {
	be, clientConf := tlsEcho(t, "pt.test")
	for _, tt := range []struct {
		name       string
		grace      time.Duration
		clientEnds bool
	}{
		{"cut after grace", 2 * time.Second, false},
		{"ends during grace", time.Hour, true},
	} {
		t.Run(tt.name, func(t *testing.T) {
			p := newProxy(t, Config{})
			apply(t, p, map[string]string{"pt.test": fmt.Sprintf("passthrough = true\nbackends = [%q]\n", "tcp://"+be)})
			ln := ptFront(t, p, ListenerConfig{Grace: tt.grace})
			c, err := tls.Dial("tcp", ln.Addr().String(), clientConf)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			r := bufio.NewReader(c)
			if err := echoOnce(c, r, "before"); err != nil {
				t.Fatal(err)
			}
			ln.Close()
			if _, err := tls.Dial("tcp", ln.Addr().String(), clientConf); err == nil {
				t.Error("new connection accepted after Close")
			}
			if err := echoOnce(c, r, "during grace"); err != nil {
				t.Fatalf("open connection cut at Close: %v", err)
			}
			waited := make(chan struct{})
			go func() { p.Wait(); close(waited) }()
			if tt.clientEnds {
				c.Close()
			} else {
				c.SetReadDeadline(time.Now().Add(30 * time.Second))
				if _, err := r.ReadByte(); err == nil {
					t.Fatal("connection still open after grace")
				}
			}
			select {
			case <-waited:
			case <-time.After(30 * time.Second):
				t.Fatal("Wait did not return")
			}
		})
	}
}

// TestNextProtosByRoute: a route's alpn list is what the listener is told
// to offer for its name; default routes and unknown names keep the
// default.
func TestNextProtosByRoute(t *testing.T) {
	p := newProxy(t, Config{})
	apply(t, p, map[string]string{
		"h1.test":  "backends = [\"http://127.0.0.1:1\"]\nalpn = [\"http/1.1\"]\n",
		"def.test": "backends = [\"http://127.0.0.1:1\"]\n",
	})
	for name, want := range map[string]string{"h1.test": "[http/1.1]", "H1.TEST.": "[http/1.1]", "def.test": "[]", "other.test": "[]", "": "[]"} {
		if got := fmt.Sprint(p.NextProtos(name)); got != want {
			t.Errorf("NextProtos(%q) = %s, want %s", name, got, want)
		}
	}
}
