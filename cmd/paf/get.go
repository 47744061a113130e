package main

import (
	"bytes"
	"compress/gzip"
	"compress/zlib"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"os"
	"path"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/andybalholm/brotli"
	"github.com/klauspost/compress/flate"
	"github.com/klauspost/compress/zstd"

	pafclient "github.com/pafhq/paf/client"
	"github.com/pafhq/paf/internal/atomicfile"
	"github.com/pafhq/paf/stack"
)

// Exit codes of paf get, curl's for the same failures.
const (
	exitOK           = 0
	exitUnsupported  = 1  // unsupported protocol
	exitUsage        = 2  // bad command line
	exitBadURL       = 3  // malformed URL
	exitResolve      = 6  // couldn't resolve host
	exitConnect      = 7  // couldn't connect
	exitPartial      = 18 // transfer ended before the announced length
	exitHTTP         = 22 // HTTP status >= 400 with -f
	exitWrite        = 23 // writing the output failed
	exitRead         = 26 // reading a --data file failed
	exitTimeout      = 28 // --max-time or --connect-timeout passed
	exitRange        = 33 // the server ignored the Range of -C
	exitTLS          = 35 // TLS handshake failed
	exitRedirects    = 47 // more than --max-redirs redirects
	exitRecv         = 56 // receiving data failed
	exitCert         = 60 // the certificate was not trusted
	exitDecoding     = 61 // the Content-Encoding could not be decoded
	exitCAFile       = 77 // the --cacert file could not be used
	exitPinMismatch  = 90 // the certificate did not match --pin
	defaultMaxRedirs = 50 // curl's default
)

const getUsage = `Usage: paf get [options] URL

Fetches URL (http://, https://, or h2c:// for cleartext HTTP/2 with prior
knowledge; no scheme means http://) with curl's habits: the body goes to
stdout, exit codes are curl's (6 resolve, 7 connect, 22 HTTP error with -f,
28 timeout, 35 TLS, 60 certificate, 90 pin mismatch). Short options may be
clustered (-sSfL) and options may follow the URL.

Options:
  -o, --output FILE        write the body to FILE (atomically: FILE appears
                           complete or not at all), - for stdout
  -O, --remote-name        write to the URL's last path segment
  -I, --head               HEAD request, print the headers only
  -i, --include            print the response headers before the body
  -X, --request METHOD     request method
  -H, --header 'K: V'      add a request header (repeatable); 'K:' removes
                           a default header, 'K;' sends it empty
  -A, --user-agent UA      User-Agent header
  -d, --data DATA          POST DATA (@FILE: its content without newlines);
                           several are joined with &
      --data-binary DATA   POST DATA as is (@FILE: the file's bytes)
  -L, --location           follow redirects
      --max-redirs N       at most N redirects with -L (default 50)
      --http1.1            speak HTTP/1.1 only
      --http2              offer h2 and http/1.1 by ALPN over TLS (default)
      --http2-prior-knowledge
                           speak HTTP/2 only: h2c in clear text
      --compressed         ask for gzip, deflate, br or zstd and decode it
      --cacert FILE        trust the CA certificates in FILE alone
      --pin SPEC           trust the server whose certificate (cert:sha256:
                           <base64>) or public key (key:sha256:<base64>)
                           has this hash, instead of a CA (the chain and
                           names are not checked; wins over --cacert)
  -k, --insecure           trust any server (wins over --pin and --cacert)
      --unix-socket PATH   connect to a unix socket instead of the host
      --connect-timeout S  seconds allowed to connect, TLS included
  -m, --max-time S         seconds allowed for the whole transfer
  -C, --continue-at -|N    resume: ask for the bytes from N, or (-) from
                           the size of the -o file, and append to it
  -w, --write-out FMT      print FMT after the transfer: %{http_code}
                           %{http_version} %{size_download} %{time_total}
                           %{url_effective} %{content_type} %{num_redirects}
                           %{remote_ip} %{remote_port} %{exitcode}; \n \t \r
                           escapes; @FILE reads FMT from FILE
  -f, --fail               exit 22 without output on HTTP status >= 400
  -s, --silent             no progress bar, no error messages
  -S, --show-error         error messages even with -s
  -v, --verbose            connection, TLS and headers on stderr
  -h, --help               this help
`

// getOptions is a parsed paf get command line.
type getOptions struct {
	url            string
	output         string
	remoteName     bool
	head, include  bool
	method         string
	headers        []string
	userAgent      *string
	data           [][]byte
	hasData        bool
	location       bool
	maxRedirs      int
	mode           pafclient.Mode
	compressed     bool
	cacert, pin    string
	insecure       bool
	unixSocket     string
	connectTimeout time.Duration
	maxTime        time.Duration
	resume         string
	writeOut       string
	fail           bool
	silent         bool
	showError      bool
	verbose        bool
}

