package main

import (
	"flag"
	"fmt"
	"net/netip"

	"github.com/pafhq/paf/netstack"
	"github.com/pafhq/paf/stack"
)

// acmeWithTAP refuses --acme on the userspace stack: CertMagic decides
// that paf answers the challenges by finding the challenge ports taken on
// the host's stack, and would otherwise open its own listeners there.
const acmeWithTAP = "--acme with --tap: ACME challenges are answered on the host's network stack, not on the TAP device; give --tls-cert/--tls-key (or stored certificates) on the userspace stack"

// netOptions choose the network stack the listeners are on: the host's,
// or with --tap a userspace one (netstack) on a TAP device, configured as a
// MirageOS unikernel is, by --ipv4 and --ipv4-gateway.
type netOptions struct {
	tap                      string
	ipv4, ipv6               string
	ipv4Gateway, ipv6Gateway string
	mtu                      uint
}

func (n *netOptions) register(fs *flag.FlagSet) {
	fs.StringVar(&n.tap, "tap", "", "listen on a userspace TCP/IP stack on the TAP device `NAME` (created if missing; needs CAP_NET_ADMIN) instead of the host's; --http and --https then default to :80 and :443")
	fs.StringVar(&n.ipv4, "ipv4", "", "with --tap: the stack's IPv4 address and prefix length `A/N`, such as 10.0.0.2/24")
	fs.StringVar(&n.ipv4Gateway, "ipv4-gateway", "", "with --tap: the IPv4 default router `ADDR`")
	fs.StringVar(&n.ipv6, "ipv6", "", "with --tap: the stack's IPv6 address and prefix length `A/N`, such as fd00::2/64")
	fs.StringVar(&n.ipv6Gateway, "ipv6-gateway", "", "with --tap: the IPv6 default router `ADDR`")
	fs.UintVar(&n.mtu, "tap-mtu", 0, "with --tap: the stack's MTU `N` (default 1500; set the kernel's side to match: ip link set NAME mtu N)")
}

// check validates the flags without opening anything.
func (n *netOptions) check() (netstack.Config, error) {
	var cfg netstack.Config
	if n.tap == "" {
		for _, f := range []struct{ name, val string }{
			{"--ipv4", n.ipv4}, {"--ipv4-gateway", n.ipv4Gateway}, {"--ipv6", n.ipv6}, {"--ipv6-gateway", n.ipv6Gateway},
		} {
			if f.val != "" {
				return cfg, usageErr("%s is for the userspace stack: it needs --tap", f.name)
			}
		}
		if n.mtu != 0 {
			return cfg, usageErr("--tap-mtu is for the userspace stack: it needs --tap")
		}
		return cfg, nil
	}
	if n.mtu == 0 {
		n.mtu = 1500
	}
	if n.mtu < 1280 || n.mtu > 65535 {
		return cfg, usageErr("--tap-mtu %d: want 1280 to 65535", n.mtu)
	}
	for _, f := range []struct {
		flag, val, gwFlag, gw string
		v4                    bool
	}{
		{"--ipv4", n.ipv4, "--ipv4-gateway", n.ipv4Gateway, true},
		{"--ipv6", n.ipv6, "--ipv6-gateway", n.ipv6Gateway, false},
	} {
		if f.val == "" {
			if f.gw != "" {
				return cfg, usageErr("%s needs %s", f.gwFlag, f.flag)
			}
			continue
		}
		p, err := netip.ParsePrefix(f.val)
		if err != nil || p.Addr().Is4() != f.v4 || p.Addr().Is4In6() {
			return cfg, usageErr("%s %q: want an address with its prefix length, such as %s", f.flag, f.val, map[bool]string{true: "10.0.0.2/24", false: "fd00::2/64"}[f.v4])
		}
		if !p.Addr().IsGlobalUnicast() { // private ranges count as global here
			return cfg, usageErr("%s %s: not a unicast address a host can have", f.flag, p)
		}
		cfg.Addresses = append(cfg.Addresses, p)
		if f.gw != "" {
			g, err := netip.ParseAddr(f.gw)
			if err != nil || g.Is4() != f.v4 {
				return cfg, usageErr("%s %q: want an %s address", f.gwFlag, f.gw, map[bool]string{true: "IPv4", false: "IPv6"}[f.v4])
			}
			if !p.Masked().Contains(g) {
				return cfg, usageErr("%s %s is not on the link of %s %s", f.gwFlag, g, f.flag, p)
			}
			if g == p.Addr() {
				return cfg, usageErr("%s %s is the stack's own address", f.gwFlag, g)
			}
			cfg.Gateways = append(cfg.Gateways, g)
		}
	}
	if len(cfg.Addresses) == 0 {
		return cfg, usageErr("--tap %s needs an address: --ipv4 and/or --ipv6", n.tap)
	}
	return cfg, nil
}

// hostAddresses lists the userspace stack's addresses without their
// prefix lengths, for the local CA's certificate; none without --tap.
func (n *netOptions) hostAddresses() []string {
	cfg, err := n.check()
	if err != nil || n.tap == "" {
		return nil
	}
	var out []string
	for _, p := range cfg.Addresses {
		out = append(out, p.Addr().String())
	}
	return out
}

// open returns the stack the flags describe and a function closing it.
func (n *netOptions) open() (stack.Stack, func(), error) {
	cfg, err := n.check()
	if err != nil {
		return nil, nil, err
	}
	if n.tap == "" {
		return &stack.Host{}, func() {}, nil
	}
	link, err := netstack.OpenTAP(n.tap, uint32(n.mtu))
	if err != nil {
		return nil, nil, err
	}
	cfg.Link = link
	st, err := netstack.New(cfg)
	if err != nil {
		return nil, nil, fmt.Errorf("--tap %s: %w", n.tap, err)
	}
	return st, func() { st.Close() }, nil
}
