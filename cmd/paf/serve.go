package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"path/filepath"
	"strings"
	"time"

	"github.com/pafhq/paf/certs"
	"github.com/pafhq/paf/demo"
	"github.com/pafhq/paf/gitsource"
	"github.com/pafhq/paf/hook"
	"github.com/pafhq/paf/server"
	"github.com/pafhq/paf/site"
)

// serveOptions are paf serve's flags.
type serveOptions struct {
	root, remote string
	auth         gitsource.Auth
	dataDir      string
	mimeTypes    listFlag
	defaultURL   string
	hostnames    listFlag
	poll         time.Duration
	hook         hookOptions
	largeFile    int64

	listen            listenOptions
	tlsCerts, tlsKeys listFlag
	acme              acmeOptions
	certStore         certStoreOptions
}

func serveFlags() (*flag.FlagSet, *serveOptions) {
	o := &serveOptions{}
	fs := flag.NewFlagSet("paf serve", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(&o.root, "root", "", "serve the site in `DIR`")
	fs.StringVar(&o.remote, "remote", "", "serve the site in a Git branch: `URL[#BRANCH]` (file://, path, git://, http(s)://, ssh://, user@host:path; default branch: the remote's HEAD)")
	gitAuthFlags(fs, &o.auth)
	fs.StringVar(&o.dataDir, "data-dir", defaultDataDir(), "`DIR` for the on-disk clone, caches and the local CA")
	fs.Var(&o.mimeTypes, "mime-type", "`PATH:TYPE` sets the Content-Type of the file at PATH (repeatable)")
	fs.StringVar(&o.defaultURL, "default", "", "redirect (302) requests for missing files to `URL` instead of answering 404")
	fs.Var(&o.hostnames, "hostname", "a `NAME` the site answers for (repeatable); other Host headers get 421. Also names the local CA's certificate")
	fs.DurationVar(&o.poll, "poll", time.Minute, "fetch the source every `DURATION` (0 turns polling off)")
	o.hook.register(fs, "URL `PATH` of the update webhook (enabled by a hook secret)")
	fs.Int64Var(&o.largeFile, "large-file", 0, "files above `BYTES` are streamed from disk rather than held in memory (0: the default, 1 MiB)")

	o.listen.register(fs, "to serve the site over plain HTTP (behind a proxy)")
	fs.Var(&o.tlsCerts, "tls-cert", "certificate chain PEM `FILE` (repeatable, paired with --tls-key; chosen by SNI, the first is the default)")
	fs.Var(&o.tlsKeys, "tls-key", "private key PEM `FILE` of the preceding --tls-cert")
	acmeFlags(fs, &o.acme)
	certStoreFlags(fs, &o.certStore)
	return fs, o
}

func (o *serveOptions) siteOptions(log *slog.Logger) (site.Options, error) {
	opts := site.Options{
		Default:   o.defaultURL,
		Hostnames: o.hostnames,
		LargeFile: o.largeFile,
		Logger:    log,
	}
	if o.largeFile < 0 {
		return opts, usageErr("--large-file %d: must not be negative", o.largeFile)
	}
	if len(o.mimeTypes) > 0 {
		opts.MIMETypes = map[string]string{}
		for _, mt := range o.mimeTypes {
			p, typ, ok := strings.Cut(mt, ":")
			if !ok || p == "" || typ == "" || !strings.Contains(typ, "/") {
				return opts, usageErr("--mime-type %q: want PATH:TYPE, e.g. /feed:application/atom+xml", mt)
			}
			opts.MIMETypes[p] = typ
		}
	}
	for _, h := range o.hostnames {
		if h == "" || strings.ContainsAny(h, "/: ") {
			return opts, usageErr("--hostname %q: want a host name such as www.example.org", h)
		}
	}
	return opts, nil
}

// sourceFlag names the flag the site came from, for error messages.
func (o *serveOptions) sourceFlag() string {
	switch {
	case o.remote != "":
		return "--remote " + gitsource.Redact(o.remote)
	case o.root != "":
		return "--root " + o.root
	}
	return "embedded demo site"
}

// source picks where the site comes from.
func (o *serveOptions) source(log *slog.Logger) (site.Source, error) {
	switch {
	case o.root != "" && o.remote != "":
		return nil, usageErr("--root and --remote: give one source, not both")
	case o.root != "":
		src, err := site.Dir(o.root)
		if err != nil {
			return nil, fmt.Errorf("--root: %w", err)
		}
		return src, nil
	case o.remote != "":
		remote, err := gitsource.ParseRemote(o.remote)
		if err != nil {
			return nil, fmt.Errorf("--remote: %w", err)
		}
		src, err := gitsource.New(gitsource.Config{
			Remote:    remote,
			Auth:      o.auth,
			DataDir:   o.dataDir,
			LargeFile: o.largeFile,
			Logger:    log,
		})
		if err != nil {
			return nil, fmt.Errorf("%s: %w", o.sourceFlag(), err)
		}
		return src, nil
	}
	return demo.Source(), nil
}

// certificates picks where the HTTPS listener's certificates come from:
// ACME (a *certs.ACME), else --tls-cert files or the local CA, after the
// manual certificates of the certificate store.
func (o *serveOptions) certificates(ctx context.Context, log *slog.Logger, httpsAddr string) (certs.Getter, error) {
	if o.acme.enabled {
		return o.acmeManager(ctx, log)
	}
	stored, err := o.storedManual(ctx, log)
	if err != nil {
		return nil, err
	}
	m, err := loadTLSCerts(o.tlsCerts, o.tlsKeys)
	if err != nil {
		return nil, err
	}
	if m != nil {
		return certs.ManualFirst(stored, m), nil
	}
	ca, err := certs.OpenLocalCA(filepath.Join(o.dataDir, "ca"))
	if err != nil {
		return nil, fmt.Errorf("--data-dir %s: local CA: %w", o.dataDir, err)
	}
	names := append([]string{"localhost"}, o.hostnames...)
	if host, _, err := net.SplitHostPort(httpsAddr); err == nil && host != "" {
		names = append(names, host)
	} else if err == nil {
		if addrs := o.listen.net.hostAddresses(); len(addrs) > 0 {
			names = append(names, addrs...) // on the userspace stack, its own
		} else {
			names = append(names, "127.0.0.1", "::1")
		}
	}
	issued, err := ca.Issuer(names)
	if err != nil {
		return nil, fmt.Errorf("local CA: %w", err)
	}
	log.Info("no --tls-cert given: serving certificates from paf's local CA; trust it to avoid browser warnings",
		"ca", ca.CertFile(), "names", strings.Join(names, ","))
	return certs.ManualFirst(stored, issued), nil
}

func serve(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	// Cancelled on any return, so that the poll loop never outlives serve.
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	fs, o := serveFlags()
	if err := parseFlags(fs, args, stdout); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageErr("unexpected argument %q (paf serve takes flags only; did you mean --root %s?)", fs.Arg(0), fs.Arg(0))
	}
	log, err := o.listen.logger(stderr)
	if err != nil {
		return err
	}
	secret, err := o.hook.load()
	if err != nil {
		return err
	}
	siteOpts, err := o.siteOptions(log)
	if err != nil {
		return err
	}
	cfg, err := o.listen.serverConfig(log)
	if err != nil {
		return err
	}
	httpsAddr := cfg.HTTPSAddr
	if o.dataDir == "" {
		return usageErr("--data-dir: must not be empty")
	}
	if o.acme.enabled && o.listen.net.tap != "" {
		return usageErr(acmeWithTAP)
	}
	src, err := o.source(log)
	if err != nil {
		return err
	}

	st := &site.Site{Source: src, Options: siteOpts, Logger: log}
	var handler http.Handler = st
	if len(secret) > 0 {
		handler = withHook(o.hook.path, &hook.Handler{
			Secret: secret,
			Logger: log,
			Update: func(ctx context.Context) (string, error) {
				changed, err := st.Update(ctx)
				if err != nil {
					return "", err
				}
				rev := st.Current().Revision()
				if !changed {
					return "no change: serving " + rev, nil
				}
				return "updated to " + rev, nil
			},
		}, st)
	}

	cfg.Handler = handler
	var acme *certs.ACME
	if httpsAddr != "" {
		if cfg.Certificates, err = o.certificates(ctx, log, httpsAddr); err != nil {
			return err
		}
		if a, ok := cfg.Certificates.(*certs.ACME); ok {
			acme = a
			cfg.ChallengeHandler = a.HTTPChallengeHandler()
			cfg.NextProtos = a.NextProtos()
		}
	} else if o.acme.enabled {
		return usageErr("--acme needs the HTTPS listener: not with --https off")
	}
	netStack, closeStack, err := o.listen.openStack(log)
	if err != nil {
		return err
	}
	defer closeStack()
	cfg.Stack = netStack
	srv, err := server.New(cfg)
	if err != nil {
		return err
	}
	// Bind before the (possibly long) first fetch, so that a port in use
	// is reported at once.
	if err := srv.Listen(ctx); err != nil {
		return err
	}
	defer srv.Close() // on the error paths below; nothing once Serve ran
	if err := st.Load(ctx); err != nil {
		return fmt.Errorf("%s: %w", o.sourceFlag(), err)
	}
	cur := st.Current()
	logServing(log, srv, "source", cur.Source(), "revision", cur.Revision(), "urls", strings.Join(srv.URLs(), " "))
	if len(secret) > 0 {
		log.Info("webhook enabled", "path", o.hook.path)
	}
	if acme != nil {
		// Challenges need the listeners bound, and served right after.
		if err := acme.Start(ctx, srv.HTTPAddr(), srv.HTTPSAddr()); err != nil {
			return err
		}
		defer acme.Close()
	}
	go st.Poll(ctx, o.poll)
	return srv.Serve(ctx)
}

// withHook routes the exact hook path to the hook and everything else to
// the site. No ServeMux: its path cleaning and redirects must not touch site
// requests, which the site checks itself, more strictly.
func withHook(path string, h, site http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == path {
			h.ServeHTTP(w, r)
			return
		}
		site.ServeHTTP(w, r)
	})
}
