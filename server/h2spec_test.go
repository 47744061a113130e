package server

import (
	"testing"

	"github.com/pafhq/paf/internal/testpeer"
)

// TestH2spec runs the h2spec conformance suite against HTTP/2 over TLS and
// h2c with the default configuration: every case must pass. It takes
// about a minute, so -short skips it.
func TestH2spec(t *testing.T) {
	if testing.Short() {
		t.Skip("h2spec runs 145 cases with timeouts")
	}
	testpeer.Need(t, "h2spec")
	tlsRun := start(t, Config{}, false, true)
	h2cRun := start(t, Config{H2C: true}, true, false)
	t.Run("tls", func(t *testing.T) { testpeer.H2spec(t, tlsRun.httpsPort(), true) })
	t.Run("h2c", func(t *testing.T) { testpeer.H2spec(t, h2cRun.httpPort(), false) })
}
