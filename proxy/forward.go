package proxy

import (
	"net"
	"net/http/httputil"
	"net/netip"
	"strings"
)

// trusted reports whether a request's peer is a configured front proxy.
func (p *Proxy) trusted(remoteAddr string) bool {
	if len(p.cfg.TrustedProxies) == 0 {
		return false
	}
	ap, err := netip.ParseAddrPort(remoteAddr)
	if err != nil {
		return false
	}
	ip := ap.Addr().Unmap()
	for _, pfx := range p.cfg.TrustedProxies {
		if pfx.Contains(ip) {
			return true
		}
	}
	return false
}

// forwarded sets X-Forwarded-For, X-Forwarded-Proto, X-Forwarded-Host and
// Forwarded (RFC 7239) on the outgoing request. ReverseProxy has already
// removed what the client sent; from a trusted proxy the incoming values
// are kept: the chain is extended with the peer's address and the original
// host and scheme are preserved.
func (p *Proxy) forwarded(pr *httputil.ProxyRequest) {
	in, out := pr.In, pr.Out
	trusted := p.trusted(in.RemoteAddr)
	if trusted {
		if v := in.Header["X-Forwarded-For"]; len(v) > 0 {
			out.Header["X-Forwarded-For"] = v
		}
	}
	pr.SetXForwarded() // appends the peer to X-Forwarded-For, sets Host and Proto
	if trusted {
		for _, h := range []string{"X-Forwarded-Host", "X-Forwarded-Proto"} {
			if v := in.Header.Get(h); v != "" {
				out.Header.Set(h, v)
			}
		}
	}
	proto := "http"
	if in.TLS != nil {
		proto = "https"
	}
	elem := "for=" + forwardedNode(in.RemoteAddr) + ";host=" + quoteForwarded(in.Host) + ";proto=" + proto
	if prev := in.Header.Values("Forwarded"); trusted && len(prev) > 0 {
		elem = strings.Join(prev, ", ") + ", " + elem
	}
	out.Header["Forwarded"] = []string{elem}
}

// forwardedNode renders a peer address as a Forwarded for= node: IPv6
// addresses bracketed and quoted as RFC 7239 requires.
func forwardedNode(remoteAddr string) string {
	host, _, err := net.SplitHostPort(remoteAddr)
	if err != nil {
		return `"unknown"`
	}
	if strings.Contains(host, ":") {
		return `"[` + host + `]"`
	}
	return host
}

// forwardedEscaper escapes a Forwarded quoted-string (RFC 7239 §4); made
// once, since a Host with a port needs quoting on every request.
var forwardedEscaper = strings.NewReplacer(`\`, `\\`, `"`, `\"`)

// quoteForwarded quotes a Forwarded value unless it is a plain token.
func quoteForwarded(v string) string {
	for i := 0; i < len(v); i++ {
		c := v[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || strings.IndexByte("!#$%&'*+-.^_`|~", c) >= 0) {
			return `"` + forwardedEscaper.Replace(v) + `"`
		}
	}
	return v
}
