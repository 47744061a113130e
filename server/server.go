// Package server assembles paf's HTTP servers: the listeners (always through
// a stack.Stack), TLS with ALPN for HTTP/2 and HTTP/1.1, the HTTP-to-HTTPS
// redirect with its ACME HTTP-01 seam, timeouts and size limits that hold up
// on the open internet, an access log, and graceful shutdown.
//
// The server is net/http's: this package only chooses safe settings and
// wires the pieces, so behaviour matches what Go programs already do.
package server

import (
	"context"
	"errors"
	"fmt"
	"log"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/pafhq/paf/certs"
	"github.com/pafhq/paf/stack"
)

// Defaults applied to zero Config fields. They favour a public static site:
// short limits on what a client may hold open before sending a request,
// generous ones for keep-alive.
const (
	DefaultReadHeaderTimeout    = 10 * time.Second
	DefaultTLSHandshakeTimeout  = 10 * time.Second
	DefaultIdleTimeout          = 120 * time.Second
	DefaultMaxHeaderBytes       = 64 << 10
	DefaultMaxConcurrentStreams = 250
	DefaultMaxReadFrameSize     = 16 << 10
	DefaultGrace                = 10 * time.Second
	DefaultSendTimeout          = 60 * time.Second
	DefaultMaxConns             = 10000
)

// Config describes the servers to run. Zero values select the documented
// defaults, so Config{HTTPAddr: ":8080", Handler: h} is a complete
// configuration.
type Config struct {
	// Stack is the network stack every listener is opened on; nil means
	// the host's (&stack.Host{}).
	Stack stack.Stack

	// HTTPAddr is the plain HTTP listen address (--http), "" for none.
	// When HTTPSAddr is set too, this listener only redirects to HTTPS
	// and answers ACME HTTP-01 challenges.
	HTTPAddr string

	// HTTPSAddr is the HTTPS listen address (--https), "" for none.
	HTTPSAddr string

	// Handler serves the site. Required.
	Handler http.Handler

	// Certificates supplies the TLS certificate for each handshake.
	// Required when HTTPSAddr is set.
	Certificates certs.Getter

	// NextProtos are ALPN protocol ids offered in addition to "h2" and
	// "http/1.1", which are always offered, in that order, first; ACME's
	// TLS-ALPN-01 adds "acme-tls/1" here. Connections negotiating an extra
	// protocol are closed after the handshake: the handshake is the
	// protocol.
	NextProtos []string

	// NextProtosForName, when set, chooses the HTTP protocols offered to
	// a client by the server name it asked for (SNI): a non-nil result,
	// some of "h2" and "http/1.1" in preference order, replaces the
	// default pair for that handshake (extra NextProtos such as
	// "acme-tls/1" stay offered); nil keeps the default. A reverse proxy
	// uses it to offer only HTTP/1.1 for a site that wants it. Called on
	// every handshake: it must be fast and safe for concurrent use.
	NextProtosForName func(serverName string) []string

	// ChallengeHandler serves /.well-known/acme-challenge/ on the HTTP
	// listener when it redirects to HTTPS, before any redirect, as ACME
	// HTTP-01 requires. Nil answers those paths with 404.
	ChallengeHandler http.Handler

	// H2C enables HTTP/2 with prior knowledge on the plain HTTP listener
	// (--h2c), for deployments behind a proxy that terminates TLS.
	H2C bool

	// HSTS is the max-age of the Strict-Transport-Security header added to
	// HTTPS responses (--hsts); zero sends none. Ignored without HTTPS.
	HSTS time.Duration

	// ReadHeaderTimeout bounds the time to read a request's headers, from
	// the first byte of a request (or the end of a TLS handshake) on.
	// Zero means DefaultReadHeaderTimeout.
	ReadHeaderTimeout time.Duration

	// IdleTimeout bounds how long a keep-alive connection waits for the
	// next request. Zero means DefaultIdleTimeout.
	IdleTimeout time.Duration

	// TLSHandshakeTimeout bounds the TLS handshake, counted from accept,
	// so a client that connects and stays silent is dropped. Zero means
	// DefaultTLSHandshakeTimeout.
	TLSHandshakeTimeout time.Duration

	// WriteTimeout bounds writing a whole response. Zero means none: a
	// whole-response bound would cut large downloads over slow links.
	WriteTimeout time.Duration

	// SendTimeout bounds each write of a response, like nginx's
	// send_timeout: a client that stops reading (or an HTTP/2 client that
	// keeps its flow-control window shut) is cut after this long without
	// progress, while a slow download that keeps moving completes. Zero
	// means DefaultSendTimeout; negative turns it off.
	SendTimeout time.Duration

	// MaxConns limits the client connections open at once, across the
	// HTTP and HTTPS listeners together (--max-conns): beyond it, new
	// connections are accepted and closed at once, before any handshake
	// or read, and a closed connection frees its place. It bounds file
	// descriptors and memory under a connection flood; the default leaves
	// room below the usual descriptor limits for sites, Git and backends.
	// It is stack.Limit on Stack; a proxy splicing connections inside its
	// listener (TLS passthrough) limits its stack itself, before the
	// splice, and sets this negative. Zero means DefaultMaxConns; negative
	// means no limit.
	MaxConns int

	// MaxHeaderBytes limits the size of request headers; larger requests
	// get 431. Zero means DefaultMaxHeaderBytes.
	MaxHeaderBytes int

	// MaxConcurrentStreams limits concurrent HTTP/2 streams per connection.
	// Zero means DefaultMaxConcurrentStreams.
	MaxConcurrentStreams uint32

	// MaxReadFrameSize is the largest HTTP/2 frame accepted, between 16 KiB
	// and 16 MiB. Zero means DefaultMaxReadFrameSize: 16 KiB, RFC 9113's
	// initial value, as nginx and HAProxy keep it; larger frames save
	// little on uploads and cost a buffer of that size per connection.
	MaxReadFrameSize uint32

	// Grace bounds graceful shutdown: in-flight requests get this long to
	// finish before their connections are closed. Zero means DefaultGrace.
	Grace time.Duration

	// Logger receives one Info record per request (the access log) and the
	// servers' errors; routine noise such as failed TLS handshakes is
	// logged at Debug. Nil discards everything.
	Logger *slog.Logger
}

