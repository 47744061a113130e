package main

import (
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/pafhq/paf/hook"
	"github.com/pafhq/paf/internal/testpeer"
)

// gitRepo is a bare repository and a work tree pushing to it, made with the
// git binary as a user would.
type gitRepo struct {
	t          *testing.T
	bare, work string
}

func newGitRepo(t *testing.T) *gitRepo {
	t.Helper()
	testpeer.Need(t, "git")
	dir := t.TempDir()
	r := &gitRepo{t: t, bare: filepath.Join(dir, "site.git"), work: filepath.Join(dir, "work")}
	r.git(dir, "init", "-q", "--bare", "-b", "main", r.bare)
	r.git(dir, "init", "-q", "-b", "main", r.work)
	r.git(r.work, "remote", "add", "origin", r.bare)
	return r
}

func (r *gitRepo) git(dir string, args ...string) string {
	r.t.Helper()
	cmd := exec.Command("git", append([]string{"-c", "user.name=paf test", "-c", "user.email=test@paf.invalid"}, args...)...)
	cmd.Dir = dir
	out, err := cmd.CombinedOutput()
	if err != nil {
		r.t.Fatalf("git %v: %v\n%s", args, err, out)
	}
	return strings.TrimSpace(string(out))
}

// commit writes files (path → content) into the work tree, commits and
// pushes them, and returns the commit id.
func (r *gitRepo) commit(files map[string]string) string {
	r.t.Helper()
	for p, c := range files {
		full := filepath.Join(r.work, p)
		if err := os.MkdirAll(filepath.Dir(full), 0o755); err != nil {
			r.t.Fatal(err)
		}
		if err := os.WriteFile(full, []byte(c), 0o644); err != nil {
			r.t.Fatal(err)
		}
	}
	r.git(r.work, "add", "-A")
	r.git(r.work, "commit", "-q", "-m", "update")
	r.git(r.work, "push", "-q", "origin", "main")
	return r.git(r.work, "rev-parse", "HEAD")
}

// gitDaemon serves dir's repositories over git:// until the test ends, and
// returns a stop function for tests that take the remote down early.
func gitDaemon(t *testing.T, base string) (url string, stop func()) {
	t.Helper()
	addr, stop := testpeer.GitDaemon(t, base)
	return "git://" + addr + "/", stop
}

func TestServeDemo(t *testing.T) {
	data := t.TempDir()
	p := startPaf(t, nil, "--data-dir", data, "--http", "127.0.0.1:0", "--https", "127.0.0.1:0")
	ca, _ := p.waitLog("no --tls-cert given: serving certificates from paf's local CA; trust it to avoid browser warnings", time.Second)["ca"].(string)
	if ca == "" || !strings.HasPrefix(ca, data) {
		t.Fatalf("CA file %q not in the data dir %s", ca, data)
	}
	httpsURL := "https://localhost:" + port(t, p.addr("https"))
	c := client(t, ca)

	tests := []struct {
		path, typ, contains string
	}{
		{"/", "text/html; charset=utf-8", "paf is serving"},
		{"/style.css", "text/css; charset=utf-8", "--accent"},
		{"/paf.svg", "image/svg+xml; charset=utf-8", "<svg"},
	}
	for _, tt := range tests {
		resp, body := httpGet(t, c, httpsURL+tt.path)
		if resp.StatusCode != 200 || resp.ProtoMajor != 2 {
			t.Fatalf("GET %s: %s over %s, want 200 over HTTP/2", tt.path, resp.Status, resp.Proto)
		}
		if got := resp.Header.Get("Content-Type"); got != tt.typ {
			t.Errorf("GET %s: Content-Type %q, want %q", tt.path, got, tt.typ)
		}
		if !strings.Contains(body, tt.contains) {
			t.Errorf("GET %s: body lacks %q", tt.path, tt.contains)
		}
	}
	resp, body := httpGet(t, c, httpsURL+"/nope")
	if resp.StatusCode != 404 || !strings.Contains(body, "nothing here") {
		t.Errorf("GET /nope: %d %q, want the demo's 404.html", resp.StatusCode, body)
	}

	// The plain listener sends browsers to HTTPS.
	resp, _ = httpGet(t, c, "http://localhost:"+port(t, p.addr("http"))+"/style.css?x=1")
	if want := httpsURL + "/style.css?x=1"; resp.StatusCode != 301 || resp.Header.Get("Location") != want {
		t.Errorf("HTTP: %d Location %q, want 301 to %s", resp.StatusCode, resp.Header.Get("Location"), want)
	}

	// curl, trusting the printed CA file, negotiates what it is asked for.
	curl := testpeer.Need(t, "curl")
	for _, tt := range []struct{ flag, want string }{{"--http2", "200 2"}, {"--http1.1", "200 1.1"}} {
		out, err := exec.Command(curl, "-sS", tt.flag, "--cacert", ca, "-o", "/dev/null",
			"-w", "%{http_code} %{http_version}", httpsURL+"/").CombinedOutput()
		if err != nil || string(out) != tt.want {
			t.Errorf("curl %s: %q %v, want %q", tt.flag, out, err, tt.want)
		}
	}
	// nghttp speaks h2 only: ALPN must pick it and the page must come back.
	nghttp := testpeer.Need(t, "nghttp")
	out, err := exec.Command(nghttp, "-v", httpsURL+"/style.css").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "negotiated protocol: h2") ||
		!strings.Contains(string(out), ":status: 200") || !strings.Contains(string(out), "content-type: text/css; charset=utf-8") {
		t.Errorf("nghttp: %v\n%s", err, out)
	}
	p.stop()
}

