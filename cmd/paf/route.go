package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"strings"
	"time"

	"github.com/pafhq/paf/gitsource"
	"github.com/pafhq/paf/route"
)

// routeStoreOptions are the flags naming where routes are kept, shared by
// paf route and paf proxy.
type routeStoreOptions struct {
	dir    string
	remote string
	auth   gitsource.Auth
	author string
}

func (o *routeStoreOptions) register(fs *flag.FlagSet) {
	fs.StringVar(&o.dir, "routes", "", "`DIR` holding the route files (<hostname>.toml)")
	fs.StringVar(&o.remote, "routes-remote", "", "Git branch holding the route files: `URL[#BRANCH]` (file://, path, git://, http(s)://, ssh://, user@host:path)")
	gitAuthFlags(fs, &o.auth)
}

// store returns the Store the flags name.
func (o *routeStoreOptions) store() (route.Store, error) {
	switch {
	case o.dir != "" && o.remote != "":
		return nil, usageErr("--routes and --routes-remote: give one, not both")
	case o.dir != "":
		return route.DirStore{Dir: o.dir}, nil
	case o.remote != "":
		r, err := gitsource.ParseRemote(o.remote)
		if err != nil {
			return nil, usageErr("--routes-remote: %v", err)
		}
		return route.GitStore{Remote: r, Auth: o.auth, Author: o.author}, nil
	}
	return nil, usageErr("where are the routes? give --routes DIR or --routes-remote URL[#BRANCH]")
}

// routeAddOptions are paf route add's route flags.
type routeAddOptions struct {
	backends             listFlag
	lb, alpn, cert       string
	healthPath           string
	healthInterval       time.Duration
	healthFails          int
	failDuration         time.Duration
	dial, respHdr, idle  time.Duration
	maxBody              string
	noWebSocket          bool
	reqHeaders, resHdrs  listFlag
	passthrough          bool
	site                 string
	tlsCA, tlsServerName string
	tlsInsecure          bool
	proxyProtocol        string
}

