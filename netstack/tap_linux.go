package netstack

import (
	"crypto/rand"
	"fmt"

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
	fd, err := tun.OpenTAP(name)
	if err != nil {
		return nil, fmt.Errorf("netstack: open TAP device %q: %w", name, err)
	}
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
type fdLink struct {
	gvstack.LinkEndpoint
	fd int
}

func (l *fdLink) Close() {
	l.LinkEndpoint.Close()
	unix.Close(l.fd)
}
