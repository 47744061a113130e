package client

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"os"
)

// Kind says which step of reaching a server failed, so that a command can
// map failures to exit codes (paf get follows curl's) without parsing
// messages.
type Kind int

const (
	// KindOther is any failure not classified below.
	KindOther Kind = iota
	// KindResolve: the host name did not resolve to any address.
	KindResolve
	// KindConnect: no address accepted a connection.
	KindConnect
	// KindTimeout: a deadline (the context's or Dialer.ConnectTimeout)
	// passed first.
	KindTimeout
	// KindTLS: the TLS handshake failed for a reason other than the
	// server's certificate (protocol versions, ciphers, a reset...).
	KindTLS
	// KindCertificate: the server's certificate chain was not trusted or
	// did not name the host.
	KindCertificate
	// KindPin: the server's certificate or key did not match the pin.
	KindPin
)

var kindNames = [...]string{"error", "resolve", "connect", "timeout", "tls", "certificate", "pin"}

// String names the kind, for messages.
func (k Kind) String() string {
	if k >= 0 && int(k) < len(kindNames) {
		return kindNames[k]
	}
	return fmt.Sprintf("kind(%d)", int(k))
}

// Error is a failure to reach a server. Op names the step ("resolve",
// "connect", "tls handshake"), Addr what it was aimed at.
type Error struct {
	Kind Kind
	Op   string
	Addr string
	Err  error
}

// Error implements error.
func (e *Error) Error() string {
	return fmt.Sprintf("%s %s: %v", e.Op, e.Addr, e.Err)
}

// Unwrap returns the cause.
func (e *Error) Unwrap() error { return e.Err }

// Timeout reports whether the failure was a deadline, so that callers
// checking net.Error still see timeouts as such.
func (e *Error) Timeout() bool { return e.Kind == KindTimeout }

// KindOf classifies err, which may come wrapped by net/http (*url.Error)
// or fmt.Errorf. A *Error's own kind wins; otherwise deadlines are
// KindTimeout and TLS verification errors KindCertificate.
func KindOf(err error) Kind {
	if err == nil {
		return KindOther
	}
	var e *Error
	if errors.As(err, &e) && e.Kind != KindOther {
		return e.Kind
	}
	var pe *PinError
	if errors.As(err, &pe) {
		return KindPin
	}
	if isTimeout(err) {
		return KindTimeout
	}
	if isCertError(err) {
		return KindCertificate
	}
	return KindOther
}

func isTimeout(err error) bool {
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(err, os.ErrDeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

func isCertError(err error) bool {
	var (
		ve  *tls.CertificateVerificationError
		ua  x509.UnknownAuthorityError
		he  x509.HostnameError
		ci  x509.CertificateInvalidError
		ua2 *x509.UnknownAuthorityError
		he2 *x509.HostnameError
	)
	return errors.As(err, &ve) || errors.As(err, &ua) || errors.As(err, &he) ||
		errors.As(err, &ci) || errors.As(err, &ua2) || errors.As(err, &he2)
}
