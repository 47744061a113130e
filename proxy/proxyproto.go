package proxy

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"time"
)

// PROXY protocol (HAProxy's, versions 1 and 2): a header at the start of a
// TCP connection saying which client address and port the connection
// relays, so that a server behind a TCP-level balancer still sees its
// clients' addresses.

// v2Sig starts every version 2 header.
var v2Sig = []byte("\r\n\r\n\x00\r\nQUIT\n")

const (
	// maxV1 is the longest version 1 header, CRLF included (the spec's
	// bound).
	maxV1 = 107
	// maxV2Body bounds the address and TLV part of a version 2 header we
	// accept: addresses take at most 216 bytes, TLVs of front balancers
	// (AWS, GCP) a few hundred.
	maxV2Body = 4096
	// DefaultProxyHeaderTimeout bounds the wait for a PROXY header from a
	// trusted balancer.
	DefaultProxyHeaderTimeout = 10 * time.Second
)

// ProxyHeader returns the PROXY protocol header (version "v1" or "v2")
// announcing a connection from src to dst. When either address is not a
// TCP address of the same family (or is nil, as for a health check that
// relays no client), it announces an unknown source: "PROXY UNKNOWN" in
// version 1, the LOCAL command in version 2, and the backend uses the
// connection's own addresses.
func ProxyHeader(version string, src, dst net.Addr) ([]byte, error) {
	s, sok := addrPort(src)
	d, dok := addrPort(dst)
	known := sok && dok && s.Addr().Is4() == d.Addr().Is4()
	switch version {
	case "v1":
		if !known {
			return []byte("PROXY UNKNOWN\r\n"), nil
		}
		fam := "TCP4"
		if !s.Addr().Is4() {
			fam = "TCP6"
		}
		return fmt.Appendf(nil, "PROXY %s %s %s %d %d\r\n", fam, s.Addr(), d.Addr(), s.Port(), d.Port()), nil
	case "v2":
		b := bytes.NewBuffer(make([]byte, 0, 16+36))
		b.Write(v2Sig)
		if !known {
			b.Write([]byte{0x20, 0x00, 0, 0}) // LOCAL, UNSPEC, no addresses
			return b.Bytes(), nil
		}
		if s.Addr().Is4() {
			b.Write([]byte{0x21, 0x11, 0, 12}) // PROXY, TCP over IPv4
			b.Write(s.Addr().AsSlice())
			b.Write(d.Addr().AsSlice())
		} else {
			b.Write([]byte{0x21, 0x21, 0, 36}) // PROXY, TCP over IPv6
			b.Write(s.Addr().AsSlice())
			b.Write(d.Addr().AsSlice())
		}
		binary.Write(b, binary.BigEndian, s.Port())
		binary.Write(b, binary.BigEndian, d.Port())
		return b.Bytes(), nil
	}
	return nil, fmt.Errorf("proxy protocol %q: want v1 or v2", version)
}

// addrPort turns a TCP address into a netip.AddrPort, IPv4-mapped IPv6
// addresses unmapped.
func addrPort(a net.Addr) (netip.AddrPort, bool) {
	switch a := a.(type) {
	case *net.TCPAddr:
		ap := a.AddrPort()
		return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), ap.Addr().IsValid()
	case nil:
		return netip.AddrPort{}, false
	}
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return netip.AddrPort{}, false
	}
	return netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port()), true
}

// clientAddrs are the addresses of the client connection a request came
// on, carried in the request context to the backend dial.
type clientAddrs struct{ src, dst net.Addr }

type clientAddrsKey struct{}

// proxyProtocolDial wraps dial to write the PROXY header of the client
// connection in ctx (or an unknown-source one) on every new connection.
func proxyProtocolDial(version string, dial func(ctx context.Context, network, addr string) (net.Conn, error)) func(ctx context.Context, network, addr string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		ca, _ := ctx.Value(clientAddrsKey{}).(clientAddrs)
		hdr, err := ProxyHeader(version, ca.src, ca.dst)
		if err == nil {
			if dl, ok := ctx.Deadline(); ok {
				c.SetWriteDeadline(dl)
			}
			_, err = c.Write(hdr)
			c.SetWriteDeadline(time.Time{})
		}
		if err != nil {
			c.Close()
			return nil, fmt.Errorf("proxy protocol header to %s: %w", addr, err)
		}
		return c, nil
	}
}

