package route

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pafhq/paf/gitsource"
	"github.com/pafhq/paf/internal/testpeer"
)

const full = `# every key
backends = ["http://127.0.0.1:8080", 'h2c://[::1]:81',
  "https://backend.internal", # trailing comment
]
lb = "least_conn"
alpn = ["http/1.1"]
certificate = "manual"
max_body = "10MiB"
websocket = false
proxy_protocol = "v2"

[timeouts]
dial = "5s"
response_header = "1m30s"
idle = "2m"

[health]
path = "/healthz"
interval = "10s"
fails = 2
fail_duration = "1m"

[tls]
ca = "/etc/ca.pem"
server_name = "internal"
insecure = true

[request_headers]
X-Env = "prod \"quoted\""
x-remove = ""

[response_headers]
Strict-Transport-Security = "max-age=31536000"
`

func TestParseFull(t *testing.T) {
	r, err := Parse("routes/blog.example.org.toml", []byte(full))
	if err != nil {
		t.Fatal(err)
	}
	if r.Host != "blog.example.org" || len(r.Backends) != 3 || r.LB != LeastConn || r.Certificate != CertManual ||
		r.MaxBody != 10<<20 || r.WebSocket || r.Timeouts.ResponseHeader != 90*time.Second || r.Health.Fails != 2 ||
		!r.TLS.Insecure || r.TLS.ServerName != "internal" || len(r.ALPN) != 1 || r.ProxyProtocol != "v2" {
		t.Fatalf("parsed %+v", r)
	}
	if b := r.Backends[1]; b.Scheme != "h2c" || b.Addr != "[::1]:81" {
		t.Errorf("backend 1 = %+v", b)
	}
	if b := r.Backends[2]; b.Scheme != "https" || b.Addr != "backend.internal:443" {
		t.Errorf("backend 2 = %+v", b)
	}
	if h := r.RequestHeaders[0]; h.Name != "X-Env" || h.Value != `prod "quoted"` {
		t.Errorf("request header = %+v", h)
	}
	if h := r.RequestHeaders[1]; h.Name != "X-Remove" || h.Value != "" {
		t.Errorf("request header = %+v", h)
	}
	// Format then Parse gives the same route.
	back, err := Parse("blog.example.org.toml", Format(r))
	if err != nil {
		t.Fatalf("%v\n%s", err, Format(r))
	}
	if !back.Equal(r) {
		t.Fatalf("round trip differs:\n%s\n%s", Format(r), Format(back))
	}
}

