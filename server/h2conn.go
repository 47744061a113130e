package server

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"fmt"
	"net"
	"net/http"
	"strings"

	"golang.org/x/net/http/httpguts"
	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

const (
	// frameHeaderLen is the size of an HTTP/2 frame header (RFC 9113
	// §4.1), which x/net/http2 does not export.
	frameHeaderLen = 9
	// maxSettings is where golang.org/x/net/http2 stops reading a SETTINGS
	// frame and hangs up; the front leaves such frames alone.
	maxSettings = 100
	// h2InitialBuffer is what a connection's front buffers at first: one
	// frame header and a typical HEADERS frame. It grows only for larger
	// HEADERS or SETTINGS frames, up to the largest frame accepted.
	h2InitialBuffer = 4 << 10
)

// configureHTTP2 serves HTTP/2 on hs with golang.org/x/net/http2's server
// (the code net/http bundles, in a form whose ServeConn takes any
// net.Conn) behind an h2Front, for TLS connections that chose h2 by ALPN and
// for h2c prior-knowledge connections net/http hands over. Graceful
// shutdown and the limits of hs and hs.HTTP2 apply as with the bundled
// server. Should x/net/http2 refuse hs, the bundled server stays, and the
// reason is logged.
func (s *Server) configureHTTP2(hs *http.Server) {
	h2 := &http2.Server{}
	if err := http2.ConfigureServer(hs, h2); err != nil {
		s.cfg.Logger.Error("server: HTTP/2 without its conformance front", "error", fmt.Errorf("configure x/net/http2: %w", err))
		return
	}
	lim := h2Limits{
		maxFrame: int(s.cfg.MaxReadFrameSize),
		// x/net/http2's bound on a decoded string (serverConn.maxHeaderListSize).
		maxString: s.cfg.MaxHeaderBytes + 10*32,
	}
	serve := func(hs *http.Server, c net.Conn, h http.Handler, sawPreface bool) {
		// net/http passes its per-connection context on h, as it does
		// to its bundled server.
		var ctx context.Context
		if bc, ok := h.(interface{ BaseContext() context.Context }); ok {
			ctx = bc.BaseContext()
		}
		h2.ServeConn(newH2Front(c, sawPreface, lim), &http2.ServeConnOpts{
			Context:          ctx,
			Handler:          h,
			BaseConfig:       hs,
			SawClientPreface: sawPreface,
		})
	}
	hs.TLSNextProto["h2"] = func(hs *http.Server, c *tls.Conn, h http.Handler) {
		serve(hs, c, h, false)
	}
	// net/http hands h2c prior-knowledge connections, preface read, to
	// this key, as a *tls.Conn shell around the real connection.
	hs.TLSNextProto["unencrypted_http2"] = func(hs *http.Server, c *tls.Conn, h http.Handler) {
		u, ok := c.NetConn().(interface{ UnencryptedNetConn() net.Conn })
		if !ok {
			// net/http changed its hand-over; it closes the connection
			// when this returns.
			s.cfg.Logger.Error("server: h2c connection handed over without its net.Conn")
			return
		}
		serve(hs, u.UnencryptedNetConn(), h, true)
	}
}

// h2Limits bounds what an h2Front buffers and decodes; they match what the
// HTTP/2 server behind it accepts, so that the front never gives up on a
// frame the server would process.
type h2Limits struct {
	maxFrame  int // SETTINGS_MAX_FRAME_SIZE the server advertises
	maxString int // longest header field string the server decodes
}