// ErrUntrustedProxyHeader closes connections that start with a PROXY
// header but do not come from a trusted balancer: honouring it would let
// anyone choose the address the backends see.
var ErrUntrustedProxyHeader = errors.New("proxy: PROXY protocol header from an untrusted address")

// ProxyProtocolListener wraps ln for use behind TCP balancers that send
// PROXY protocol headers: a connection from an address in trusted may
// start with a version 1 or 2 header, whose source and destination then
// become the connection's RemoteAddr and LocalAddr (so access logs,
// X-Forwarded-For and PROXY headers to backends carry the real client).
// The header is read on the connection's first Read or RemoteAddr call,
// within timeout (zero: DefaultProxyHeaderTimeout), never in Accept, so a
// silent client holds up no one. A connection from any other address that
// starts with a header is closed (ErrUntrustedProxyHeader); a trusted one
// without a header is served as it is.
func ProxyProtocolListener(ln net.Listener, trusted []netip.Prefix, timeout time.Duration) net.Listener {
	if timeout <= 0 {
		timeout = DefaultProxyHeaderTimeout
	}
	return &ppListener{Listener: ln, trusted: trusted, timeout: timeout}
}

type ppListener struct {
	net.Listener
	trusted []netip.Prefix
	timeout time.Duration
}

func (l *ppListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	pc := &ppConn{Conn: c, timeout: l.timeout}
	if ap, ok := addrPort(c.RemoteAddr()); ok {
		for _, p := range l.trusted {
			if p.Contains(ap.Addr()) {
				pc.trusted = true
				break
			}
		}
	}
	return pc, nil
}

// ppConn is a connection that may start with a PROXY header.
type ppConn struct {
	net.Conn
	trusted bool
	timeout time.Duration

	once          sync.Once
	err           error
	br            *bufio.Reader // trusted: what was read past the header
	remote, local net.Addr      // from the header; nil: the socket's
	checked       bool          // untrusted: first bytes checked

	mu sync.Mutex
	rd time.Time // read deadline the user of the connection set
}

func (c *ppConn) SetDeadline(t time.Time) error {
	c.mu.Lock()
	c.rd = t
	c.mu.Unlock()
	return c.Conn.SetDeadline(t)
}

func (c *ppConn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	c.rd = t
	c.mu.Unlock()
	return c.Conn.SetReadDeadline(t)
}

// init reads the header of a trusted connection, once.
func (c *ppConn) init() {
	c.once.Do(func() {
		if !c.trusted {
			return
		}
		c.mu.Lock()
		user := c.rd
		c.mu.Unlock()
		dl := time.Now().Add(c.timeout)
		if !user.IsZero() && user.Before(dl) {
			dl = user
		}
		c.Conn.SetReadDeadline(dl)
		c.br = bufio.NewReaderSize(c.Conn, 256)
		c.remote, c.local, c.err = readProxyHeader(c.br)
		c.Conn.SetReadDeadline(user)
		if c.err != nil {
			c.Conn.Close()
		}
	})
}

func (c *ppConn) Read(b []byte) (int, error) {
	c.init()
	if c.err != nil {
		return 0, c.err
	}
	if c.br != nil {
		if c.br.Buffered() > 0 {
			return c.br.Read(b)
		}
		c.br = nil
	}
	if c.trusted || c.checked {
		return c.Conn.Read(b)
	}
	n, err := c.Conn.Read(b)
	c.checked = true
	if k := min(n, len(v2Sig)); k >= 6 && (bytes.HasPrefix(b[:k], []byte("PROXY ")) || bytes.Equal(b[:k], v2Sig[:k])) {
		c.err = ErrUntrustedProxyHeader
		c.Conn.Close()
		return 0, c.err
	}
	return n, err
}

func (c *ppConn) RemoteAddr() net.Addr {
	c.init()
	if c.remote != nil {
		return c.remote
	}
	return c.Conn.RemoteAddr()
}

func (c *ppConn) LocalAddr() net.Addr {
	c.init()
	if c.local != nil {
		return c.local
	}
	return c.Conn.LocalAddr()
}

