package proxy

import (
	"crypto/tls"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/pafhq/paf/certs"
	"github.com/pafhq/paf/route"
)

// Certificates is the certs.Getter of the proxy's HTTPS listener: it
// serves a certificate only for hostnames the table routes (the route's
// certificate key says from where), and for any other name the Fallback
// or nothing, so that a scan of the IP address never learns which sites
// are hosted unless an operator chose a default certificate.
type Certificates struct {
	// Proxy supplies the routes.
	Proxy *Proxy
	// Manual holds operator-supplied certificates (--tls-cert); a
	// certificate is used for a host only if it really covers it. Nil:
	// none.
	Manual certs.Getter
	// ACME obtains and renews certificates; nil when the proxy runs
	// without ACME. This is the seam the ACME manager plugs into.
	ACME certs.Getter
	// Default issues certificates for routes with certificate =
	// "default" that neither Manual covers nor ACME serves; typically
	// the local CA (PerHost over certs.LocalCA.Issuer). Nil: none.
	Default certs.Getter
	// Fallback answers names no route has (and ClientHellos without
	// SNI); nil fails those handshakes.
	Fallback certs.Getter
}

// GetCertificate implements certs.Getter.
func (c *Certificates) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	if c.ACME != nil && len(hello.SupportedProtos) == 1 && hello.SupportedProtos[0] == certs.ACMETLS1Protocol {
		// A TLS-ALPN-01 validation: only ACME can answer it.
		return c.ACME.GetCertificate(hello)
	}
	r := c.Proxy.Route(hello.ServerName)
	if hello.ServerName == "" || r == nil {
		if c.Fallback != nil {
			return c.Fallback.GetCertificate(hello)
		}
		return nil, fmt.Errorf("proxy: no route for server name %q", hello.ServerName)
	}
	host := r.Host
	manual := func() (*tls.Certificate, bool) {
		if c.Manual == nil {
			return nil, false
		}
		cert, err := c.Manual.GetCertificate(hello)
		if err != nil || cert == nil || cert.Leaf == nil || cert.Leaf.VerifyHostname(host) != nil {
			return nil, false
		}
		return cert, true
	}
	switch r.Certificate {
	case route.CertManual:
		if cert, ok := manual(); ok {
			return cert, nil
		}
		return nil, fmt.Errorf("proxy: %s: no manual certificate covers it", host)
	case route.CertACME:
		if c.ACME == nil {
			return nil, fmt.Errorf("proxy: %s: certificate = \"acme\" but the proxy runs without ACME", host)
		}
		return c.ACME.GetCertificate(hello)
	}
	if cert, ok := manual(); ok {
		return cert, nil
	}
	if c.ACME != nil {
		return c.ACME.GetCertificate(hello)
	}
	if c.Default != nil {
		return c.Default.GetCertificate(hello)
	}
	return nil, fmt.Errorf("proxy: %s: no certificate source", host)
}

// PerHost is a certs.Getter that keeps one Getter per server name, made on
// first use by New: the local CA issues one certificate per routed host
// this way, as hosts come and go with the routes.
type PerHost struct {
	// New returns the Getter for one lower-case host name.
	New func(host string) (certs.Getter, error)

	mu sync.Mutex
	m  map[string]certs.Getter
}

// maxPerHost bounds PerHost's map: Certificates only asks for routed names,
// this is a second line.
const maxPerHost = 10000

// GetCertificate implements certs.Getter.
func (p *PerHost) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	host := strings.ToLower(strings.TrimSuffix(hello.ServerName, "."))
	if host == "" {
		return nil, errors.New("proxy: no server name")
	}
	p.mu.Lock()
	g, ok := p.m[host]
	if !ok {
		if p.m == nil {
			p.m = map[string]certs.Getter{}
		}
		if len(p.m) >= maxPerHost {
			p.mu.Unlock()
			return nil, errors.New("proxy: too many certificates")
		}
		var err error
		if g, err = p.New(host); err != nil {
			p.mu.Unlock()
			return nil, err
		}
		p.m[host] = g
	}
	p.mu.Unlock()
	return g.GetCertificate(hello)
}

// Named returns a Getter that answers every handshake with g's certificate
// for name: --default-cert.
func Named(g certs.Getter, name string) certs.Getter {
	return certs.GetterFunc(func(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
		h := *hello
		h.ServerName = name
		return g.GetCertificate(&h)
	})
}
