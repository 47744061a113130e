package netstack

import (
	"bytes"
	"encoding/pem"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
	gvstack "gvisor.dev/gvisor/pkg/tcpip/stack"

	"github.com/pafhq/paf/internal/testpeer"
)

// openTAPIn opens a TAP device inside the namespace ns: a thread joins the
// namespace to create it and is then thrown away (its goroutine returns
// still locked to it), so the test's other threads stay where they were.
func openTAPIn(t *testing.T, ns, name string) gvstack.LinkEndpoint {
	t.Helper()
	type result struct {
		link gvstack.LinkEndpoint
		err  error
	}
	done := make(chan result, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with the goroutine
		f, err := os.Open(filepath.Join("/run/netns", ns))
		if err != nil {
			done <- result{err: err}
			return
		}
		defer f.Close()
		if err := unix.Setns(int(f.Fd()), unix.CLONE_NEWNET); err != nil {
			done <- result{err: fmt.Errorf("setns %s: %w", ns, err)}
			return
		}
		link, err := OpenTAP(name, 1500)
		done <- result{link, err}
	}()
	r := <-done
	if r.err != nil {
		t.Fatal(r.err)
	}
	return r.link
}

// TestTAPServesCurl runs paf's server on a userspace stack whose interface
// is a TAP device in a network namespace of the test's, and fetches from it
// with curl inside that namespace, through the kernel's TCP/IP: HTTPS with
// HTTP/2 by ALPN, HTTP/1.1 and h2c, over IPv4 and IPv6.
func TestTAPServesCurl(t *testing.T) {
	ns := testpeer.NewNetns(t)
	curl := testpeer.Need(t, "curl")
	link := openTAPIn(t, ns.Name, "paftap0")
	ns.ConfigureLink(t, "paftap0", "10.99.0.1/24", "fd99::1/64")
	st := newStack(t, Config{Link: link, Addresses: []netip.Prefix{
		netip.MustParsePrefix("10.99.0.2/24"), netip.MustParsePrefix("fd99::2/64"),
	}})
	dir := t.TempDir()
	for _, host := range []string{"10.99.0.2", "fd99::2"} {
		t.Run(host, func(t *testing.T) {
			ca := serve(t, st, host)
			caFile := filepath.Join(dir, "ca-"+strings.ReplaceAll(host, ":", "_")+".pem")
			if err := os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Raw}), 0o644); err != nil {
				t.Fatal(err)
			}
			for _, c := range []struct {
				name    string
				args    []string
				url     string
				version string
			}{
				{"https-h2", []string{"--cacert", caFile}, "https://" + urlHost(host), "2"},
				{"https-http1.1", []string{"--cacert", caFile, "--http1.1"}, "https://" + urlHost(host), "1.1"},
				{"http1.1", []string{"--http1.1"}, "http://" + urlHost(host), "1.1"},
				{"h2c", []string{"--http2-prior-knowledge"}, "http://" + urlHost(host), "2"},
			} {
				t.Run(c.name, func(t *testing.T) {
					out := filepath.Join(dir, "out")
					args := append([]string{curl, "-sS", "--max-time", "30", "-o", out, "-w", "%{http_code} %{http_version}"}, c.args...)
					got, err := ns.Run(append(args, c.url+"/file")...)
					if err != nil {
						t.Fatal(err)
					}
					if want := "200 " + c.version; got != want {
						t.Errorf("curl: %q, want %q", got, want)
					}
					b, err := os.ReadFile(out)
					if err != nil {
						t.Fatal(err)
					}
					if !bytes.Equal(b, body) {
						t.Errorf("body: %d bytes, want the %d served", len(b), len(body))
					}
				})
			}
		})
	}
}

// TestOpenTAPNames checks that names the kernel would cut or replace are
// refused before any device is opened (no privilege needed).
func TestOpenTAPNames(t *testing.T) {
	for _, name := range []string{"", "a-name-of-16-chr", "a/b", "a b"} {
		if l, err := OpenTAP(name, 0); err == nil {
			l.Close()
			t.Errorf("OpenTAP(%q) succeeded", name)
		} else if !strings.Contains(err.Error(), "want 1 to 15 characters") {
			t.Errorf("OpenTAP(%q): %v", name, err)
		}
	}
}