// readProxyHeader reads an optional PROXY header from br and returns the
// addresses it announces; nil addresses when there is no header, or it
// announces none (UNKNOWN, LOCAL, UNSPEC).
func readProxyHeader(br *bufio.Reader) (src, dst net.Addr, err error) {
	first, err := br.Peek(1)
	if err != nil {
		return nil, nil, fmt.Errorf("proxy: PROXY header: %w", err)
	}
	switch first[0] {
	case 'P':
		if p, err := br.Peek(6); err != nil || string(p) != "PROXY " {
			return nil, nil, nil // an HTTP method such as POST
		}
		line, err := br.ReadSlice('\n')
		if err != nil || len(line) > maxV1 || !bytes.HasSuffix(line, []byte("\r\n")) {
			return nil, nil, errors.New("proxy: PROXY v1 header: longer than 107 bytes or not ended by CRLF")
		}
		return parseV1(string(line[:len(line)-2]))
	case '\r':
		p, err := br.Peek(16)
		if err != nil || !bytes.Equal(p[:12], v2Sig) {
			return nil, nil, nil
		}
		verCmd, fam, n := p[12], p[13], int(binary.BigEndian.Uint16(p[14:16]))
		if verCmd>>4 != 2 || verCmd&0xf > 1 {
			return nil, nil, fmt.Errorf("proxy: PROXY v2 header: bad version/command byte %#x", verCmd)
		}
		if n > maxV2Body {
			return nil, nil, fmt.Errorf("proxy: PROXY v2 header: %d bytes of addresses and TLVs, more than %d", n, maxV2Body)
		}
		br.Discard(16)
		body := make([]byte, n)
		if _, err := io.ReadFull(br, body); err != nil {
			return nil, nil, fmt.Errorf("proxy: PROXY v2 header: %w", err)
		}
		if verCmd&0xf == 0 { // LOCAL: the balancer's own connection
			return nil, nil, nil
		}
		switch fam >> 4 {
		case 1:
			if n < 12 {
				return nil, nil, errors.New("proxy: PROXY v2 header: short IPv4 addresses")
			}
			s := netip.AddrFrom4([4]byte(body[0:4]))
			d := netip.AddrFrom4([4]byte(body[4:8]))
			return tcpAddr(s, binary.BigEndian.Uint16(body[8:10])), tcpAddr(d, binary.BigEndian.Uint16(body[10:12])), nil
		case 2:
			if n < 36 {
				return nil, nil, errors.New("proxy: PROXY v2 header: short IPv6 addresses")
			}
			s := netip.AddrFrom16([16]byte(body[0:16]))
			d := netip.AddrFrom16([16]byte(body[16:32]))
			return tcpAddr(s, binary.BigEndian.Uint16(body[32:34])), tcpAddr(d, binary.BigEndian.Uint16(body[34:36])), nil
		}
		return nil, nil, nil // UNSPEC or Unix sockets: keep the socket's
	}
	return nil, nil, nil
}

func tcpAddr(a netip.Addr, port uint16) *net.TCPAddr {
	return net.TCPAddrFromAddrPort(netip.AddrPortFrom(a.Unmap(), port))
}

// parseV1 parses a version 1 header line without its CRLF.
func parseV1(line string) (src, dst net.Addr, err error) {
	f := strings.Split(line, " ")
	if len(f) >= 2 && f[1] == "UNKNOWN" {
		return nil, nil, nil
	}
	bad := func(why string) (net.Addr, net.Addr, error) {
		return nil, nil, fmt.Errorf("proxy: PROXY v1 header %q: %s", line, why)
	}
	if len(f) != 6 || (f[1] != "TCP4" && f[1] != "TCP6") {
		return bad("want PROXY TCP4|TCP6 SRC DST SPORT DPORT")
	}
	s, err1 := netip.ParseAddr(f[2])
	d, err2 := netip.ParseAddr(f[3])
	sp, err3 := strconv.ParseUint(f[4], 10, 16)
	dp, err4 := strconv.ParseUint(f[5], 10, 16)
	if err1 != nil || err2 != nil || err3 != nil || err4 != nil {
		return bad("invalid address or port")
	}
	if s.Is4() != (f[1] == "TCP4") || d.Is4() != (f[1] == "TCP4") {
		return bad("address family does not match " + f[1])
	}
	if s.Zone() != "" || d.Zone() != "" {
		// netip accepts "fe80::1%anything": the zone would reach logs
		// and X-Forwarded-For as a client address.
		return bad("IPv6 zone not allowed")
	}
	return tcpAddr(s, uint16(sp)), tcpAddr(d, uint16(dp)), nil
}
