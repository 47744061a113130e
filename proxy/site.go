package proxy

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"sync"
	"time"

	"github.com/pafhq/paf/gitsource"
	"github.com/pafhq/paf/route"
	"github.com/pafhq/paf/site"
)

// GitSites serves site = "URL#branch" routes in-process, the way
// `paf serve --remote` does: a gitsource.Source keeps a clone under
// DataDir, the site is served from memory and polled for updates. Until
// the first fetch completes the route answers 503.
//
// A gitsource.Source assumes it alone writes its clone, so GitSites keeps
// one site.Site (one Source, one poller) per URL#branch, shared by every
// route serving it: two hostnames with the same site, and the old and new
// pools of a route being replaced (the new one opens before the old one
// is retired). It stops when the last route using it is removed.
//
// A GitSites must not be copied after first use; its methods are safe for
// concurrent use.
type GitSites struct {
	// DataDir holds the clones (see gitsource.Config.DataDir). Required.
	DataDir string
	// Auth holds SSH and HTTPS options for the sites' remotes.
	Auth gitsource.Auth
	// Poll is how often each site is fetched; zero: only at start.
	Poll time.Duration
	// Logger receives fetch and update events; nil discards.
	Logger *slog.Logger

	mu    sync.Mutex
	sites map[gitsource.Remote]*sharedSite
}

// sharedSite is a site served by refs routes.
type sharedSite struct {
	s      *site.Site
	cancel context.CancelFunc // stops its first load and polling
	refs   int
}

// Open implements SiteOpener. Routes with the same URL#branch get the same
// *site.Site; the stop function releases this route's use of it.
func (g *GitSites) Open(ctx context.Context, r *route.Route) (http.Handler, func(), error) {
	log := g.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	remote, err := gitsource.ParseRemote(r.Site)
	if err != nil {
		return nil, nil, fmt.Errorf("site: %w", err)
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	ss := g.sites[remote]
	if ss == nil {
		log := log.With("site", remote.Redacted())
		src, err := gitsource.New(gitsource.Config{Remote: remote, Auth: g.Auth, DataDir: g.DataDir, Logger: log})
		if err != nil {
			return nil, nil, fmt.Errorf("site %s: %w", remote, err)
		}
		s := &site.Site{Source: src, Logger: log}
		// The site outlives the route that opened it when others share it:
		// only the last release stops it.
		sctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
		ss = &sharedSite{s: s, cancel: cancel}
		if g.sites == nil {
			g.sites = map[gitsource.Remote]*sharedSite{}
		}
		g.sites[remote] = ss
		go func() {
			if err := s.Load(sctx); err != nil {
				if sctx.Err() == nil {
					log.Error("site: first fetch failed; answering 503 until a poll succeeds", "host", r.Host, "error", err.Error())
				}
			} else {
				log.Info("site loaded", "host", r.Host, "revision", s.Current().Revision())
			}
			s.Poll(sctx, g.Poll)
		}()
	}
	ss.refs++
	var once sync.Once
	release := func() { once.Do(func() { g.release(remote, ss) }) }
	return ss.s, release, nil
}

// release drops one route's use of ss, stopping it after the last.
func (g *GitSites) release(remote gitsource.Remote, ss *sharedSite) {
	g.mu.Lock()
	defer g.mu.Unlock()
	ss.refs--
	if ss.refs > 0 {
		return
	}
	ss.cancel()
	if g.sites[remote] == ss {
		delete(g.sites, remote)
	}
}

// open reports how many sites are being served, and how many routes use
// each, keyed by URL#branch (redacted): for tests.
func (g *GitSites) open() map[string]int {
	g.mu.Lock()
	defer g.mu.Unlock()
	m := map[string]int{}
	for r, ss := range g.sites {
		m[r.String()] = ss.refs
	}
	return m
}
