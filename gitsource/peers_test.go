package gitsource

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"io/fs"
	"net/http/cgi"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/pafhq/paf/internal/testpeer"
)

// startGitDaemon serves f.base over git:// and returns the stop function
// and the repository URL.
func startGitDaemon(t *testing.T, f *fixture) (stop func(), url string) {
	t.Helper()
	addr, stop := testpeer.GitDaemon(t, f.base)
	return stop, "git://" + addr + "/remote.git"
}

func TestGitDaemon(t *testing.T) {
	f := newFixture(t)
	stop, url := startGitDaemon(t, f)
	s := newSource(t, Remote{URL: url}, Auth{})
	checkTree(t, fetch(t, s), f.work, f.head())

	f.write(map[string]string{"index.html": "<h1>over git://</h1>\n"})
	f.commit("v2")
	f.push(false)
	checkTree(t, fetch(t, s), f.work, f.head())
	served := f.head()

	// Remote gone: Fetch fails, Cached still serves the last commit, also
	// from a new Source on the same data dir (a restart).
	stop()
	_, err := s.Fetch(context.Background())
	wantErr(t, err, nil, "127.0.0.1")
	tree, err := s.Cached(context.Background())
	if err != nil {
		t.Fatalf("Cached with the daemon stopped: %v", err)
	}
	checkTree(t, tree, f.work, served)
	s2, err := New(Config{Remote: Remote{URL: url}, DataDir: filepath.Dir(s.gitDir), LargeFile: testLargeFile})
	if err != nil {
		t.Fatal(err)
	}
	tree, err = s2.Cached(context.Background())
	if err != nil {
		t.Fatalf("Cached after restart: %v", err)
	}
	checkTree(t, tree, f.work, served)
	// Another branch of the same URL has no cache of its own.
	s3, err := New(Config{Remote: Remote{URL: url, Branch: "other"}, DataDir: filepath.Dir(s.gitDir)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s3.Cached(context.Background()); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Cached for another branch: %v, want fs.ErrNotExist", err)
	}
}

// startHTTPBackend serves f.base with git http-backend over HTTP, or HTTPS
// when tls is set, with pushing enabled.
func startHTTPBackend(t *testing.T, f *fixture, tls bool) *httptest.Server {
	t.Helper()
	backend := testpeer.Need(t, "git-http-backend")
	f.g.Run(f.bare, "config", "http.receivepack", "true")
	h := &cgi.Handler{
		Path:       backend,
		Root:       "/",
		Env:        []string{"GIT_PROJECT_ROOT=" + f.base, "GIT_HTTP_EXPORT_ALL=1", "GIT_CONFIG_NOSYSTEM=1", "HOME=" + f.g.Home},
		InheritEnv: []string{"PATH"},
	}
	var srv *httptest.Server
	if tls {
		srv = httptest.NewTLSServer(h)
	} else {
		srv = httptest.NewServer(h)
	}
	t.Cleanup(srv.Close)
	return srv
}

func TestHTTPBackend(t *testing.T) {
	f := newFixture(t)
	srv := startHTTPBackend(t, f, false)
	s := newSource(t, Remote{URL: srv.URL + "/remote.git"}, Auth{})
	checkTree(t, fetch(t, s), f.work, f.head())
	f.write(map[string]string{"index.html": "<h1>over http</h1>\n"})
	f.commit("v2")
	f.push(false)
	checkTree(t, fetch(t, s), f.work, f.head())

	s = newSource(t, Remote{URL: srv.URL + "/missing.git"}, Auth{})
	_, err := s.Fetch(context.Background())
	wantErr(t, err, nil, "missing.git")
}

func TestHTTPS(t *testing.T) {
	f := newFixture(t)
	srv := startHTTPBackend(t, f, true)
	ca := filepath.Join(t.TempDir(), "ca.pem")
	pemBytes := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	if err := os.WriteFile(ca, pemBytes, 0o600); err != nil {
		t.Fatal(err)
	}
	url := srv.URL + "/remote.git"

	s := newSource(t, Remote{URL: url}, Auth{CAFile: ca})
	checkTree(t, fetch(t, s), f.work, f.head())

	s = newSource(t, Remote{URL: url}, Auth{})
	_, err := s.Fetch(context.Background())
	wantErr(t, err, nil, "certificate")
	var unknown x509.UnknownAuthorityError
	if !errors.As(err, &unknown) {
		t.Errorf("error %v is not an x509.UnknownAuthorityError", err)
	}
}
