package main

import (
	"flag"
	"fmt"
	"io"
	"log/slog"
	"math"
	"os"
	"strings"
	"time"

	"github.com/pafhq/paf/netstack"
	"github.com/pafhq/paf/server"
	"github.com/pafhq/paf/stack"
)

// listenOptions are the listener, limit and log flags paf serve and paf
// proxy share.
type listenOptions struct {
	httpAddr, httpsAddr string
	hsts                bool
	hstsMaxAge          time.Duration
	h2c                 bool

	readHeaderTimeout, idleTimeout, handshakeTimeout, grace time.Duration
	sendTimeout                                             time.Duration
	maxHeaderBytes, maxConns                                int
	h2MaxStreams, h2MaxFrame                                uint

	logFormat, logLevel string

	net netOptions
	fs  *flag.FlagSet // to tell flags given from defaults
}

// The listeners' default addresses: loopback on the host's stack, the
// standard ports on a userspace one (--tap), whose only addresses are its
// own.
const (
	defaultHTTPAddr     = "127.0.0.1:8080"
	defaultHTTPSAddr    = "127.0.0.1:8443"
	defaultTAPHTTPAddr  = ":80"
	defaultTAPHTTPSAddr = ":443"
)

// register adds the flags; httpsOff says what --https off means for the
// command.
func (l *listenOptions) register(fs *flag.FlagSet, httpsOff string) {
	fs.StringVar(&l.httpAddr, "http", defaultHTTPAddr, "plain HTTP listen `ADDR` (\"off\" for none); redirects to HTTPS when HTTPS is on")
	fs.StringVar(&l.httpsAddr, "https", defaultHTTPSAddr, "HTTPS listen `ADDR`, or \"off\" "+httpsOff)
	fs.BoolVar(&l.hsts, "hsts", false, "send Strict-Transport-Security on HTTPS responses")
	fs.DurationVar(&l.hstsMaxAge, "hsts-max-age", 365*24*time.Hour, "max-age of --hsts")
	fs.BoolVar(&l.h2c, "h2c", false, "accept HTTP/2 with prior knowledge (h2c) on the plain HTTP listener")

	fs.DurationVar(&l.readHeaderTimeout, "read-header-timeout", server.DefaultReadHeaderTimeout, "time allowed to read a request's headers")
	fs.DurationVar(&l.idleTimeout, "idle-timeout", server.DefaultIdleTimeout, "keep-alive client connections idle this long are closed")
	fs.DurationVar(&l.handshakeTimeout, "tls-handshake-timeout", server.DefaultTLSHandshakeTimeout, "time allowed for a TLS handshake")
	fs.DurationVar(&l.sendTimeout, "send-timeout", server.DefaultSendTimeout, "a response write that makes no progress this long (a client that stopped reading) closes the stream")
	fs.IntVar(&l.maxConns, "max-conns", server.DefaultMaxConns, "open client connections at most, both listeners together; beyond it new ones are closed at once (negative: no limit)")
	fs.IntVar(&l.maxHeaderBytes, "max-header-bytes", server.DefaultMaxHeaderBytes, "largest request header block accepted, in bytes")
	fs.UintVar(&l.h2MaxStreams, "h2-max-streams", server.DefaultMaxConcurrentStreams, "HTTP/2 concurrent streams per connection")
	fs.UintVar(&l.h2MaxFrame, "h2-max-frame", server.DefaultMaxReadFrameSize, "largest HTTP/2 frame read, in bytes")
	fs.DurationVar(&l.grace, "grace", server.DefaultGrace, "on SIGINT/SIGTERM, time in-flight requests get to finish; a second signal ends paf at once")

	fs.StringVar(&l.logFormat, "log-format", "text", "log format: text or json")
	fs.StringVar(&l.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	l.net.register(fs)
	l.fs = fs
}

// given reports whether the flag was on the command line.
func (l *listenOptions) given(name string) bool {
	found := false
	if l.fs != nil {
		l.fs.Visit(func(f *flag.Flag) { found = found || f.Name == name })
	}
	return found
}

// addrs returns the HTTP and HTTPS addresses, "" for a listener that is
// off.
func (l *listenOptions) addrs() (httpAddr, httpsAddr string, err error) {
	httpAddr, httpsAddr = l.httpAddr, l.httpsAddr
	if l.net.tap != "" {
		if !l.given("http") {
			httpAddr = defaultTAPHTTPAddr
		}
		if !l.given("https") {
			httpsAddr = defaultTAPHTTPSAddr
		}
	}
	if httpAddr == "off" {
		httpAddr = ""
	}
	if httpsAddr == "off" {
		httpsAddr = ""
	}
	if httpAddr == "" && httpsAddr == "" {
		return "", "", usageErr("--http off and --https off: nothing would listen")
	}
	return httpAddr, httpsAddr, nil
}

// serverConfig returns the server configuration the flags describe,
// without handler, certificates or network stack: openStack gives that,
// last, so that nothing is opened before every flag is checked.
func (l *listenOptions) serverConfig(log *slog.Logger) (server.Config, error) {
	httpAddr, httpsAddr, err := l.addrs()
	if err != nil {
		return server.Config{}, err
	}
	if l.h2MaxStreams > math.MaxUint32 || l.h2MaxFrame > math.MaxUint32 {
		return server.Config{}, usageErr("--h2-max-streams and --h2-max-frame: at most %d", uint32(math.MaxUint32))
	}
	if _, err := l.net.check(); err != nil {
		return server.Config{}, err
	}
	cfg := server.Config{
		HTTPAddr:             httpAddr,
		HTTPSAddr:            httpsAddr,
		H2C:                  l.h2c,
		ReadHeaderTimeout:    l.readHeaderTimeout,
		IdleTimeout:          l.idleTimeout,
		TLSHandshakeTimeout:  l.handshakeTimeout,
		SendTimeout:          l.sendTimeout,
		MaxConns:             l.maxConns,
		MaxHeaderBytes:       l.maxHeaderBytes,
		MaxConcurrentStreams: uint32(l.h2MaxStreams),
		MaxReadFrameSize:     uint32(l.h2MaxFrame),
		Grace:                l.grace,
		Logger:               log,
	}
	if l.hsts {
		cfg.HSTS = l.hstsMaxAge
	}
	return cfg, nil
}

// openStack opens the network stack the flags choose (the host's, or a
// userspace one on --tap) and returns it with a function closing it once
// the servers are done.
func (l *listenOptions) openStack(log *slog.Logger) (stack.Stack, func(), error) {
	st, closeStack, err := l.net.open()
	if err != nil {
		return nil, nil, err
	}
	if ns, ok := st.(*netstack.Stack); ok {
		log.Info("listening on a userspace TCP/IP stack", "tap", l.net.tap, "addresses", fmt.Sprint(ns.Addresses()))
	}
	return st, closeStack, nil
}

// logger returns the logger --log-format and --log-level describe.
func (l *listenOptions) logger(w io.Writer) (*slog.Logger, error) {
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(l.logLevel)); err != nil {
		return nil, usageErr("--log-level %q: want debug, info, warn or error", l.logLevel)
	}
	opts := &slog.HandlerOptions{Level: lvl}
	switch l.logFormat {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, usageErr("--log-format %q: want text or json", l.logFormat)
}

// logServing logs the start line: what is served (attrs) and the bound
// listener addresses, which tests and users with port 0 need.
func logServing(log *slog.Logger, srv *server.Server, attrs ...any) {
	if a := srv.HTTPAddr(); a != nil {
		attrs = append(attrs, "http", a.String())
	}
	if a := srv.HTTPSAddr(); a != nil {
		attrs = append(attrs, "https", a.String())
	}
	log.Info("serving", attrs...)
}

// hookOptions are the webhook flags paf serve and paf proxy share.
type hookOptions struct {
	path, secret, secretFile string
}

func (h *hookOptions) register(fs *flag.FlagSet, pathUsage string) {
	fs.StringVar(&h.path, "hook", "/.paf/hook", pathUsage)
	fs.StringVar(&h.secret, "hook-secret", "", "HMAC `SECRET` webhook requests are signed with (or env PAF_HOOK_SECRET, or --hook-secret-file); no secret, no hook")
	fs.StringVar(&h.secretFile, "hook-secret-file", "", "read the hook secret from `FILE`")
}

// load returns the webhook secret, nil for no hook: the flag, the file,
// or the environment, in that order; giving both flags is refused so that
// no one wonders which one wins.
func (h *hookOptions) load() ([]byte, error) {
	if h.secret != "" && h.secretFile != "" {
		return nil, usageErr("--hook-secret and --hook-secret-file: give one, not both")
	}
	var secret []byte
	switch {
	case h.secret != "":
		secret = []byte(h.secret)
	case h.secretFile != "":
		b, err := os.ReadFile(h.secretFile)
		if err != nil {
			return nil, fmt.Errorf("--hook-secret-file: %w", err)
		}
		s := strings.TrimRight(string(b), "\r\n")
		if s == "" {
			return nil, fmt.Errorf("--hook-secret-file %s: the file is empty", h.secretFile)
		}
		secret = []byte(s)
	default:
		secret = []byte(os.Getenv("PAF_HOOK_SECRET"))
	}
	if len(secret) > 0 && !strings.HasPrefix(h.path, "/") {
		return nil, usageErr("--hook %q: want a URL path starting with /", h.path)
	}
	if len(secret) == 0 {
		return nil, nil
	}
	return secret, nil
}
