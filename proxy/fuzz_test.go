package proxy

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"io"
	"net"
	"net/netip"
	"testing"
	"time"
)

// countingReader counts the bytes its reader hands out, to check how far
// the parser reads into a connection.
type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	c.n += n
	return n, err
}

// ppSeeds are the seed inputs of FuzzProxyProtocol: valid headers of both
// versions, each followed by application data, and near misses.
func ppSeeds() [][]byte {
	v2 := func(verCmd, fam byte, body []byte) []byte {
		b := append(append([]byte{}, v2Sig...), verCmd, fam, 0, 0)
		binary.BigEndian.PutUint16(b[14:], uint16(len(body)))
		return append(b, body...)
	}
	v4body := []byte{192, 0, 2, 1, 198, 51, 100, 7, 0xd4, 0x31, 0x01, 0xbb}
	v6body := append(append(netip.MustParseAddr("2001:db8::1").AsSlice(), netip.MustParseAddr("2001:db8::2").AsSlice()...), 0xd4, 0x31, 0x01, 0xbb)
	tlv := []byte{0x01, 0x00, 0x02, 'h', '2', 0x04, 0x00, 0x00} // ALPN, NOOP
	get := []byte("GET / HTTP/1.1\r\nHost: a\r\n\r\n")
	return [][]byte{
		[]byte("PROXY TCP4 192.0.2.1 198.51.100.7 54321 443\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n"),
		[]byte("PROXY TCP6 2001:db8::1 2001:db8::2 54321 443\r\n"),
		[]byte("PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n"),
		[]byte("PROXY UNKNOWN\r\n\x16\x03\x01"),
		[]byte("PROXY UNKNOWN ffff:: ffff:: 1 2\r\n"),
		[]byte("PROXY TCP4 192.0.2.1 198.51.100.7 54321\r\n"),
		[]byte("PROXY TCP4 2001:db8::1 198.51.100.7 1 2\r\n"),
		[]byte("PROXY TCP4 192.0.2.1 198.51.100.7 65536 443\r\n"),
		[]byte("PROXY TCP4 192.0.2.1 198.51.100.7 1 2\n"),
		[]byte("PROXY TCP4 192.0.2.1 198.51.100.7 1 2"),
		[]byte("PROXY " + string(bytes.Repeat([]byte("x"), 300)) + "\r\n"),
		[]byte("POST / HTTP/1.1\r\nHost: a\r\n\r\n"),
		[]byte("PROX"),
		get,
		{},
		append(v2(0x21, 0x11, v4body), get...),
		v2(0x21, 0x21, v6body),
		v2(0x21, 0x11, append(append([]byte{}, v4body...), tlv...)),
		v2(0x20, 0x00, nil),
		v2(0x21, 0x31, make([]byte, 216)),                          // AF_UNIX
		v2(0x21, 0x11, v4body[:8]),                                 // short
		v2(0x11, 0x11, v4body),                                     // version 1 in a v2 header
		v2(0x22, 0x11, v4body),                                     // unknown command
		append(append([]byte{}, v2Sig...), 0x21, 0x11, 0xff, 0xff), // 64 KiB body announced
		append(append([]byte{}, v2Sig...), 0x21, 0x11, 0x00),       // cut in the fixed part
		v2Sig[:8],
		[]byte("\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03"), // a TLS ClientHello
	}
}

