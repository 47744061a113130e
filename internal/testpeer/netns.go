package testpeer

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
)

// Netns is a network namespace a test created, deleted with everything in
// it at the test's cleanup.
type Netns struct {
	// Name is the namespace's name, under /run/netns.
	Name string
	// IP is the path of iproute2's ip.
	IP string
}

// NewNetns creates a network namespace for t, with its loopback up. It
// needs root (CAP_SYS_ADMIN and CAP_NET_ADMIN): without, the test is
// skipped, or failed under PAF_REQUIRE_PEERS=1, like a missing peer.
func NewNetns(t testing.TB) *Netns {
	t.Helper()
	if os.Geteuid() != 0 {
		msg := "needs root (CAP_NET_ADMIN) to create a network namespace"
		if Required() {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	ip := Need(t, "ip")
	b := make([]byte, 4)
	rand.Read(b)
	ns := &Netns{Name: "paf-test-" + hex.EncodeToString(b), IP: ip}
	if out, err := exec.Command(ip, "netns", "add", ns.Name).CombinedOutput(); err != nil {
		// Root without CAP_SYS_ADMIN (an unprivileged container) lands here.
		if Required() {
			t.Fatalf("ip netns add %s: %v: %s", ns.Name, err, out)
		}
		t.Skipf("cannot create a network namespace: ip netns add: %v: %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command(ip, "netns", "delete", ns.Name).CombinedOutput(); err != nil {
			t.Errorf("ip netns delete %s: %v: %s", ns.Name, err, out)
		}
	})
	if _, err := ns.Run(ip, "link", "set", "lo", "up"); err != nil {
		t.Fatal(err)
	}
	return ns
}

// Exec returns the command prefix that runs a program inside the
// namespace ("ip netns exec NAME"), which execs the program in its place.
func (ns *Netns) Exec() []string { return []string{ns.IP, "netns", "exec", ns.Name} }

// Run runs a command inside the namespace, at most a minute, and returns
// its standard output; the error carries its standard error.
func (ns *Netns) Run(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	argv := append(ns.Exec(), args...)
	cmd := exec.CommandContext(ctx, argv[0], argv[1:]...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("%s: %w: %s", strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String(), nil
}

// ConfigureLink gives the kernel's side of the interface dev in the
// namespace the addresses (with prefix lengths; IPv6 ones without
// duplicate address detection, so they are usable at once) and brings it
// up.
func (ns *Netns) ConfigureLink(t testing.TB, dev string, addrs ...string) {
	t.Helper()
	for _, a := range addrs {
		args := []string{ns.IP, "addr", "add", a, "dev", dev}
		if strings.Contains(a, ":") {
			args = append(args, "nodad")
		}
		if _, err := ns.Run(args...); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := ns.Run(ns.IP, "link", "set", dev, "up"); err != nil {
		t.Fatal(err)
	}
}
