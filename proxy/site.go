package proxy

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/pafhq/paf/gitsource"
	"github.com/pafhq/paf/route"
	"github.com/pafhq/paf/site"
)

// GitSites serves site = "URL#branch" routes in-process, the way
// `paf serve --remote` does: a gitsource.Source keeps a clone under
// DataDir, the site is served from memory and polled for updates. Until
// the first fetch completes the route answers 503.
type GitSites struct {
	// DataDir holds the clones (see gitsource.Config.DataDir). Required.
	DataDir string
	// Auth holds SSH and HTTPS options for the sites' remotes.
	Auth gitsource.Auth
	// Poll is how often each site is fetched; zero: only at start.
	Poll time.Duration
	// Logger receives fetch and update events; nil discards.
	Logger *slog.Logger
}

// Open implements SiteOpener.
func (g *GitSites) Open(ctx context.Context, r *route.Route) (http.Handler, func(), error) {
	log := g.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	log = log.With("host", r.Host)
	remote, err := gitsource.ParseRemote(r.Site)
	if err != nil {
		return nil, nil, fmt.Errorf("site: %w", err)
	}
	src, err := gitsource.New(gitsource.Config{Remote: remote, Auth: g.Auth, DataDir: g.DataDir, Logger: log})
	if err != nil {
		return nil, nil, fmt.Errorf("site %s: %w", remote, err)
	}
	s := &site.Site{Source: src, Logger: log}
	ctx, cancel := context.WithCancel(context.WithoutCancel(ctx))
	go func() {
		if err := s.Load(ctx); err != nil {
			if ctx.Err() == nil {
				log.Error("site: first fetch failed; answering 503 until a poll succeeds", "site", remote.Redacted(), "error", err.Error())
			}
		} else {
			log.Info("site loaded", "site", remote.Redacted(), "revision", s.Current().Revision())
		}
		s.Poll(ctx, g.Poll)
	}()
	return s, cancel, nil
}
