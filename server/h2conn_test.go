package server

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// h2Reply is what the server answered on one stream.
type h2Reply struct {
	status  string // :status of the response, "" if none
	body    string
	reset   *http2.ErrCode // RST_STREAM on the stream
	goAway  *http2.ErrCode
	dataLen []int // lengths of the DATA frames
}

// h2Client is an h2Conn that reads responses, with the HPACK decoder
// their header blocks need across streams.
type h2Client struct {
	*h2Conn
	dec    *hpack.Decoder
	status string // of the block decoded last
}

func newH2Client(h *h2Conn) *h2Client {
	c := &h2Client{h2Conn: h}
	c.dec = hpack.NewDecoder(4096, func(f hpack.HeaderField) {
		if f.Name == ":status" {
			c.status = f.Value
		}
	})
	return c
}

// await reads frames until stream ends (END_STREAM or RST_STREAM), the
// connection ends, or the deadline passes.
func (h *h2Client) await(t *testing.T, stream uint32) h2Reply {
	t.Helper()
	var rep h2Reply
	dec := h.dec
	for {
		f, err := h.fr.ReadFrame()
		if err != nil {
			return rep
		}
		switch f := f.(type) {
		case *http2.HeadersFrame:
			// Decoded whatever the stream, to keep the table in step.
			h.status = ""
			if _, err := dec.Write(f.HeaderBlockFragment()); err != nil {
				t.Fatalf("response headers: %v", err)
			}
			if f.StreamID == stream && h.status != "" {
				rep.status = h.status
			}
			if f.StreamID == stream && f.StreamEnded() {
				return rep
			}
		case *http2.DataFrame:
			if f.StreamID != stream {
				continue
			}
			rep.body += string(f.Data())
			rep.dataLen = append(rep.dataLen, len(f.Data()))
			// Keep the stream window open.
			if len(f.Data()) > 0 {
				h.fr.WriteWindowUpdate(stream, uint32(len(f.Data())))
			}
			if f.StreamEnded() {
				return rep
			}
		case *http2.RSTStreamFrame:
			if f.StreamID == stream {
				code := f.ErrCode
				rep.reset = &code
				return rep
			}
		case *http2.GoAwayFrame:
			code := f.ErrCode
			rep.goAway = &code
			return rep
		case *http2.SettingsFrame:
			if !f.IsAck() {
				h.fr.WriteSettingsAck()
			}
		}
	}
}

