package site

import (
	"bytes"
	"io"
	"net/http"
	"strings"
	"time"
)

var (
	allowMethods = []string{"GET, HEAD"}
	textPlain    = []string{"text/plain; charset=utf-8"}
	textHTML     = []string{"text/html; charset=utf-8"}
	noCache      = []string{"no-cache"}
)

// notFoundBody is the answer for a missing path when the site has no
// 404.html.
const notFoundBody = "<!DOCTYPE html>\n<title>404 Not Found</title>\n<h1>Not Found</h1>\n<p>The requested resource does not exist.</p>\n"

// ServeHTTP answers GET and HEAD requests from the snapshot. See the
// package documentation for what is refused.
func (s *Snapshot) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if len(s.hosts) > 0 && !s.hostAllowed(r.Host) {
		plainError(w, http.StatusMisdirectedRequest)
		return
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead:
	case http.MethodOptions:
		w.Header()["Allow"] = allowMethods
		w.WriteHeader(http.StatusNoContent)
		return
	default:
		w.Header()["Allow"] = allowMethods
		plainError(w, http.StatusMethodNotAllowed)
		return
	}
	p, status := requestPath(r)
	if status != 0 {
		plainError(w, status)
		return
	}
	if res := s.files[p]; res != nil {
		s.serveFile(w, r, res)
		return
	}
	s.serveMissing(w, r, p)
}

// requestPath returns the request's path without its leading slash, or
// the status refusing it: 400 for anything that is not a canonical path
// (dot segments, empty segments, backslashes, control characters, encoded
// slashes, backslashes or NUL), 404 for anything under .git.
func requestPath(r *http.Request) (string, int) {
	u := r.URL
	if u == nil || u.Opaque != "" {
		return "", http.StatusBadRequest
	}
	if raw := u.RawPath; raw != "" && hasEncodedSeparator(raw) {
		return "", http.StatusBadRequest
	}
	p := u.Path
	if p == "" || p[0] != '/' {
		return "", http.StatusBadRequest
	}
	p = p[1:]
	git := false
	start := 0
	for i := 0; i <= len(p); i++ {
		if i < len(p) {
			c := p[i]
			if c < 0x20 || c == 0x7f || c == '\\' {
				return "", http.StatusBadRequest
			}
			if c != '/' {
				continue
			}
		}
		seg := p[start:i]
		switch {
		case seg == "" && i < len(p):
			return "", http.StatusBadRequest // "//"
		case seg == "." || seg == "..":
			return "", http.StatusBadRequest
		case len(seg) == 4 && strings.EqualFold(seg, ".git"):
			git = true
		}
		start = i + 1
	}
	if git {
		return "", http.StatusNotFound
	}
	return p, 0
}

// hasEncodedSeparator reports whether an escaped path encodes a slash,
// backslash or NUL, which would otherwise decode into a path separator
// that the client meant as part of a name.
func hasEncodedSeparator(raw string) bool {
	for i := 0; i+2 < len(raw); i++ {
		if raw[i] != '%' {
			continue
		}
		switch {
		case raw[i+1] == '0' && raw[i+2] == '0',
			raw[i+1] == '2' && (raw[i+2] == 'f' || raw[i+2] == 'F'),
			raw[i+1] == '5' && (raw[i+2] == 'c' || raw[i+2] == 'C'):
			return true
		}
	}
	return false
}

// hostAllowed reports whether the request's Host, without port and
// trailing dot, is one of the configured names.
func (s *Snapshot) hostAllowed(host string) bool {
	// Strip the port by hand: net.SplitHostPort allocates an error for
	// the common Host without one.
	if strings.HasPrefix(host, "[") {
		if end := strings.IndexByte(host, ']'); end > 0 {
			host = host[1:end]
		}
	} else if i := strings.IndexByte(host, ':'); i >= 0 && strings.Count(host, ":") == 1 {
		host = host[:i]
	}
	host = strings.TrimSuffix(host, ".")
	for _, h := range s.hosts {
		if strings.EqualFold(h, host) {
			return true
		}
	}
	return false
}

// serveFile answers with res: a 304 or 412 when the preconditions say so,
// a range from the identity representation, or the whole representation
// chosen by Accept-Encoding.
func (s *Snapshot) serveFile(w http.ResponseWriter, r *http.Request, res *resource) {
	if r.Method == http.MethodGet && len(r.Header["Range"]) > 0 {
		s.serveRange(w, r, res)
		return
	}
	v := res.choose(r.Header["Accept-Encoding"])
	switch checkPreconditions(r, v.etag, res.modtime) {
	case http.StatusNotModified:
		h := w.Header()
		for _, f := range v.notModified {
			h[f.key] = f.value
		}
		w.WriteHeader(http.StatusNotModified)
		return
	case http.StatusPreconditionFailed:
		plainError(w, http.StatusPreconditionFailed)
		return
	}
	s.write(w, r, v, v.header, http.StatusOK)
}