// getOpt describes one option: its short and long names, whether it takes
// a value, and what it does with it.
type getOpt struct {
	short byte
	long  string
	arg   bool
	set   func(o *getOptions, v string) error
}

func seconds(dst *time.Duration) func(*getOptions, string) error {
	return func(_ *getOptions, v string) error {
		f, err := strconv.ParseFloat(v, 64)
		if err != nil || f < 0 {
			return fmt.Errorf("want a number of seconds, got %q", v)
		}
		*dst = time.Duration(f * float64(time.Second))
		return nil
	}
}

func getOpts(o *getOptions) []getOpt {
	flag := func(p *bool) func(*getOptions, string) error {
		return func(*getOptions, string) error { *p = true; return nil }
	}
	str := func(p *string) func(*getOptions, string) error {
		return func(_ *getOptions, v string) error { *p = v; return nil }
	}
	mode := func(m pafclient.Mode) func(*getOptions, string) error {
		return func(o *getOptions, _ string) error { o.mode = m; return nil }
	}
	data := func(binary bool) func(*getOptions, string) error {
		return func(o *getOptions, v string) error {
			b := []byte(v)
			if file, ok := strings.CutPrefix(v, "@"); ok {
				var err error
				if file == "-" {
					b, err = io.ReadAll(os.Stdin)
				} else {
					b, err = os.ReadFile(file)
				}
				if err != nil {
					return &getFailure{exitRead, "couldn't read data", err}
				}
				if !binary {
					b = bytes.ReplaceAll(bytes.ReplaceAll(b, []byte("\r"), nil), []byte("\n"), nil)
				}
			}
			o.data = append(o.data, b)
			o.hasData = true
			return nil
		}
	}
	return []getOpt{
		{'o', "output", true, str(&o.output)},
		{'O', "remote-name", false, flag(&o.remoteName)},
		{'I', "head", false, flag(&o.head)},
		{'i', "include", false, flag(&o.include)},
		{'X', "request", true, str(&o.method)},
		{'H', "header", true, func(o *getOptions, v string) error { o.headers = append(o.headers, v); return nil }},
		{'A', "user-agent", true, func(o *getOptions, v string) error { o.userAgent = &v; return nil }},
		{'d', "data", true, data(false)},
		{0, "data-ascii", true, data(false)},
		{0, "data-binary", true, data(true)},
		{0, "data-raw", true, func(o *getOptions, v string) error { o.data = append(o.data, []byte(v)); o.hasData = true; return nil }},
		{'L', "location", false, flag(&o.location)},
		{0, "max-redirs", true, func(o *getOptions, v string) error {
			n, err := strconv.Atoi(v)
			if err != nil {
				return fmt.Errorf("want a number, got %q", v)
			}
			o.maxRedirs = n
			return nil
		}},
		{0, "http1.1", false, mode(pafclient.ModeHTTP1)},
		{0, "http2", false, mode(pafclient.ModeAuto)},
		{0, "http2-prior-knowledge", false, mode(pafclient.ModeHTTP2PriorKnowledge)},
		{0, "compressed", false, flag(&o.compressed)},
		{0, "cacert", true, str(&o.cacert)},
		{0, "pin", true, str(&o.pin)},
		{'k', "insecure", false, flag(&o.insecure)},
		{0, "unix-socket", true, str(&o.unixSocket)},
		{0, "connect-timeout", true, seconds(&o.connectTimeout)},
		{'m', "max-time", true, seconds(&o.maxTime)},
		{'C', "continue-at", true, str(&o.resume)},
		{'w', "write-out", true, func(o *getOptions, v string) error {
			if file, ok := strings.CutPrefix(v, "@"); ok {
				b, err := os.ReadFile(file)
				if err != nil {
					return err
				}
				v = string(b)
			}
			o.writeOut = v
			return nil
		}},
		{'f', "fail", false, flag(&o.fail)},
		{'s', "silent", false, flag(&o.silent)},
		{'S', "show-error", false, flag(&o.showError)},
		{'v', "verbose", false, flag(&o.verbose)},
	}
}