// h2Front is the inbound side of an HTTP/2 connection as the server should
// see it. golang.org/x/net/http2 (like the copy in net/http) departs from
// RFC 9113 in two ways that h2spec checks and a handler cannot fix, and the
// front corrects both on the byte stream before the server's framer reads
// it, leaving everything else (and every other frame, byte for byte) to the
// server:
//
//   - §8.2.2: "An endpoint MUST NOT generate an HTTP/2 message containing
//     connection-specific header fields. ... Any message containing
//     connection-specific header fields MUST be treated as malformed", and
//     §8.1.1: "Malformed requests or responses that are detected MUST be
//     treated as a stream error of type PROTOCOL_ERROR". The server instead
//     runs a handler that answers 400. The front decodes every request
//     header block with its own HPACK decoder, fed the same bytes as the
//     server's so their dynamic tables stay equal, and when a block carries
//     Connection, Keep-Alive, Proxy-Connection, Transfer-Encoding, Upgrade
//     or a TE other than "trailers", appends a CONTINUATION frame with one
//     field the server's framer itself rejects (an uppercase name, §8.2.1)
//     as a stream error of type PROTOCOL_ERROR: the server resets the
//     stream, no handler runs. The appended field is a literal without
//     indexing (RFC 7541 §6.2.2), so the dynamic tables are untouched.
//   - §6.5.3: "The values in the SETTINGS frame MUST be processed in the
//     order they appear", so a frame may repeat a setting and the last
//     value wins. The server hangs up on any repeat. The front rewrites such
//     a frame to hold each setting once, with its last value, or with its
//     first invalid value so that the server still reports the error the
//     RFC names for it.
//
// Anything the front cannot follow (a frame larger than the server
// accepts, a header block out of sequence, an HPACK error) is the server's
// to reject; the front then stops changing anything, since its HPACK state
// may no longer match the server's, and passes the rest through.
//
// Only Read is the front's: one goroutine (the server's frame reader)
// calls it. Writes, deadlines and Close go to the connection.
type h2Front struct {
	net.Conn
	lim h2Limits

	in   []byte // bytes read from Conn, in[r:w] not yet handed on
	r, w int
	out  []byte // rewritten frames, handed on before anything else
	pass int    // bytes of the current unit to hand on unchanged

	preface bool // the client preface has been handed on
	bypass  bool // hand everything on unchanged from now on

	dec      *hpack.Decoder // nil once header checks are off
	inBlock  bool           // a header block awaits CONTINUATION
	blockID  uint32         // its stream
	teFields int            // TE fields in the current block
	bad      string         // why the current block is malformed
	// What the server's own framer will make of the current block: when
	// it rejects the block itself (a stream error, or 431 for a list too
	// long), the front adds nothing, since a CONTINUATION after such a
	// block is a connection error to it.
	sawRegular    bool
	listSize      int
	serverRejects bool
}

// h2TLSFront is an h2Front over TLS: it keeps the TLS state visible to the
// server (Request.TLS, and its check of the TLS version and cipher).
type h2TLSFront struct {
	*h2Front
	cs connectionStater
}

// ConnectionState returns the TLS state of the connection.
func (c h2TLSFront) ConnectionState() tls.ConnectionState { return c.cs.ConnectionState() }

// newH2Front returns c behind a front; sawPreface says the client preface
// was already read from c.
func newH2Front(c net.Conn, sawPreface bool, lim h2Limits) net.Conn {
	f := &h2Front{Conn: c, lim: lim, preface: sawPreface}
	// The server's decoder: SETTINGS_HEADER_TABLE_SIZE left at its
	// default, and the same bound on strings.
	f.dec = hpack.NewDecoder(4096, f.checkField)
	f.dec.SetMaxStringLength(lim.maxString)
	if cs, ok := c.(connectionStater); ok {
		return h2TLSFront{f, cs}
	}
	return f
}

// NetConn returns the connection behind the front.
func (c *h2Front) NetConn() net.Conn { return c.Conn }

// Read hands on the next bytes of the stream as the server should see it.
func (c *h2Front) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	for {
		if len(c.out) > 0 {
			n := copy(p, c.out)
			c.out = c.out[n:]
			return n, nil
		}
		if c.pass > 0 || c.bypass {
			if c.r < c.w {
				n := c.w - c.r
				if !c.bypass {
					n = min(n, c.pass)
				}
				n = copy(p, c.in[c.r:c.r+n])
				c.r += n
				if !c.bypass {
					c.pass -= n
				}
				return n, nil
			}
			c.shrink()
			if c.bypass {
				return c.Conn.Read(p)
			}
			// A frame's payload (DATA above all) goes straight from
			// the connection to the server.
			n, err := c.Conn.Read(p[:min(len(p), c.pass)])
			c.pass -= n
			return n, err
		}
		if err := c.next(); err != nil {
			return 0, err
		}
	}
}

