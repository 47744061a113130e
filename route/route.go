// Package route reads, checks and writes paf proxy's routes: one
// human-editable file per hostname saying where that hostname's requests
// go.
//
// A route file is named after its hostname, <hostname>.toml, and lives at
// the top of a directory (--routes DIR) or of a Git branch
// (--routes-remote URL#BRANCH); other files (a README) are ignored. The
// format is a small subset of TOML, so any TOML tool reads it: comments,
// key = value with strings, integers, booleans and arrays of strings, and
// a few [tables]. Every key is optional except a destination (backends,
// passthrough backends or site). Example, routes/blog.example.org.toml:
//
//	# Where blog.example.org goes.
//	backends = ["http://10.0.0.3:8080", "h2c://10.0.0.4:8080"]
//	lb = "round_robin"        # round_robin (default), least_conn or first
//	alpn = ["h2", "http/1.1"] # protocols offered to clients (default both; see ALPN)
//	certificate = "default"   # default, acme or manual
//	max_body = "10MiB"        # request body limit, bytes or KiB/MiB/GiB; 0: none
//	websocket = true          # let WebSocket upgrades through (default true)
//	proxy_protocol = "v2"     # send a PROXY header (v1 or v2) to backends (default none)
//
//	[timeouts]
//	dial = "5s"               # connecting to a backend (default 10s)
//	response_header = "30s"   # waiting for a backend's response headers (default 60s)
//	idle = "90s"              # idle keep-alive connections to backends (default 90s)
//
//	[health]
//	path = "/healthz"         # active check: GET this path on every backend...
//	interval = "10s"          # ...this often (no path: passive checks only)
//	fails = 3                 # consecutive failures that mark a backend down (default 3)
//	fail_duration = "30s"     # how long it stays down without an active check (default 30s)
//
//	[tls]                     # for https:// backends
//	ca = "/etc/paf/backend-ca.pem" # trust these CAs instead of the system's
//	server_name = "blog.internal"  # name to verify (default: the URL's host)
//	insecure = false               # skip verification (testing only)
//
//	[request_headers]         # set on requests to the backend ("" removes)
//	X-Env = "production"
//
//	[response_headers]        # set on responses to the client ("" removes)
//	Strict-Transport-Security = "max-age=31536000"
//
// Two other shapes replace backends. Raw TLS passthrough by SNI, for a
// backend that terminates TLS itself (the proxy never sees the plaintext,
// so only backends, lb, proxy_protocol and timeouts.dial apply):
//
//	passthrough = true
//	backends = ["tcp://10.0.0.5:443"]
//
// A Git site served in-process, as `paf serve --remote` would:
//
//	site = "https://git.example.org/blog.git#pages"
//
// Parsing is strict: an unknown key, a value of the wrong type, a backend
// URL that does not parse or a file name that is not a hostname is an error
// naming the file, the line and the key, so a typo never silently changes
// routing.
package route

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Ext is the extension of route files.
const Ext = ".toml"

// Defaults applied to zero Route fields by Parse.
const (
	DefaultDialTimeout           = 10 * time.Second
	DefaultResponseHeaderTimeout = 60 * time.Second
	DefaultIdleTimeout           = 90 * time.Second
	DefaultFails                 = 3
	DefaultFailDuration          = 30 * time.Second
)

// Policy is a load-balancing policy: how a request picks one of several
// healthy backends.
type Policy string

// The load-balancing policies.
const (
	// RoundRobin takes healthy backends in turn.
	RoundRobin Policy = "round_robin"
	// LeastConn takes the healthy backend with the fewest requests in
	// flight, the first one on ties.
	LeastConn Policy = "least_conn"
	// First takes the first healthy backend in file order: the others
	// are spares.
	First Policy = "first"
)

// CertSource says where the certificate for a hostname comes from.
type CertSource string

// The certificate sources.
const (
	// CertDefault is the proxy's default issuer: ACME when the proxy
	// runs with ACME, its local CA otherwise.
	CertDefault CertSource = "default"
	// CertACME requires an ACME certificate.
	CertACME CertSource = "acme"
	// CertManual uses a certificate the operator supplied (--tls-cert,
	// paf certs add).
	CertManual CertSource = "manual"
)