// parseGetArgs parses curl-style arguments: options anywhere, short ones
// clustered (-sSfL, -so FILE, -oFILE), long ones as --name VALUE or
// --name=VALUE, and "--" ending options.
func parseGetArgs(args []string) (*getOptions, error) {
	o := &getOptions{maxRedirs: defaultMaxRedirs}
	opts := getOpts(o)
	byShort := map[byte]*getOpt{}
	byLong := map[string]*getOpt{}
	for i := range opts {
		if opts[i].short != 0 {
			byShort[opts[i].short] = &opts[i]
		}
		byLong[opts[i].long] = &opts[i]
	}
	var urls []string
	apply := func(opt *getOpt, name, v string) error {
		if err := opt.set(o, v); err != nil {
			var f *getFailure
			if errors.As(err, &f) {
				return err
			}
			return usageErr("option %s: %v", name, err)
		}
		return nil
	}
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--":
			urls = append(urls, args[i+1:]...)
			i = len(args)
		case a == "-h" || a == "--help":
			return nil, errGetHelp
		case strings.HasPrefix(a, "--"):
			name, v, hasV := strings.Cut(a[2:], "=")
			opt := byLong[name]
			if opt == nil {
				return nil, usageErr("unknown option --%s (see `paf get --help`)", name)
			}
			if opt.arg && !hasV {
				if i+1 >= len(args) {
					return nil, usageErr("option --%s needs a value", name)
				}
				i++
				v = args[i]
			} else if !opt.arg && hasV {
				return nil, usageErr("option --%s takes no value", name)
			}
			if err := apply(opt, "--"+name, v); err != nil {
				return nil, err
			}
		case len(a) > 1 && a[0] == '-':
			for j := 1; j < len(a); j++ {
				opt := byShort[a[j]]
				if opt == nil {
					return nil, usageErr("unknown option -%c (see `paf get --help`)", a[j])
				}
				v := ""
				if opt.arg {
					if j+1 < len(a) {
						v = a[j+1:]
					} else if i+1 < len(args) {
						i++
						v = args[i]
					} else {
						return nil, usageErr("option -%c needs a value", a[j])
					}
					j = len(a)
				}
				if err := apply(opt, "-"+string(opt.short), v); err != nil {
					return nil, err
				}
			}
		default:
			urls = append(urls, a)
		}
	}
	switch {
	case len(urls) == 0:
		return nil, usageErr("no URL given (see `paf get --help`)")
	case len(urls) > 1:
		return nil, usageErr("one URL at a time, got %d: %s", len(urls), strings.Join(urls, " "))
	}
	o.url = urls[0]
	if o.head && o.hasData {
		return nil, usageErr("-I (HEAD) and -d (POST) cannot be combined")
	}
	if o.output != "" && o.remoteName {
		return nil, usageErr("-o and -O cannot be combined")
	}
	if o.resume != "" && o.resume != "-" {
		if n, err := strconv.ParseInt(o.resume, 10, 64); err != nil || n < 0 {
			return nil, usageErr("option -C: want - or a byte offset, got %q", o.resume)
		}
	}
	if o.maxRedirs < -1 {
		return nil, usageErr("option --max-redirs: want -1 (unlimited) or more, got %d", o.maxRedirs)
	}
	return o, nil
}

var errGetHelp = errors.New("help requested")

// getFailure is a failed transfer: the exit code and what failed.
type getFailure struct {
	code int
	what string
	err  error
}

func (f *getFailure) Error() string {
	if f.err == nil {
		return f.what
	}
	return f.what + ": " + f.err.Error()
}

func (f *getFailure) Unwrap() error { return f.err }

// get runs `paf get`, a curl-like client, and returns its exit code, which
// follows curl's.
func get(ctx context.Context, args []string, stdout, stderr io.Writer) int {
	o, err := parseGetArgs(args)
	if err != nil {
		if err == errGetHelp {
			fmt.Fprint(stdout, getUsage)
			return exitOK
		}
		return reportGet(stderr, nil, err)
	}
	g := &getter{o: o, stdout: stdout, stderr: stderr}
	err = g.run(ctx)
	code := exitOK
	if err != nil {
		code = reportGet(stderr, o, err)
	}
	if o.writeOut != "" {
		g.writeOutput(code)
	}
	return code
}

// reportGet prints err (unless silenced) and returns its exit code.
func reportGet(stderr io.Writer, o *getOptions, err error) int {
	code, msg := exitUsage, err.Error()
	var f *getFailure
	var u *usageError
	switch {
	case errors.As(err, &f):
		code = f.code
	case errors.As(err, &u):
	default:
		code, msg = exitRecv, err.Error()
	}
	if o == nil || !o.silent || o.showError {
		fmt.Fprintf(stderr, "paf get: (%d) %s\n", code, msg)
	}
	return code
}

