// Package netstack is a userspace TCP/IP stack for paf: gVisor's netstack
// behind the stack.Stack interface, so that paf's servers and clients run on
// a network device the process drives itself (a TAP device, a raw socket in
// a VM, an in-memory link) instead of the kernel's TCP/IP, the way a MirageOS
// unikernel brings its own stack.
//
// A Stack has one network interface, given as a gVisor link endpoint (see
// OpenTAP and Pipe), with static addresses and routes. It speaks IPv4 (with
// ARP), IPv6, ICMP and TCP. Names are not resolved: LookupHost accepts IP
// literals only.
package netstack

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"

	"gvisor.dev/gvisor/pkg/tcpip"
	"gvisor.dev/gvisor/pkg/tcpip/adapters/gonet"
	"gvisor.dev/gvisor/pkg/tcpip/header"
	"gvisor.dev/gvisor/pkg/tcpip/network/arp"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv4"
	"gvisor.dev/gvisor/pkg/tcpip/network/ipv6"
	gvstack "gvisor.dev/gvisor/pkg/tcpip/stack"
	"gvisor.dev/gvisor/pkg/tcpip/transport/icmp"
	"gvisor.dev/gvisor/pkg/tcpip/transport/tcp"
	"gvisor.dev/gvisor/pkg/waiter"

	"github.com/pafhq/paf/stack"
)

// nicID is the identifier of the Stack's only network interface.
const nicID tcpip.NICID = 1

// Config configures a Stack.
type Config struct {
	// Link is the network device: OpenTAP's, one end of a Pipe, or any
	// gVisor link endpoint. Required. The Stack owns it from New on, and
	// Close closes it.
	Link gvstack.LinkEndpoint

	// Addresses are the interface's addresses with their prefix lengths,
	// such as 10.0.0.2/24 or fd00::2/64; the prefixes become on-link
	// routes. At least one is required.
	Addresses []netip.Prefix

	// Gateways are the default routers, at most one per address family;
	// each must be on the link of one of Addresses. None means only the
	// on-link prefixes are reachable.
	Gateways []netip.Addr
}

// Stack is a userspace TCP/IP stack. It implements stack.Stack and is safe
// for concurrent use. Close it to stop it.
type Stack struct {
	s     *gvstack.Stack
	addrs []netip.Prefix

	closeOnce sync.Once
	closed    atomic.Bool
}

var _ stack.Stack = (*Stack)(nil)