func routeFlags(sub string) (*flag.FlagSet, *routeStoreOptions, *routeAddOptions) {
	fs := flag.NewFlagSet("paf route "+sub, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	so := &routeStoreOptions{}
	so.register(fs)
	fs.StringVar(&so.author, "author", "", "commit author `\"Name <email>\"` for --routes-remote (default paf <paf@localhost>)")
	ao := &routeAddOptions{}
	if sub != "add" {
		return fs, so, ao
	}
	fs.Var(&ao.backends, "backend", "backend `URL`: http://, https:// or h2c://HOST[:PORT], tcp://HOST:PORT with --passthrough (repeatable)")
	fs.StringVar(&ao.lb, "lb", "round_robin", "load-balancing `POLICY`: round_robin, least_conn or first")
	fs.StringVar(&ao.alpn, "alpn", "h2,http/1.1", "`PROTOCOLS` offered to clients, comma-separated: h2, http/1.1")
	fs.StringVar(&ao.cert, "cert", "default", "where the certificate comes from: `default`, acme or manual")
	fs.StringVar(&ao.healthPath, "health-path", "", "active health check: GET this `PATH` on every backend")
	fs.DurationVar(&ao.healthInterval, "health-interval", 0, "active health check `INTERVAL` (needed with --health-path)")
	fs.IntVar(&ao.healthFails, "health-fails", route.DefaultFails, "consecutive failures that mark a backend down")
	fs.DurationVar(&ao.failDuration, "fail-duration", route.DefaultFailDuration, "how long a failing backend stays down")
	fs.DurationVar(&ao.dial, "dial-timeout", route.DefaultDialTimeout, "backend connection timeout")
	fs.DurationVar(&ao.respHdr, "response-header-timeout", route.DefaultResponseHeaderTimeout, "time a backend has to send response headers (504 after)")
	fs.DurationVar(&ao.idle, "idle-timeout", route.DefaultIdleTimeout, "idle backend connections are closed after this")
	fs.StringVar(&ao.maxBody, "max-body", "0", "request body limit, `SIZE` in bytes or with KiB/MiB/GiB (0: none)")
	fs.BoolVar(&ao.noWebSocket, "no-websocket", false, "refuse WebSocket upgrades (403)")
	fs.Var(&ao.reqHeaders, "request-header", "`\"Name: value\"` set on requests to the backend (repeatable; empty value removes)")
	fs.Var(&ao.resHdrs, "response-header", "`\"Name: value\"` set on responses to clients (repeatable; empty value removes)")
	fs.BoolVar(&ao.passthrough, "passthrough", false, "forward raw TLS by SNI to the backends, which terminate TLS themselves")
	fs.StringVar(&ao.site, "site", "", "serve the Git site `URL[#BRANCH]` in-process instead of forwarding")
	fs.StringVar(&ao.tlsCA, "tls-ca", "", "PEM `FILE` of CAs trusted for https:// backends")
	fs.StringVar(&ao.tlsServerName, "tls-server-name", "", "`NAME` verified in https:// backends' certificates")
	fs.BoolVar(&ao.tlsInsecure, "tls-insecure", false, "do not verify https:// backends' certificates (testing only)")
	fs.StringVar(&ao.proxyProtocol, "proxy-protocol", "", "send a PROXY protocol header of `VERSION` v1 or v2 with the client's address to the backends")
	return fs, so, ao
}

// parseInterleaved parses flags and positional arguments in any order:
// `paf route add HOST --backend URL` and `paf route add --backend URL HOST`.
func parseInterleaved(fs *flag.FlagSet, args []string, stdout io.Writer) ([]string, error) {
	var pos []string
	for {
		if err := parseFlags(fs, args, stdout); err != nil {
			return nil, err
		}
		if fs.NArg() == 0 {
			return pos, nil
		}
		pos = append(pos, fs.Arg(0))
		args = fs.Args()[1:]
	}
}

// toRoute builds and validates the route paf route add describes.
func (ao *routeAddOptions) toRoute(host string) (*route.Route, error) {
	if err := route.ValidHost(host); err != nil {
		return nil, usageErr("%v", err)
	}
	r := route.New(host)
	r.Passthrough = ao.passthrough
	r.Site = ao.site
	for _, b := range ao.backends {
		be, err := route.ParseBackend(b, ao.passthrough)
		if err != nil {
			return nil, usageErr("--backend: %v", err)
		}
		r.Backends = append(r.Backends, be)
	}
	r.LB = route.Policy(ao.lb)
	r.ALPN = nil
	for _, p := range strings.Split(ao.alpn, ",") {
		if p = strings.TrimSpace(p); p != "" {
			r.ALPN = append(r.ALPN, p)
		}
	}
	r.Certificate = route.CertSource(ao.cert)
	r.Health = route.Health{Path: ao.healthPath, Interval: ao.healthInterval, Fails: ao.healthFails, FailDuration: ao.failDuration}
	r.Timeouts = route.Timeouts{Dial: ao.dial, ResponseHeader: ao.respHdr, Idle: ao.idle}
	n, err := route.ParseSize(ao.maxBody)
	if err != nil {
		return nil, usageErr("--max-body: %v", err)
	}
	r.MaxBody = n
	r.WebSocket = !ao.noWebSocket
	for _, hf := range []struct {
		flag string
		in   []string
		out  *[]route.Header
	}{{"--request-header", ao.reqHeaders, &r.RequestHeaders}, {"--response-header", ao.resHdrs, &r.ResponseHeaders}} {
		for _, h := range hf.in {
			name, value, ok := strings.Cut(h, ":")
			if !ok || strings.TrimSpace(name) == "" {
				return nil, usageErr("%s %q: want \"Name: value\"", hf.flag, h)
			}
			*hf.out = append(*hf.out, route.Header{Name: http.CanonicalHeaderKey(strings.TrimSpace(name)), Value: strings.TrimSpace(value)})
		}
	}
	r.TLS = route.BackendTLS{CAFile: ao.tlsCA, ServerName: ao.tlsServerName, Insecure: ao.tlsInsecure}
	r.ProxyProtocol = ao.proxyProtocol
	if err := r.Validate(); err != nil {
		return nil, usageErr("route %s: %v", host, err)
	}
	return r, nil
}

// routeCmd runs `paf route add|rm|ls`.
func routeCmd(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		return usageErr("want a subcommand: paf route add HOST --backend URL..., paf route rm HOST, paf route ls")
	}
	sub, args := args[0], args[1:]
	switch sub {
	case "add", "rm", "ls":
	default:
		return usageErr("unknown subcommand %q: want add, rm or ls", sub)
	}
	fs, so, ao := routeFlags(sub)
	pos, err := parseInterleaved(fs, args, stdout)
	if err != nil {
		return err
	}
	st, err := so.store()
	if err != nil {
		return err
	}
	switch sub {
	case "ls":
		if len(pos) > 0 {
			return usageErr("paf route ls takes no argument, got %q", pos[0])
		}
		t, err := st.Load(ctx)
		if err != nil {
			return err
		}
		for _, r := range t.Routes() {
			fmt.Fprintln(stdout, describeRoute(r))
		}
		return nil
	case "rm":
		if len(pos) != 1 {
			return usageErr("paf route rm HOST: give exactly one hostname")
		}
		if err := route.ValidHost(pos[0]); err != nil {
			return usageErr("%v", err)
		}
		if err := st.Remove(ctx, pos[0]); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "removed %s\n", pos[0])
		return nil
	}
	if len(pos) != 1 {
		return usageErr("paf route add HOST --backend URL...: give exactly one hostname")
	}
	r, err := ao.toRoute(pos[0])
	if err != nil {
		return err
	}
	if err := st.Put(ctx, r); err != nil {
		if errors.As(err, new(*route.Error)) {
			return usageErr("%v", err)
		}
		return err
	}
	fmt.Fprintf(stdout, "%s\n", describeRoute(r))
	return nil
}

// describeRoute is one line of paf route ls.
func describeRoute(r *route.Route) string {
	var b strings.Builder
	b.WriteString(r.Host)
	switch {
	case r.Site != "":
		b.WriteString("\tsite " + r.Site)
	default:
		if r.Passthrough {
			b.WriteString("\tpassthrough")
		}
		urls := make([]string, len(r.Backends))
		for i, be := range r.Backends {
			urls[i] = be.URL
		}
		b.WriteString("\t" + strings.Join(urls, " "))
		if len(urls) > 1 {
			b.WriteString("\t" + string(r.LB))
		}
	}
	return b.String()
}
