package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/pafhq/paf/internal/testpeer"
)

// TestTAPFlagErrors checks the userspace-stack flags are refused, with the
// cause, before anything is opened.
func TestTAPFlagErrors(t *testing.T) {
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"--ipv4", "10.0.0.2/24"}, "--ipv4 is for the userspace stack: it needs --tap"},
		{[]string{"--tap", "paf0"}, "--tap paf0 needs an address: --ipv4 and/or --ipv6"},
		{[]string{"--tap", "paf0", "--ipv4", "10.0.0.2"}, `--ipv4 "10.0.0.2": want an address with its prefix length, such as 10.0.0.2/24`},
		{[]string{"--tap", "paf0", "--ipv4", "fd00::2/64"}, `--ipv4 "fd00::2/64": want an address with its prefix length`},
		{[]string{"--tap", "paf0", "--ipv6", "fd00::2/64", "--ipv4-gateway", "10.0.0.1"}, "--ipv4-gateway needs --ipv4"},
		{[]string{"--tap", "paf0", "--ipv4", "10.0.0.2/24", "--ipv4-gateway", "10.1.0.1"}, "--ipv4-gateway 10.1.0.1 is not on the link of --ipv4 10.0.0.2/24"},
		{[]string{"--tap", "paf0", "--ipv4", "10.0.0.2/24", "--tap-mtu", "100"}, "--tap-mtu 100: want 1280 to 65535"},
	}
	for _, c := range cases {
		for _, cmd := range []string{"serve", "proxy"} {
			t.Run(cmd+" "+strings.Join(c.args, " "), func(t *testing.T) {
				args := append([]string{cmd, "--data-dir", t.TempDir()}, c.args...)
				if cmd == "proxy" {
					args = append(args, "--routes", t.TempDir())
				}
				code, _, stderr := runPaf(t, nil, args...)
				if code != 2 || !strings.Contains(stderr, c.want) {
					t.Fatalf("paf %s: exit %d, stderr %q; want exit 2 and %q", strings.Join(args, " "), code, stderr, c.want)
				}
			})
		}
	}
}

// TestServeOnTAP runs paf serve on its userspace TCP/IP stack, on a TAP
// device in a network namespace the test creates, and fetches the demo
// site with curl from that namespace, through the kernel's stack: HTTPS
// with HTTP/2 over IPv4 and IPv6, and the plain listener's redirect. After
// SIGTERM, paf exits cleanly and its TAP device is gone.
func TestServeOnTAP(t *testing.T) {
	if os.Geteuid() != 0 {
		msg := "needs root (CAP_NET_ADMIN) to create a network namespace and a TAP device"
		if testpeer.Required() {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	ip := testpeer.Need(t, "ip")
	curl := testpeer.Need(t, "curl")
	b := make([]byte, 4)
	rand.Read(b)
	ns := "paf-test-" + hex.EncodeToString(b)
	if out, err := exec.Command(ip, "netns", "add", ns).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command(ip, "netns", "delete", ns).CombinedOutput(); err != nil {
			t.Errorf("ip netns delete %s: %v: %s", ns, err, out)
		}
	})
	in := func(args ...string) (string, error) {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		var stdout, stderr bytes.Buffer
		cmd := exec.CommandContext(ctx, ip, append([]string{"netns", "exec", ns}, args...)...)
		cmd.Stdout, cmd.Stderr = &stdout, &stderr
		if err := cmd.Run(); err != nil {
			return stdout.String(), fmt.Errorf("%s: %w: %s", strings.Join(args, " "), err, stderr.String())
		}
		return stdout.String(), nil
	}

	data := t.TempDir()
	p := startPafWrapped(t, []string{ip, "netns", "exec", ns}, nil, "serve", "--data-dir", data,
		"--tap", "paftap0", "--ipv4", "10.98.0.2/24", "--ipv6", "fd98::2/64")
	ca, _ := p.waitLog("no --tls-cert given: serving certificates from paf's local CA; trust it to avoid browser warnings", time.Second)["ca"].(string)
	if ca == "" {
		t.Fatal("paf serve logged no CA file")
	}
	// paf created the device; the kernel's side of it is configured as
	// any interface is.
	for _, args := range [][]string{
		{ip, "link", "set", "lo", "up"},
		{ip, "addr", "add", "10.98.0.1/24", "dev", "paftap0"},
		{ip, "addr", "add", "fd98::1/64", "dev", "paftap0", "nodad"},
		{ip, "link", "set", "paftap0", "up"},
	} {
		if _, err := in(args...); err != nil {
			t.Fatal(err)
		}
	}

	for _, addr := range []string{"10.98.0.2", "[fd98::2]"} {
		t.Run(addr, func(t *testing.T) {
			out, err := in(curl, "-sS", "--max-time", "30", "--cacert", ca, "--resolve", "localhost:443:"+addr,
				"-w", "\n%{http_code} %{http_version}", "https://localhost/")
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(out, "paf is serving") || !strings.HasSuffix(out, "\n200 2") {
				t.Errorf("curl https://localhost/ at %s: %q, want the demo page, 200 over HTTP/2", addr, out)
			}
			out, err = in(curl, "-sS", "--max-time", "30", "-o", "/dev/null", "-w", "%{http_code} %{redirect_url}", "http://"+addr+"/style.css")
			if err != nil {
				t.Fatal(err)
			}
			if want := "301 https://" + addr + "/style.css"; out != want {
				t.Errorf("curl http://%s/style.css: %q, want %q", addr, out, want)
			}
		})
	}

	p.stop()
	if out, err := in(ip, "link", "show", "paftap0"); err == nil {
		t.Errorf("the TAP device outlived paf: %s", out)
	}
}
