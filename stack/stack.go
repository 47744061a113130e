// Package stack abstracts the network stack paf listens and dials on.
//
// Every server and client in paf reaches the network through a Stack, never
// through net.Listen or net.Dial directly, so the same code can run on the
// host's TCP/IP stack (Host) or on a userspace one, the way MirageOS
// unikernels swap their network device without touching the application.
package stack

import (
	"context"
	"net"
)

// Stack listens, dials and resolves names. Implementations must be safe for
// concurrent use.
type Stack interface {
	// Listen announces on the local network address, like net.Listen.
	// network is "tcp", "tcp4" or "tcp6".
	Listen(ctx context.Context, network, address string) (net.Listener, error)

	// Dial connects to the address on the named network, like
	// net.Dialer.DialContext. Implementations honour ctx's deadline and
	// cancellation.
	Dial(ctx context.Context, network, address string) (net.Conn, error)

	// LookupHost resolves host to a list of IP addresses, like
	// net.Resolver.LookupHost.
	LookupHost(ctx context.Context, host string) ([]string, error)
}

// Host is the Stack of the operating system: the kernel's TCP/IP stack and
// resolver. Its zero value is ready to use.
type Host struct {
	// Dialer, if set, is used for Dial; its zero value applies otherwise.
	Dialer net.Dialer
	// ListenConfig, if set, is used for Listen.
	ListenConfig net.ListenConfig
	// Resolver, if non-nil, is used for LookupHost; net.DefaultResolver
	// otherwise.
	Resolver *net.Resolver
}

var _ Stack = (*Host)(nil)

// Listen implements Stack.
func (h *Host) Listen(ctx context.Context, network, address string) (net.Listener, error) {
	return h.ListenConfig.Listen(ctx, network, address)
}

// Dial implements Stack.
func (h *Host) Dial(ctx context.Context, network, address string) (net.Conn, error) {
	return h.Dialer.DialContext(ctx, network, address)
}

// LookupHost implements Stack.
func (h *Host) LookupHost(ctx context.Context, host string) ([]string, error) {
	r := h.Resolver
	if r == nil {
		r = net.DefaultResolver
	}
	return r.LookupHost(ctx, host)
}