// Backend is one destination of a route.
type Backend struct {
	// URL is the backend as written: http://host:port, https://host:port,
	// h2c://host:port, or for passthrough tcp://host:port.
	URL string
	// Scheme is "http", "https", "h2c" or "tcp".
	Scheme string
	// Addr is host:port, the port defaulted from the scheme (80, 443).
	Addr string
	// Host is Addr's host, for TLS verification of https backends.
	Host string
}

// Timeouts bound the proxy's work with a route's backends.
type Timeouts struct {
	// Dial bounds connecting to a backend (TCP and, for https, TLS).
	Dial time.Duration
	// ResponseHeader bounds the wait for a backend's response headers
	// once the request is sent; past it the client gets 504.
	ResponseHeader time.Duration
	// Idle closes idle keep-alive connections to backends.
	Idle time.Duration
}

// Health configures backend health checks.
type Health struct {
	// Path is requested with GET on every backend every Interval; a 2xx
	// or 3xx answer marks it up, anything else down. Empty: no active
	// checks.
	Path string
	// Interval between active checks; required with Path.
	Interval time.Duration
	// Fails is the number of consecutive failed requests (refused,
	// timed out) that mark a backend down: passive checks.
	Fails int
	// FailDuration is how long a backend marked down by passive checks
	// stays down, unless an active check finds it up sooner.
	FailDuration time.Duration
}

// BackendTLS configures verification of https:// backends.
type BackendTLS struct {
	// CAFile holds PEM CA certificates trusted instead of the system
	// roots.
	CAFile string
	// ServerName is the name verified in the backend's certificate and
	// sent as SNI; empty means the backend URL's host.
	ServerName string
	// Insecure skips verification: for tests and self-signed backends
	// on a trusted network only.
	Insecure bool
}

// Header is one extra header a route sets.
type Header struct {
	// Name is the canonical header name.
	Name string
	// Value replaces the header's values; empty removes the header.
	Value string
}

// Route is where one hostname's traffic goes. Parse fills in defaults, so
// a parsed Route has every duration and count set.
type Route struct {
	// Host is the hostname, lower case, from the file name.
	Host string
	// Backends are tried according to LB; empty for a Site route.
	Backends []Backend
	// LB is the load-balancing policy among Backends.
	LB Policy
	// ALPN are the protocols offered to clients asking for Host (by
	// SNI), in preference order: ["http/1.1"] keeps HTTP/2 away from a
	// site. Passthrough routes ignore it (their backend answers the
	// handshake).
	ALPN []string
	// Certificate says where the hostname's certificate comes from.
	Certificate CertSource
	// Health configures active and passive health checks.
	Health Health
	// Timeouts bound the work with backends.
	Timeouts Timeouts
	// MaxBody limits request bodies in bytes (413 beyond); 0: no limit.
	MaxBody int64
	// WebSocket lets HTTP/1.1 Upgrade: websocket requests through.
	WebSocket bool
	// RequestHeaders are set on requests sent to backends.
	RequestHeaders []Header
	// ResponseHeaders are set on responses sent to clients.
	ResponseHeaders []Header
	// Passthrough forwards the raw TLS connection, chosen by SNI, to a
	// backend that terminates TLS itself.
	Passthrough bool
	// Site is a Git remote, URL[#BRANCH], served in-process instead of
	// forwarding.
	Site string
	// TLS configures verification of https:// backends.
	TLS BackendTLS
	// ProxyProtocol, "v1" or "v2", sends a PROXY protocol header with
	// the client's address at the start of every backend connection
	// (HTTP and passthrough), for backends that read it. Empty: none.
	ProxyProtocol string
}

