package main

import (
	"os"
	"path/filepath"
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
		{[]string{"--tap-mtu", "9000"}, "--tap-mtu is for the userspace stack: it needs --tap"},
		{[]string{"--tap", "paf0", "--ipv4", "224.0.0.1/24"}, "--ipv4 224.0.0.1/24: not a unicast address"},
		{[]string{"--tap", "paf0", "--ipv4", "0.0.0.0/0"}, "--ipv4 0.0.0.0/0: not a unicast address"},
		{[]string{"--tap", "paf0", "--ipv4", "10.0.0.2/24", "--ipv4-gateway", "10.0.0.2"}, "--ipv4-gateway 10.0.0.2 is the stack's own address"},
		{[]string{"--tap", "paf0", "--ipv4", "10.0.0.2/24", "--acme"}, "--acme with --tap"},
		// Checked before the device is opened: the usage error, not a TAP one.
		{[]string{"--tap", "paf0", "--ipv4", "10.0.0.2/24", "--data-dir", ""}, "--data-dir: must not be empty"},
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
	ns := testpeer.NewNetns(t)
	curl := testpeer.Need(t, "curl")
	data := t.TempDir()
	p := startPafWrapped(t, ns.Exec(), nil, "serve", "--data-dir", data,
		"--tap", "paftap0", "--ipv4", "10.98.0.2/24", "--ipv6", "fd98::2/64")
	ca, _ := p.waitLog("no --tls-cert given: serving certificates from paf's local CA; trust it to avoid browser warnings", time.Second)["ca"].(string)
	if ca == "" {
		t.Fatal("paf serve logged no CA file")
	}
	// paf created the device; the kernel's side of it is configured as
	// any interface is.
	ns.ConfigureLink(t, "paftap0", "10.98.0.1/24", "fd98::1/64")

	for _, addr := range []string{"10.98.0.2", "[fd98::2]"} {
		t.Run(addr, func(t *testing.T) {
			// The local CA's certificate names the stack's addresses.
			out, err := ns.Run(curl, "-sS", "--max-time", "30", "--cacert", ca,
				"-w", "\n%{http_code} %{http_version}", "https://"+addr+"/")
			if err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(out, "paf is serving") || !strings.HasSuffix(out, "\n200 2") {
				t.Errorf("curl https://%s/: %q, want the demo page, 200 over HTTP/2", addr, out)
			}
			out, err = ns.Run(curl, "-sS", "--max-time", "30", "-o", "/dev/null", "-w", "%{http_code} %{redirect_url}", "http://"+addr+"/style.css")
			if err != nil {
				t.Fatal(err)
			}
			if want := "301 https://" + addr + "/style.css"; out != want {
				t.Errorf("curl http://%s/style.css: %q, want %q", addr, out, want)
			}
		})
	}

	p.stop()
	if out, err := ns.Run(ns.IP, "link", "show", "paftap0"); err == nil {
		t.Errorf("the TAP device outlived paf: %s", out)
	}
}

// TestProxyOnTAP runs paf proxy on its userspace stack on a TAP device,
// with its backend, a paf serve on the kernel's stack, on the other side
// of the device: curl reaches the proxy over IPv4 and IPv6, and the proxy
// dials the backend through its own stack.
func TestProxyOnTAP(t *testing.T) {
	ns := testpeer.NewNetns(t)
	curl := testpeer.Need(t, "curl")
	dir := t.TempDir()
	site := filepath.Join(dir, "site")
	if err := os.MkdirAll(site, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(site, "index.html"), []byte("behind the userspace stack\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	routes := filepath.Join(dir, "routes")
	if code, out, errOut := runPaf(t, nil, "route", "add", "app.test", "--backend", "http://10.97.0.1:8081", "--routes", routes); code != 0 {
		t.Fatalf("route add: %d %s %s", code, out, errOut)
	}
	data := filepath.Join(dir, "data")
	startPafWrapped(t, ns.Exec(), nil, "proxy", "--routes", routes, "--data-dir", data, "--poll", "0",
		"--tap", "paftap0", "--ipv4", "10.97.0.2/24", "--ipv6", "fd97::2/64")
	ns.ConfigureLink(t, "paftap0", "10.97.0.1/24", "fd97::1/64")
	be := startPafWrapped(t, ns.Exec(), nil, "serve", "--root", site, "--data-dir", filepath.Join(dir, "be"),
		"--poll", "0", "--http", "10.97.0.1:8081", "--https", "off")

	caFile := filepath.Join(data, "ca", "ca.pem")
	for _, addr := range []string{"10.97.0.2", "[fd97::2]"} {
		for _, v := range []struct{ flag, want string }{{"--http1.1", "1.1"}, {"--http2", "2"}} {
			out, err := ns.Run(curl, "-sS", "--max-time", "30", v.flag, "--cacert", caFile, "--resolve", "app.test:443:"+addr,
				"-w", "%{http_code} %{http_version}", "https://app.test/")
			if err != nil {
				t.Fatal(err)
			}
			if want := "behind the userspace stack\n200 " + v.want; out != want {
				t.Errorf("curl %s https://app.test/ at %s: %q, want %q", v.flag, addr, out, want)
			}
		}
	}
	// The backend saw the proxy's userspace address: the kernel in the
	// namespace, which has 10.97.0.1 itself, did not make the connection.
	if remote, _ := be.waitLog("request", 10*time.Second)["remote"].(string); !strings.HasPrefix(remote, "10.97.0.2:") {
		t.Errorf("the backend saw the request come from %q, want 10.97.0.2 (the proxy's stack)", remote)
	}
}
