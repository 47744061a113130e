package route

import (
	"errors"
	"fmt"
	"net/http"
	"path"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// MaxFileSize bounds a route file: a route is a few hundred bytes, and the
// proxy reads every file at each reload.
const MaxFileSize = 64 << 10

// Error is a problem in a route file, located as editors expect
// (file:line) and naming the key when there is one.
type Error struct {
	File string // file name as given to Parse
	Line int    // 1-based; 0 when the problem is the file as a whole
	Key  string // "table.key" or "key"; empty when not about one key
	Err  error
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("route: ")
	b.WriteString(e.File)
	if e.Line > 0 {
		b.WriteString(":" + strconv.Itoa(e.Line))
	}
	b.WriteString(": ")
	if e.Key != "" {
		b.WriteString(e.Key + ": ")
	}
	b.WriteString(e.Err.Error())
	return b.String()
}

func (e *Error) Unwrap() error { return e.Err }

// kind is a TOML value type of the subset.
type kind uint8

const (
	kString kind = iota
	kInt
	kBool
	kArray
)

func (k kind) String() string {
	return [...]string{"a string", "an integer", "a boolean", "an array of strings"}[k]
}

// tomlValue is one parsed value.
type tomlValue struct {
	kind kind
	s    string
	i    int64
	b    bool
	arr  []string
}

// item is one key = value with its table and line.
type item struct {
	table, key string
	v          tomlValue
	line       int
}

// scanner reads the TOML subset.
type scanner struct {
	src  string
	pos  int
	line int
}

func (s *scanner) errf(format string, a ...any) error {
	return &Error{Line: s.line, Err: fmt.Errorf(format, a...)}
}

func (s *scanner) peek() byte {
	if s.pos < len(s.src) {
		return s.src[s.pos]
	}
	return 0
}

// skipSpace skips blanks, and with newlines also line breaks and comments.
func (s *scanner) skipSpace(newlines bool) {
	for s.pos < len(s.src) {
		switch c := s.src[s.pos]; {
		case c == ' ' || c == '\t' || c == '\r':
			s.pos++
		case c == '#':
			for s.pos < len(s.src) && s.src[s.pos] != '\n' {
				s.pos++
			}
		case c == '\n' && newlines:
			s.pos++
			s.line++
		default:
			return
		}
	}
}

// endOfLine requires the rest of the line to be blank or a comment.
func (s *scanner) endOfLine() error {
	s.skipSpace(false)
	switch s.peek() {
	case 0:
		return nil
	case '\n':
		s.pos++
		s.line++
		return nil
	}
	return s.errf("unexpected %q after the value (one key = value per line)", s.peek())
}

func isBare(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '_' || c == '-'
}

func (s *scanner) key() (string, error) {
	switch c := s.peek(); {
	case c == '"' || c == '\'':
		return s.str()
	case isBare(c):
		start := s.pos
		for s.pos < len(s.src) && isBare(s.src[s.pos]) {
			s.pos++
		}
		if s.peek() == '.' {
			return "", s.errf("dotted keys are not supported; use a [table]")
		}
		return s.src[start:s.pos], nil
	}
	return "", s.errf("expected a key, found %q", s.peek())
}

// str reads a basic ("...") or literal ('...') single-line string.
func (s *scanner) str() (string, error) {
	q := s.src[s.pos]
	if strings.HasPrefix(s.src[s.pos:], string([]byte{q, q, q})) {
		return "", s.errf("multi-line strings are not supported")
	}
	s.pos++
	var b strings.Builder
	for {
		if s.pos >= len(s.src) || s.src[s.pos] == '\n' {
			return "", s.errf("unterminated string")
		}
		c := s.src[s.pos]
		s.pos++
		switch {
		case c == q:
			if !utf8.ValidString(b.String()) {
				return "", s.errf("string is not valid UTF-8")
			}
			return b.String(), nil
		case c == '\\' && q == '"':
			if s.pos >= len(s.src) {
				return "", s.errf("unterminated string")
			}
			e := s.src[s.pos]
			s.pos++
			switch e {
			case '"', '\\':
				b.WriteByte(e)
			case 'n':
				b.WriteByte('\n')
			case 't':
				b.WriteByte('\t')
			case 'r':
				b.WriteByte('\r')
			case 'u', 'U':
				n := 4
				if e == 'U' {
					n = 8
				}
				if s.pos+n > len(s.src) {
					return "", s.errf("short \\%c escape", e)
				}
				v, err := strconv.ParseUint(s.src[s.pos:s.pos+n], 16, 32)
				if err != nil || !utf8.ValidRune(rune(v)) {
					return "", s.errf("invalid \\%c escape", e)
				}
				s.pos += n
				b.WriteRune(rune(v))
			default:
				return "", s.errf("invalid escape \\%c", e)
			}
		case c < 0x20 && c != '\t' || c == 0x7f:
			return "", s.errf("control character in string")
		default:
			b.WriteByte(c)
		}
	}
}

func (s *scanner) value() (tomlValue, error) {
	switch c := s.peek(); {
	case c == '"' || c == '\'':
		v, err := s.str()
		return tomlValue{kind: kString, s: v}, err
	case c == '[':
		s.pos++
		var arr []string
		for {
			s.skipSpace(true)
			if s.peek() == ']' {
				s.pos++
				return tomlValue{kind: kArray, arr: arr}, nil
			}
			if c := s.peek(); c != '"' && c != '\'' {
				return tomlValue{}, s.errf("arrays hold strings only, found %q", c)
			}
			v, err := s.str()
			if err != nil {
				return tomlValue{}, err
			}
			arr = append(arr, v)
			s.skipSpace(true)
			switch s.peek() {
			case ',':
				s.pos++
			case ']':
			default:
				return tomlValue{}, s.errf("expected , or ] in array, found %q", s.peek())
			}
		}
	case c == 't' || c == 'f':
		for _, w := range []string{"true", "false"} {
			if strings.HasPrefix(s.src[s.pos:], w) && (s.pos+len(w) == len(s.src) || !isBare(s.src[s.pos+len(w)])) {
				s.pos += len(w)
				return tomlValue{kind: kBool, b: w == "true"}, nil
			}
		}
	case c == '+' || c == '-' || '0' <= c && c <= '9':
		start := s.pos
		s.pos++
		for s.pos < len(s.src) && (isBare(s.src[s.pos]) || s.src[s.pos] == '.') {
			s.pos++
		}
		lit := s.src[start:s.pos]
		n, err := strconv.ParseInt(strings.ReplaceAll(lit, "_", ""), 10, 64)
		if err != nil || strings.Contains(lit, "__") || strings.HasSuffix(lit, "_") {
			return tomlValue{}, s.errf("%q is not an integer (durations and sizes with units are strings: \"10s\", \"1MiB\")", lit)
		}
		return tomlValue{kind: kInt, i: n}, nil
	}
	return tomlValue{}, s.errf("expected a value (\"string\", integer, true/false or [array]), found %q", s.peek())
}

// parseTOML parses the subset into items, checking syntax and duplicate
// keys and tables only.
func parseTOML(src string) ([]item, error) {
	s := &scanner{src: src, line: 1}
	var items []item
	table := ""
	seenTables := map[string]bool{}
	seenKeys := map[string]int{}
	for {
		s.skipSpace(true)
		if s.pos >= len(s.src) {
			return items, nil
		}
		if s.peek() == '[' {
			s.pos++
			if s.peek() == '[' {
				return nil, s.errf("arrays of tables ([[...]]) are not supported")
			}
			s.skipSpace(false)
			name, err := s.key()
			if err != nil {
				return nil, err
			}
			s.skipSpace(false)
			if s.peek() != ']' {
				return nil, s.errf("expected ] after table name %q", name)
			}
			s.pos++
			if seenTables[name] {
				return nil, &Error{Line: s.line, Key: name, Err: errors.New("table defined twice")}
			}
			seenTables[name] = true
			table = name
			if err := s.endOfLine(); err != nil {
				return nil, err
			}
			continue
		}
		line := s.line
		k, err := s.key()
		if err != nil {
			return nil, err
		}
		s.skipSpace(false)
		if s.peek() != '=' {
			return nil, &Error{Line: line, Key: k, Err: fmt.Errorf("expected = after the key, found %q", s.peek())}
		}
		s.pos++
		s.skipSpace(false)
		v, err := s.value()
		if err != nil {
			var e *Error
			if errors.As(err, &e) && e.Key == "" {
				e.Key = qualify(table, k)
			}
			return nil, err
		}
		full := qualify(table, k)
		if prev, ok := seenKeys[strings.ToLower(full)]; ok {
			return nil, &Error{Line: line, Key: full, Err: fmt.Errorf("defined twice (first on line %d)", prev)}
		}
		seenKeys[strings.ToLower(full)] = line
		items = append(items, item{table: table, key: k, v: v, line: line})
		if err := s.endOfLine(); err != nil {
			return nil, err
		}
	}
}

func qualify(table, key string) string {
	if table == "" {
		return key
	}
	return table + "." + key
}

// keys are the keys of each table, for unknown-key errors and suggestions.
var keys = map[string][]string{
	"":                 {"backends", "lb", "alpn", "certificate", "max_body", "websocket", "passthrough", "site", "proxy_protocol"},
	"timeouts":         {"dial", "response_header", "idle"},
	"health":           {"path", "interval", "fails", "fail_duration"},
	"tls":              {"ca", "server_name", "insecure"},
	"request_headers":  nil,
	"response_headers": nil,
}

// HostFromFile returns the hostname a route file name stands for, checked.
func HostFromFile(name string) (string, error) {
	base := path.Base(strings.ReplaceAll(name, "\\", "/"))
	host, ok := strings.CutSuffix(base, Ext)
	if !ok {
		return "", fmt.Errorf("file name %q: want <hostname>%s", base, Ext)
	}
	if err := ValidHost(host); err != nil {
		return "", fmt.Errorf("file name %q: %w", base, err)
	}
	return host, nil
}

// Parse reads one route file. name is the file's name or path, used for the
// hostname (its base name without .toml) and in errors. The result has
// defaults filled in and has passed Validate.
func Parse(name string, data []byte) (*Route, error) {
	fail := func(line int, key string, err error) (*Route, error) {
		return nil, &Error{File: name, Line: line, Key: key, Err: err}
	}
	host, err := HostFromFile(name)
	if err != nil {
		return fail(0, "", err)
	}
	if len(data) > MaxFileSize {
		return fail(0, "", fmt.Errorf("larger than %d bytes", MaxFileSize))
	}
	if !utf8.Valid(data) {
		return fail(0, "", errors.New("not valid UTF-8"))
	}
	items, err := parseTOML(string(data))
	if err != nil {
		var e *Error
		if errors.As(err, &e) {
			e.File = name
		}
		return nil, err
	}
	r := &Route{Host: host, WebSocket: true}
	var backends []string
	backendsLine := 0
	for _, it := range items {
		full := qualify(it.table, it.key)
		known, tableOK := keys[it.table]
		if !tableOK {
			return fail(it.line, it.table, fmt.Errorf("unknown table [%s]%s", it.table, suggest(it.table, tableNames())))
		}
		want := func(k kind) error {
			if it.v.kind != k {
				return fmt.Errorf("want %s, got %s", k, it.v.kind)
			}
			return nil
		}
		dur := func() (time.Duration, error) {
			if err := want(kString); err != nil {
				return 0, err
			}
			d, err := time.ParseDuration(it.v.s)
			if err != nil {
				return 0, fmt.Errorf("%q is not a duration (e.g. \"10s\", \"1m30s\")", it.v.s)
			}
			if d <= 0 {
				return 0, fmt.Errorf("%q: want a positive duration", it.v.s)
			}
			return d, nil
		}
		var err error
		switch it.table {
		case "request_headers", "response_headers":
			if err = want(kString); err == nil {
				h := Header{Name: http.CanonicalHeaderKey(it.key), Value: it.v.s}
				if err = validHeader(h); err == nil {
					if it.table == "request_headers" {
						r.RequestHeaders = append(r.RequestHeaders, h)
					} else {
						r.ResponseHeaders = append(r.ResponseHeaders, h)
					}
				}
			}
		case "timeouts":
			var d time.Duration
			if d, err = dur(); err == nil {
				switch it.key {
				case "dial":
					r.Timeouts.Dial = d
				case "response_header":
					r.Timeouts.ResponseHeader = d
				case "idle":
					r.Timeouts.Idle = d
				default:
					err = unknownKey(it.key, known)
				}
			}
		case "health":
			switch it.key {
			case "path":
				if err = want(kString); err == nil {
					r.Health.Path = it.v.s
					if !strings.HasPrefix(it.v.s, "/") {
						err = errors.New("want a path starting with /")
					}
				}
			case "interval":
				r.Health.Interval, err = dur()
			case "fail_duration":
				r.Health.FailDuration, err = dur()
			case "fails":
				if err = want(kInt); err == nil {
					if it.v.i < 1 || it.v.i > 1000 {
						err = fmt.Errorf("%d: want 1 to 1000", it.v.i)
					}
					r.Health.Fails = int(it.v.i)
				}
			default:
				err = unknownKey(it.key, known)
			}
		case "tls":
			switch it.key {
			case "ca":
				if err = want(kString); err == nil {
					r.TLS.CAFile = it.v.s
				}
			case "server_name":
				if err = want(kString); err == nil {
					r.TLS.ServerName = it.v.s
				}
			case "insecure":
				if err = want(kBool); err == nil {
					r.TLS.Insecure = it.v.b
				}
			default:
				err = unknownKey(it.key, known)
			}
		case "":
			switch it.key {
			case "backends":
				if err = want(kArray); err == nil {
					backends, backendsLine = it.v.arr, it.line
					if len(backends) == 0 {
						err = errors.New("empty list")
					}
				}
			case "lb":
				if err = want(kString); err == nil {
					r.LB = Policy(it.v.s)
					switch r.LB {
					case RoundRobin, LeastConn, First:
					default:
						err = fmt.Errorf("%q: want round_robin, least_conn or first", it.v.s)
					}
				}
			case "alpn":
				if err = want(kArray); err == nil {
					r.ALPN = it.v.arr
					if len(r.ALPN) == 0 {
						err = errors.New("empty list: offer h2, http/1.1 or both")
					}
					for _, p := range r.ALPN {
						if p != "h2" && p != "http/1.1" {
							err = fmt.Errorf("%q: want h2 or http/1.1", p)
						}
					}
				}
			case "certificate":
				if err = want(kString); err == nil {
					r.Certificate = CertSource(it.v.s)
					switch r.Certificate {
					case CertDefault, CertACME, CertManual:
					default:
						err = fmt.Errorf("%q: want default, acme or manual", it.v.s)
					}
				}
			case "max_body":
				switch it.v.kind {
				case kInt:
					r.MaxBody = it.v.i
					if r.MaxBody < 0 {
						err = errors.New("negative")
					}
				case kString:
					r.MaxBody, err = ParseSize(it.v.s)
				default:
					err = fmt.Errorf("want bytes (an integer) or a size string such as \"10MiB\", got %s", it.v.kind)
				}
			case "websocket":
				if err = want(kBool); err == nil {
					r.WebSocket = it.v.b
				}
			case "passthrough":
				if err = want(kBool); err == nil {
					r.Passthrough = it.v.b
				}
			case "site":
				if err = want(kString); err == nil {
					r.Site = it.v.s
				}
			case "proxy_protocol":
				if err = want(kString); err == nil {
					r.ProxyProtocol = it.v.s
					if it.v.s != "v1" && it.v.s != "v2" {
						err = fmt.Errorf("%q: want v1 or v2", it.v.s)
					}
				}
			default:
				err = unknownKey(it.key, known)
			}
		}
		if err != nil {
			return fail(it.line, full, err)
		}
	}
	for _, b := range backends {
		be, err := ParseBackend(b, r.Passthrough)
		if err != nil {
			return fail(backendsLine, "backends", err)
		}
		r.Backends = append(r.Backends, be)
	}
	r.defaults()
	if err := r.Validate(); err != nil {
		return fail(0, "", err)
	}
	return r, nil
}

func tableNames() []string {
	var names []string
	for t := range keys {
		if t != "" {
			names = append(names, t)
		}
	}
	return names
}

func unknownKey(k string, known []string) error {
	return fmt.Errorf("unknown key%s", suggest(k, known))
}

// suggest returns ` (did you mean "x"?)` for the closest known word within
// two edits, or "".
func suggest(w string, known []string) string {
	best, bestD := "", 3
	for _, k := range known {
		if d := editDistance(strings.ToLower(w), k); d < bestD {
			best, bestD = k, d
		}
	}
	if best == "" {
		return ""
	}
	return fmt.Sprintf(" (did you mean %q?)", best)
}

// editDistance is the Levenshtein distance of two short strings.
func editDistance(a, b string) int {
	prev := make([]int, len(b)+1)
	cur := make([]int, len(b)+1)
	for j := range prev {
		prev[j] = j
	}
	for i := 1; i <= len(a); i++ {
		cur[0] = i
		for j := 1; j <= len(b); j++ {
			cost := 1
			if a[i-1] == b[j-1] {
				cost = 0
			}
			cur[j] = min(prev[j]+1, cur[j-1]+1, prev[j-1]+cost)
		}
		prev, cur = cur, prev
	}
	return prev[len(b)]
}

// ParseSize parses a byte count: digits with an optional unit B, KiB, MiB,
// GiB (or K, M, G, KB, MB, GB, taken as binary too).
func ParseSize(s string) (int64, error) {
	t := strings.TrimSpace(s)
	i := 0
	for i < len(t) && '0' <= t[i] && t[i] <= '9' {
		i++
	}
	if i == 0 {
		return 0, fmt.Errorf("size %q: want a number of bytes with an optional unit (KiB, MiB, GiB)", s)
	}
	n, err := strconv.ParseInt(t[:i], 10, 64)
	if err != nil {
		return 0, fmt.Errorf("size %q: %w", s, err)
	}
	var mult int64
	switch strings.ToLower(strings.TrimSpace(t[i:])) {
	case "", "b":
		mult = 1
	case "k", "kb", "kib":
		mult = 1 << 10
	case "m", "mb", "mib":
		mult = 1 << 20
	case "g", "gb", "gib":
		mult = 1 << 30
	default:
		return 0, fmt.Errorf("size %q: unknown unit %q (want KiB, MiB or GiB)", s, t[i:])
	}
	if n > (1<<62)/mult {
		return 0, fmt.Errorf("size %q: too large", s)
	}
	return n * mult, nil
}