// withDefaults returns cfg with zero fields replaced by defaults.
func (cfg Config) withDefaults() Config {
	if cfg.Stack == nil {
		cfg.Stack = &stack.Host{}
	}
	if cfg.ReadHeaderTimeout == 0 {
		cfg.ReadHeaderTimeout = DefaultReadHeaderTimeout
	}
	if cfg.IdleTimeout == 0 {
		cfg.IdleTimeout = DefaultIdleTimeout
	}
	if cfg.TLSHandshakeTimeout == 0 {
		cfg.TLSHandshakeTimeout = DefaultTLSHandshakeTimeout
	}
	if cfg.MaxHeaderBytes == 0 {
		cfg.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	if cfg.MaxConcurrentStreams == 0 {
		cfg.MaxConcurrentStreams = DefaultMaxConcurrentStreams
	}
	if cfg.MaxReadFrameSize == 0 {
		cfg.MaxReadFrameSize = DefaultMaxReadFrameSize
	}
	if cfg.Grace == 0 {
		cfg.Grace = DefaultGrace
	}
	if cfg.SendTimeout == 0 {
		cfg.SendTimeout = DefaultSendTimeout
	}
	if cfg.MaxConns == 0 {
		cfg.MaxConns = DefaultMaxConns
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	return cfg
}

// validate reports the first inconsistency in a defaulted Config.
func (cfg Config) validate() error {
	switch {
	case cfg.Handler == nil:
		return errors.New("server: no Handler")
	case cfg.HTTPAddr == "" && cfg.HTTPSAddr == "":
		return errors.New("server: neither --http nor --https address given")
	case cfg.HTTPSAddr != "" && cfg.Certificates == nil:
		return errors.New("server: --https needs certificates")
	case cfg.H2C && cfg.HTTPAddr == "":
		return errors.New("server: --h2c needs an --http address")
	case cfg.HSTS < 0:
		return fmt.Errorf("server: negative --hsts %v", cfg.HSTS)
	case cfg.ReadHeaderTimeout < 0, cfg.IdleTimeout < 0, cfg.TLSHandshakeTimeout < 0, cfg.WriteTimeout < 0, cfg.Grace < 0:
		return errors.New("server: negative timeout")
	case cfg.MaxHeaderBytes < 0:
		return errors.New("server: negative MaxHeaderBytes")
	case cfg.MaxReadFrameSize < 16<<10 || cfg.MaxReadFrameSize > 16<<20:
		return fmt.Errorf("server: MaxReadFrameSize %d outside 16 KiB..16 MiB", cfg.MaxReadFrameSize)
	}
	return nil
}

// Server runs the HTTP and HTTPS listeners of one Config. Call Listen (or
// let Serve do it), then Serve once.
type Server struct {
	cfg Config

	mu      sync.Mutex
	httpLn  net.Listener // raw TCP
	httpsLn net.Listener // raw TCP, TLS is layered in Serve
	served  bool
}

// New checks cfg and returns a Server that has not bound anything yet.
func New(cfg Config) (*Server, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	cfg.NextProtos = nextProtos(cfg.NextProtos)
	// One budget for both listeners.
	cfg.Stack = stack.Limit(cfg.Stack, cfg.MaxConns)
	return &Server{cfg: cfg}, nil
}

// Listen binds the configured addresses now, so that an address in use or a
// privileged port is reported at start, naming the flag and the address,
// rather than once serving has begun. On error nothing stays bound.
func (s *Server) Listen(ctx context.Context) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.httpLn != nil || s.httpsLn != nil {
		return errors.New("server: Listen called twice")
	}
	var httpLn, httpsLn net.Listener
	var err error
	if s.cfg.HTTPAddr != "" {
		if httpLn, err = s.listen(ctx, "--http", s.cfg.HTTPAddr); err != nil {
			return err
		}
	}
	if s.cfg.HTTPSAddr != "" {
		if httpsLn, err = s.listen(ctx, "--https", s.cfg.HTTPSAddr); err != nil {
			if httpLn != nil {
				httpLn.Close()
			}
			return err
		}
	}
	s.httpLn, s.httpsLn = httpLn, httpsLn
	return nil
}

// listen binds one address, with an error that names flag and address
// once instead of repeating net's "listen tcp ADDR:" prefix.
func (s *Server) listen(ctx context.Context, flag, addr string) (net.Listener, error) {
	ln, err := s.cfg.Stack.Listen(ctx, "tcp", addr)
	if err != nil {
		var op *net.OpError
		if errors.As(err, &op) && op.Err != nil {
			err = op.Err
		}
		return nil, fmt.Errorf("listen %s %s: %w", flag, addr, err)
	}
	return ln, nil
}

// HTTPAddr returns the bound address of the HTTP listener, nil before
// Listen or without one. Useful with port 0.
func (s *Server) HTTPAddr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.httpLn == nil {
		return nil
	}
	return s.httpLn.Addr()
}

