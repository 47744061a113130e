// Package xconnect turns on RFC 8441 extended CONNECT in the HTTP/2 server
// paf runs (golang.org/x/net/http2's, see server.configureHTTP2, and
// net/http's bundled copy alike), so that HTTP/2 clients (browsers) can
// open WebSockets on an h2 connection to paf proxy instead of falling back
// to HTTP/1.1.
//
// Both advertise SETTINGS_ENABLE_CONNECT_PROTOCOL only when the GODEBUG
// environment variable contains http2xconnect=1, and read it once, with
// os.Getenv, in their package's init. A //go:debug directive
// does not reach os.Getenv, so this package sets the variable itself in its
// own init. That init must run before theirs: the Go specification
// (1.21 and later) initializes, at each step, the first package in
// import-path order whose imports are all initialized, and this package
// imports only os and strings (both initialized before net/http, which
// needs them) while its path, github.com/..., sorts before net/http and
// golang.org/x/net/http2. So a
// program only has to import it, blank, from its main package:
//
//	import _ "github.com/pafhq/paf/internal/xconnect"
//
// It must never import net/http (directly or not), or the ordering breaks.
//
// An explicit http2xconnect setting in the environment (for example
// GODEBUG=http2xconnect=0 to turn the feature off) is left as it is. The
// setting is process-wide: every net/http HTTP/2 server of the program then
// offers extended CONNECT. Handlers that do not expect it see a request
// with method CONNECT and a ":protocol" header, which paf proxy handles;
// any other handler answers it as it answers an unexpected method, and a
// browser only sends one to open a WebSocket, which such a handler would
// refuse over HTTP/1.1 as well.
package xconnect

import (
	"os"
	"strings"
)

// Setting is what this package adds to GODEBUG.
const Setting = "http2xconnect=1"

func init() {
	os.Setenv("GODEBUG", With(os.Getenv("GODEBUG")))
}

// With returns the GODEBUG value godebug with extended CONNECT turned on,
// unless godebug already says something about http2xconnect.
func With(godebug string) string {
	for _, kv := range strings.Split(godebug, ",") {
		if k, _, _ := strings.Cut(strings.TrimSpace(kv), "="); k == "http2xconnect" {
			return godebug
		}
	}
	if strings.TrimSpace(godebug) == "" {
		return Setting
	}
	return godebug + "," + Setting
}
