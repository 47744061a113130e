package proxy

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/http"
	"time"

	"github.com/pafhq/paf/certs"
	"github.com/pafhq/paf/route"
	"github.com/pafhq/paf/stack"
)

// maxIdlePerBackend bounds idle keep-alive connections kept per backend:
// enough that a busy site does not reconnect for every request.
const maxIdlePerBackend = 256

// newTransport returns the transport for one backend of r: HTTP/1.1 for
// http://, HTTP/2 with prior knowledge for h2c://, and for https:// TLS
// with ALPN offering h2 and http/1.1, verified as the route's [tls] table
// says. Every connection is dialled through st. With proxy_protocol each
// request gets its own backend connection, opened with the PROXY header
// of the client connection it came on.
func newTransport(st stack.Stack, r *route.Route, b route.Backend) (*http.Transport, error) {
	dial := r.Timeouts.Dial
	dialer := func(ctx context.Context, network, addr string) (net.Conn, error) {
		ctx, cancel := context.WithTimeout(ctx, dial)
		defer cancel()
		return st.Dial(ctx, network, addr)
	}
	if r.ProxyProtocol != "" {
		dialer = proxyProtocolDial(r.ProxyProtocol, dialer)
	}
	tr := &http.Transport{
		DialContext: dialer,
		// A PROXY header names one client: a connection that carried
		// one client's requests cannot carry another's.
		DisableKeepAlives:     r.ProxyProtocol != "",
		TLSHandshakeTimeout:   dial,
		ResponseHeaderTimeout: r.Timeouts.ResponseHeader,
		IdleConnTimeout:       r.Timeouts.Idle,
		ExpectContinueTimeout: time.Second,
		MaxIdleConns:          maxIdlePerBackend,
		MaxIdleConnsPerHost:   maxIdlePerBackend,
		// Pass Accept-Encoding through and the backend's encoding back.
		DisableCompression: true,
		Protocols:          new(http.Protocols),
		HTTP2: &http.HTTP2Config{
			// A backend that stops answering pings is dropped rather
			// than holding every stream multiplexed on it.
			SendPingTimeout: 30 * time.Second,
			PingTimeout:     15 * time.Second,
		},
	}
	switch b.Scheme {
	case "http":
		tr.Protocols.SetHTTP1(true)
	case "h2c":
		tr.Protocols.SetUnencryptedHTTP2(true)
	case "https":
		tr.Protocols.SetHTTP1(true)
		tr.Protocols.SetHTTP2(true)
		cfg := &tls.Config{
			MinVersion:         tls.VersionTLS12,
			ServerName:         r.TLS.ServerName,
			InsecureSkipVerify: r.TLS.Insecure,
		}
		if cfg.ServerName == "" {
			cfg.ServerName = b.Host
		}
		if r.TLS.CAFile != "" {
			pool, err := certs.LoadCARoots(r.TLS.CAFile)
			if err != nil {
				return nil, fmt.Errorf("tls ca: %w", err)
			}
			cfg.RootCAs = pool
		}
		tr.TLSClientConfig = cfg
	default:
		return nil, fmt.Errorf("backend %s: scheme %q cannot carry HTTP", b.URL, b.Scheme)
	}
	return tr, nil
}