func TestParseDefaults(t *testing.T) {
	r, err := Parse("a.test.toml", []byte(`backends = ["http://127.0.0.1:1"]`))
	if err != nil {
		t.Fatal(err)
	}
	if r.LB != RoundRobin || !r.WebSocket || r.Certificate != CertDefault || r.Timeouts.Dial != DefaultDialTimeout ||
		r.Health.Fails != DefaultFails || !r.OffersH2() || r.MaxBody != 0 {
		t.Fatalf("defaults: %+v", r)
	}
	if got := string(Format(r)); strings.Count(got, "\n") != 2 {
		t.Errorf("default route formats with more than backends:\n%s", got)
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name, file, src string
		want            string // substring of the error
	}{
		{"unknown key", "a.test.toml", "backends = [\"http://x\"]\nbackend = \"http://y\"\n", `a.test.toml:2: backend: unknown key (did you mean "backends"?)`},
		{"unknown table", "a.test.toml", "backends = [\"http://x\"]\n[helth]\npath = \"/\"\n", `a.test.toml:3: helth: unknown table [helth] (did you mean "health"?)`},
		{"unknown nested key", "a.test.toml", "backends = [\"http://x\"]\n[timeouts]\nread = \"1s\"\n", `a.test.toml:3: timeouts.read: unknown key`},
		{"bad backend", "a.test.toml", "backends = [\"ftp://x\"]\n", `a.test.toml:1: backends: backend "ftp://x": want http://`},
		{"backend path", "a.test.toml", "backends = [\"http://x/path\"]\n", `no user, path, query or fragment`},
		{"backend port", "a.test.toml", "backends = [\"http://x:99999\"]\n", `invalid port`},
		{"no host", "a.test.toml", "backends = [\"http://\"]\n", `no host`},
		{"bad file name", "A_B.toml", "backends = [\"http://x\"]\n", `A_B.toml: file name "A_B.toml"`},
		{"upper case", "A.test.toml", "backends = [\"http://x\"]\n", `lower case`},
		{"not toml", "a.test.json", "", `want <hostname>.toml`},
		{"wrong type", "a.test.toml", "backends = \"http://x\"\n", `a.test.toml:1: backends: want an array of strings, got a string`},
		{"bad duration", "a.test.toml", "backends = [\"http://x\"]\n[timeouts]\ndial = \"5\"\n", `a.test.toml:3: timeouts.dial: "5" is not a duration`},
		{"int duration", "a.test.toml", "backends = [\"http://x\"]\n[timeouts]\ndial = 5\n", `want a string, got an integer`},
		{"bad lb", "a.test.toml", "backends = [\"http://x\"]\nlb = \"random\"\n", `a.test.toml:2: lb: "random": want round_robin`},
		{"bad alpn", "a.test.toml", "backends = [\"http://x\"]\nalpn = [\"h3\"]\n", `a.test.toml:2: alpn: "h3"`},
		{"duplicate", "a.test.toml", "backends = [\"http://x\"]\nbackends = [\"http://y\"]\n", `a.test.toml:2: backends: defined twice (first on line 1)`},
		{"no destination", "a.test.toml", "lb = \"first\"\n", `no destination`},
		{"site and backends", "a.test.toml", "backends = [\"http://x\"]\nsite = \"https://g/x.git\"\n", `not both`},
		{"passthrough http", "a.test.toml", "passthrough = true\nbackends = [\"http://x:1\"]\n", `tcp://HOST:PORT`},
		{"health half", "a.test.toml", "backends = [\"http://x\"]\n[health]\npath = \"/h\"\n", `path and interval go together`},
		{"garbage after value", "a.test.toml", "backends = [\"http://x\"] x\n", `a.test.toml:1: unexpected 'x'`},
		{"unterminated", "a.test.toml", "site = \"abc\n", `a.test.toml:1: site: unterminated string`},
		{"header injection", "a.test.toml", "backends = [\"http://x\"]\n[request_headers]\nX = \"a\\nb\"\n", `line break`},
		{"bad proxy protocol", "a.test.toml", "backends = [\"http://x\"]\nproxy_protocol = \"v3\"\n", `a.test.toml:2: proxy_protocol: "v3": want v1 or v2`},
		{"proxy protocol on a site", "a.test.toml", "site = \"https://g/x.git\"\nproxy_protocol = \"v1\"\n", `a site route has no backend`},
		{"bad size", "a.test.toml", "backends = [\"http://x\"]\nmax_body = \"10 parsecs\"\n", `unknown unit`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse(tt.file, []byte(tt.src))
			if err == nil {
				t.Fatalf("no error for:\n%s", tt.src)
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("error %q\nwant it to contain %q", err, tt.want)
			}
			var re *Error
			if !errors.As(err, &re) {
				t.Errorf("error %T is not a *route.Error", err)
			}
		})
	}
}