// classify turns a transfer error into a getFailure with curl's code.
func classify(err error) error {
	var f *getFailure
	if errors.As(err, &f) {
		return err
	}
	// net/http's *url.Error repeats the method and URL the user typed.
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	if errors.Is(err, errTooManyRedirects) {
		return &getFailure{exitRedirects, "too many redirects", err}
	}
	switch pafclient.KindOf(err) {
	case pafclient.KindResolve:
		return &getFailure{exitResolve, "couldn't resolve host", err}
	case pafclient.KindConnect:
		return &getFailure{exitConnect, "couldn't connect to server", err}
	case pafclient.KindTimeout:
		return &getFailure{exitTimeout, "operation timed out", err}
	case pafclient.KindTLS:
		return &getFailure{exitTLS, "TLS handshake failed", err}
	case pafclient.KindCertificate:
		return &getFailure{exitCert, "server certificate not trusted", err}
	case pafclient.KindPin:
		return &getFailure{exitPinMismatch, "server certificate does not match --pin", err}
	}
	return &getFailure{exitRecv, "request failed", err}
}

var errTooManyRedirects = errors.New("maximum number of redirects followed")

// getter runs one transfer and remembers what -w reports.
type getter struct {
	o              *getOptions
	stdout, stderr io.Writer

	start      time.Time
	end        time.Time
	resp       *http.Response
	redirects  int
	downloaded int64
	effective  *url.URL
	remote     net.Addr
	current    *http.Request // the request being sent, for -v

	vmu sync.Mutex // serialises -v output from the transport's goroutines
}

func (g *getter) verbosef(format string, args ...any) {
	if !g.o.verbose {
		return
	}
	g.vmu.Lock()
	fmt.Fprintf(g.stderr, format, args...)
	g.vmu.Unlock()
}

// parseURL applies curl's default scheme and checks the scheme is one
// paf get speaks.
func parseURL(raw string) (*url.URL, error) {
	if !strings.Contains(raw, "://") {
		raw = "http://" + raw
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, &getFailure{exitBadURL, "malformed URL", err}
	}
	u.Scheme = strings.ToLower(u.Scheme)
	switch u.Scheme {
	case "http", "https", "h2c":
	default:
		return nil, &getFailure{exitUnsupported, "unsupported protocol",
			fmt.Errorf("%q in %s (want http, https or h2c)", u.Scheme, raw)}
	}
	if u.Host == "" {
		return nil, &getFailure{exitBadURL, "malformed URL", fmt.Errorf("%s has no host", raw)}
	}
	return u, nil
}

func (g *getter) authenticator() (pafclient.Authenticator, error) {
	o := g.o
	switch {
	case o.insecure:
		return pafclient.Insecure{}, nil
	case o.pin != "":
		p, err := pafclient.ParsePin(o.pin)
		if err != nil {
			return nil, usageErr("--pin: %v", err)
		}
		return p, nil
	case o.cacert != "":
		a, err := pafclient.CAFile(o.cacert)
		if err != nil {
			return nil, &getFailure{exitCAFile, "problem with the CA certificate file", err}
		}
		return a, nil
	}
	return pafclient.SystemRoots{}, nil
}

// outputPath is the file the body goes to, "" for stdout.
func (g *getter) outputPath(u *url.URL) (string, error) {
	o := g.o
	if o.remoteName {
		name := path.Base(u.Path)
		if name == "/" || name == "." || name == "" {
			return "", &getFailure{exitWrite, "remote file name has no length", fmt.Errorf("%s ends in /", u.Redacted())}
		}
		return name, nil
	}
	if o.output == "-" {
		return "", nil
	}
	return o.output, nil
}

