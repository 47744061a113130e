package site

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// funcSource is a Source (and optionally a Cacher) made of functions.
type funcSource struct {
	fetch func(context.Context) (*Tree, error)
}

func (s funcSource) Fetch(ctx context.Context) (*Tree, error) { return s.fetch(ctx) }

type cachingSource struct {
	funcSource
	cached func(context.Context) (*Tree, error)
}

func (s cachingSource) Cached(ctx context.Context) (*Tree, error) { return s.cached(ctx) }

// versionFiles returns the files of version v of a site whose every file
// differs between versions.
func versionFiles(v int) map[string]memFile {
	return map[string]memFile{
		"index.html": {content: fmt.Sprintf("<h1>version %d</h1>", v) + strings.Repeat(fmt.Sprintf("<p>body of version %d</p>\n", v), 100)},
		"app.js":     {content: strings.Repeat(fmt.Sprintf("var v = %d;\n", v), 300)},
		"small.txt":  {content: fmt.Sprintf("v%d", v)},
		"data.bin":   {content: string(randomBytes(2000, uint64(v)))},
	}
}

// TestSiteConcurrentSwap requests continuously while Update swaps between
// two versions: every response must be wholly one version's file.
func TestSiteConcurrentSwap(t *testing.T) {
	trees := [2]*Tree{memTree(versionFiles(1)), memTree(versionFiles(2))}
	var n atomic.Int64
	site := &Site{
		Source: funcSource{func(context.Context) (*Tree, error) { return trees[n.Add(1)%2], nil }},
		Logger: slog.New(slog.DiscardHandler),
	}
	if err := site.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	// want maps path and ETag to the decoded body that ETag stands for.
	want := map[string]string{}
	for v := 1; v <= 2; v++ {
		snap := mustBuild(t, memTree(versionFiles(v)), Options{Logger: slog.New(slog.DiscardHandler)})
		for p, f := range versionFiles(v) {
			r := snap.files[p]
			want[p+" "+r.identity.etag] = f.content
			for _, vr := range r.variants {
				if vr != nil {
					want[p+" "+vr.etag] = f.content
				}
			}
		}
	}

	encodings := []string{"", "gzip", "br", "zstd", "br, gzip"}
	paths := []string{"/", "/app.js", "/small.txt", "/data.bin"}
	for _, ts := range servers(t, site) {
		t.Run(ts.name, func(t *testing.T) {
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			var wg sync.WaitGroup
			wg.Go(func() {
				for range 12 {
					if _, err := site.Update(ctx); err != nil {
						t.Errorf("Update: %v", err)
						return
					}
				}
			})
			for g := range 8 {
				wg.Go(func() {
					for i := range 40 {
						p := paths[(g+i)%len(paths)]
						hdr := map[string]string{}
						if enc := encodings[(g*7+i)%len(encodings)]; enc != "" {
							hdr["Accept-Encoding"] = enc
						}
						resp, body := ts.do(t, "GET", p, hdr)
						if resp.StatusCode != 200 {
							t.Errorf("%s: status %d", p, resp.StatusCode)
							return
						}
						key := strings.TrimSuffix(strings.TrimPrefix(p, "/"), "/")
						if key == "" {
							key = "index.html"
						}
						expect, ok := want[key+" "+resp.Header.Get("ETag")]
						if !ok {
							t.Errorf("%s: unknown ETag %q", p, resp.Header.Get("ETag"))
							return
						}
						if got := decode(t, resp.Header.Get("Content-Encoding"), body); !bytes.Equal(got, []byte(expect)) {
							t.Errorf("%s (%s): body is not the version its ETag names", p, resp.Header.Get("Content-Encoding"))
							return
						}
					}
				})
			}
			wg.Wait()
		})
	}
}

