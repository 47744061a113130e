// Package proxy is paf's reverse proxy: it routes each request by hostname
// to the backends a route.Table names, over HTTP/1.1, HTTP/2 (TLS or h2c)
// or to a Git site served in-process, and forwards raw TLS connections by
// SNI for passthrough routes.
//
// Forwarding is net/http/httputil.ReverseProxy's (with the Rewrite hook):
// bodies stream in both directions, server-sent events and other unsized
// responses are flushed as they come, HTTP/1.1 WebSocket upgrades are
// spliced, hop-by-hop headers are dropped. WebSockets over HTTP/2 (RFC 8441
// extended CONNECT), which ReverseProxy cannot carry, are forwarded by this
// package itself; the program must import internal/xconnect for net/http
// to offer them.
//
// This package adds what a multi-site front needs: the routing table
// swapped atomically on reload
// (requests in flight finish on the routes they started with, unchanged
// routes keep their connections and health state), load balancing, passive
// and active health checks, forwarding headers trusted only from configured
// proxies, and short, clear error pages (421 unknown host, 502 backend
// down, 504 backend too slow, 413 body too large).
package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pafhq/paf/route"
	"github.com/pafhq/paf/stack"
)

// SiteOpener starts serving a route's Git site (route.Route.Site)
// in-process. The returned stop function is called when the route is
// removed or changed; it must not wait for requests in flight. A handler
// that also implements SiteUpdater is updated by Proxy.UpdateSites.
type SiteOpener interface {
	Open(ctx context.Context, r *route.Route) (h http.Handler, stop func(), err error)
}

// SiteUpdater fetches a site's source now, as the webhook asks: the
// handler of a SiteOpener implements it (site.Site does).
type SiteUpdater interface {
	Update(ctx context.Context) (changed bool, err error)
}

// Config configures a Proxy. The zero value proxies through the host's
// network stack, trusts no forwarding headers and logs nothing.
type Config struct {
	// Stack is what backends are dialled through; nil means the host's.
	Stack stack.Stack
	// TrustedProxies are the client addresses (front load balancers)
	// whose X-Forwarded-For, X-Forwarded-Proto, X-Forwarded-Host and
	// Forwarded headers are kept and extended. From anyone else they are
	// replaced, so a client cannot forge its address.
	TrustedProxies []netip.Prefix
	// Sites serves site = "URL#branch" routes; nil refuses such routes
	// when a table is applied.
	Sites SiteOpener
	// Applied, when set, is called with each table once it is being
	// served, in the order tables are applied: ACMEHosts.Sync follows the
	// routes this way. It runs with reloads held, so it must be quick.
	Applied func(t *route.Table)
	// Logger receives reloads, backends going down and up, and proxy
	// errors. Nil discards.
	Logger *slog.Logger
}

// Proxy is an http.Handler routing by Host. Its methods are safe for
// concurrent use. Create it with New and give it routes with Apply or
// Reload; until then every request gets 421.
type Proxy struct {
	cfg   Config
	log   *slog.Logger
	state atomic.Pointer[state]

	applyMu   sync.Mutex // serializes Apply and Reload
	closed    bool
	baseCtx   context.Context
	cancel    context.CancelFunc
	bufPool   bufferPool
	listeners sync.WaitGroup // Listener listeners not yet closed and drained
	lastErr   atomic.Pointer[string]
	reloadMu  sync.Mutex
}

// state is one applied table with its pools: what a request reads once and
// uses throughout.
type state struct {
	table *route.Table
	pools map[string]*pool
	// passthrough is set when any route is a passthrough route, so the
	// HTTPS listener peeks at ClientHellos only when it needs to.
	passthrough bool
}