// FuzzProxyProtocol feeds arbitrary bytes to the PROXY header parser, as
// the start of a connection from a trusted balancer, and checks that it
// never panics, never consumes more than a header's bounds (107 bytes for
// version 1, 16 plus maxV2Body for version 2), leaves everything after the
// header to the application (and everything when there is no header), and
// that the addresses it accepts survive being encoded again by
// ProxyHeader, in both versions. The same bytes also pick addresses to
// encode and parse back.
func FuzzProxyProtocol(f *testing.F) {
	for _, s := range ppSeeds() {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		cr := &countingReader{r: bytes.NewReader(data)}
		br := bufio.NewReaderSize(cr, 256) // as ppConn does
		src, dst, err := readProxyHeader(br)
		consumed := cr.n - br.Buffered()
		// bufio reads ahead at most its buffer size past what it returns.
		if cr.n > 16+maxV2Body+256 {
			t.Fatalf("read %d bytes of the connection, more than a header and a buffer", cr.n)
		}
		if err != nil {
			if src != nil || dst != nil {
				t.Fatalf("error %v with addresses %v %v", err, src, dst)
			}
			return // the connection is closed: what was consumed no longer matters
		}
		switch {
		case bytes.HasPrefix(data, []byte("PROXY ")):
			if consumed > maxV1 || !bytes.HasSuffix(data[:consumed], []byte("\r\n")) {
				t.Fatalf("version 1 header of %d bytes %q", consumed, data[:consumed])
			}
		case bytes.HasPrefix(data, v2Sig) && consumed > 0:
			if n := int(binary.BigEndian.Uint16(data[14:16])); consumed != 16+n || n > maxV2Body {
				t.Fatalf("version 2 header announcing %d bytes consumed %d", n, consumed)
			}
		default:
			if consumed != 0 {
				t.Fatalf("no header, yet %d bytes consumed: %q", consumed, data[:consumed])
			}
		}
		rest, _ := io.ReadAll(br)
		if !bytes.Equal(rest, data[consumed:]) {
			t.Fatalf("after the header the application reads %q, want %q", rest, data[consumed:])
		}
		if (src == nil) != (dst == nil) {
			t.Fatalf("one address without the other: %v %v", src, dst)
		}
		if src != nil {
			s, d := src.(*net.TCPAddr).AddrPort(), dst.(*net.TCPAddr).AddrPort()
			checkPPAddr(t, s)
			checkPPAddr(t, d)
			roundTrip(t, s, d)
		}
		viaConn(t, data, consumed, src)

		// Addresses picked by the input, encoded and parsed back.
		if len(data) >= 36 {
			var s, d netip.Addr
			if data[0]&1 == 0 {
				s, d = netip.AddrFrom4([4]byte(data[0:4])), netip.AddrFrom4([4]byte(data[4:8]))
			} else {
				s, d = netip.AddrFrom16([16]byte(data[0:16])), netip.AddrFrom16([16]byte(data[16:32]))
			}
			ports := binary.BigEndian.Uint32(data[32:36])
			roundTrip(t, netip.AddrPortFrom(s.Unmap(), uint16(ports>>16)), netip.AddrPortFrom(d.Unmap(), uint16(ports)))
		}
	})
}

// checkPPAddr checks an address from a header is one a connection could
// have: valid, unmapped, without an IPv6 zone (which no header can
// carry and which would end up in logs and X-Forwarded-For).
func checkPPAddr(t *testing.T, a netip.AddrPort) {
	t.Helper()
	if !a.Addr().IsValid() || a.Addr().Is4In6() || a.Addr().Zone() != "" {
		t.Fatalf("header gave address %v", a)
	}
}

// roundTrip encodes s and d with ProxyHeader in both versions, parses the
// result and wants the same addresses back, or none when their families
// differ (ProxyHeader's documented unknown source).
func roundTrip(t *testing.T, s, d netip.AddrPort) {
	t.Helper()
	for _, v := range []string{"v1", "v2"} {
		hdr, err := ProxyHeader(v, net.TCPAddrFromAddrPort(s), net.TCPAddrFromAddrPort(d))
		if err != nil {
			t.Fatalf("ProxyHeader(%s, %v, %v): %v", v, s, d, err)
		}
		br := bufio.NewReaderSize(bytes.NewReader(append(hdr, "GET"...)), 256)
		gs, gd, err := readProxyHeader(br)
		if err != nil {
			t.Fatalf("%s header %q for %v %v rejected: %v", v, hdr, s, d, err)
		}
		if rest, _ := io.ReadAll(br); string(rest) != "GET" {
			t.Fatalf("%s header %q: application reads %q after it", v, hdr, rest)
		}
		if s.Addr().Is4() != d.Addr().Is4() {
			if gs != nil || gd != nil {
				t.Fatalf("%s header %q for mixed families %v %v announced %v %v", v, hdr, s, d, gs, gd)
			}
			continue
		}
		if gs == nil || gd == nil || gs.(*net.TCPAddr).AddrPort() != s || gd.(*net.TCPAddr).AddrPort() != d {
			t.Fatalf("%s header %q for %v %v parsed as %v %v", v, hdr, s, d, gs, gd)
		}
	}
}

// viaConn replays data on a trusted ppConn over a net.Pipe, the way a
// listener sees it, and wants the same addresses and application bytes as
// the parser gave.
func viaConn(t *testing.T, data []byte, consumed int, src net.Addr) {
	t.Helper()
	client, server := net.Pipe()
	defer server.Close()
	go func() {
		client.SetWriteDeadline(time.Now().Add(10 * time.Second))
		client.Write(data)
		client.Close()
	}()
	c := &ppConn{Conn: server, trusted: true, timeout: 10 * time.Second}
	if src != nil && c.RemoteAddr().String() != src.String() {
		t.Fatalf("connection RemoteAddr %v, header announced %v", c.RemoteAddr(), src)
	}
	rest, err := io.ReadAll(c)
	if err != nil {
		t.Fatalf("reading the connection: %v", err)
	}
	if !bytes.Equal(rest, data[consumed:]) {
		t.Fatalf("connection reads %q after the header, want %q", rest, data[consumed:])
	}
}
