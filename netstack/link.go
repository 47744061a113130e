package netstack

import (
	"context"

	"gvisor.dev/gvisor/pkg/buffer"
	"gvisor.dev/gvisor/pkg/tcpip/link/channel"
	gvstack "gvisor.dev/gvisor/pkg/tcpip/stack"
)

// pipeQueue is how many packets each direction of a Pipe holds before it
// drops, as a full NIC ring would; TCP retransmits.
const pipeQueue = 8192

// Pipe returns two link endpoints joined in memory, as if by a cable: what
// one end's stack sends, the other end's stack receives. Each end is for
// one Stack. It carries IP packets without a link-layer header, so no
// neighbour resolution takes place. Its goroutines end when both ends are
// closed (closing their stacks does).
func Pipe(mtu uint32) (a, b gvstack.LinkEndpoint) {
	ea := channel.New(pipeQueue, mtu, "")
	eb := channel.New(pipeQueue, mtu, "")
	go pump(ea, eb)
	go pump(eb, ea)
	return ea, eb
}

// pump moves what from sends into to, until from is closed.
func pump(from, to *channel.Endpoint) {
	for {
		pkt := from.ReadContext(context.Background()) // nil once from is closed
		if pkt == nil {
			return
		}
		proto := pkt.NetworkProtocolNumber
		view := pkt.ToView()
		pkt.DecRef()
		in := gvstack.NewPacketBuffer(gvstack.PacketBufferOptions{Payload: buffer.MakeWithView(view)})
		to.InjectInbound(proto, in)
		in.DecRef()
	}
}