// HTTPSAddr returns the bound address of the HTTPS listener, nil before
// Listen or without one.
func (s *Server) HTTPSAddr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.httpsLn == nil {
		return nil
	}
	return s.httpsLn.Addr()
}

// URLs returns the base URL of each bound listener, HTTP first, for the
// startup log. Loopback and unspecified addresses are shown as
// "localhost", which the local CA's certificates always include.
func (s *Server) URLs() []string {
	var urls []string
	if a := s.HTTPAddr(); a != nil {
		urls = append(urls, baseURL("http", a, 80))
	}
	if a := s.HTTPSAddr(); a != nil {
		urls = append(urls, baseURL("https", a, 443))
	}
	return urls
}

// baseURL formats scheme://host[:port]/ for a bound address.
func baseURL(scheme string, a net.Addr, defaultPort int) string {
	host, port := a.String(), 0
	if ta, ok := a.(*net.TCPAddr); ok {
		port = ta.Port
		switch {
		case ta.IP == nil || ta.IP.IsUnspecified() || ta.IP.IsLoopback():
			host = "localhost"
		case ta.IP.To4() != nil:
			host = ta.IP.String()
		default:
			host = "[" + ta.IP.String() + "]"
		}
	}
	if port != 0 && port != defaultPort {
		host += ":" + strconv.Itoa(port)
	}
	return scheme + "://" + host + "/"
}

// httpsPort returns the port redirects point to: the bound HTTPS port.
func (s *Server) httpsPort() int {
	if ta, ok := s.HTTPSAddr().(*net.TCPAddr); ok {
		return ta.Port
	}
	return 443
}

