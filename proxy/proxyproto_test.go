package proxy

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// ppBackend accepts connections that start with a PROXY header, parses
// the header itself (independently of the code under test) and answers
// one HTTP request with what it announced: "PROXY TCP4 SRC DST SPORT DPORT"
// for both versions. With tlsConf it terminates TLS after the header, as a
// passthrough backend.
func ppBackend(t *testing.T, tlsConf *tls.Config) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
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
				c.SetDeadline(time.Now().Add(30 * time.Second))
				br := bufio.NewReader(c)
				announced, err := readHeaderForTest(br)
				if err != nil {
					fmt.Fprintf(c, "HTTP/1.1 400 Bad Request\r\nContent-Length: %d\r\n\r\n%s", len(err.Error()), err)
					return
				}
				var rw io.ReadWriter = struct {
					io.Reader
					io.Writer
				}{br, c}
				if tlsConf != nil {
					tc := tls.Server(&bufConn{Conn: c, r: br}, tlsConf)
					defer tc.Close()
					rw = tc
					br = bufio.NewReader(tc)
				}
				req, err := http.ReadRequest(br)
				if err != nil {
					return
				}
				req.Body.Close()
				fmt.Fprintf(rw, "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s", len(announced), announced)
			}()
		}
	}()
	return ln.Addr().String()
}

type bufConn struct {
	net.Conn
	r *bufio.Reader
}

func (c *bufConn) Read(b []byte) (int, error) { return c.r.Read(b) }

// readHeaderForTest parses a v1 or v2 header the way the spec describes.
func readHeaderForTest(br *bufio.Reader) (string, error) {
	first, err := br.Peek(1)
	if err != nil {
		return "", err
	}
	if first[0] == 'P' {
		line, err := br.ReadString('\n')
		if err != nil || !strings.HasSuffix(line, "\r\n") {
			return "", fmt.Errorf("bad v1 line %q", line)
		}
		return strings.TrimSuffix(line, "\r\n"), nil
	}
	hdr := make([]byte, 16)
	if _, err := io.ReadFull(br, hdr); err != nil {
		return "", err
	}
	if !bytes.Equal(hdr[:12], []byte("\r\n\r\n\x00\r\nQUIT\n")) {
		return "", fmt.Errorf("no PROXY header: %q", hdr)
	}
	body := make([]byte, binary.BigEndian.Uint16(hdr[14:]))
	if _, err := io.ReadFull(br, body); err != nil {
		return "", err
	}
	if hdr[12] == 0x20 {
		return "LOCAL", nil
	}
	if hdr[12] != 0x21 || hdr[13] != 0x11 || len(body) < 12 {
		return "", fmt.Errorf("unexpected v2 header %x", hdr[12:14])
	}
	s, _ := netip.AddrFromSlice(body[0:4])
	d, _ := netip.AddrFromSlice(body[4:8])
	return fmt.Sprintf("PROXY TCP4 %s %s %d %d", s, d, binary.BigEndian.Uint16(body[8:10]), binary.BigEndian.Uint16(body[10:12])), nil
}