// write sends the whole of representation v with the given headers.
func (s *Snapshot) write(w http.ResponseWriter, r *http.Request, v *rep, header []headerField, status int) {
	var f io.ReadSeekCloser
	if v.body == nil && v.open != nil && r.Method != http.MethodHead {
		var err error
		if f, err = v.open(); err != nil {
			s.logger.Error("site: open", "path", r.URL.Path, "err", err)
			plainError(w, http.StatusInternalServerError)
			return
		}
		defer f.Close()
	}
	h := w.Header()
	for _, fl := range header {
		h[fl.key] = fl.value
	}
	w.WriteHeader(status)
	if r.Method == http.MethodHead {
		return
	}
	if f != nil {
		// io.CopyN from an *os.File lets net/http use sendfile.
		if _, err := io.CopyN(w, f, v.size); err != nil {
			s.logger.Debug("site: stream", "path", r.URL.Path, "err", err)
		}
		return
	}
	w.Write(v.body)
}

// serveRange answers a Range request from the identity representation
// through http.ServeContent, which handles If-Range, single and multiple
// ranges, and 416.
func (s *Snapshot) serveRange(w http.ResponseWriter, r *http.Request, res *resource) {
	v := &res.identity
	var content io.ReadSeeker
	if v.body != nil {
		content = bytes.NewReader(v.body)
	} else {
		f, err := v.open()
		if err != nil {
			s.logger.Error("site: open", "path", r.URL.Path, "err", err)
			plainError(w, http.StatusInternalServerError)
			return
		}
		defer f.Close()
		content = f
	}
	h := w.Header()
	h["Content-Type"] = res.ctype
	h["Etag"] = []string{v.etag}
	h["X-Content-Type-Options"] = nosniff
	if res.vary {
		h["Vary"] = varyAE
	}
	http.ServeContent(w, r, "", res.modtime, content)
}

// serveMissing answers for a path that is not a file: a redirect for a
// directory without its slash or a symbolic link, else not found.
func (s *Snapshot) serveMissing(w http.ResponseWriter, r *http.Request, p string) {
	if rd, ok := s.redirects[p]; ok {
		s.redirect(w, r, rd.location, rd.keepQuery)
		return
	}
	// A path through a link to a directory ("docs/x.html" where docs ->
	// manual) redirects into the directory the link names.
	for i := len(p) - 1; i > 0; i-- {
		if p[i] != '/' {
			continue
		}
		if target, ok := s.dirLinks[p[:i]]; ok {
			loc := target + p[i:]
			if target == "" {
				loc = p[i+1:]
			}
			s.redirect(w, r, escapePath("/"+loc), true)
			return
		}
	}
	s.serveNotFound(w, r)
}

func (s *Snapshot) redirect(w http.ResponseWriter, r *http.Request, loc string, keepQuery bool) {
	if keepQuery && r.URL.RawQuery != "" {
		loc += "?" + r.URL.RawQuery
	}
	h := w.Header()
	h["Location"] = []string{loc}
	h["Content-Type"] = textPlain
	w.WriteHeader(http.StatusMovedPermanently)
}

// serveNotFound redirects to Options.Default when set, else serves the
// site's 404.html with status 404, else a small built-in page.
func (s *Snapshot) serveNotFound(w http.ResponseWriter, r *http.Request) {
	if s.defaultURL != nil {
		h := w.Header()
		h["Location"] = s.defaultURL
		h["Cache-Control"] = noCache
		w.WriteHeader(http.StatusFound)
		return
	}
	if nf := s.notFound; nf != nil {
		v := nf.choose(r.Header["Accept-Encoding"])
		s.write(w, r, v, v.asError, http.StatusNotFound)
		return
	}
	h := w.Header()
	h["Content-Type"] = textHTML
	h["Cache-Control"] = noCache
	h["X-Content-Type-Options"] = nosniff
	w.WriteHeader(http.StatusNotFound)
	if r.Method != http.MethodHead {
		io.WriteString(w, notFoundBody)
	}
}

// plainError answers with status and its text.
func plainError(w http.ResponseWriter, status int) {
	h := w.Header()
	h["Content-Type"] = textPlain
	h["X-Content-Type-Options"] = nosniff
	w.WriteHeader(status)
	io.WriteString(w, http.StatusText(status)+"\n")
}

// choose picks the representation of res for the Accept-Encoding header
// values ae: the highest q-value among the variants res has, brotli then
// zstd then gzip on ties, and identity unless a coding is preferred at
// least as much. Without the header, identity.
func (res *resource) choose(ae []string) *rep {
	if !res.vary || len(ae) == 0 {
		return &res.identity
	}
	q := acceptEncoding(ae)
	best, bestQ := &res.identity, q[numCodings]
	for k, v := range res.variants {
		if v != nil && q[k] > 0 && (q[k] > bestQ || (q[k] == bestQ && best == &res.identity)) {
			best, bestQ = v, q[k]
		}
	}
	return best
}