// dialH2C opens a plain connection speaking HTTP/2 with prior knowledge,
// set up as dialH2's.
func dialH2C(t *testing.T, r *running) *h2Conn {
	t.Helper()
	c, err := net.Dial("tcp", r.srv.HTTPAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return startH2(t, c)
}

// TestH2ConnectionSpecificFields checks RFC 9113 §8.2.2 over TLS and h2c:
// a request carrying a connection-specific field is malformed, reset with
// PROTOCOL_ERROR before any handler sees it, and the connection goes on:
// the next request, which reuses the fields the bad block put in the HPACK
// dynamic table, is served.
func TestH2ConnectionSpecificFields(t *testing.T) {
	var handled atomic.Int32
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		handled.Add(1)
		fmt.Fprintf(w, "te=%q", r.Header.Get("Te"))
	})
	tlsRun := start(t, Config{Handler: h}, false, true)
	h2cRun := start(t, Config{Handler: h, H2C: true}, true, false)
	dials := map[string]func(*testing.T) *h2Client{
		"tls": func(t *testing.T) *h2Client { return newH2Client(dialH2(t, tlsRun)) },
		"h2c": func(t *testing.T) *h2Client { return newH2Client(dialH2C(t, h2cRun)) },
	}
	f := func(name, value string) hpack.HeaderField { return hpack.HeaderField{Name: name, Value: value} }
	var big []hpack.HeaderField
	for i := range 18 {
		big = append(big, f(fmt.Sprintf("x-big-%d", i), strings.Repeat("b", 4000)))
	}
	tests := []struct {
		name   string
		fields []hpack.HeaderField
		want   string // "reset" (RST_STREAM PROTOCOL_ERROR, no handler) or the status
	}{
		{"connection", []hpack.HeaderField{f("connection", "keep-alive")}, "reset"},
		{"keep-alive", []hpack.HeaderField{f("keep-alive", "timeout=5")}, "reset"},
		{"proxy-connection", []hpack.HeaderField{f("proxy-connection", "close")}, "reset"},
		{"transfer-encoding", []hpack.HeaderField{f("transfer-encoding", "chunked")}, "reset"},
		{"upgrade", []hpack.HeaderField{f("upgrade", "websocket")}, "reset"},
		{"te gzip", []hpack.HeaderField{f("te", "gzip")}, "reset"},
		{"te twice", []hpack.HeaderField{f("te", "trailers"), f("te", "trailers")}, "reset"},
		{"te trailers", []hpack.HeaderField{f("te", "trailers")}, "200"},
		{"ordinary fields", []hpack.HeaderField{f("accept", "*/*"), f("x-connection", "close")}, "200"},
		// Blocks the server rejects by itself keep its answer: a stream
		// error, or 431, never the whole connection.
		{"connection and an invalid value", []hpack.HeaderField{f("x-bad", "a\x01b"), f("connection", "close")}, "reset"},
		{"connection in a list too long", append(big, f("connection", "close")), "431"},
	}
	for transport, dial := range dials {
		for _, tt := range tests {
			t.Run(transport+"/"+tt.name, func(t *testing.T) {
				c := dial(t)
				before := handled.Load()
				// The first block is split over HEADERS and
				// CONTINUATION frames, the bad field in the last.
				blk := c.block("/first", tt.fields...)
				cut := min(len(blk)/2, 8<<10)
				if err := c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: blk[:cut], EndStream: true}); err != nil {
					t.Fatal(err)
				}
				for rest := blk[cut:]; len(rest) > 0; {
					n := min(len(rest), 8<<10)
					if err := c.fr.WriteContinuation(1, n == len(rest), rest[:n]); err != nil {
						t.Fatal(err)
					}
					rest = rest[n:]
				}
				rep := c.await(t, 1)
				if rep.goAway != nil {
					t.Fatalf("stream 1: %+v: the connection ended", rep)
				}
				if tt.want == "reset" {
					if rep.reset == nil || *rep.reset != http2.ErrCodeProtocol {
						t.Fatalf("stream 1: %+v, want RST_STREAM PROTOCOL_ERROR", rep)
					}
					if n := handled.Load() - before; n != 0 {
						t.Fatalf("the handler ran %d times for a malformed request", n)
					}
				} else if rep.status != tt.want {
					t.Fatalf("stream 1: %+v, want %s", rep, tt.want)
				}
				// The same fields again: encoded from the dynamic
				// table the first block filled.
				if err := c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 3, BlockFragment: c.block("/second"), EndStream: true, EndHeaders: true}); err != nil {
					t.Fatal(err)
				}
				if rep := c.await(t, 3); rep.status != "200" || !strings.HasPrefix(rep.body, "te=") {
					t.Fatalf("stream 3 after the first: %+v, want 200", rep)
				}
			})
		}
	}
}

// settingsFrame returns a raw SETTINGS frame with the given id/value pairs,
// repeats allowed (the framer's WriteSettings would write them as given
// too, but this keeps the test independent of it).
func settingsFrame(pairs ...uint32) []byte {
	b := make([]byte, 9, 9+3*len(pairs))
	for i := 0; i+1 < len(pairs); i += 2 {
		b = binary.BigEndian.AppendUint16(b, uint16(pairs[i]))
		b = binary.BigEndian.AppendUint32(b, pairs[i+1])
	}
	n := len(b) - 9
	b[0], b[1], b[2], b[3] = byte(n>>16), byte(n>>8), byte(n), byte(http2.FrameSettings)
	return b
}