func TestServeErrors(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	data := t.TempDir()
	missing := filepath.Join(t.TempDir(), "nope")
	notDir := filepath.Join(t.TempDir(), "file")
	os.WriteFile(notDir, []byte("x"), 0o644)
	repo := newGitRepo(t)
	repo.commit(map[string]string{"index.html": "x"})
	base := []string{"--data-dir", data, "--http", "127.0.0.1:0", "--https", "127.0.0.1:0", "--poll", "0"}

	tests := []struct {
		name string
		args []string
		code int
		want []string // substrings of the one-line error
	}{
		{"unknown flag", []string{"--nope"}, 2, []string{"-nope"}},
		{"https port in use", []string{"--https", busy.Addr().String()}, 1, []string{"--https", busy.Addr().String(), "in use"}},
		{"http port in use", []string{"--http", busy.Addr().String()}, 1, []string{"--http", busy.Addr().String(), "in use"}},
		{"root missing", []string{"--root", missing}, 1, []string{"--root", missing}},
		{"root not a dir", []string{"--root", notDir}, 1, []string{"--root", notDir}},
		{"two sources", []string{"--root", data, "--remote", "file:///x"}, 2, []string{"--root", "--remote"}},
		{"remote missing", []string{"--remote", "file://" + missing}, 1, []string{"--remote", missing}},
		{"branch missing", []string{"--remote", "file://" + repo.bare + "#nosuch"}, 1, []string{"--remote", "nosuch"}},
		{"bad scheme", []string{"--remote", "ftp://example.org/x"}, 1, []string{"--remote", "ftp"}},
		{"ssh key missing", []string{"--remote", "ssh://git@127.0.0.1:1/x", "--ssh-key", missing}, 1, []string{"--ssh-key", missing}},
		{"mime type", []string{"--mime-type", "nocolon"}, 2, []string{"--mime-type"}},
		{"tls pairs", []string{"--tls-cert", notDir}, 2, []string{"--tls-cert", "--tls-key"}},
		{"bad cert", []string{"--tls-cert", notDir, "--tls-key", notDir}, 1, []string{"--tls-cert", notDir}},
		{"log format", []string{"--log-format", "xml"}, 2, []string{"--log-format"}},
		{"stray argument", []string{"public"}, 2, []string{"public"}},
		{"hook secret file", []string{"--hook-secret-file", missing}, 1, []string{"--hook-secret-file", missing}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, _, stderr := runPaf(t, nil, append(append([]string{"serve"}, base...), tt.args...)...)
			if code != tt.code {
				t.Fatalf("exit %d, want %d; stderr:\n%s", code, tt.code, stderr)
			}
			// Only the last line is the error; earlier ones are logs.
			lines := strings.Split(strings.TrimRight(stderr, "\n"), "\n")
			last := lines[len(lines)-1]
			if !strings.HasPrefix(last, "paf serve: ") {
				t.Errorf("error line %q does not start with \"paf serve: \"", last)
			}
			for _, w := range tt.want {
				if !strings.Contains(last, w) {
					t.Errorf("error line %q lacks %q", last, w)
				}
			}
		})
	}
}

func TestServeRootDirectory(t *testing.T) {
	root := t.TempDir()
	os.WriteFile(filepath.Join(root, "index.html"), []byte("<h1>mine</h1>"), 0o644)
	p := startPaf(t, nil, "--root", root, "--data-dir", t.TempDir(),
		"--http", "127.0.0.1:0", "--https", "off", "--h2c")
	url := "http://" + p.addr("http")
	resp, body := httpGet(t, client(t, ""), url+"/")
	if resp.StatusCode != 200 || body != "<h1>mine</h1>" {
		t.Fatalf("GET /: %d %q", resp.StatusCode, body)
	}
	curl := testpeer.Need(t, "curl")
	out, err := exec.Command(curl, "-sS", "--http2-prior-knowledge", "-o", "/dev/null",
		"-w", "%{http_code} %{http_version}", url+"/").CombinedOutput()
	if err != nil || string(out) != "200 2" {
		t.Errorf("curl --http2-prior-knowledge: %q %v, want \"200 2\"", out, err)
	}
}

