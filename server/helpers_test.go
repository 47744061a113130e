package server

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pafhq/paf/certs"
	"github.com/pafhq/paf/internal/testpeer"
)

// syncBuffer is the log of a running server.
type syncBuffer struct{ testpeer.SyncBuffer }

// records decodes the JSON log lines written so far.
func (s *syncBuffer) records(t *testing.T) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(s.String()), "\n") {
		if line == "" {
			continue
		}
		var m map[string]any
		if err := json.Unmarshal([]byte(line), &m); err != nil {
			t.Fatalf("log line %q: %v", line, err)
		}
		out = append(out, m)
	}
	return out
}

// testSite is the application under test: it reports the protocol and
// blocks /slow until release is closed.
type testSite struct {
	started chan struct{} // receives when /slow begins
	release chan struct{} // closed to let /slow finish
}

func newTestSite() *testSite {
	return &testSite{started: make(chan struct{}, 16), release: make(chan struct{})}
}

func (ts *testSite) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch r.URL.Path {
	case "/slow":
		ts.started <- struct{}{}
		select {
		case <-ts.release:
		case <-time.After(time.Minute):
		}
		io.WriteString(w, "slow done\n")
	default:
		w.Header().Set("Content-Type", "text/plain")
		fmt.Fprintf(w, "hello %s %s\n", r.Proto, r.URL.Path)
	}
}

// running is a Server started by start, with what tests need to reach it.
type running struct {
	srv    *Server
	caFile string // CA certificate clients trust; "" without HTTPS
	cancel context.CancelFunc
	done   chan error // receives Serve's result
	log    *syncBuffer
	site   *testSite
}

// httpPort and httpsPort return the bound ports.
func (r *running) httpPort() int  { return r.srv.HTTPAddr().(*net.TCPAddr).Port }
func (r *running) httpsPort() int { return r.srv.HTTPSAddr().(*net.TCPAddr).Port }

// stop cancels Serve and returns its result.
func (r *running) stop(t *testing.T) error {
	t.Helper()
	r.cancel()
	select {
	case err := <-r.done:
		return err
	case <-time.After(time.Minute):
		t.Fatal("Serve did not return")
		return nil
	}
}

// start runs a Server for cfg on loopback port 0. Empty addresses in cfg
// stay empty unless withHTTP/withHTTPS request them; HTTPS uses a fresh local CA.
func start(t *testing.T, cfg Config, withHTTP, withHTTPS bool) *running {
	t.Helper()
	r := &running{log: &syncBuffer{}, site: newTestSite(), done: make(chan error, 1)}
	if cfg.Handler == nil {
		cfg.Handler = r.site
	}
	if withHTTP && cfg.HTTPAddr == "" {
		cfg.HTTPAddr = "127.0.0.1:0"
	}
	if withHTTPS {
		if cfg.HTTPSAddr == "" {
			cfg.HTTPSAddr = "127.0.0.1:0"
		}
		ca, err := certs.OpenLocalCA(t.TempDir())
		if err != nil {
			t.Fatal(err)
		}
		is, err := ca.Issuer([]string{"localhost", "127.0.0.1"})
		if err != nil {
			t.Fatal(err)
		}
		cfg.Certificates = is
		r.caFile = ca.CertFile()
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewJSONHandler(r.log, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	srv, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	if err := srv.Listen(ctx); err != nil {
		cancel()
		t.Fatal(err)
	}
	r.srv, r.cancel = srv, cancel
	go func() { r.done <- srv.Serve(ctx) }()
	t.Cleanup(func() {
		select {
		case <-r.site.release:
		default:
			close(r.site.release)
		}
		cancel()
		select {
		case <-r.done:
		case <-time.After(time.Minute):
			t.Error("Serve did not return")
		}
	})
	return r
}

// curl runs curl with args and returns its standard output.
func curl(t *testing.T, args ...string) (string, error) {
	t.Helper()
	bin := testpeer.Need(t, "curl")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, append([]string{"-sS", "--max-time", "30"}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return string(out), fmt.Errorf("curl %s: %w: %s", strings.Join(args, " "), err, stderr.String())
	}
	return string(out), nil
}

// httpsArgs returns curl arguments reaching https://localhost:PORT on
// loopback with the test CA.
func (r *running) httpsArgs(path string) []string {
	p := strconv.Itoa(r.httpsPort())
	return []string{"--cacert", r.caFile, "--resolve", "localhost:" + p + ":127.0.0.1", "https://localhost:" + p + path}
}