// New checks cfg and starts the stack on cfg.Link. On error, cfg.Link is
// closed.
func New(cfg Config) (_ *Stack, err error) {
	if cfg.Link == nil {
		return nil, errors.New("netstack: no link endpoint")
	}
	linkOwned := false // once the NIC has it, destroying the stack closes it
	defer func() {
		if err != nil && !linkOwned {
			cfg.Link.Close()
		}
	}()
	if len(cfg.Addresses) == 0 {
		return nil, errors.New("netstack: no address")
	}
	for i, p := range cfg.Addresses {
		if !p.IsValid() || p.Addr().Zone() != "" || p.Addr().Is4In6() || p.Addr().IsUnspecified() {
			return nil, fmt.Errorf("netstack: invalid address %v", p)
		}
		for _, q := range cfg.Addresses[:i] {
			if q.Addr() == p.Addr() {
				return nil, fmt.Errorf("netstack: address %v given twice", p.Addr())
			}
		}
	}
	seen := map[bool]bool{}
	for _, g := range cfg.Gateways {
		if !g.IsValid() || g.Zone() != "" || g.Is4In6() || g.IsUnspecified() {
			return nil, fmt.Errorf("netstack: invalid gateway %v", g)
		}
		if seen[g.Is4()] {
			return nil, fmt.Errorf("netstack: gateway %v: a second default router for its address family", g)
		}
		seen[g.Is4()] = true
		if !onLink(cfg.Addresses, g) {
			return nil, fmt.Errorf("netstack: gateway %v is on the link of none of the addresses %v", g, cfg.Addresses)
		}
	}

	s := gvstack.New(gvstack.Options{
		NetworkProtocols:   []gvstack.NetworkProtocolFactory{ipv4.NewProtocol, ipv6.NewProtocol, arp.NewProtocol},
		TransportProtocols: []gvstack.TransportProtocolFactory{tcp.NewProtocol, icmp.NewProtocol4, icmp.NewProtocol6},
		HandleLocal:        true,
	})
	defer func() {
		if err != nil {
			s.Destroy() // also closes the link, which the NIC owns once created
		}
	}()
	sack := tcpip.TCPSACKEnabled(true)
	if e := s.SetTransportProtocolOption(tcp.ProtocolNumber, &sack); e != nil {
		return nil, fmt.Errorf("netstack: enable TCP SACK: %s", e)
	}
	if e := s.CreateNIC(nicID, cfg.Link); e != nil {
		return nil, fmt.Errorf("netstack: create interface: %s", e)
	}
	linkOwned = true
	var routes []tcpip.Route
	for _, p := range cfg.Addresses {
		pa := tcpip.ProtocolAddress{
			Protocol: protocol(p.Addr()),
			AddressWithPrefix: tcpip.AddressWithPrefix{
				Address:   tcpip.AddrFromSlice(p.Addr().AsSlice()),
				PrefixLen: p.Bits(),
			},
		}
		if e := s.AddProtocolAddress(nicID, pa, gvstack.AddressProperties{}); e != nil {
			return nil, fmt.Errorf("netstack: add address %v: %s", p, e)
		}
		routes = append(routes, tcpip.Route{Destination: pa.AddressWithPrefix.Subnet(), NIC: nicID})
	}
	for _, g := range cfg.Gateways {
		dst := header.IPv6EmptySubnet
		if g.Is4() {
			dst = header.IPv4EmptySubnet
		}
		routes = append(routes, tcpip.Route{Destination: dst, Gateway: tcpip.AddrFromSlice(g.AsSlice()), NIC: nicID})
	}
	s.SetRouteTable(routes)
	return &Stack{s: s, addrs: cfg.Addresses}, nil
}

// onLink reports whether a is in one of the prefixes.
func onLink(prefixes []netip.Prefix, a netip.Addr) bool {
	for _, p := range prefixes {
		if p.Masked().Contains(a) {
			return true
		}
	}
	return false
}

// protocol is the network protocol of an address.
func protocol(a netip.Addr) tcpip.NetworkProtocolNumber {
	if a.Is4() {
		return ipv4.ProtocolNumber
	}
	return ipv6.ProtocolNumber
}

// Close stops the stack: its listeners and connections fail from then on,
// and its link is closed. Close waits for the stack's goroutines to end.
func (st *Stack) Close() error {
	st.closeOnce.Do(func() {
		st.closed.Store(true)
		st.s.Destroy()
	})
	return nil
}

// Addresses returns the interface's addresses.
func (st *Stack) Addresses() []netip.Prefix { return append([]netip.Prefix(nil), st.addrs...) }

// listenBacklog is the accept queue's length, as the kernel's somaxconn.
const listenBacklog = 4096