// TestUpdateUnderLoad pushes 20 commits, each announced by the signed
// webhook, while clients request the same file: every response must be a
// 200 whose body is exactly one version's file, and the last version wins.
func TestUpdateUnderLoad(t *testing.T) {
	repo := newGitRepo(t)
	version := func(i int) string {
		// Big enough to be compressed and to span many writes.
		return fmt.Sprintf("version %02d\n%s", i, strings.Repeat(fmt.Sprintf("line of version %02d\n", i), 2000))
	}
	repo.commit(map[string]string{"data.txt": version(0), "index.html": "hi"})
	secret := "hook secret"
	p := startPaf(t, []string{"PAF_HOOK_SECRET=" + secret},
		"--remote", "file://"+repo.bare+"#main", "--data-dir", t.TempDir(), "--poll", "0",
		"--http", "127.0.0.1:0", "--https", "off")
	base := "http://" + p.addr("http")
	c := client(t, "")

	versions := map[string]int{version(0): 0}
	var vmu sync.RWMutex
	var stop atomic.Bool
	var wg sync.WaitGroup
	var served, failures atomic.Int64
	var firstFailure atomic.Value
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; !stop.Load() && n < 100000; n++ {
				enc := []string{"identity", "gzip", "br", "zstd"}[n%4]
				req, _ := http.NewRequest("GET", base+"/data.txt", nil)
				req.Header.Set("Accept-Encoding", enc)
				resp, err := c.Do(req)
				if err != nil {
					failures.Add(1)
					firstFailure.CompareAndSwap(nil, err.Error())
					continue
				}
				body, err := decode(resp)
				resp.Body.Close()
				vmu.RLock()
				_, known := versions[string(body)]
				vmu.RUnlock()
				if err != nil || resp.StatusCode != 200 || !known {
					failures.Add(1)
					firstFailure.CompareAndSwap(nil, fmt.Sprintf("%s %s: %d err=%v known=%v", enc, resp.Proto, resp.StatusCode, err, known))
				}
				served.Add(1)
			}
		}()
	}
	for i := 1; i <= 20; i++ {
		vmu.Lock()
		versions[version(i)] = i
		vmu.Unlock()
		commit := repo.commit(map[string]string{"data.txt": version(i)})
		body := []byte(fmt.Sprintf(`{"ref":"refs/heads/main","after":%q}`, commit))
		req, _ := http.NewRequest("POST", base+"/.paf/hook", bytes.NewReader(body))
		req.Header.Set("X-Hub-Signature-256", hook.Sign([]byte(secret), body))
		resp, msg := doBody(t, c, req)
		if resp.StatusCode != 200 || !strings.Contains(msg, commit) {
			t.Fatalf("hook %d: %d %q, want 200 naming %s", i, resp.StatusCode, msg, commit)
		}
	}
	stop.Store(true)
	wg.Wait()
	if f := failures.Load(); f > 0 {
		t.Fatalf("%d of %d responses failed; first: %v", f, served.Load(), firstFailure.Load())
	}
	if served.Load() == 0 {
		t.Fatal("no request was served during the updates")
	}
	_, body := httpGet(t, c, base+"/data.txt")
	if body != version(20) {
		t.Fatalf("after the last hook, body starts %q, want version 20", body[:12])
	}
	// An unsigned hook changes nothing.
	req, _ := http.NewRequest("POST", base+"/.paf/hook", strings.NewReader("{}"))
	if resp, _ := doBody(t, c, req); resp.StatusCode != 401 {
		t.Fatalf("unsigned hook: %d, want 401", resp.StatusCode)
	}
	p.stop()
}

func doBody(t *testing.T, c *http.Client, req *http.Request) (*http.Response, string) {
	t.Helper()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var b bytes.Buffer
	b.ReadFrom(resp.Body)
	return resp, b.String()
}