// TestProxyProtocolToBackends: with proxy_protocol, every backend
// connection starts with a header naming the client connection the
// request came on, in v1 and v2, for HTTP and passthrough routes.
func TestProxyProtocolToBackends(t *testing.T) {
	ca, pool := localCA(t)
	ptCert, err := ca.Issuer([]string{"pt.test"})
	if err != nil {
		t.Fatal(err)
	}
	httpBE := ppBackend(t, nil)
	tlsBE := ppBackend(t, &tls.Config{GetCertificate: ptCert.GetCertificate})
	p := newProxy(t, Config{})
	apply(t, p, map[string]string{
		"v1.test": fmt.Sprintf("backends = [%q]\nproxy_protocol = \"v1\"\n", "http://"+httpBE),
		"v2.test": fmt.Sprintf("backends = [%q]\nproxy_protocol = \"v2\"\n", "http://"+httpBE),
		"pt.test": fmt.Sprintf("passthrough = true\nbackends = [%q]\nproxy_protocol = \"v2\"\n", "tcp://"+tlsBE),
	})
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ln := p.Listener(raw, ListenerConfig{})
	srv := &http.Server{Handler: p}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	frontPort := raw.Addr().(*net.TCPAddr).Port

	for _, host := range []string{"v1.test", "v2.test", "v1.test"} {
		c, err := net.Dial("tcp", raw.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(c, "GET / HTTP/1.1\r\nHost: %s\r\nConnection: close\r\n\r\n", host)
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		c.Close()
		want := fmt.Sprintf("PROXY TCP4 127.0.0.1 127.0.0.1 %d %d", c.LocalAddr().(*net.TCPAddr).Port, frontPort)
		if resp.StatusCode != 200 || string(body) != want {
			t.Errorf("%s: %d %q, want %q", host, resp.StatusCode, body, want)
		}
	}

	// Passthrough: the header precedes the client's TLS bytes.
	tc, err := tls.Dial("tcp", raw.Addr().String(), &tls.Config{ServerName: "pt.test", RootCAs: pool})
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	fmt.Fprintf(tc, "GET / HTTP/1.1\r\nHost: pt.test\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(tc), nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	want := fmt.Sprintf("PROXY TCP4 127.0.0.1 127.0.0.1 %d %d", tc.LocalAddr().(*net.TCPAddr).Port, frontPort)
	if string(body) != want {
		t.Errorf("passthrough: %q, want %q", body, want)
	}
}

// TestProxyProtocolFrom: a trusted balancer's v1 or v2 header sets the
// client address the proxy forwards (X-Forwarded-For); a trusted
// connection without a header is served as is; an untrusted one with a
// header is closed unanswered, without one it is served.
func TestProxyProtocolFrom(t *testing.T) {
	be := backend(t, echoHeaders(), false)
	v1 := "PROXY TCP4 203.0.113.7 192.0.2.1 5555 443\r\n"
	v2, err := ProxyHeader("v2", &net.TCPAddr{IP: net.ParseIP("203.0.113.8"), Port: 6666}, &net.TCPAddr{IP: net.ParseIP("192.0.2.1"), Port: 443})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		trusted string
		header  string
		wantXFF string // "" : connection closed without an answer
	}{
		{"trusted v1", "127.0.0.0/8", v1, "203.0.113.7"},
		{"trusted v2", "127.0.0.1/32", string(v2), "203.0.113.8"},
		{"trusted v1 unknown", "127.0.0.1/32", "PROXY UNKNOWN\r\n", "127.0.0.1"},
		{"trusted, no header", "127.0.0.0/8", "", "127.0.0.1"},
		{"untrusted v1", "10.0.0.0/8", v1, ""},
		{"untrusted v2", "10.0.0.0/8", string(v2), ""},
		{"untrusted, no header", "10.0.0.0/8", "", "127.0.0.1"},
		{"trusted, broken v1", "127.0.0.0/8", "PROXY TCP4 nonsense\r\n", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := newProxy(t, Config{})
			apply(t, p, map[string]string{"a.test": fmt.Sprintf("backends = [%q]", "http://"+be)})
			raw, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			srv := &http.Server{Handler: p}
			go srv.Serve(ProxyProtocolListener(raw, []netip.Prefix{netip.MustParsePrefix(tt.trusted)}, 5*time.Second))
			t.Cleanup(func() { srv.Close() })
			c, err := net.Dial("tcp", raw.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(30 * time.Second))
			io.WriteString(c, tt.header+"GET / HTTP/1.1\r\nHost: a.test\r\nConnection: close\r\n\r\n")
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if tt.wantXFF == "" {
				if err == nil {
					t.Fatalf("answered %s, want the connection closed", resp.Status)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var e echoed
			if err := json.NewDecoder(resp.Body).Decode(&e); err != nil {
				t.Fatal(err)
			}
			if got := e.Headers.Get("X-Forwarded-For"); got != tt.wantXFF {
				t.Errorf("X-Forwarded-For %q, want %q", got, tt.wantXFF)
			}
		})
	}
}
