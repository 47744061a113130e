package client

import (
	"context"
	"crypto/tls"
)

// Trace receives the steps a Dialer takes, for verbose output (paf get -v)
// and tests. Any field may be nil. Callbacks of concurrent connection
// attempts may run at the same time, from different goroutines.
type Trace struct {
	// Resolved is called with the addresses a host name resolved to,
	// in the order the Dialer will try them.
	Resolved func(host string, addrs []string)
	// ConnectStart is called when a connection attempt begins.
	ConnectStart func(network, addr string)
	// ConnectDone is called when an attempt ends; err is nil for the one
	// that won.
	ConnectDone func(network, addr string, err error)
	// TLSHandshakeDone is called after a TLS handshake, successful or not.
	TLSHandshakeDone func(cs tls.ConnectionState, err error)
}

type traceKey struct{}

// WithTrace returns a context whose dials report to t. net/http keeps
// request context values for dials, so a request made with this context
// traces its connection.
func WithTrace(ctx context.Context, t *Trace) context.Context {
	return context.WithValue(ctx, traceKey{}, t)
}

func traceFrom(ctx context.Context) *Trace {
	t, _ := ctx.Value(traceKey{}).(*Trace)
	if t == nil {
		return &Trace{}
	}
	return t
}
