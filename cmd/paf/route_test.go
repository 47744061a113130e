package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/pafhq/paf/internal/testpeer"
)

func TestRouteCommands(t *testing.T) {
	git := testpeer.Need(t, "git")
	dir := t.TempDir()
	bare := filepath.Join(dir, "routes.git")
	if out, err := exec.Command(git, "init", "-q", "--bare", "-b", "main", bare).CombinedOutput(); err != nil {
		t.Fatalf("git init: %v %s", err, out)
	}
	for _, where := range [][]string{
		{"--routes", filepath.Join(dir, "routes")},
		{"--routes-remote", "file://" + bare + "#main"},
	} {
		t.Run(where[0], func(t *testing.T) {
			route := func(args ...string) (int, string, string) {
				t.Helper()
				return runPaf(t, nil, append(append([]string{"route"}, args...), where...)...)
			}
			if code, out, errOut := route("add", "blog.example.org", "--backend", "http://127.0.0.1:8080", "--backend", "h2c://127.0.0.1:8081",
				"--lb", "least_conn", "--max-body", "1MiB", "--request-header", "X-Env: prod", "--health-path", "/healthz", "--health-interval", "5s"); code != 0 {
				t.Fatalf("add: %d %s %s", code, out, errOut)
			}
			if code, out, errOut := route("add", "--backend", "tcp://127.0.0.1:9443", "--passthrough", "tls.example.org"); code != 0 {
				t.Fatalf("add passthrough (host last): %d %s %s", code, out, errOut)
			}
			// Bad input is refused, with exit code 2, before anything is
			// written.
			for _, bad := range []struct {
				args []string
				want string
			}{
				{[]string{"add", "bad_host", "--backend", "http://x"}, `invalid character '_'`},
				{[]string{"add", "Upper.example", "--backend", "http://x"}, `lower case`},
				{[]string{"add", "x.example", "--backend", "ftp://x"}, `want http://, https:// or h2c://`},
				{[]string{"add", "x.example", "--backend", "http://x/path"}, `no user, path`},
				{[]string{"add", "x.example"}, `no destination`},
				{[]string{"add", "x.example", "--backend", "http://x", "--lb", "random"}, `lb "random"`},
				{[]string{"add", "x.example", "--backend", "http://x", "--bogus"}, `flag provided but not defined: -bogus`},
				{[]string{"add", "x.example", "--backend", "http://x", "--request-header", "novalue"}, `want "Name: value"`},
				{[]string{"rm", "x.example", "y.example"}, `exactly one hostname`},
			} {
				code, _, errOut := route(bad.args...)
				if code != 2 || !strings.Contains(errOut, bad.want) {
					t.Errorf("%v: exit %d, stderr %q; want 2 and %q", bad.args, code, errOut, bad.want)
				}
			}
			code, out, errOut := route("ls")
			if code != 0 {
				t.Fatalf("ls: %d %s", code, errOut)
			}
			want := "blog.example.org\thttp://127.0.0.1:8080 h2c://127.0.0.1:8081\tleast_conn\ntls.example.org\tpassthrough\ttcp://127.0.0.1:9443\n"
			if out != want {
				t.Fatalf("ls:\n%s\nwant:\n%s", out, want)
			}
			// add on an existing host updates it.
			if code, _, errOut := route("add", "blog.example.org", "--backend", "http://127.0.0.1:9090"); code != 0 {
				t.Fatalf("update: %s", errOut)
			}
			if code, _, errOut := route("rm", "tls.example.org"); code != 0 {
				t.Fatalf("rm: %s", errOut)
			}
			if code, _, errOut := route("rm", "tls.example.org"); code != 1 || !strings.Contains(errOut, "no route for this hostname") {
				t.Fatalf("rm again: %d %s", code, errOut)
			}
			if _, out, _ = route("ls"); out != "blog.example.org\thttp://127.0.0.1:9090\n" {
				t.Fatalf("ls after update and rm:\n%s", out)
			}
		})
	}
	// The directory holds exactly the files paf wrote, readable by hand.
	des, _ := os.ReadDir(filepath.Join(dir, "routes"))
	if len(des) != 1 || des[0].Name() != "blog.example.org.toml" {
		t.Fatalf("routes dir: %v", des)
	}
	b, _ := os.ReadFile(filepath.Join(dir, "routes", "blog.example.org.toml"))
	if !strings.Contains(string(b), `backends = ["http://127.0.0.1:9090"]`) {
		t.Fatalf("file:\n%s", b)
	}
}