// newHTTPServer returns an http.Server serving h, with the send timeout
// and the access log around it, and the configured limits.
func (s *Server) newHTTPServer(ctx context.Context, h http.Handler, protos *http.Protocols) *http.Server {
	cfg := &s.cfg
	hs := &http.Server{
		Handler:           accessLog(guard(h, cfg.SendTimeout), cfg.Logger),
		ReadHeaderTimeout: cfg.ReadHeaderTimeout,
		WriteTimeout:      cfg.WriteTimeout,
		IdleTimeout:       cfg.IdleTimeout,
		MaxHeaderBytes:    cfg.MaxHeaderBytes,
		Protocols:         protos,
		HTTP2: &http.HTTP2Config{
			MaxConcurrentStreams: int(cfg.MaxConcurrentStreams),
			MaxReadFrameSize:     int(cfg.MaxReadFrameSize),
		},
		ErrorLog: log.New(errorLogWriter{cfg.Logger}, "", 0),
		// Requests keep ctx's values but not its cancellation, so that
		// cancelling Serve's ctx lets in-flight requests finish.
		BaseContext: func(net.Listener) context.Context { return context.WithoutCancel(ctx) },
		// HTTP/1 connections come wrapped in an h1Conn; answerRejection
		// finds it here.
		ConnContext: h1ConnContext,
	}
	s.configureHTTP2(hs)
	return hs
}

// Serve serves until ctx is cancelled, then shuts down gracefully: the
// listeners close at once (new connections are refused), in-flight requests
// get Config.Grace to finish, then remaining connections are closed. It
// binds first if Listen was not called. It returns nil after a clean
// shutdown, an error if a listener failed or the grace period ran out.
func (s *Server) Serve(ctx context.Context) error {
	s.mu.Lock()
	if s.served {
		s.mu.Unlock()
		return errors.New("server: Serve called twice")
	}
	s.served = true
	listened := s.httpLn != nil || s.httpsLn != nil
	s.mu.Unlock()
	if !listened {
		if err := s.Listen(ctx); err != nil {
			return err
		}
	}

	type running struct {
		srv  *http.Server
		ln   net.Listener
		name string
	}
	var servers []running
	var hsl *handshakeListener
	if s.httpsLn != nil {
		var h http.Handler = s.cfg.Handler
		if s.cfg.HSTS > 0 {
			h = hsts(h, s.cfg.HSTS)
		}
		protos := new(http.Protocols)
		protos.SetHTTP1(true)
		protos.SetHTTP2(true)
		hsl = newHandshakeListener(s.httpsLn, s.tlsConfig(), s.cfg.TLSHandshakeTimeout, s.h1Limits(), s.cfg.Logger)
		servers = append(servers, running{s.newHTTPServer(ctx, h, protos), hsl, "--https"})
	}
	if s.httpLn != nil {
		h := s.cfg.Handler
		if s.httpsLn != nil {
			h = &redirector{challenge: s.cfg.ChallengeHandler, port: s.httpsPort()}
		}
		protos := new(http.Protocols)
		protos.SetHTTP1(true)
		protos.SetUnencryptedHTTP2(s.cfg.H2C)
		ln := &h1Listener{Listener: s.httpLn, lim: s.h1Limits()}
		servers = append(servers, running{s.newHTTPServer(ctx, h, protos), ln, "--http"})
	}

	errc := make(chan error, len(servers))
	for _, r := range servers {
		go func() {
			err := r.srv.Serve(r.ln)
			if err != nil && !errors.Is(err, http.ErrServerClosed) {
				err = fmt.Errorf("server: serve %s %s: %w", r.name, r.ln.Addr(), err)
			} else {
				err = nil
			}
			errc <- err
		}()
	}

	var serveErr error
	pending := len(servers)
	select {
	case <-ctx.Done():
	case serveErr = <-errc:
		pending--
	}

	sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.cfg.Grace)
	defer cancel()
	var wg sync.WaitGroup
	var forced sync.Once
	var shutdownErr error
	for _, r := range servers {
		wg.Go(func() {
			if err := r.srv.Shutdown(sctx); err != nil {
				r.srv.Close()
				forced.Do(func() {
					shutdownErr = fmt.Errorf("server: graceful shutdown: connections closed after %v: %w", s.cfg.Grace, err)
				})
			}
		})
	}
	wg.Wait()
	for ; pending > 0; pending-- {
		if err := <-errc; err != nil && serveErr == nil {
			serveErr = err
		}
	}
	if hsl != nil {
		hsl.Close()
		hsl.wait()
	}
	if serveErr != nil {
		return serveErr
	}
	return shutdownErr
}

// Close releases listeners bound by Listen when Serve will not run (for
// example when a later start-up step fails). After Serve it is a no-op.
func (s *Server) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.served {
		return nil
	}
	s.served = true
	var errs []error
	for _, ln := range []net.Listener{s.httpLn, s.httpsLn} {
		if ln != nil {
			errs = append(errs, ln.Close())
		}
	}
	return errors.Join(errs...)
}
