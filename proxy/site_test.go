package proxy

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pafhq/paf/internal/testpeer"
)

// countHandler counts the log records with a given message.
type countHandler struct {
	msg string
	n   *atomic.Int64
}

func (h countHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h countHandler) Handle(_ context.Context, r slog.Record) error {
	if r.Message == h.msg {
		h.n.Add(1)
	}
	return nil
}
func (h countHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h countHandler) WithGroup(string) slog.Handler      { return h }

// siteRepo is a bare Git repository with a main branch, and a function
// committing index.html to it.
func siteRepo(t *testing.T) (bare string, commit func(body string)) {
	t.Helper()
	dir := t.TempDir()
	bare, work := filepath.Join(dir, "site.git"), filepath.Join(dir, "work")
	run := testpeer.NewGit(t).Run
	run(dir, "init", "-q", "--bare", "-b", "main", bare)
	run(dir, "init", "-q", "-b", "main", work)
	return bare, func(body string) {
		t.Helper()
		if err := os.WriteFile(filepath.Join(work, "index.html"), []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
		run(work, "add", "index.html")
		run(work, "commit", "-q", "-m", body)
		run(work, "push", "-q", bare, "main")
	}
}

// getHost GETs / on addr with Host host.
func getHost(addr, host string) (int, string, error) {
	req, _ := http.NewRequest("GET", "http://"+addr+"/", nil)
	req.Host = host
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// TestGitSitesShared: two hostnames with the same site share one
// site.Site, hence one clone writer and one fetch per update; editing one
// route keeps that Site (the new pool opens before the old one retires,
// and must not start a second Source on the clone); removing both routes
// stops it.
func TestGitSitesShared(t *testing.T) {
	bare, commit := siteRepo(t)
	commit("version 1\n")
	var fetches atomic.Int64
	g := &GitSites{DataDir: t.TempDir(), Logger: slog.New(countHandler{"gitsource: fetched", &fetches})}
	p := newProxy(t, Config{Sites: g})
	addr := front(t, p)
	siteLine := `site = "file://` + bare + `#main"` + "\n"
	apply(t, p, map[string]string{"a.test": siteLine, "b.test": siteLine})

	pools := p.state.Load().pools
	shared := pools["a.test"].site
	if shared == nil || shared != pools["b.test"].site {
		t.Fatalf("a.test and b.test serve different Sites for the same URL#branch")
	}
	waitBody := func(host, want string) {
		t.Helper()
		for i := 0; ; i++ {
			code, body, err := getHost(addr, host)
			if err == nil && code == 200 && body == want {
				return
			}
			if i == 400 {
				t.Fatalf("%s: %d %q %v, want 200 %q", host, code, body, err, want)
			}
			time.Sleep(25 * time.Millisecond)
		}
	}
	waitBody("a.test", "version 1\n")
	waitBody("b.test", "version 1\n")
	if n := fetches.Load(); n != 1 {
		t.Errorf("%d fetches for the first load of a site two routes share, want 1", n)
	}

	commit("version 2\n")
	if changed, err := shared.(SiteUpdater).Update(context.Background()); err != nil || !changed {
		t.Fatalf("update: %v %v", changed, err)
	}
	waitBody("a.test", "version 2\n")
	waitBody("b.test", "version 2\n")
	if n := fetches.Load(); n != 2 {
		t.Errorf("%d fetches after one update, want 2", n)
	}

	// Editing a.test (same site, another setting) replaces its pool, not
	// its Site.
	apply(t, p, map[string]string{"a.test": siteLine + `alpn = ["http/1.1"]` + "\n", "b.test": siteLine})
	pools = p.state.Load().pools
	if pools["a.test"].site != shared || pools["b.test"].site != shared {
		t.Errorf("after editing a.test: a second Site for the same URL#branch")
	}
	if got := g.open(); len(got) != 1 || got["file://"+bare+"#main"] != 2 {
		t.Errorf("sites open after the edit: %v, want one used by 2 routes", got)
	}
	waitBody("a.test", "version 2\n")

	// Removing every route stops the Site.
	apply(t, p, map[string]string{"c.test": `backends = ["http://127.0.0.1:1"]` + "\n"})
	if got := g.open(); len(got) != 0 {
		t.Errorf("sites open with no site route: %v", got)
	}
	if n := fetches.Load(); n != 2 {
		t.Errorf("%d fetches in all, want 2", n)
	}
}