// ValidHost reports whether h is a hostname a route may be named after: a
// lower-case DNS name of letters, digits and hyphens, labels of 1 to 63
// characters not starting or ending with a hyphen, at most 253 characters.
// IP literals qualify (they are dotted digits).
func ValidHost(h string) error {
	if h == "" {
		return errors.New("empty hostname")
	}
	if len(h) > 253 {
		return fmt.Errorf("hostname %q longer than 253 characters", h)
	}
	for _, label := range strings.Split(h, ".") {
		if label == "" {
			return fmt.Errorf("hostname %q has an empty label", h)
		}
		if len(label) > 63 {
			return fmt.Errorf("hostname %q has a label longer than 63 characters", h)
		}
		if label[0] == '-' || label[len(label)-1] == '-' {
			return fmt.Errorf("hostname %q: label %q starts or ends with a hyphen", h, label)
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			switch {
			case 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '-':
			case 'A' <= c && c <= 'Z':
				return fmt.Errorf("hostname %q: write it in lower case", h)
			default:
				return fmt.Errorf("hostname %q: invalid character %q", h, c)
			}
		}
	}
	return nil
}

// NormalizeHost turns a Host header or SNI value into the form routes are
// keyed by: lower case, without port or trailing dot.
func NormalizeHost(h string) string {
	if strings.HasPrefix(h, "[") {
		if i := strings.IndexByte(h, ']'); i > 0 {
			return strings.ToLower(h[1:i])
		}
	}
	if i := strings.LastIndexByte(h, ':'); i >= 0 && strings.Count(h, ":") == 1 {
		h = h[:i]
	}
	return strings.ToLower(strings.TrimSuffix(h, "."))
}

// ParseBackend parses a backend URL. passthrough selects the schemes
// allowed: tcp:// (and https://, taken as the TLS port) for passthrough,
// http://, https:// and h2c:// otherwise. A backend URL names a host and
// port only: no path, query, user or fragment.
func ParseBackend(s string, passthrough bool) (Backend, error) {
	u, err := url.Parse(s)
	if err != nil {
		return Backend{}, fmt.Errorf("backend %q: %w", s, err)
	}
	b := Backend{URL: s, Scheme: u.Scheme}
	port := ""
	switch {
	case passthrough && (u.Scheme == "tcp" || u.Scheme == "https"):
		b.Scheme, port = "tcp", "443"
	case passthrough:
		return Backend{}, fmt.Errorf("backend %q: a passthrough backend is tcp://HOST:PORT", s)
	case u.Scheme == "http" || u.Scheme == "h2c":
		port = "80"
	case u.Scheme == "https":
		port = "443"
	default:
		return Backend{}, fmt.Errorf("backend %q: want http://, https:// or h2c://HOST[:PORT]", s)
	}
	if u.Host == "" || u.Opaque != "" {
		return Backend{}, fmt.Errorf("backend %q: no host", s)
	}
	if u.User != nil || (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" {
		return Backend{}, fmt.Errorf("backend %q: a backend is scheme://HOST[:PORT] only (no user, path, query or fragment)", s)
	}
	host, p := u.Hostname(), u.Port()
	if host == "" {
		return Backend{}, fmt.Errorf("backend %q: no host", s)
	}
	if p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 1 || n > 65535 {
			return Backend{}, fmt.Errorf("backend %q: invalid port %q", s, p)
		}
		port = p
	}
	b.Host = host
	b.Addr = net.JoinHostPort(host, port)
	return b, nil
}

