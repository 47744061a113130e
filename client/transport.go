package client

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"sync"
	"time"
)

// Mode chooses the HTTP versions a Transport speaks, like curl's --http1.1,
// --http2 and --http2-prior-knowledge.
type Mode int

const (
	// ModeAuto offers h2 and http/1.1 by ALPN over TLS and speaks what the
	// server picks; clear text is HTTP/1.1 (there is no Upgrade to h2c,
	// as in paf's OCaml client). It is the zero value.
	ModeAuto Mode = iota
	// ModeHTTP1 speaks HTTP/1.1 only, offering just http/1.1 by ALPN.
	ModeHTTP1
	// ModeHTTP2PriorKnowledge speaks HTTP/2 only: h2c with prior knowledge
	// in clear text, and ALPN h2 alone over TLS.
	ModeHTTP2PriorKnowledge
)

// String names the mode as curl's flag does.
func (m Mode) String() string {
	switch m {
	case ModeHTTP1:
		return "http1.1"
	case ModeHTTP2PriorKnowledge:
		return "http2-prior-knowledge"
	default:
		return "http2"
	}
}

// Transport is an http.RoundTripper that connects with a Dialer, so any
// net/http client gets paf's dialing (the Stack, Happy Eyeballs, unix
// sockets) and authentication. It serves http://, https:// and h2c://
// URLs; h2c:// is http:// spoken as HTTP/2 with prior knowledge whatever
// the Mode.
//
// Unlike http.DefaultTransport it neither asks for compression nor decodes
// it, and uses no proxy: the bytes the server sends are the bytes the
// caller reads, as with curl.
//
// Its zero value is ready to use. Fields must not change after the first
// request. A Transport caches connections; use one per configuration and
// call CloseIdleConnections when done.
type Transport struct {
	// Dialer opens connections; nil means the zero Dialer. Its NextProtos
	// is replaced according to Mode.
	Dialer *Dialer

	// Mode picks the HTTP versions.
	Mode Mode

	// UnixSocket, if set, is the path of the unix socket every request is
	// sent to, as with curl's --unix-socket: the URL still gives the Host
	// header, the TLS server name and the path.
	UnixSocket string

	// DisableKeepAlives opens a connection per request.
	DisableKeepAlives bool

	// IdleConnTimeout closes connections idle this long; zero means 90s.
	IdleConnTimeout time.Duration

	// MaxResponseHeaderBytes limits response headers; zero means
	// net/http's default (1 MiB).
	MaxResponseHeaderBytes int64

	once      sync.Once
	main, h2c *http.Transport
}

var _ http.RoundTripper = (*Transport)(nil)

func (t *Transport) init() {
	t.main = t.build(t.Mode)
	if t.Mode == ModeHTTP2PriorKnowledge {
		t.h2c = t.main
	} else {
		t.h2c = t.build(ModeHTTP2PriorKnowledge)
	}
}

func (t *Transport) build(mode Mode) *http.Transport {
	var d Dialer
	if t.Dialer != nil {
		d = *t.Dialer
	}
	var p http.Protocols
	switch mode {
	case ModeHTTP1:
		d.NextProtos = []string{"http/1.1"}
		p.SetHTTP1(true)
	case ModeHTTP2PriorKnowledge:
		d.NextProtos = []string{"h2"}
		p.SetHTTP2(true)
		p.SetUnencryptedHTTP2(true)
	default:
		d.NextProtos = []string{"h2", "http/1.1"}
		p.SetHTTP1(true)
		p.SetHTTP2(true)
	}
	idle := t.IdleConnTimeout
	if idle == 0 {
		idle = 90 * time.Second
	}
	dial, dialTLS := d.DialContext, d.DialTLSContext
	if sock := t.UnixSocket; sock != "" {
		dial = func(ctx context.Context, _, _ string) (net.Conn, error) {
			return d.DialContext(ctx, "unix", sock)
		}
		dialTLS = func(ctx context.Context, _, addr string) (net.Conn, error) {
			host, _, err := net.SplitHostPort(addr)
			if err != nil {
				return nil, fmt.Errorf("client: %s: %w", addr, err)
			}
			return d.dialTLS(ctx, "unix", sock, host, host)
		}
	}
	return &http.Transport{
		DialContext:            dial,
		DialTLSContext:         dialTLS,
		Protocols:              &p,
		ForceAttemptHTTP2:      mode != ModeHTTP1,
		DisableCompression:     true,
		DisableKeepAlives:      t.DisableKeepAlives,
		IdleConnTimeout:        idle,
		MaxIdleConnsPerHost:    16,
		MaxResponseHeaderBytes: t.MaxResponseHeaderBytes,
		ExpectContinueTimeout:  time.Second,
	}
}

// RoundTrip implements http.RoundTripper.
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	t.once.Do(t.init)
	switch req.URL.Scheme {
	case "http", "https":
		return t.main.RoundTrip(req)
	case "h2c":
		r := *req
		u := *req.URL
		u.Scheme = "http"
		r.URL = &u
		return t.h2c.RoundTrip(&r)
	default:
		if req.Body != nil {
			req.Body.Close()
		}
		return nil, fmt.Errorf("client: %s: unsupported scheme %q (want http, https or h2c)", req.URL.Redacted(), req.URL.Scheme)
	}
}

// CloseIdleConnections closes connections no request is using.
func (t *Transport) CloseIdleConnections() {
	t.once.Do(t.init)
	t.main.CloseIdleConnections()
	if t.h2c != t.main {
		t.h2c.CloseIdleConnections()
	}
}