func (g *getter) run(ctx context.Context) error {
	o := g.o
	u, err := parseURL(o.url)
	if err != nil {
		return err
	}
	g.effective = u
	auth, err := g.authenticator()
	if err != nil {
		return err
	}
	outPath, err := g.outputPath(u)
	if err != nil {
		return err
	}
	var offset int64
	if o.resume == "-" && outPath != "" {
		if fi, err := os.Stat(outPath); err == nil {
			offset = fi.Size()
		}
	} else if o.resume != "" && o.resume != "-" {
		offset, _ = strconv.ParseInt(o.resume, 10, 64)
	}

	req, err := g.request(u, offset)
	if err != nil {
		return err
	}
	tr := &pafclient.Transport{
		Dialer: &pafclient.Dialer{
			Stack:          &stack.Host{},
			Authenticator:  auth,
			ConnectTimeout: o.connectTimeout,
		},
		Mode:       o.mode,
		UnixSocket: o.unixSocket,
	}
	defer tr.CloseIdleConnections()
	var headerBuf bytes.Buffer // -i headers of redirects, before the final ones
	hc := &http.Client{
		Transport: tr,
		CheckRedirect: func(next *http.Request, via []*http.Request) error {
			if !o.location {
				return http.ErrUseLastResponse
			}
			if o.maxRedirs >= 0 && len(via) > o.maxRedirs {
				return fmt.Errorf("%w (%d)", errTooManyRedirects, o.maxRedirs)
			}
			g.redirects = len(via)
			g.effective = next.URL
			g.vmu.Lock()
			g.current = next
			g.vmu.Unlock()
			if prev := next.Response; prev != nil {
				g.verboseResponse(prev)
				if o.include {
					writeHeaders(&headerBuf, prev)
				}
			}
			g.verbosef("* Following the redirect to %s\n", next.URL.Redacted())
			return nil
		},
	}

	if o.maxTime > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, o.maxTime)
		defer cancel()
	}
	ctx = g.trace(ctx)
	req = req.WithContext(ctx)
	g.current = req

	g.start = time.Now()
	defer func() { g.end = time.Now() }()
	resp, err := hc.Do(req)
	if err != nil {
		return classify(err)
	}
	defer resp.Body.Close()
	g.resp = resp
	g.effective = resp.Request.URL
	g.verboseResponse(resp)

	if o.fail && resp.StatusCode >= 400 {
		return &getFailure{exitHTTP, fmt.Sprintf("the requested URL returned error: %d", resp.StatusCode), nil}
	}
	appendTo := false
	ignoreBody := o.head
	if offset > 0 && req.Method == http.MethodGet {
		switch {
		case resp.StatusCode == http.StatusPartialContent:
			appendTo = outPath != ""
		case resp.StatusCode == http.StatusRequestedRangeNotSatisfiable:
			// curl's rule: at resume, 416 means there is nothing left.
			g.verbosef("* The entire document is already downloaded\n")
			ignoreBody, appendTo = true, outPath != ""
		case resp.StatusCode < 300 && resp.ContentLength == offset:
			g.verbosef("* The entire document is already downloaded\n")
			ignoreBody, appendTo = true, outPath != ""
		case resp.StatusCode < 300:
			return &getFailure{exitRange, "HTTP server doesn't seem to support byte ranges; cannot resume", nil}
		}
	}

	var head bytes.Buffer
	head.Write(headerBuf.Bytes())
	if o.include || o.head {
		writeHeaders(&head, resp)
	}
	var body io.Reader = &countingReader{r: resp.Body, n: &g.downloaded}
	if ignoreBody {
		body = strings.NewReader("")
	} else if o.compressed {
		if body, err = decoder(resp.Header.Get("Content-Encoding"), body); err != nil {
			return err
		}
	}
	return g.write(outPath, appendTo, head.Bytes(), body, resp.ContentLength)
}

// request builds the request the options describe.
func (g *getter) request(u *url.URL, offset int64) (*http.Request, error) {
	o := g.o
	method := http.MethodGet
	var body io.Reader
	if o.hasData {
		method = http.MethodPost
		body = bytes.NewReader(bytes.Join(o.data, []byte("&")))
	}
	if o.head {
		method = http.MethodHead
	}
	if o.method != "" {
		method = o.method
	}
	req, err := http.NewRequest(method, u.String(), body)
	if err != nil {
		return nil, &getFailure{exitBadURL, "malformed request", err}
	}
	req.Header.Set("User-Agent", "paf/"+buildVersion())
	if o.userAgent != nil {
		req.Header.Set("User-Agent", *o.userAgent)
	}
	req.Header.Set("Accept", "*/*")
	if o.hasData {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	if o.compressed {
		req.Header.Set("Accept-Encoding", "deflate, gzip, br, zstd")
	}
	if offset > 0 {
		req.Header.Set("Range", fmt.Sprintf("bytes=%d-", offset))
	}
	custom := map[string]bool{}
	for _, h := range o.headers {
		name, value, ok := strings.Cut(h, ":")
		empty := false
		if !ok {
			if name, ok = strings.CutSuffix(h, ";"); !ok {
				return nil, usageErr("-H %q: want 'Name: value'", h)
			}
			empty = true
		}
		name = strings.TrimSpace(name)
		value = strings.TrimSpace(value)
		if name == "" {
			return nil, usageErr("-H %q: empty header name", h)
		}
		key := http.CanonicalHeaderKey(name)
		if key == "Host" {
			req.Host = value
			continue
		}
		if !custom[key] {
			// The first -H of a name replaces paf's default, like curl.
			req.Header.Del(key)
			custom[key] = true
		}
		if value == "" && !empty {
			if key == "User-Agent" {
				req.Header["User-Agent"] = []string{""} // net/http's way to send none
			}
			continue
		}
		req.Header.Add(key, value)
	}
	return req, nil
}

// trace wires -v and -w's remote address into the request's context.
func (g *getter) trace(ctx context.Context) context.Context {
	ctx = pafclient.WithTrace(ctx, &pafclient.Trace{
		Resolved: func(host string, addrs []string) {
			g.verbosef("* Host %s resolved to %s\n", host, strings.Join(addrs, ", "))
		},
		ConnectStart: func(network, addr string) { g.verbosef("*   Trying %s (%s)...\n", addr, network) },
		ConnectDone: func(network, addr string, err error) {
			if err != nil {
				g.verbosef("*   %s: %v\n", addr, err)
			} else {
				g.verbosef("* Connected to %s\n", addr)
			}
		},
		TLSHandshakeDone: func(cs tls.ConnectionState, err error) {
			if err != nil {
				g.verbosef("* TLS handshake failed: %v\n", err)
			}
			if !g.o.verbose || cs.Version == 0 {
				return
			}
			alpn := cs.NegotiatedProtocol
			if alpn == "" {
				alpn = "none (HTTP/1.1)"
			}
			g.verbosef("* %s, %s\n* ALPN: server accepted %s\n", tls.VersionName(cs.Version), tls.CipherSuiteName(cs.CipherSuite), alpn)
			g.verbosef("* Server certificate chain:\n")
			for i, c := range cs.PeerCertificates {
				g.verbosef("*  %d subject: %s\n*    issuer: %s\n", i, c.Subject, c.Issuer)
				if i == 0 {
					g.verbosef("*    valid: %s to %s\n*    names: %s\n", c.NotBefore.UTC().Format(time.RFC3339),
						c.NotAfter.UTC().Format(time.RFC3339), strings.Join(append(append([]string{}, c.DNSNames...), ipStrings(c.IPAddresses)...), ", "))
				}
			}
		},
	})
	return httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		GotConn: func(info httptrace.GotConnInfo) {
			g.vmu.Lock()
			g.remote = info.Conn.RemoteAddr()
			req := g.current
			g.vmu.Unlock()
			if info.Reused {
				g.verbosef("* Re-using the connection to %s\n", info.Conn.RemoteAddr())
			}
			proto := "HTTP/1.1"
			if tc, ok := info.Conn.(*tls.Conn); ok && tc.ConnectionState().NegotiatedProtocol == "h2" ||
				!ok && (g.o.mode == pafclient.ModeHTTP2PriorKnowledge || req.URL.Scheme == "h2c") {
				proto = "HTTP/2"
			}
			g.verbosef("> %s %s %s\n", req.Method, req.URL.RequestURI(), proto)
		},
		WroteHeaderField: func(key string, values []string) {
			for _, v := range values {
				g.verbosef("> %s: %s\n", key, v)
			}
		},
		WroteHeaders: func() { g.verbosef(">\n") },
	})
}