// next reads the next unit (the preface or a frame) far enough to decide
// what to hand on, and sets pass or out.
func (c *h2Front) next() error {
	if !c.preface {
		c.preface = true
		c.pass = len(http2.ClientPreface) // the server checks it
		return nil
	}
	if err := c.fill(frameHeaderLen); err != nil {
		return c.failed(err)
	}
	h := c.in[c.r : c.r+frameHeaderLen]
	length := int(h[0])<<16 | int(h[1])<<8 | int(h[2])
	typ, flags := http2.FrameType(h[3]), http2.Flags(h[4])
	stream := binary.BigEndian.Uint32(h[5:]) & (1<<31 - 1)
	size := frameHeaderLen + length
	if length > c.lim.maxFrame {
		// The server answers FRAME_SIZE_ERROR and hangs up.
		c.bypass = true
		return nil
	}
	if c.inBlock && typ != http2.FrameContinuation {
		// §6.10: a connection error the server reports.
		c.stopChecks()
	}
	switch {
	case typ == http2.FrameSettings && flags&http2.FlagSettingsAck == 0 && length%6 == 0 && length/6 <= maxSettings:
		if err := c.fill(size); err != nil {
			return c.failed(err)
		}
		if out, ok := dedupSettings(c.in[c.r : c.r+size]); ok {
			c.out = out
			c.r += size
			return nil
		}
	case (typ == http2.FrameHeaders || typ == http2.FrameContinuation) && c.dec != nil:
		if err := c.fill(size); err != nil {
			return c.failed(err)
		}
		if out := c.checkHeaderFrame(c.in[c.r:c.r+size], typ, flags, stream); out != nil {
			c.out = out
			c.r += size
			return nil
		}
	case typ == http2.FramePushPromise:
		// Clients may not send it (§8.4); the server hangs up.
		c.stopChecks()
	}
	c.pass = size
	return nil
}

// checkHeaderFrame feeds a HEADERS or CONTINUATION frame's fragment to the
// decoder and returns the frames to hand on instead of frame when it ends
// a malformed block, or nil to hand frame on as it is.
func (c *h2Front) checkHeaderFrame(frame []byte, typ http2.FrameType, flags http2.Flags, stream uint32) []byte {
	payload := frame[frameHeaderLen:]
	if typ == http2.FrameHeaders {
		if c.inBlock || stream == 0 {
			c.stopChecks()
			return nil
		}
		pad := 0
		if flags&http2.FlagHeadersPadded != 0 {
			if len(payload) < 1 {
				c.stopChecks()
				return nil
			}
			pad = int(payload[0])
			payload = payload[1:]
		}
		if flags&http2.FlagHeadersPriority != 0 {
			if len(payload) < 5 {
				c.stopChecks()
				return nil
			}
			payload = payload[5:]
		}
		if pad > len(payload) {
			c.stopChecks()
			return nil
		}
		payload = payload[:len(payload)-pad]
		c.inBlock, c.blockID, c.teFields, c.bad = true, stream, 0, ""
		c.sawRegular, c.listSize, c.serverRejects = false, 0, false
	} else if !c.inBlock || stream != c.blockID {
		c.stopChecks()
		return nil
	}
	if _, err := c.dec.Write(payload); err != nil {
		c.stopChecks()
		return nil
	}
	if flags&http2.FlagHeadersEndHeaders == 0 {
		return nil
	}
	c.inBlock = false
	if err := c.dec.Close(); err != nil {
		c.stopChecks()
		return nil
	}
	if c.bad == "" || c.serverRejects {
		return nil
	}
	return appendMalformedMark(frame, stream)
}

// checkField is the decoder's emit function: it notes the fields RFC 9113
// §8.2.2 forbids, as x/net/http2's checkValidHTTP2RequestHeaders does.
func (c *h2Front) checkField(f hpack.HeaderField) {
	// The checks of x/net/http2's Framer.readMetaFrame, in its order.
	if !httpguts.ValidHeaderFieldValue(f.Value) {
		c.serverRejects = true
	}
	if strings.HasPrefix(f.Name, ":") {
		if c.sawRegular {
			c.serverRejects = true
		}
	} else {
		c.sawRegular = true
		if !validWireName(f.Name) {
			c.serverRejects = true
		}
	}
	if c.listSize += int(f.Size()); c.listSize > c.lim.maxString {
		c.serverRejects = true
	}
	switch f.Name {
	case "connection", "proxy-connection", "keep-alive", "transfer-encoding", "upgrade":
		c.bad = f.Name
	case "te":
		// §8.2.2: "The only exception to this is the TE header field,
		// which MAY be present in an HTTP/2 request; when it is, it
		// MUST NOT contain any value other than "trailers"."
		c.teFields++
		if c.teFields > 1 || (f.Value != "trailers" && f.Value != "") {
			c.bad = "te"
		}
	}
}

// validWireName reports whether name is a field name the server's framer
// accepts on the wire: a token without uppercase letters (RFC 9113
// §8.2.1).
func validWireName(name string) bool {
	if name == "" {
		return false
	}
	for _, r := range name {
		if !httpguts.IsTokenRune(r) || 'A' <= r && r <= 'Z' {
			return false
		}
	}
	return true
}

