package netstack

import (
	"crypto/rand"
	"fmt"
	"strings"
	"sync"

	"golang.org/x/sys/unix"
	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/link/fdbased"
	"gvisor.dev/gvisor/pkg/tcpip/link/tun"
	gvstack "gvisor.dev/gvisor/pkg/tcpip/stack"
)

// OpenTAP opens (creating it if needed) the TAP device name in the calling
// thread's network namespace and returns a link endpoint on it, with a
// random locally administered MAC address. The device's other side, the
// kernel's, is configured as any interface is (ip addr, ip link set up).
// mtu 0 means 1500. Opening a TAP device needs CAP_NET_ADMIN unless the
// device exists and belongs to the caller.
func OpenTAP(name string, mtu uint32) (gvstack.LinkEndpoint, error) {
	if mtu == 0 {
		mtu = 1500
	}
	// The kernel would cut a longer name, and pick one for an empty name.
	if name == "" || len(name) >= unix.IFNAMSIZ || strings.ContainsAny(name, "/ \t\n") {
		return nil, fmt.Errorf("netstack: TAP device name %q: want 1 to %d characters, no slash or space", name, unix.IFNAMSIZ-1)
	}
	fd, err := tun.OpenTAP(name)
	if err != nil {
		return nil, fmt.Errorf("netstack: open TAP device %q: %w", name, err)
	}
	unix.CloseOnExec(fd) // gVisor opens it without O_CLOEXEC: children must not hold the device
	mac := make([]byte, 6)
	rand.Read(mac)
	mac[0] = mac[0]&^1 | 2 // unicast, locally administered
	ep, err := fdbased.New(&fdbased.Options{
		FDs:            []int{fd},
		MTU:            mtu,
		EthernetHeader: true,
		Address:        tcpip.LinkAddress(mac),
	})
	if err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("netstack: TAP device %q: %w", name, err)
	}
	return &fdLink{LinkEndpoint: ep, fd: fd}, nil
}

// fdLink closes its file descriptor with the endpoint: fdbased leaves it
// open. The stack calls Close after the endpoint's readers have stopped.
// Once only: a second close could close a descriptor that reused the
// number.
type fdLink struct {
	gvstack.LinkEndpoint
	fd   int
	once sync.Once
}

func (l *fdLink) Close() {
	l.once.Do(func() {
		l.LinkEndpoint.Close()
		unix.Close(l.fd)
	})
}