func ipStrings(ips []net.IP) []string {
	s := make([]string, len(ips))
	for i, ip := range ips {
		s[i] = ip.String()
	}
	return s
}

// protoName is the HTTP version as curl prints it in status lines.
func protoName(resp *http.Response) string {
	if resp.ProtoMajor == 2 {
		return "HTTP/2"
	}
	return fmt.Sprintf("HTTP/%d.%d", resp.ProtoMajor, resp.ProtoMinor)
}

// writeHeaders writes resp's status line and headers as curl -i does:
// CRLF line ends, lower-case names over HTTP/2.
func writeHeaders(w io.Writer, resp *http.Response) {
	fmt.Fprintf(w, "%s %s\r\n", protoName(resp), resp.Status)
	for _, l := range headerLines(resp) {
		fmt.Fprintf(w, "%s\r\n", l)
	}
	fmt.Fprint(w, "\r\n")
}

func headerLines(resp *http.Response) []string {
	keys := make([]string, 0, len(resp.Header))
	for k := range resp.Header {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var lines []string
	for _, k := range keys {
		name := k
		if resp.ProtoMajor == 2 {
			name = strings.ToLower(k)
		}
		for _, v := range resp.Header[k] {
			lines = append(lines, name+": "+v)
		}
	}
	return lines
}

func (g *getter) verboseResponse(resp *http.Response) {
	if !g.o.verbose {
		return
	}
	g.vmu.Lock()
	defer g.vmu.Unlock()
	fmt.Fprintf(g.stderr, "< %s %s\n", protoName(resp), resp.Status)
	for _, l := range headerLines(resp) {
		fmt.Fprintf(g.stderr, "< %s\n", l)
	}
	fmt.Fprint(g.stderr, "<\n")
}

// recvError is a failure reading the response body from the network.
type recvError struct{ err error }

func (e *recvError) Error() string { return e.err.Error() }
func (e *recvError) Unwrap() error { return e.err }

// decodeError is a failure decoding the Content-Encoding.
type decodeError struct{ err error }

func (e *decodeError) Error() string { return e.err.Error() }
func (e *decodeError) Unwrap() error { return e.err }

// countingReader counts the bytes received (for %{size_download}) and
// tags read errors as the network's.
type countingReader struct {
	r io.Reader
	n *int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	*c.n += int64(n)
	if err != nil && err != io.EOF {
		err = &recvError{err}
	}
	return n, err
}

// decodingReader tags decoder errors that are not the network's.
type decodingReader struct{ r io.Reader }

func (d *decodingReader) Read(p []byte) (int, error) {
	n, err := d.r.Read(p)
	if err != nil && err != io.EOF && !errors.As(err, new(*recvError)) {
		err = &decodeError{err}
	}
	return n, err
}

// decoder undoes the Content-Encoding for --compressed, as curl does.
func decoder(encoding string, r io.Reader) (io.Reader, error) {
	var dec io.Reader
	switch strings.ToLower(strings.TrimSpace(encoding)) {
	case "", "identity":
		return r, nil
	case "gzip", "x-gzip":
		zr, err := gzip.NewReader(r)
		if err != nil {
			return nil, decodeFailure(encoding, err)
		}
		dec = zr
	case "deflate":
		// HTTP's deflate is zlib; some servers send raw deflate.
		br := newPeekReader(r)
		if zr, err := zlib.NewReader(br); err == nil {
			dec = zr
		} else {
			br.rewind()
			dec = flate.NewReader(br)
		}
	case "br":
		dec = brotli.NewReader(r)
	case "zstd":
		zr, err := zstd.NewReader(r)
		if err != nil {
			return nil, decodeFailure(encoding, err)
		}
		dec = zr.IOReadCloser()
	default:
		return nil, &getFailure{exitDecoding, "unsupported Content-Encoding", fmt.Errorf("%q", encoding)}
	}
	return &decodingReader{dec}, nil
}

func decodeFailure(encoding string, err error) error {
	if errors.As(err, new(*recvError)) {
		return classifyRecv(err)
	}
	return &getFailure{exitDecoding, "bad " + encoding + " content", err}
}

// peekReader remembers what was read until rewind, so a second decoder can
// start over.
type peekReader struct {
	r      io.Reader
	buf    bytes.Buffer
	replay *bytes.Reader
}

func newPeekReader(r io.Reader) *peekReader { return &peekReader{r: r} }

func (p *peekReader) Read(b []byte) (int, error) {
	if p.replay != nil && p.replay.Len() > 0 {
		return p.replay.Read(b)
	}
	n, err := p.r.Read(b)
	if p.replay == nil {
		p.buf.Write(b[:n])
	}
	return n, err
}

func (p *peekReader) rewind() { p.replay = bytes.NewReader(p.buf.Bytes()) }

func classifyRecv(err error) error {
	if pafclient.KindOf(err) == pafclient.KindTimeout {
		return &getFailure{exitTimeout, "operation timed out", err}
	}
	if errors.Is(err, io.ErrUnexpectedEOF) {
		return &getFailure{exitPartial, "transfer closed with data remaining", err}
	}
	return &getFailure{exitRecv, "failure receiving data", err}
}

// write sends head then body to path (stdout if ""), atomically unless
// appending a resumed download.
func (g *getter) write(outPath string, appendTo bool, head []byte, body io.Reader, total int64) error {
	src := io.MultiReader(bytes.NewReader(head), body)
	var bar *progressBar
	if outPath != "" && !g.o.silent && !g.o.verbose && isTerminal(g.stderr) {
		bar = &progressBar{w: g.stderr, total: total, start: time.Now()}
		src = io.TeeReader(src, bar)
		defer bar.finish()
	}
	var err error
	switch {
	case outPath == "":
		_, err = io.Copy(g.stdout, src)
	case appendTo:
		err = copyInto(outPath, os.O_APPEND, src)
	default:
		err = atomicfile.WriteFrom(outPath, src, 0o644, nil)
		if errors.Is(err, atomicfile.ErrNotRegular) {
			// A device or pipe (-o /dev/null, -o /dev/stdout): write
			// into it, as curl does; renaming over it would replace it.
			err = copyInto(outPath, 0, src)
		}
	}
	switch {
	case err == nil:
		return nil
	case errors.As(err, new(*recvError)):
		return classifyRecv(err)
	case errors.As(err, new(*decodeError)):
		return &getFailure{exitDecoding, "bad " + g.resp.Header.Get("Content-Encoding") + " content", err}
	}
	where := outPath
	if where == "" {
		where = "stdout"
	}
	return &getFailure{exitWrite, "failed writing the body to " + where, err}
}

// copyInto writes src into the existing file at path, opened write-only
// with the extra flags.
func copyInto(path string, flags int, src io.Reader) error {
	f, err := os.OpenFile(path, os.O_WRONLY|flags, 0)
	if err != nil {
		return err
	}
	_, err = io.Copy(f, src)
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// isTerminal reports whether w is a terminal, where a progress bar belongs.
func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

// progressBar draws the download's progress on one terminal line, redrawn
// at most ten times a second.
type progressBar struct {
	w     io.Writer
	total int64 // -1 when unknown
	start time.Time
	n     int64
	drawn time.Time
}

func (p *progressBar) Write(b []byte) (int, error) {
	p.n += int64(len(b))
	if now := time.Now(); now.Sub(p.drawn) >= 100*time.Millisecond {
		p.drawn = now
		p.draw()
	}
	return len(b), nil
}

func (p *progressBar) draw() {
	rate := float64(p.n) / max(time.Since(p.start).Seconds(), 1e-3)
	if p.total > 0 {
		const width = 30
		frac := min(float64(p.n)/float64(p.total), 1)
		fill := int(frac * width)
		fmt.Fprintf(p.w, "\r[%s%s] %3.0f%% %s / %s %s/s ", strings.Repeat("#", fill), strings.Repeat(" ", width-fill),
			frac*100, humanBytes(float64(p.n)), humanBytes(float64(p.total)), humanBytes(rate))
		return
	}
	fmt.Fprintf(p.w, "\r%s %s/s ", humanBytes(float64(p.n)), humanBytes(rate))
}

func (p *progressBar) finish() {
	p.draw()
	fmt.Fprintln(p.w)
}

func humanBytes(n float64) string {
	units := []string{"B", "KiB", "MiB", "GiB", "TiB"}
	i := 0
	for n >= 1024 && i < len(units)-1 {
		n /= 1024
		i++
	}
	if i == 0 {
		return fmt.Sprintf("%.0f %s", n, units[i])
	}
	return fmt.Sprintf("%.1f %s", n, units[i])
}

// writeOutput prints -w's format with the transfer's values.
func (g *getter) writeOutput(code int) {
	if g.end.IsZero() {
		g.end = time.Now()
	}
	vars := map[string]func() string{
		"http_code":     func() string { return fmt.Sprintf("%03d", g.status()) },
		"response_code": func() string { return fmt.Sprintf("%03d", g.status()) },
		"http_version": func() string {
			switch {
			case g.resp == nil:
				return "0"
			case g.resp.ProtoMajor == 2:
				return "2"
			default:
				return fmt.Sprintf("%d.%d", g.resp.ProtoMajor, g.resp.ProtoMinor)
			}
		},
		"size_download": func() string { return strconv.FormatInt(g.downloaded, 10) },
		"time_total": func() string {
			if g.start.IsZero() {
				return "0.000000"
			}
			return fmt.Sprintf("%.6f", g.end.Sub(g.start).Seconds())
		},
		"url_effective": func() string {
			if g.effective == nil {
				return g.o.url
			}
			return g.effective.String()
		},
		"content_type": func() string {
			if g.resp == nil {
				return ""
			}
			return g.resp.Header.Get("Content-Type")
		},
		"num_redirects": func() string { return strconv.Itoa(g.redirects) },
		"remote_ip":     func() string { h, _ := g.remoteHostPort(); return h },
		"remote_port":   func() string { _, p := g.remoteHostPort(); return p },
		"exitcode":      func() string { return strconv.Itoa(code) },
	}
	var b strings.Builder
	f := g.o.writeOut
	for i := 0; i < len(f); i++ {
		switch c := f[i]; {
		case c == '%' && strings.HasPrefix(f[i:], "%%"):
			b.WriteByte('%')
			i++
		case c == '%' && strings.HasPrefix(f[i:], "%{"):
			end := strings.IndexByte(f[i:], '}')
			if end < 0 {
				b.WriteString(f[i:])
				i = len(f)
				continue
			}
			name := f[i+2 : i+end]
			if fn, ok := vars[name]; ok {
				b.WriteString(fn())
			} else if !g.o.silent {
				fmt.Fprintf(g.stderr, "paf get: unknown --write-out variable %q\n", name)
			}
			i += end
		case c == '\\' && i+1 < len(f):
			switch f[i+1] {
			case 'n':
				b.WriteByte('\n')
			case 't':
				b.WriteByte('\t')
			case 'r':
				b.WriteByte('\r')
			case '\\':
				b.WriteByte('\\')
			default:
				b.WriteByte(c)
				b.WriteByte(f[i+1])
			}
			i++
		default:
			b.WriteByte(c)
		}
	}
	io.WriteString(g.stdout, b.String())
}

func (g *getter) status() int {
	if g.resp == nil {
		return 0
	}
	return g.resp.StatusCode
}

func (g *getter) remoteHostPort() (string, string) {
	g.vmu.Lock()
	defer g.vmu.Unlock()
	if g.remote == nil {
		return "", ""
	}
	h, p, err := net.SplitHostPort(g.remote.String())
	if err != nil {
		return g.remote.String(), ""
	}
	return h, p
}
