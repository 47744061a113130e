//go:build !linux

package netstack

import (
	"errors"

	gvstack "gvisor.dev/gvisor/pkg/tcpip/stack"
)

// OpenTAP is available on Linux only.
func OpenTAP(name string, mtu uint32) (gvstack.LinkEndpoint, error) {
	return nil, errors.New("netstack: TAP devices are supported on Linux only")
}