// Validate checks a Route as a whole: what Parse checks key by key plus
// the combinations (a destination is given, passthrough excludes site...).
// Route.Host must be set.
func (r *Route) Validate() error {
	if err := ValidHost(r.Host); err != nil {
		return err
	}
	switch {
	case r.Site != "" && len(r.Backends) > 0:
		return errors.New("give backends or site, not both")
	case r.Site != "" && r.Passthrough:
		return errors.New("passthrough needs backends, not a site")
	case r.Site == "" && len(r.Backends) == 0:
		return errors.New("no destination: give backends (or site)")
	}
	for _, b := range r.Backends {
		if _, err := ParseBackend(b.URL, r.Passthrough); err != nil {
			return err
		}
	}
	switch r.LB {
	case RoundRobin, LeastConn, First:
	default:
		return fmt.Errorf("lb %q: want round_robin, least_conn or first", r.LB)
	}
	switch r.Certificate {
	case CertDefault, CertACME, CertManual:
	default:
		return fmt.Errorf("certificate %q: want default, acme or manual", r.Certificate)
	}
	if len(r.ALPN) == 0 {
		return errors.New("alpn: offer at least one of h2, http/1.1")
	}
	for _, p := range r.ALPN {
		if p != "h2" && p != "http/1.1" {
			return fmt.Errorf("alpn %q: want h2 or http/1.1", p)
		}
	}
	switch r.ProxyProtocol {
	case "", "v1", "v2":
	default:
		return fmt.Errorf("proxy_protocol %q: want v1 or v2", r.ProxyProtocol)
	}
	if r.ProxyProtocol != "" && r.Site != "" {
		return errors.New("proxy_protocol: a site route has no backend to send it to")
	}
	if (r.Health.Path == "") != (r.Health.Interval == 0) {
		return errors.New("health: path and interval go together")
	}
	if r.Health.Path != "" && !strings.HasPrefix(r.Health.Path, "/") {
		return fmt.Errorf("health path %q: want a path starting with /", r.Health.Path)
	}
	if r.Health.Fails < 1 {
		return fmt.Errorf("health fails %d: want at least 1", r.Health.Fails)
	}
	for _, d := range []time.Duration{r.Health.Interval, r.Health.FailDuration, r.Timeouts.Dial, r.Timeouts.ResponseHeader, r.Timeouts.Idle} {
		if d < 0 {
			return errors.New("negative duration")
		}
	}
	if r.MaxBody < 0 {
		return errors.New("max_body: negative")
	}
	for _, hs := range [][]Header{r.RequestHeaders, r.ResponseHeaders} {
		for _, h := range hs {
			if err := validHeader(h); err != nil {
				return err
			}
		}
	}
	if r.Site != "" && !strings.Contains(r.Site, "://") && !strings.Contains(r.Site, ":") && !strings.HasPrefix(r.Site, "/") {
		return fmt.Errorf("site %q: want a Git URL[#BRANCH]", r.Site)
	}
	return nil
}

// validHeader refuses header names and values net/http would reject or
// that could split a header.
func validHeader(h Header) error {
	if h.Name == "" {
		return errors.New("empty header name")
	}
	for i := 0; i < len(h.Name); i++ {
		c := h.Name[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte("\"(),/:;<=>?@[\\]{}", c) >= 0 {
			return fmt.Errorf("header name %q: invalid character %q", h.Name, c)
		}
	}
	if strings.ContainsAny(h.Value, "\r\n\x00") {
		return fmt.Errorf("header %s: value contains a line break or NUL", h.Name)
	}
	return nil
}

// defaults fills zero fields with the documented defaults.
func (r *Route) defaults() {
	if r.LB == "" {
		r.LB = RoundRobin
	}
	if r.Certificate == "" {
		r.Certificate = CertDefault
	}
	if r.ALPN == nil {
		r.ALPN = []string{"h2", "http/1.1"}
	}
	if r.Timeouts.Dial == 0 {
		r.Timeouts.Dial = DefaultDialTimeout
	}
	if r.Timeouts.ResponseHeader == 0 {
		r.Timeouts.ResponseHeader = DefaultResponseHeaderTimeout
	}
	if r.Timeouts.Idle == 0 {
		r.Timeouts.Idle = DefaultIdleTimeout
	}
	if r.Health.Fails == 0 {
		r.Health.Fails = DefaultFails
	}
	if r.Health.FailDuration == 0 {
		r.Health.FailDuration = DefaultFailDuration
	}
}

// New returns a Route for host with the defaults Parse applies: WebSocket
// on, round robin, both ALPN protocols, the default certificate. Callers
// building a route in code (paf route add) start here.
func New(host string) *Route {
	r := &Route{Host: host, WebSocket: true}
	r.defaults()
	return r
}

// Equal reports whether two routes route the same way: what a proxy
// compares to keep a backend pool (its connections and health state) across
// a reload.
func (r *Route) Equal(o *Route) bool {
	return string(Format(r)) == string(Format(o)) && r.Host == o.Host
}

// OffersH2 reports whether h2 is among the route's ALPN protocols.
func (r *Route) OffersH2() bool { return slices.Contains(r.ALPN, "h2") }
