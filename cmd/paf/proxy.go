package main

import (
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"path/filepath"
	"strings"
	"time"

	"github.com/pafhq/paf/certs"
	"github.com/pafhq/paf/gitsource"
	"github.com/pafhq/paf/hook"
	"github.com/pafhq/paf/proxy"
	"github.com/pafhq/paf/route"
	"github.com/pafhq/paf/server"
	"github.com/pafhq/paf/stack"
)

// proxyOptions are paf proxy's flags.
type proxyOptions struct {
	routes      routeStoreOptions
	dataDir     string
	poll        time.Duration
	hook        hookOptions
	trusted     listFlag
	ppFrom      listFlag
	defaultCert string

	listen            listenOptions
	tlsCerts, tlsKeys listFlag
	acme              acmeOptions
	certStore         certStoreOptions
	passthroughIdle   time.Duration
}

func proxyFlags() (*flag.FlagSet, *proxyOptions) {
	o := &proxyOptions{}
	fs := flag.NewFlagSet("paf proxy", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	o.routes.register(fs)
	fs.StringVar(&o.dataDir, "data-dir", defaultDataDir(), "`DIR` for the routes clone, site clones and the local CA")
	fs.DurationVar(&o.poll, "poll", time.Minute, "reload the routes (and fetch Git sites) every `DURATION` (0 turns polling off)")
	o.hook.register(fs, "URL `PATH`, on every host, of the reload webhook (enabled by a hook secret)")
	fs.Var(&o.trusted, "trusted-proxies", "`CIDRS` (comma-separated, repeatable) of front proxies whose X-Forwarded-* and Forwarded headers are kept")
	fs.Var(&o.ppFrom, "proxy-protocol-from", "`CIDRS` (comma-separated, repeatable) of front TCP balancers whose PROXY protocol v1/v2 headers are read on both listeners; a header from anyone else closes the connection")
	fs.StringVar(&o.defaultCert, "default-cert", "", "serve the certificate for `NAME` to clients asking for an unrouted name (default: fail their handshake)")

	o.listen.register(fs, "to proxy plain HTTP only")
	fs.Var(&o.tlsCerts, "tls-cert", "certificate chain PEM `FILE` (repeatable, paired with --tls-key; used for the names it covers)")
	fs.Var(&o.tlsKeys, "tls-key", "private key PEM `FILE` of the preceding --tls-cert")
	acmeFlags(fs, &o.acme)
	fs.Lookup("acme").Usage = "obtain and renew certificates from an ACME CA (Let's Encrypt staging unless --production or --acme-ca) for every route with certificate = \"acme\" or \"default\", following route changes; implies agreeing to the CA's terms"
	certStoreFlags(fs, &o.certStore)

	fs.DurationVar(&o.passthroughIdle, "passthrough-idle-timeout", proxy.DefaultPassthroughIdle, "passthrough connections without traffic either way this long are closed")
	return fs, o
}

// parsePrefixes parses a CIDR list flag: CIDRs or single addresses.
func parsePrefixes(flag string, vals []string) ([]netip.Prefix, error) {
	var out []netip.Prefix
	for _, v := range vals {
		for _, s := range strings.Split(v, ",") {
			s = strings.TrimSpace(s)
			if s == "" {
				continue
			}
			if p, err := netip.ParsePrefix(s); err == nil {
				out = append(out, p.Masked())
				continue
			}
			a, err := netip.ParseAddr(s)
			if err != nil {
				return nil, usageErr("%s %q: want CIDRs such as 10.0.0.0/8 or addresses", flag, s)
			}
			out = append(out, netip.PrefixFrom(a, a.BitLen()))
		}
	}
	return out, nil
}

// loader returns where routes are loaded from: the directory, or a Git
// branch kept as an on-disk clone under --data-dir (so a restart while the
// remote is down still routes).
func (o *proxyOptions) loader(log *slog.Logger) (route.Loader, error) {
	st, err := o.routes.store()
	if err != nil {
		return nil, err
	}
	gs, ok := st.(route.GitStore)
	if !ok {
		return st, nil
	}
	src, err := gitsource.New(gitsource.Config{Remote: gs.Remote, Auth: o.routes.auth, DataDir: o.dataDir, Logger: log})
	if err != nil {
		return nil, fmt.Errorf("--routes-remote %s: %w", gitsource.Redact(o.routes.remote), err)
	}
	return route.TreeLoader{Source: src}, nil
}

// certificates builds the HTTPS certificate selection: --tls-cert pairs
// for the names they cover, ACME when configured, else paf's local CA,
// one certificate per routed host. store is the certificate store ACME
// opened (acmeHosts), read for manual certificates; nil when ACME is off.
func (o *proxyOptions) certificates(ctx context.Context, log *slog.Logger, p *proxy.Proxy, acme certs.Getter, store *openedStore) (certs.Getter, error) {
	m, err := loadTLSCerts(o.tlsCerts, o.tlsKeys)
	if err != nil {
		return nil, err
	}
	c := &proxy.Certificates{Proxy: p}
	if acme != nil {
		c.ACME = acme
	}
	// Manual certificates: --tls-cert files first, then those stored
	// with `paf certs add`.
	stored, err := o.certFlags().storedManualIn(ctx, store, log)
	if err != nil {
		return nil, err
	}
	if m != nil {
		c.Manual = m
		if stored != nil {
			c.Manual = certs.ManualFirst(m, stored)
		}
	} else if stored != nil {
		c.Manual = stored
	}
	if acme == nil {
		ca, err := certs.OpenLocalCA(filepath.Join(o.dataDir, "ca"))
		if err != nil {
			return nil, fmt.Errorf("--data-dir %s: local CA: %w", o.dataDir, err)
		}
		c.Default = &proxy.PerHost{New: func(host string) (certs.Getter, error) { return ca.Issuer([]string{host}) }}
		log.Info("certificates for routes with certificate = \"default\" come from paf's local CA; trust it to avoid browser warnings", "ca", ca.CertFile())
	}
	if o.defaultCert != "" {
		name := route.NormalizeHost(o.defaultCert)
		if err := route.ValidHost(name); err != nil {
			return nil, usageErr("--default-cert: %v", err)
		}
		var g certs.Getter
		if c.Manual != nil {
			if cert, err := c.Manual.GetCertificate(nameHello(name)); err == nil && cert.Leaf != nil && cert.Leaf.VerifyHostname(name) == nil {
				g = c.Manual
			}
		}
		if g == nil && c.ACME != nil {
			g = c.ACME
		}
		if g == nil && c.Default != nil {
			g = c.Default
		}
		if g == nil {
			return nil, usageErr("--default-cert %s: no certificate source covers it", name)
		}
		c.Fallback = proxy.Named(g, name)
	}
	return c, nil
}

// certFlags returns the certificate flags paf proxy shares with paf
// serve; a --certs-remote uses the Git options of --routes-remote.
func (o *proxyOptions) certFlags() certFlagSet {
	return certFlagSet{acme: &o.acme, store: &o.certStore, dataDir: o.dataDir, auth: o.routes.auth, httpAddr: o.listen.httpAddr}
}

// acmeHosts builds the ACME manager of paf proxy --acme: one
// certs.ACME per routed name, over the store the --certs flags name,
// returned for certificates to read too. The returned function stops the
// managers and closes the store.
func (o *proxyOptions) acmeHosts(ctx context.Context, log *slog.Logger) (*proxy.ACMEHosts, *openedStore, func(), error) {
	cfg, st, err := o.certFlags().acmeConfig(ctx, log)
	if err != nil {
		return nil, nil, nil, err
	}
	log.Info("ACME certificates for routed names", "ca", cfg.CA, "storage", st.where)
	h := &proxy.ACMEHosts{
		New: func(ctx context.Context, host string) (*certs.ACME, error) {
			c := cfg
			c.Hostnames = []string{host}
			c.KeepLocksOnClose = true // ACMEHosts.Close releases them
			return newACME(ctx, c)
		},
		Logger: log,
	}
	return h, st, func() { h.Close(); st.close() }, nil
}

// proxyCmd runs `paf proxy`, the TLS-terminating reverse proxy.
func proxyCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs, o := proxyFlags()
	if err := parseFlags(fs, args, stdout); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageErr("unexpected argument %q (paf proxy takes flags only)", fs.Arg(0))
	}
	log, err := o.listen.logger(stderr)
	if err != nil {
		return err
	}
	secret, err := o.hook.load()
	if err != nil {
		return err
	}
	trusted, err := parsePrefixes("--trusted-proxies", o.trusted)
	if err != nil {
		return err
	}
	ppFrom, err := parsePrefixes("--proxy-protocol-from", o.ppFrom)
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
	if o.acme.enabled && httpsAddr == "" {
		return usageErr("--acme needs the HTTPS listener: not with --https off")
	}
	if o.acme.enabled && o.listen.net.tap != "" {
		return usageErr(acmeWithTAP)
	}
	loader, err := o.loader(log)
	if err != nil {
		return err
	}
	// The ACME managers stop when proxyCmd returns, after the servers:
	// handshakes during the grace period still get certificates.
	bg, stopBackground := context.WithCancel(context.WithoutCancel(ctx))
	defer stopBackground()
	var acmeHosts *proxy.ACMEHosts
	var acmeStore *openedStore
	if o.acme.enabled {
		var closeACME func()
		if acmeHosts, acmeStore, closeACME, err = o.acmeHosts(bg, log); err != nil {
			return err
		}
		defer closeACME()
	}

	host, closeStack, err := o.listen.openStack(log)
	if err != nil {
		return err
	}
	defer closeStack()
	pcfg := proxy.Config{
		Stack:          host,
		TrustedProxies: trusted,
		Sites:          &proxy.GitSites{DataDir: o.dataDir, Auth: o.routes.auth, Poll: o.poll, Logger: log},
		Logger:         log,
	}
	if acmeHosts != nil {
		pcfg.Applied = acmeHosts.Sync
	}
	p := proxy.New(pcfg)
	defer p.Close()

	var handler http.Handler = p
	if len(secret) > 0 {
		handler = withHook(o.hook.path, &hook.Handler{
			Secret: secret,
			Logger: log,
			Update: func(ctx context.Context) (string, error) {
				changed, err := p.Reload(ctx, loader)
				if err != nil {
					return "", err
				}
				rev := p.Table().Revision
				msg := "routes updated to " + rev
				if !changed {
					msg = "no change: routing " + rev
				}
				n, err := p.UpdateSites(ctx)
				if err != nil {
					return "", fmt.Errorf("%s; %w", msg, err)
				}
				return fmt.Sprintf("%s; %d site(s) updated", msg, n), nil
			},
		}, p)
	}

	lcfg := proxy.ListenerConfig{
		PeekTimeout:        o.listen.handshakeTimeout,
		IdleTimeout:        o.passthroughIdle,
		Grace:              o.listen.grace,
		ProxyProtocolFrom:  ppFrom,
		ProxyHeaderTimeout: o.listen.readHeaderTimeout,
	}
	// The connection limit goes under the passthrough listener, so that
	// connections it peeks at or splices count too; the server then has
	// none of its own.
	maxConns := cfg.MaxConns
	if maxConns == 0 {
		maxConns = server.DefaultMaxConns
	}
	cfg.Stack = p.WrapStack(stack.Limit(host, maxConns), httpsAddr, lcfg)
	cfg.MaxConns = -1
	cfg.NextProtosForName = p.NextProtos
	cfg.Handler = handler
	if httpsAddr != "" {
		var acme certs.Getter
		if acmeHosts != nil {
			acme = acmeHosts
			cfg.ChallengeHandler = acmeHosts.HTTPChallengeHandler()
			cfg.NextProtos = certs.ACMENextProtos(o.acme.challenge)
		}
		if cfg.Certificates, err = o.certificates(ctx, log, p, acme, acmeStore); err != nil {
			return err
		}
	}
	srv, err := server.New(cfg)
	if err != nil {
		return err
	}
	if err := srv.Listen(ctx); err != nil {
		return err
	}
	if acmeHosts != nil {
		// Challenges need the listeners bound; the names come with the
		// routes, just below.
		if err := acmeHosts.Start(bg, srv.HTTPAddr(), srv.HTTPSAddr()); err != nil {
			srv.Close()
			return err
		}
	}
	if err := initialRoutes(ctx, p, loader, log); err != nil {
		srv.Close()
		return err
	}
	logServing(log, srv, "source", p.Table().Source, "revision", p.Table().Revision, "hosts", strings.Join(p.Table().Hosts(), " "))
	if len(secret) > 0 {
		log.Info("webhook enabled", "path", o.hook.path)
	}
	go p.Poll(ctx, loader, o.poll)
	err = srv.Serve(ctx)
	p.Wait() // passthrough connections, cut at most --grace after the listener closed
	return err
}

// initialRoutes loads the first table; for a Git branch that cannot be
// fetched it falls back to the clone kept from the last run.
func initialRoutes(ctx context.Context, p *proxy.Proxy, l route.Loader, log *slog.Logger) error {
	t, err := l.Load(ctx)
	if err != nil {
		tl, ok := l.(route.TreeLoader)
		if !ok {
			return err
		}
		cached, cerr := tl.Cached(ctx)
		if cerr != nil {
			return err
		}
		log.Warn("routes remote unreachable: routing with the cached version", "revision", cached.Revision, "error", err.Error())
		t = cached
	}
	if err := p.Apply(t); err != nil {
		return err
	}
	if t.Len() == 0 {
		log.Warn("no routes yet: every request gets 421 until one is added", "source", t.Source)
	}
	return nil
}

// nameHello is a ClientHello asking for name, to look up a certificate
// outside a handshake.
func nameHello(name string) *tls.ClientHelloInfo {
	return &tls.ClientHelloInfo{ServerName: name}
}