// acceptEncoding parses Accept-Encoding into q-values in thousandths for
// each coding and, at index numCodings, identity. Codings not listed take
// the q of "*" or 0; identity not listed takes the q of "*", else the
// lowest acceptable q.
func acceptEncoding(values []string) [numCodings + 1]int {
	var q [numCodings + 1]int
	for i := range q {
		q[i] = -1
	}
	star := -1
	for _, v := range values {
		for v != "" {
			var item string
			item, v, _ = strings.Cut(v, ",")
			name, params, _ := strings.Cut(item, ";")
			name = strings.TrimSpace(name)
			qv := parseQ(params)
			idx := -1
			switch {
			case strings.EqualFold(name, "br"):
				idx = int(codingBr)
			case strings.EqualFold(name, "zstd"):
				idx = int(codingZstd)
			case strings.EqualFold(name, "gzip"), strings.EqualFold(name, "x-gzip"):
				idx = int(codingGzip)
			case strings.EqualFold(name, "identity"):
				idx = int(numCodings)
			case name == "*":
				star = max(star, qv)
			}
			if idx >= 0 {
				q[idx] = max(q[idx], qv)
			}
		}
	}
	for i := range numCodings {
		if q[i] < 0 {
			q[i] = max(star, 0)
		}
	}
	if q[numCodings] < 0 {
		// Acceptable, but the least preferred: a client that lists
		// codings at any q wants them over the raw bytes.
		q[numCodings] = 1
		if star >= 0 {
			q[numCodings] = star
		}
	}
	return q
}

// parseQ returns the q parameter of an Accept-Encoding item's parameters
// in thousandths: 1000 when absent, 0 when malformed.
func parseQ(params string) int {
	for params != "" {
		var p string
		p, params, _ = strings.Cut(params, ";")
		k, v, _ := strings.Cut(p, "=")
		if !strings.EqualFold(strings.TrimSpace(k), "q") {
			continue
		}
		v = strings.TrimSpace(v)
		if v == "" || len(v) > 5 {
			return 0
		}
		n, frac, scale := 0, false, 1000
		for i := 0; i < len(v); i++ {
			c := v[i]
			switch {
			case c == '.' && !frac && i == 1:
				frac = true
			case c >= '0' && c <= '9' && !frac && i == 0:
				n = int(c-'0') * 1000
			case c >= '0' && c <= '9' && frac:
				scale /= 10
				n += int(c-'0') * scale
			default:
				return 0
			}
		}
		return min(n, 1000)
	}
	return 1000
}

// checkPreconditions evaluates If-Match, If-Unmodified-Since,
// If-None-Match and If-Modified-Since (RFC 9110 section 13.2.2) for a GET
// or HEAD of a representation with the given ETag and modification time,
// returning 412, 304 or 0 to proceed.
func checkPreconditions(r *http.Request, etag string, modtime time.Time) int {
	h := r.Header
	if im := h["If-Match"]; len(im) > 0 {
		if !etagListMatch(im, etag, false) {
			return http.StatusPreconditionFailed
		}
	} else if ius := h["If-Unmodified-Since"]; len(ius) > 0 && !modtime.IsZero() {
		if t, err := http.ParseTime(ius[0]); err == nil && modtime.Truncate(time.Second).After(t) {
			return http.StatusPreconditionFailed
		}
	}
	if inm := h["If-None-Match"]; len(inm) > 0 {
		if etagListMatch(inm, etag, true) {
			return http.StatusNotModified
		}
		return 0
	}
	if ims := h["If-Modified-Since"]; len(ims) > 0 && !modtime.IsZero() {
		if t, err := http.ParseTime(ims[0]); err == nil && !modtime.Truncate(time.Second).After(t) {
			return http.StatusNotModified
		}
	}
	return 0
}

// etagListMatch reports whether a list of entity tags (or "*") matches
// etag, comparing weakly (W/ ignored) or strongly (weak tags never match).
func etagListMatch(values []string, etag string, weak bool) bool {
	for _, v := range values {
		for v != "" {
			v = strings.TrimLeft(v, " \t,")
			if v == "" {
				break
			}
			if v[0] == '*' {
				return true
			}
			isWeak := false
			if strings.HasPrefix(v, "W/") {
				isWeak = true
				v = v[2:]
			}
			if v == "" || v[0] != '"' {
				// Malformed: skip to the next comma.
				_, v, _ = strings.Cut(v, ",")
				continue
			}
			end := strings.IndexByte(v[1:], '"')
			if end < 0 {
				break
			}
			tag := v[:end+2]
			v = v[end+2:]
			if tag == etag && (weak || !isWeak) {
				return true
			}
		}
	}
	return false
}