func TestSiteLoad(t *testing.T) {
	good := memTree(versionFiles(1))
	errRemote := errors.New("remote unreachable")
	fail := func(context.Context) (*Tree, error) { return nil, errRemote }
	ok := func(context.Context) (*Tree, error) { return good, nil }
	noCache := func(context.Context) (*Tree, error) { return nil, fmt.Errorf("cache: %w", fs.ErrNotExist) }

	for _, c := range []struct {
		name    string
		src     Source
		wantErr error
		wantLog string
	}{
		{"fetch ok", funcSource{ok}, nil, ""},
		{"fetch fails, no cacher", funcSource{fail}, errRemote, ""},
		{"fetch fails, cached", cachingSource{funcSource{fail}, ok}, nil, "unreachable"},
		{"both fail", cachingSource{funcSource{fail}, noCache}, errRemote, ""},
	} {
		t.Run(c.name, func(t *testing.T) {
			var logs bytes.Buffer
			var mu sync.Mutex
			site := &Site{Source: c.src, Logger: slog.New(slog.NewTextHandler(lockedWriter{&mu, &logs}, nil))}
			// Before Load, 503.
			w := httptest.NewRecorder()
			site.ServeHTTP(w, httptest.NewRequest("GET", "/", nil))
			if w.Code != http.StatusServiceUnavailable {
				t.Errorf("before Load: %d", w.Code)
			}
			err := site.Load(context.Background())
			if !errors.Is(err, c.wantErr) || (c.wantErr == nil) != (err == nil) {
				t.Fatalf("Load: %v, want %v", err, c.wantErr)
			}
			if err != nil {
				if site.Current() != nil {
					t.Errorf("snapshot set after failed Load")
				}
				return
			}
			if site.Current().Revision() != good.Revision {
				t.Errorf("revision %q", site.Current().Revision())
			}
			w = httptest.NewRecorder()
			site.ServeHTTP(w, httptest.NewRequest("GET", "/small.txt", nil))
			if w.Code != 200 || w.Body.String() != "v1" {
				t.Errorf("serve: %d %q", w.Code, w.Body.String())
			}
			mu.Lock()
			defer mu.Unlock()
			if c.wantLog != "" && (!strings.Contains(logs.String(), c.wantLog) || !strings.Contains(logs.String(), good.Revision) || !strings.Contains(logs.String(), "level=WARN")) {
				t.Errorf("log lacks a warning with %q and the revision:\n%s", c.wantLog, logs.String())
			}
		})
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	b  *bytes.Buffer
}

func (w lockedWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func TestSiteUpdate(t *testing.T) {
	v1, v2 := memTree(versionFiles(1)), memTree(versionFiles(2))
	broken := memTree(versionFiles(3))
	broken.Entries[0].Size++ // a partial fetch
	errFetch := errors.New("fetch failed")
	var next func() (*Tree, error)
	site := &Site{
		Source: funcSource{func(context.Context) (*Tree, error) { return next() }},
		Logger: testLogger(t),
	}
	next = func() (*Tree, error) { return v1, nil }
	if err := site.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	first := site.Current()
	for _, c := range []struct {
		name     string
		tree     *Tree
		err      error
		changed  bool
		revision string
	}{
		{"same revision", v1, nil, false, v1.Revision},
		{"fetch error keeps old", nil, errFetch, false, v1.Revision},
		{"broken build keeps old", broken, nil, false, v1.Revision},
		{"new revision", v2, nil, true, v2.Revision},
		{"back", v1, nil, true, v1.Revision},
	} {
		t.Run(c.name, func(t *testing.T) {
			next = func() (*Tree, error) { return c.tree, c.err }
			before := site.Current()
			changed, err := site.Update(context.Background())
			if changed != c.changed {
				t.Errorf("changed %v, want %v", changed, c.changed)
			}
			wantErr := c.err != nil || c.tree == broken
			if (err != nil) != wantErr || (c.err != nil && !errors.Is(err, c.err)) {
				t.Errorf("err %v, want %v", err, wantErr)
			}
			if site.Current().Revision() != c.revision {
				t.Errorf("revision %q, want %q", site.Current().Revision(), c.revision)
			}
			if !changed && site.Current() != before {
				t.Errorf("snapshot replaced without a change")
			}
		})
	}
	if first == site.Current() {
		t.Errorf("final snapshot is the first one although it was rebuilt")
	}
}

// TestSiteUpdateCoalesces checks that Update calls made while one runs
// share a single following fetch.
func TestSiteUpdateCoalesces(t *testing.T) {
	trees := []*Tree{memTree(versionFiles(1)), memTree(versionFiles(2)), memTree(versionFiles(3))}
	var fetches atomic.Int64
	entered := make(chan struct{}, 10)
	release := make(chan struct{})
	site := &Site{
		Source: funcSource{func(ctx context.Context) (*Tree, error) {
			i := fetches.Add(1)
			if i > 1 {
				entered <- struct{}{}
				<-release
			}
			return trees[min(int(i)-1, 2)], nil
		}},
		Logger: slog.New(slog.DiscardHandler),
	}
	if err := site.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	var wg sync.WaitGroup
	results := make(chan bool, 20)
	wg.Go(func() {
		changed, err := site.Update(ctx)
		if err != nil {
			t.Error(err)
		}
		results <- changed
	})
	<-entered // the first update is fetching
	const joiners = 10
	for range joiners {
		wg.Go(func() {
			changed, err := site.Update(ctx)
			if err != nil {
				t.Error(err)
			}
			results <- changed
		})
	}
	// Wait, boundedly, until every joiner shares the queued update.
	for i := 0; ; i++ {
		site.mu.Lock()
		joined := 0
		if site.queued != nil {
			joined = site.queued.joined
		}
		site.mu.Unlock()
		if joined == joiners {
			break
		}
		if i > 2000 {
			t.Fatalf("only %d of %d callers joined", joined, joiners)
		}
		time.Sleep(5 * time.Millisecond)
	}
	close(release)
	wg.Wait()
	close(results)
	for changed := range results {
		if !changed {
			t.Errorf("an update reported no change")
		}
	}
	if got := fetches.Load(); got != 3 { // Load, the running update, one shared
		t.Errorf("%d fetches, want 3", got)
	}
	if site.Current().Revision() != trees[2].Revision {
		t.Errorf("not at the newest revision")
	}
}

func TestSitePoll(t *testing.T) {
	var n atomic.Int64
	site := &Site{
		Source: funcSource{func(context.Context) (*Tree, error) { return memTree(versionFiles(int(n.Add(1)))), nil }},
		Logger: slog.New(slog.DiscardHandler),
	}
	if err := site.Load(context.Background()); err != nil {
		t.Fatal(err)
	}
	site.Poll(context.Background(), 0) // returns at once
	first := site.Current().Revision()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		site.Poll(ctx, time.Millisecond)
		close(done)
	}()
	for i := 0; site.Current().Revision() == first; i++ {
		if i > 2000 {
			t.Fatal("Poll never updated")
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	<-done
}
