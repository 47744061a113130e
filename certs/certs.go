// Package certs says where paf's TLS certificates come from.
//
// A certificate source is anything with a GetCertificate method (a Getter),
// the shape crypto/tls asks for in tls.Config.GetCertificate, so the server
// takes manual certificate files (Manual), certificates issued by a local CA
// (LocalCA) or, later, ACME-managed certificates without knowing which.
// Persistent material (CA keys, later ACME accounts and certificates) goes
// through the small Storage interface, the way CertMagic separates obtaining
// certificates from keeping them, so a Git-backed store can replace the
// directory one.
package certs

import (
	"crypto/tls"
)

// Getter returns the certificate to present for a TLS ClientHello. It has the
// signature of tls.Config.GetCertificate so any Getter plugs straight into a
// tls.Config. Implementations must be safe for concurrent use.
type Getter interface {
	GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error)
}

// GetterFunc adapts a function to a Getter.
type GetterFunc func(*tls.ClientHelloInfo) (*tls.Certificate, error)

// GetCertificate implements Getter.
func (f GetterFunc) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	return f(hello)
}

var (
	_ Getter = (*Manual)(nil)
	_ Getter = (*Issued)(nil)
	_ Getter = GetterFunc(nil)
)
