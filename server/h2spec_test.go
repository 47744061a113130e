package server

import (
	"testing"

	"github.com/pafhq/paf/internal/testpeer"
)

// TestH2spec runs the h2spec conformance suite against HTTP/2 over TLS and
// h2c, failing on anything but net/http's known deviations
// (testpeer.NetHTTPH2specDeviations). It takes about a minute, so -short
// skips it.
func TestH2spec(t *testing.T) {
	if testing.Short() {
		t.Skip("h2spec runs 145 cases with timeouts")
	}
	testpeer.Need(t, "h2spec")
	// h2spec assumes the default SETTINGS_MAX_FRAME_SIZE of 16 KiB.
	tlsRun := start(t, Config{MaxReadFrameSize: 16 << 10}, false, true)
	h2cRun := start(t, Config{MaxReadFrameSize: 16 << 10, H2C: true}, true, false)
	known := testpeer.NetHTTPH2specDeviations()
	t.Run("tls", func(t *testing.T) { testpeer.H2spec(t, tlsRun.httpsPort(), true, known) })
	t.Run("h2c", func(t *testing.T) { testpeer.H2spec(t, h2cRun.httpPort(), false, known) })
}