// TestH2RepeatedSettings checks RFC 9113 §6.5.3: settings are processed in
// order, so the last of repeated values wins, and an invalid value is an
// error even when a valid one follows.
func TestH2RepeatedSettings(t *testing.T) {
	big := strings.Repeat("x", 100)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, big) })
	r := start(t, Config{Handler: h}, false, true)
	const window, frameSize = uint32(http2.SettingInitialWindowSize), uint32(http2.SettingMaxFrameSize)
	tests := []struct {
		name     string
		settings []byte
		goAway   http2.ErrCode // 0: the request is served
		maxData  int           // largest DATA frame allowed
	}{
		{"window 100 then 1", settingsFrame(window, 100, window, 1), 0, 1},
		{"window 1 then 100", settingsFrame(window, 1, frameSize, 16384, window, 100), 0, 100},
		{"invalid frame size then valid", settingsFrame(frameSize, 1, frameSize, 16384), http2.ErrCodeProtocol, 0},
		{"invalid window then valid", settingsFrame(window, 1<<31, window, 100), http2.ErrCodeFlowControl, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := newH2Client(dialH2(t, r))
			if _, err := c.c.Write(tt.settings); err != nil {
				t.Fatal(err)
			}
			if err := c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: c.block("/"), EndStream: true, EndHeaders: true}); err != nil {
				t.Fatal(err)
			}
			rep := c.await(t, 1)
			if tt.goAway != 0 {
				if rep.goAway == nil || *rep.goAway != tt.goAway {
					t.Fatalf("%+v, want GOAWAY %v", rep, tt.goAway)
				}
				return
			}
			if rep.status != "200" || rep.body != big {
				t.Fatalf("%+v, want 200 and %d bytes", rep, len(big))
			}
			for _, n := range rep.dataLen {
				if n > tt.maxData {
					t.Fatalf("DATA frames %v, want none above the window of %d", rep.dataLen, tt.maxData)
				}
			}
		})
	}
}

// TestDedupSettings pins down the rewriting itself.
func TestDedupSettings(t *testing.T) {
	const push, window, frameSize = 2, 4, 5
	tests := []struct {
		name string
		in   []byte
		want []byte // nil: left alone
	}{
		{"no repeat", settingsFrame(window, 1, push, 0), nil},
		{"empty", settingsFrame(), nil},
		{"last wins", settingsFrame(window, 1, push, 0, window, 2), settingsFrame(window, 2, push, 0)},
		{"three times", settingsFrame(push, 0, push, 1, push, 0), settingsFrame(push, 0)},
		{"first invalid kept", settingsFrame(frameSize, 1, frameSize, 16384), settingsFrame(frameSize, 1)},
		{"later invalid kept", settingsFrame(push, 0, push, 7, push, 1), settingsFrame(push, 7)},
		{"unknown settings too", settingsFrame(0x99, 1, 0x99, 2), settingsFrame(0x99, 2)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := dedupSettings(tt.in)
			if ok != (tt.want != nil) || !bytes.Equal(got, tt.want) {
				t.Fatalf("dedupSettings(%x) = %x, %v; want %x", tt.in, got, ok, tt.want)
			}
		})
	}
}

// FuzzH2Front feeds arbitrary bytes after the preface through the front:
// it must not panic, must hand on the stream unchanged except for
// rewritten SETTINGS frames and appended CONTINUATION frames (so never
// fewer bytes of other frames), and must not buffer more than one frame.
func FuzzH2Front(f *testing.F) {
	var seed bytes.Buffer
	enc := hpack.NewEncoder(&seed)
	enc.WriteField(hpack.HeaderField{Name: ":path", Value: "/"})
	enc.WriteField(hpack.HeaderField{Name: "connection", Value: "close"})
	blk := seed.Bytes()
	headers := append([]byte{0, 0, byte(len(blk)), byte(http2.FrameHeaders), byte(http2.FlagHeadersEndHeaders), 0, 0, 0, 1}, blk...)
	f.Add(headers)
	f.Add(settingsFrame(4, 1, 4, 2))
	f.Add(append(append([]byte{}, headers[:4]...), 0, 0, 0, 0, 1))
	f.Add([]byte{0, 0, 1, byte(http2.FrameContinuation), byte(http2.FlagHeadersEndHeaders), 0, 0, 0, 1, 0x80})
	lim := h2Limits{maxFrame: 16 << 10, maxString: 64 << 10}
	f.Fuzz(func(t *testing.T, data []byte) {
		client, server := net.Pipe()
		go func() {
			client.Write([]byte(http2.ClientPreface))
			client.Write(data)
			client.Close()
		}()
		fr := newH2Front(server, false, lim).(*h2Front)
		out, _ := io.ReadAll(fr)
		server.Close()
		if !bytes.HasPrefix(out, []byte(http2.ClientPreface)) {
			t.Fatalf("preface not handed on first: %q", out[:min(len(out), 24)])
		}
		if len(fr.in) > max(h2InitialBuffer, frameHeaderLen+lim.maxFrame) {
			t.Fatalf("buffered %d bytes", len(fr.in))
		}
		if len(out) < len(http2.ClientPreface)+len(data) && !bytes.Contains(data, []byte{byte(http2.FrameSettings)}) {
			t.Fatalf("handed on %d bytes of %d without a SETTINGS frame to shorten", len(out), len(http2.ClientPreface)+len(data))
		}
	})
}