// TestRestartWithRemoteDown: paf fetched a commit from a git daemon; the
// daemon goes away; paf restarted on the same data dir serves that commit
// and says so.
func TestRestartWithRemoteDown(t *testing.T) {
	repo := newGitRepo(t)
	commit := repo.commit(map[string]string{"index.html": "from git daemon"})
	url, stopDaemon := gitDaemon(t, filepath.Dir(repo.bare))
	data := t.TempDir()
	args := []string{"--remote", url + "site.git", "--data-dir", data, "--poll", "0", "--http", "127.0.0.1:0", "--https", "off"}

	p := startPaf(t, nil, args...)
	_, body := httpGet(t, client(t, ""), "http://"+p.addr("http")+"/")
	if body != "from git daemon" {
		t.Fatalf("first run: %q", body)
	}
	p.stop()
	stopDaemon()

	p = startPaf(t, nil, args...)
	if rev := p.waitLog("serving", time.Second)["revision"]; rev != commit {
		t.Errorf("restart serves revision %v, want %s", rev, commit)
	}
	if !strings.Contains(p.log(), "unreachable") {
		t.Errorf("the log does not say the remote is unreachable:\n%s", p.log())
	}
	_, body = httpGet(t, client(t, ""), "http://"+p.addr("http")+"/")
	if body != "from git daemon" {
		t.Fatalf("restart with the remote down: %q", body)
	}
}

// TestKill9 kills paf at arbitrary moments of its first clone and fetches;
// the data dir must stay usable: the next start serves the right commit.
func TestKill9(t *testing.T) {
	repo := newGitRepo(t)
	files := map[string]string{"index.html": "v1"}
	for i := 0; i < 200; i++ {
		files[fmt.Sprintf("f/%03d.txt", i)] = strings.Repeat(fmt.Sprintf("%d ", i), 500)
	}
	repo.commit(files)
	data := t.TempDir()
	args := []string{"--remote", "file://" + repo.bare, "--data-dir", data, "--poll", "0",
		"--http", "127.0.0.1:0", "--https", "off", "--log-format", "json"}
	for i := 0; i < 8; i++ {
		cmd := exec.Command(pafBin, args...)
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Duration(i*40) * time.Millisecond)
		cmd.Process.Kill()
		cmd.Wait()
		if i == 4 {
			repo.commit(map[string]string{"index.html": "v2"})
		}
	}
	p := startPaf(t, nil, args[:len(args)-2]...)
	_, body := httpGet(t, client(t, ""), "http://"+p.addr("http")+"/")
	if body != "v2" {
		t.Fatalf("after kill -9s: %q, want v2", body)
	}
}

// TestRemotePasswordNeverPrinted: a password in a remote URL stays out of
// every message, whether the URL parses or not.
func TestRemotePasswordNeverPrinted(t *testing.T) {
	for _, args := range [][]string{
		{"serve", "--data-dir", t.TempDir(), "--http", "127.0.0.1:0", "--https", "off", "--remote", "https://u:s3cret@127.0.0.1:1/r.git"},
		{"serve", "--data-dir", t.TempDir(), "--http", "127.0.0.1:0", "--https", "off", "--remote", "https://u:s3cret@127.0.0.1:1/r.git#bad..branch"},
		{"publish", t.TempDir(), "--remote", "https://u:s3cret@127.0.0.1:1/r.git#bad..branch"},
	} {
		code, stdout, stderr := runPaf(t, nil, args...)
		if code == 0 {
			t.Errorf("%v: exit 0", args)
		}
		if strings.Contains(stdout+stderr, "s3cret") {
			t.Errorf("%v printed the password:\n%s%s", args, stdout, stderr)
		}
	}
}

// TestSecondSignalEndsAtOnce checks shutdown as Caddy's users know it: the
// first SIGTERM waits for requests in flight (up to --grace), a second one
// ends paf at once.
func TestSecondSignalEndsAtOnce(t *testing.T) {
	root := t.TempDir()
	big := make([]byte, 32<<20) // more than the socket buffers hold
	if err := os.WriteFile(filepath.Join(root, "big.bin"), big, 0o644); err != nil {
		t.Fatal(err)
	}
	p := startPaf(t, nil, "--root", root, "--data-dir", t.TempDir(), "--http", "127.0.0.1:0", "--https", "off",
		"--poll", "0", "--grace", "5m")
	// A download the client never reads: the response stays in flight.
	c, err := net.Dial("tcp", p.addr("http"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, "GET /big.bin HTTP/1.1\r\nHost: localhost\r\n\r\n"); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(30 * time.Second))
	if _, err := c.Read(make([]byte, 1)); err != nil { // the response has started
		t.Fatal(err)
	}

	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		t.Fatal("paf exited on the first SIGTERM with a request in flight and --grace 5m")
	case <-time.After(time.Second):
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		t.Fatal("paf still running 30s after a second SIGTERM")
	}
	if ws, ok := p.cmd.ProcessState.Sys().(syscall.WaitStatus); !ok || !ws.Signaled() || ws.Signal() != syscall.SIGTERM {
		t.Errorf("paf ended with %v, want killed by the second SIGTERM", p.cmd.ProcessState)
	}
}
