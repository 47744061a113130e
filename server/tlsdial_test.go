package server

import (
	"crypto/tls"
	"crypto/x509"
	"net"
	"os"
	"testing"
)

// tlsDial opens a TLS connection speaking HTTP/1.1 to addr, trusting the
// test CA.
func tlsDial(t *testing.T, r *running, addr string) (net.Conn, error) {
	t.Helper()
	pem, err := os.ReadFile(r.caFile)
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(pem)
	return tls.Dial("tcp", addr, &tls.Config{RootCAs: pool, ServerName: "localhost", NextProtos: []string{"http/1.1"}})
}