// New returns a Proxy with an empty table.
func New(cfg Config) *Proxy {
	if cfg.Stack == nil {
		cfg.Stack = &stack.Host{}
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	ctx, cancel := context.WithCancel(context.Background())
	p := &Proxy{cfg: cfg, log: log, baseCtx: ctx, cancel: cancel}
	p.state.Store(&state{table: &route.Table{}, pools: map[string]*pool{}})
	return p
}

// Table returns the table being served.
func (p *Proxy) Table() *route.Table { return p.state.Load().table }

// Route returns the route serving host (a Host header or SNI value), nil
// when none does.
func (p *Proxy) Route(host string) *route.Route {
	if pl := p.state.Load().pools[route.NormalizeHost(host)]; pl != nil {
		return pl.route
	}
	return nil
}

// Apply makes t the routing table. Routes equal to the current ones keep
// their pools (idle connections, health state); others get new pools and
// the replaced ones are retired once the swap is done: requests in flight
// on them finish, idle connections close. If a route cannot be set up (an
// unreadable CA file, a site that cannot be opened) nothing changes and
// the error names the route.
func (p *Proxy) Apply(t *route.Table) error {
	p.applyMu.Lock()
	defer p.applyMu.Unlock()
	if p.closed {
		return errors.New("proxy: closed")
	}
	old := p.state.Load()
	next := &state{table: t, pools: make(map[string]*pool, t.Len())}
	var created []*pool
	for _, r := range t.Routes() {
		if op := old.pools[r.Host]; op != nil && op.route.Equal(r) {
			next.pools[r.Host] = op
		} else {
			pl, err := p.newPool(r)
			if err != nil {
				for _, c := range created {
					c.retire()
				}
				return fmt.Errorf("proxy: route %s: %w", r.Host, err)
			}
			created = append(created, pl)
			next.pools[r.Host] = pl
		}
		if r.Passthrough {
			next.passthrough = true
		}
	}
	p.state.Store(next)
	for host, op := range old.pools {
		if next.pools[host] != op {
			op.retire()
		}
	}
	for _, pl := range created {
		pl.start()
	}
	if p.cfg.Applied != nil {
		p.cfg.Applied(t)
	}
	return nil
}

// Reload loads a table from l and applies it when its revision differs
// from the one served. On any error the current routing stays, and the
// error is logged once (not again at every poll while it persists).
func (p *Proxy) Reload(ctx context.Context, l route.Loader) (changed bool, err error) {
	p.reloadMu.Lock()
	defer p.reloadMu.Unlock()
	cur := p.Table()
	t, err := l.Load(ctx)
	if err == nil && t.Revision != "" && t.Revision == cur.Revision {
		p.lastErr.Store(nil)
		return false, nil
	}
	if err == nil {
		err = p.Apply(t)
	}
	if err != nil {
		msg := err.Error()
		if prev := p.lastErr.Load(); prev == nil || *prev != msg {
			p.log.Error("routes not reloaded: keeping the previous routing", "revision", cur.Revision, "error", msg)
		}
		p.lastErr.Store(&msg)
		return false, err
	}
	p.lastErr.Store(nil)
	p.log.Info("routes loaded", "source", t.Source, "revision", t.Revision, "from", cur.Revision, "hosts", t.Len())
	return true, nil
}

// Poll reloads from l every interval until ctx is done; a non-positive
// interval returns at once.
func (p *Proxy) Poll(ctx context.Context, l route.Loader, every time.Duration) {
	if every <= 0 {
		return
	}
	tick := time.NewTicker(every)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		p.Reload(ctx, l)
	}
}

// Close retires every pool (stopping health checks and site pollers) and
// closes passthrough connections' backends' idle state. Requests in flight
// are not interrupted.
func (p *Proxy) Close() error {
	p.applyMu.Lock()
	defer p.applyMu.Unlock()
	if p.closed {
		return nil
	}
	p.closed = true
	p.cancel()
	for _, pl := range p.state.Load().pools {
		pl.retire()
	}
	return nil
}

// defaultALPN is what the HTTPS listener offers unless a route says
// otherwise.
var defaultALPN = []string{"h2", "http/1.1"}

// NextProtos returns the ALPN protocols to offer a client asking for
// serverName (server.Config.NextProtosForName): the route's alpn list
// when it differs from the default, nil otherwise.
func (p *Proxy) NextProtos(serverName string) []string {
	r := p.Route(serverName)
	if r == nil || len(r.ALPN) == 0 || slices.Equal(r.ALPN, defaultALPN) {
		return nil
	}
	return r.ALPN
}

// UpdateSites fetches every in-process Git site now (the webhook calls it
// after reloading the routes), concurrently. It returns how many sites
// changed and the errors of those that could not be updated; a failed
// site keeps serving its current version.
func (p *Proxy) UpdateSites(ctx context.Context) (changed int, err error) {
	type result struct {
		host    string
		changed bool
		err     error
	}
	// Hostnames serving the same Git site share one (GitSites): update
	// each site once.
	var ups []*pool
	seen := map[SiteUpdater]bool{}
	for _, pl := range p.state.Load().pools {
		if su, ok := pl.site.(SiteUpdater); ok && !seen[su] {
			seen[su] = true
			ups = append(ups, pl)
		}
	}
	results := make(chan result, len(ups))
	for _, pl := range ups {
		go func() {
			c, err := pl.site.(SiteUpdater).Update(ctx)
			results <- result{pl.route.Host, c, err}
		}()
	}
	var errs []error
	for range ups {
		r := <-results
		if r.err != nil {
			errs = append(errs, fmt.Errorf("site %s: %w", r.host, r.err))
		} else if r.changed {
			changed++
		}
	}
	return changed, errors.Join(errs...)
}

// ServeHTTP routes r by its Host (HTTP/1.1) or :authority (HTTP/2), which
// net/http both puts in r.Host.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	pl := p.state.Load().pools[route.NormalizeHost(r.Host)]
	if pl == nil || pl.route.Passthrough {
		// 421 tells a client that reused a connection for another name
		// to open a new one; it never gets another site's content.
		errorPage(w, r, http.StatusMisdirectedRequest, "No site is served under this name here.")
		return
	}
	if isExtendedConnect(r) {
		// RFC 8441 WebSocket over HTTP/2: ReverseProxy cannot carry it.
		pl.serveExtendedConnect(w, r)
		return
	}
	pl.serve(w, r)
}