// malformedMark is the header block fragment appended to a malformed
// block: a literal field without indexing whose uppercase name the
// server's framer rejects with a stream error of type PROTOCOL_ERROR. The
// name says why, for whoever reads a frame log.
var malformedMark = func() []byte {
	const name, value = "Connection-Specific-Field", "malformed"
	b := []byte{0x00, byte(len(name))}
	b = append(b, name...)
	b = append(b, byte(len(value)))
	return append(b, value...)
}()

// appendMalformedMark returns frame, with END_HEADERS cleared, followed by
// a CONTINUATION frame that ends the block with malformedMark.
func appendMalformedMark(frame []byte, stream uint32) []byte {
	out := make([]byte, 0, len(frame)+frameHeaderLen+len(malformedMark))
	out = append(out, frame...)
	out[4] &^= byte(http2.FlagHeadersEndHeaders)
	n := len(malformedMark)
	out = append(out, byte(n>>16), byte(n>>8), byte(n), byte(http2.FrameContinuation), byte(http2.FlagContinuationEndHeaders))
	out = binary.BigEndian.AppendUint32(out, stream)
	return append(out, malformedMark...)
}

// failed is next's answer to a read error in the middle of a unit: the
// bytes already read are handed on as they are, and the error comes with
// the next read (a connection's read errors repeat: EOF, a closed
// connection, a passed deadline), so that the server sees what arrived.
func (c *h2Front) failed(err error) error {
	if c.r == c.w {
		return err
	}
	c.bypass = true
	return nil
}

// stopChecks turns header checks off for the rest of the connection: the
// server is about to fail it, or its HPACK state may differ from ours.
func (c *h2Front) stopChecks() {
	c.dec = nil
	c.inBlock = false
}

// fill reads until at least n bytes are buffered.
func (c *h2Front) fill(n int) error {
	if c.w-c.r >= n {
		return nil
	}
	if c.in == nil {
		c.in = make([]byte, max(h2InitialBuffer, n))
	}
	if c.r+n > len(c.in) {
		if n > len(c.in) {
			grown := make([]byte, n)
			c.w = copy(grown, c.in[c.r:c.w])
			c.in = grown
		} else {
			c.w = copy(c.in, c.in[c.r:c.w])
		}
		c.r = 0
	}
	for c.w-c.r < n {
		m, err := c.Conn.Read(c.in[c.w:])
		c.w += m
		if err != nil && c.w-c.r < n {
			return err
		}
	}
	return nil
}

// shrink drops a buffer grown for a large frame once it is empty, so that
// an idle connection holds h2InitialBuffer at most.
func (c *h2Front) shrink() {
	c.r, c.w = 0, 0
	if len(c.in) > h2InitialBuffer {
		c.in = nil
	}
}

// dedupSettings returns a SETTINGS frame holding each setting of frame
// once, and true, when frame repeats one. The value kept is the first
// invalid one (§6.5.2, http2.Setting.Valid), so the server reports it,
// else the last.
func dedupSettings(frame []byte) ([]byte, bool) {
	payload := frame[frameHeaderLen:]
	n := len(payload) / 6
	id := func(i int) uint16 { return binary.BigEndian.Uint16(payload[6*i:]) }
	val := func(i int) uint32 { return binary.BigEndian.Uint32(payload[6*i+2:]) }
	dup := false
	for i := 0; i < n && !dup; i++ {
		for j := i + 1; j < n; j++ {
			if id(i) == id(j) {
				dup = true
				break
			}
		}
	}
	if !dup {
		return nil, false
	}
	out := make([]byte, frameHeaderLen, len(frame))
	copy(out, frame[:frameHeaderLen])
	for i := 0; i < n; i++ {
		keep := -1 // the entry that stands for id(i), decided at its first occurrence
		first := true
		for j := 0; j < i; j++ {
			if id(j) == id(i) {
				first = false
				break
			}
		}
		if !first {
			continue
		}
		for j := i; j < n; j++ {
			if id(j) != id(i) {
				continue
			}
			keep = j
			if (http2.Setting{ID: http2.SettingID(id(j)), Val: val(j)}).Valid() != nil {
				break
			}
		}
		out = append(out, payload[6*keep:6*keep+6]...)
	}
	length := len(out) - frameHeaderLen
	out[0], out[1], out[2] = byte(length>>16), byte(length>>8), byte(length)
	return out, true
}