// Listen implements stack.Stack, as net.Listen does on the host. An empty
// or unspecified host listens on every address: for "tcp" on a stack with
// IPv6, one dual-stack listener takes IPv4 connections too; "tcp6" takes
// IPv6 only, "tcp4" IPv4 only. Port 0 picks a free port.
func (st *Stack) Listen(ctx context.Context, network, address string) (net.Listener, error) {
	if err := ctx.Err(); err != nil {
		return nil, &net.OpError{Op: "listen", Net: network, Err: err}
	}
	if st.closed.Load() {
		return nil, &net.OpError{Op: "listen", Net: network, Err: net.ErrClosed}
	}
	fa, proto, err := st.fullAddress(network, address, true)
	if err != nil {
		return nil, &net.OpError{Op: "listen", Net: network, Err: err}
	}
	var wq waiter.Queue
	ep, e := st.s.NewEndpoint(tcp.ProtocolNumber, proto, &wq)
	if e != nil {
		return nil, fmt.Errorf("netstack: listen %s %s: %s", network, address, e)
	}
	ep.SocketOptions().SetV6Only(proto == ipv6.ProtocolNumber && (network == "tcp6" || !st.hasFamily(true)))
	if e := ep.Bind(fa); e != nil {
		ep.Close()
		return nil, &net.OpError{Op: "listen", Net: network, Addr: &net.TCPAddr{IP: net.IP(fa.Addr.AsSlice()), Port: int(fa.Port)}, Err: errnoOf(e.String())}
	}
	if e := ep.Listen(listenBacklog); e != nil {
		ep.Close()
		return nil, fmt.Errorf("netstack: listen %s %s: %s", network, address, e)
	}
	addr := &net.TCPAddr{IP: net.IP(fa.Addr.AsSlice()), Port: int(fa.Port)}
	if a, e := ep.GetLocalAddress(); e == nil {
		addr.Port = int(a.Port) // the one picked for port 0
	}
	if fa.Addr.Len() == 0 {
		addr.IP = net.IPv4zero
		if proto == ipv6.ProtocolNumber {
			addr.IP = net.IPv6unspecified
		}
	}
	return &listener{TCPListener: gonet.NewTCPListener(st.s, &wq, ep), addr: addr}, nil
}

// Dial implements stack.Stack. The host must be an IP address. Errors
// carry the errno the kernel would give (ECONNREFUSED, ENETUNREACH, ...)
// where gVisor names one, so callers tell a refused connection from others
// as on the host.
func (st *Stack) Dial(ctx context.Context, network, address string) (net.Conn, error) {
	if st.closed.Load() {
		return nil, &net.OpError{Op: "dial", Net: network, Err: net.ErrClosed}
	}
	fa, proto, err := st.fullAddress(network, address, false)
	if err != nil {
		return nil, &net.OpError{Op: "dial", Net: network, Err: err}
	}
	c, err := gonet.DialContextTCP(ctx, st.s, fa, proto)
	if err != nil {
		var oe *net.OpError
		if errors.As(err, &oe) {
			oe.Err = errnoOf(oe.Err.Error()) // gonet keeps only gVisor's text
		}
		return nil, fmt.Errorf("netstack: dial %s %s: %w", network, address, err)
	}
	return newConn(c), nil
}

// errnos maps gVisor's error texts (all that gonet's dial errors keep of
// them) to the errno of the same meaning.
var errnos = map[string]syscall.Errno{
	(&tcpip.ErrConnectionRefused{}).String():  syscall.ECONNREFUSED,
	(&tcpip.ErrNetworkUnreachable{}).String(): syscall.ENETUNREACH,
	(&tcpip.ErrHostUnreachable{}).String():    syscall.EHOSTUNREACH,
	(&tcpip.ErrConnectionReset{}).String():    syscall.ECONNRESET,
	(&tcpip.ErrTimeout{}).String():            syscall.ETIMEDOUT,
	(&tcpip.ErrPortInUse{}).String():          syscall.EADDRINUSE,
	(&tcpip.ErrBadLocalAddress{}).String():    syscall.EADDRNOTAVAIL,
}

// errnoOf returns the errno of a gVisor error text where it has one, the
// text as an error otherwise.
func errnoOf(text string) error {
	if n, ok := errnos[text]; ok {
		return n
	}
	return errors.New(text)
}

// listener hands out conns, and gives its address as the kernel's
// listeners do: an unspecified one is 0.0.0.0 or ::, not a nil IP.
type listener struct {
	*gonet.TCPListener
	addr *net.TCPAddr
}

func (l *listener) Addr() net.Addr { return l.addr }