func TestNormalizeHost(t *testing.T) {
	for in, want := range map[string]string{
		"Example.ORG": "example.org", "example.org:8443": "example.org", "example.org.": "example.org",
		"[::1]:443": "::1", "127.0.0.1:80": "127.0.0.1",
	} {
		if got := NormalizeHost(in); got != want {
			t.Errorf("NormalizeHost(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestLoadDirBrokenFileKeepsNothing(t *testing.T) {
	dir := t.TempDir()
	st := DirStore{Dir: dir}
	ctx := context.Background()
	for _, h := range []string{"a.test", "b.test"} {
		r := New(h)
		r.Backends = []Backend{{URL: "http://127.0.0.1:1"}}
		if err := st.Put(ctx, r); err != nil {
			t.Fatal(err)
		}
	}
	os.WriteFile(filepath.Join(dir, "README.md"), []byte("not a route"), 0o644)
	tb, err := st.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(tb.Hosts(), ","); got != "a.test,b.test" {
		t.Fatalf("hosts %s", got)
	}
	if tb.Lookup("A.TEST:443") == nil {
		t.Error("lookup with case and port failed")
	}
	os.WriteFile(filepath.Join(dir, "c.test.toml"), []byte("backends = [\"http://x\"]\nbogus = 1\n"), 0o644)
	if _, err := st.Load(ctx); err == nil || !strings.Contains(err.Error(), "c.test.toml:2: bogus") {
		t.Fatalf("broken file: err = %v", err)
	}
	if err := st.Remove(ctx, "zz.test"); !errors.Is(err, ErrNoRoute) {
		t.Fatalf("remove missing: %v", err)
	}
	if err := st.Remove(ctx, "a.test"); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "a.test.toml")); !os.IsNotExist(err) {
		t.Fatal("a.test.toml still there")
	}
	// Invalid routes are refused before anything is written.
	bad := New("d.test")
	if err := st.Put(ctx, bad); err == nil {
		t.Fatal("route without destination accepted")
	}
	if _, err := os.Stat(filepath.Join(dir, "d.test.toml")); !os.IsNotExist(err) {
		t.Fatal("refused route was written")
	}
}

// TestGitStore edits routes in a bare repository with real git as the
// other side: changes from git and from concurrent GitStores all land.
func TestGitStore(t *testing.T) {
	dir := t.TempDir()
	bare := filepath.Join(dir, "routes.git")
	run := testpeer.NewGit(t).Run
	run(dir, "init", "-q", "--bare", "-b", "main", bare)
	// A real git receive-pack behind git daemon: it updates the branch
	// only if it still is where the pusher saw it, which the concurrent
	// writers below rely on. (go-git's in-process file:// server does not
	// check, so concurrent pushes to a file:// remote can lose updates.)
	addr, _ := testpeer.GitDaemon(t, dir, "--enable=receive-pack")
	remote, err := gitsource.ParseRemote("git://" + addr + "/routes.git#main")
	if err != nil {
		t.Fatal(err)
	}
	st := GitStore{Remote: remote}
	ctx := context.Background()
	tb, err := st.Load(ctx)
	if err != nil || tb.Len() != 0 {
		t.Fatalf("empty repo: %v, %d routes", err, tb.Len())
	}
	// Concurrent writers: every route lands, none is lost to a race.
	var wg sync.WaitGroup
	hosts := []string{"a.test", "b.test", "c.test", "d.test"}
	errs := make([]error, len(hosts))
	for i, h := range hosts {
		wg.Go(func() {
			r := New(h)
			r.Backends = []Backend{{URL: "http://127.0.0.1:1"}}
			errs[i] = st.Put(ctx, r)
		})
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("put %s: %v", hosts[i], err)
		}
	}
	if tb, _ := st.Load(ctx); tb.Len() != 4 {
		t.Fatalf("after concurrent puts: %v", tb.Hosts())
	}
	// A file added with git by hand sits beside them and is kept.
	work := filepath.Join(dir, "work")
	run(dir, "clone", "-q", "git://"+addr+"/routes.git", work)
	os.WriteFile(filepath.Join(work, "README.md"), []byte("routes\n"), 0o644)
	run(work, "add", ".")
	run(work, "commit", "-q", "-m", "readme")
	run(work, "push", "-q", "origin", "main")
	if err := st.Remove(ctx, "b.test"); err != nil {
		t.Fatal(err)
	}
	if err := st.Remove(ctx, "b.test"); !errors.Is(err, ErrNoRoute) {
		t.Fatalf("second remove: %v", err)
	}
	tb, err = st.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(tb.Hosts(), ","); got != "a.test,c.test,d.test" {
		t.Fatalf("hosts %s", got)
	}
	run(work, "pull", "-q", "origin", "main")
	if _, err := os.Stat(filepath.Join(work, "README.md")); err != nil {
		t.Fatal("README lost")
	}
	if out := run(work, "log", "--format=%s"); !strings.Contains(out, "paf route rm b.test") {
		t.Fatalf("log:\n%s", out)
	}
}
