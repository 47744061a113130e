// Package testpeer finds the real programs paf's tests talk to (curl, nghttp,
// git, sshd, nginx, ...) and decides what a test does when one is missing.
//
// On a developer's laptop a missing peer skips the test with a message
// naming the package to install. Under PAF_REQUIRE_PEERS=1, which .ci/run
// sets after installing every peer, a missing peer fails the test instead,
// so CI can never go green by skipping.
package testpeer

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// packages maps a program to the Debian package that provides it, for the
// skip message.
var packages = map[string]string{
	"git":              "git",
	"git-daemon":       "git",
	"curl":             "curl",
	"nghttp":           "nghttp2-client",
	"h2load":           "nghttp2-client",
	"sshd":             "openssh-server",
	"ssh-keygen":       "openssh-client",
	"nginx":            "nginx-light",
	"openssl":          "openssl",
	"wrk":              "wrk",
	"h2spec":           "h2spec (go install github.com/summerwind/h2spec/cmd/h2spec)",
	"chromium":         "chromium",
	"git-http-backend": "git",
	"ip":               "iproute2",
}

// goTools are peers that are Go modules, pinned with tool lines in go.mod
// so that `go test` needs nothing installed for them.
var goTools = map[string]bool{"h2spec": true}

// Required reports whether missing peers fail tests rather than skip them.
func Required() bool { return os.Getenv("PAF_REQUIRE_PEERS") == "1" }

// Need returns the absolute path of the named program, looked up in PATH and
// in the usual system directories (sshd lives in /usr/sbin, which a user's
// PATH may lack). When it is missing, the test is skipped, or failed under
// PAF_REQUIRE_PEERS=1.
func Need(t testing.TB, program string) string {
	t.Helper()
	if p, ok := Find(program); ok {
		return p
	}
	pkg := packages[program]
	if pkg == "" {
		pkg = program
	}
	if Required() {
		t.Fatalf("test peer %q not found (PAF_REQUIRE_PEERS=1): install %s", program, pkg)
	}
	t.Skipf("test peer %q not found: install %s to run this test", program, pkg)
	return ""
}

// Find looks a program up like Need, without involving a test.
func Find(program string) (string, bool) {
	if program == "git-http-backend" || program == "git-daemon" {
		// Both live in git's exec path, not in PATH.
		git, err := exec.LookPath("git")
		if err != nil {
			return "", false
		}
		out, err := exec.Command(git, "--exec-path").Output()
		if err != nil {
			return "", false
		}
		p := string(out[:len(out)-1]) + "/" + program
		if _, err := os.Stat(p); err != nil {
			return "", false
		}
		return p, true
	}
	if p, err := exec.LookPath(program); err == nil {
		return p, true
	}
	if goTools[program] {
		// Pinned by a tool line in go.mod: `go tool -n` builds it (once,
		// cached) and prints the executable's path.
		if out, err := exec.Command("go", "tool", "-n", program).Output(); err == nil {
			return strings.TrimSpace(string(out)), true
		}
	}
	for _, dir := range []string{"/usr/sbin", "/sbin", "/usr/local/sbin"} {
		p := dir + "/" + program
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return p, true
		}
	}
	return "", false
}