func (l *listener) Accept() (net.Conn, error) {
	c, err := l.TCPListener.Accept()
	if err != nil {
		return nil, err
	}
	return newConn(c.(*gonet.TCPConn)), nil
}

// conn keeps its addresses for its whole life, as the kernel's
// connections do: gonet's are asked of the endpoint each time and are nil
// once it is reset, and callers log them after failures.
type conn struct {
	*gonet.TCPConn // also CloseRead and CloseWrite
	local, remote  net.Addr
}

func newConn(c *gonet.TCPConn) *conn {
	cc := &conn{TCPConn: c, local: c.LocalAddr(), remote: c.RemoteAddr()}
	if cc.local == nil {
		cc.local = &net.TCPAddr{}
	}
	if cc.remote == nil {
		cc.remote = &net.TCPAddr{}
	}
	return cc
}

func (c *conn) LocalAddr() net.Addr  { return c.local }
func (c *conn) RemoteAddr() net.Addr { return c.remote }

// LookupHost implements stack.Stack for IP literals: the stack has no
// resolver, so a name is an error saying so.
func (st *Stack) LookupHost(ctx context.Context, host string) ([]string, error) {
	if a, err := netip.ParseAddr(host); err == nil {
		return []string{a.String()}, nil
	}
	return nil, &net.DNSError{Err: "the userspace network stack resolves no names: use an IP address", Name: host, IsNotFound: true}
}

// fullAddress parses a "host:port" for network into gVisor's form. For a
// listener, an empty or unspecified host means every address of the
// family.
func (st *Stack) fullAddress(network, address string, listen bool) (tcpip.FullAddress, tcpip.NetworkProtocolNumber, error) {
	var fa tcpip.FullAddress
	switch network {
	case "tcp", "tcp4", "tcp6":
	default:
		return fa, 0, net.UnknownNetworkError(network)
	}
	host, portText, err := net.SplitHostPort(address)
	if err != nil {
		return fa, 0, err
	}
	port, err := strconv.ParseUint(portText, 10, 16)
	if err != nil {
		return fa, 0, fmt.Errorf("invalid port %q in address %q", portText, address)
	}
	fa.Port = uint16(port)
	var ip netip.Addr
	if host != "" {
		if ip, err = netip.ParseAddr(host); err != nil {
			return fa, 0, fmt.Errorf("host %q in address %q is not an IP address (the userspace stack resolves no names)", host, address)
		}
		if ip.Zone() != "" {
			return fa, 0, fmt.Errorf("zoned address %q: the userspace stack has one interface", address)
		}
		ip = ip.Unmap()
	}
	if !ip.IsValid() || ip.IsUnspecified() {
		if !listen {
			return fa, 0, fmt.Errorf("no host in address %q", address)
		}
		v4 := network == "tcp4" || (network == "tcp" && !st.hasFamily(false)) || (ip.IsValid() && ip.Is4())
		if v4 {
			return fa, ipv4.ProtocolNumber, nil
		}
		return fa, ipv6.ProtocolNumber, nil
	}
	if (network == "tcp4" && !ip.Is4()) || (network == "tcp6" && !ip.Is6()) {
		return fa, 0, &net.AddrError{Err: "address of the wrong family for " + network, Addr: host}
	}
	if listen && !st.hasAddress(ip) {
		return fa, 0, &net.AddrError{Err: "not an address of the userspace stack's interface", Addr: host}
	}
	fa.Addr = tcpip.AddrFromSlice(ip.AsSlice())
	return fa, protocol(ip), nil
}

func (st *Stack) hasFamily(v4 bool) bool {
	for _, p := range st.addrs {
		if p.Addr().Is4() == v4 {
			return true
		}
	}
	return false
}

func (st *Stack) hasAddress(a netip.Addr) bool {
	for _, p := range st.addrs {
		if p.Addr() == a {
			return true
		}
	}
	return false
}
