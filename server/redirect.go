package server

import (
	"net"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// acmeChallengePrefix is the path ACME HTTP-01 validation requests use
// (RFC 8555 section 8.3); it must be answered over plain HTTP.
const acmeChallengePrefix = "/.well-known/acme-challenge/"

// redirector is the HTTP listener's handler when HTTPS is on: it sends
// every request to the same host and path over HTTPS, except ACME HTTP-01
// challenges.
type redirector struct {
	challenge http.Handler // nil: challenges get 404
	port      int          // HTTPS port; 443 is left out of Location
}

// ServeHTTP answers 301 for GET and HEAD; other methods get 308, which
// unlike 301 forbids clients to turn a POST into a GET.
func (rd *redirector) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if strings.HasPrefix(r.URL.Path, acmeChallengePrefix) {
		if rd.challenge != nil {
			rd.challenge.ServeHTTP(w, r)
		} else {
			http.NotFound(w, r)
		}
		return
	}
	host, ok := redirectHost(r.Host)
	if !ok {
		http.Error(w, "400 Bad Request: invalid Host header", http.StatusBadRequest)
		return
	}
	var b strings.Builder
	path := r.URL.EscapedPath()
	b.Grow(len("https://") + len(host) + 6 + len(path) + 1 + len(r.URL.RawQuery))
	b.WriteString("https://")
	b.WriteString(host)
	if rd.port != 443 {
		b.WriteByte(':')
		b.WriteString(strconv.Itoa(rd.port))
	}
	if !strings.HasPrefix(path, "/") {
		b.WriteByte('/')
	}
	b.WriteString(path)
	if r.URL.RawQuery != "" {
		b.WriteByte('?')
		b.WriteString(r.URL.RawQuery)
	}
	code := http.StatusMovedPermanently
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		code = http.StatusPermanentRedirect
	}
	w.Header().Set("Location", b.String())
	w.WriteHeader(code)
}

// redirectHost returns the host part of a Host header, without its port,
// ready for a URL (IPv6 literals bracketed), or false when the header is
// empty or not a plain host name or IP address.
func redirectHost(h string) (string, bool) {
	if h == "" {
		return "", false
	}
	host := h
	if strings.HasPrefix(h, "[") {
		end := strings.IndexByte(h, ']')
		if end < 0 || !validPort(h[end+1:]) {
			return "", false
		}
		ip := net.ParseIP(h[1:end])
		if ip == nil || ip.To4() != nil {
			return "", false
		}
		return "[" + ip.String() + "]", true
	}
	if i := strings.IndexByte(h, ':'); i >= 0 {
		if !validPort(h[i:]) {
			return "", false
		}
		host = h[:i]
	}
	host = strings.TrimSuffix(host, ".")
	if host == "" || len(host) > 253 {
		return "", false
	}
	for i := 0; i < len(host); i++ {
		c := host[i]
		switch {
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '-', c == '.', c == '_':
		case 'A' <= c && c <= 'Z':
		default:
			return "", false
		}
	}
	return strings.ToLower(host), true
}

// validPort reports whether s is empty or ":" followed by 1 to 5 digits.
func validPort(s string) bool {
	if s == "" {
		return true
	}
	if s[0] != ':' || len(s) < 2 || len(s) > 6 {
		return false
	}
	for i := 1; i < len(s); i++ {
		if s[i] < '0' || s[i] > '9' {
			return false
		}
	}
	return true
}

// hsts adds Strict-Transport-Security to every response of h.
func hsts(h http.Handler, maxAge time.Duration) http.Handler {
	value := "max-age=" + strconv.FormatInt(int64(maxAge/time.Second), 10)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header()["Strict-Transport-Security"] = []string{value}
		h.ServeHTTP(w, r)
	})
}
