// Package client is paf's HTTP client side: it turns a URL into a
// connection and plugs that into net/http, the way paf's OCaml client chose
// its transport from the URI at run time through mimic and spoke HTTP/1.1 or
// HTTP/2 as the server's ALPN answer said.
//
// Three roles, one file each:
//
//   - Dialer (dialer.go) opens connections named by URLs: http (TCP),
//     https (TLS offering ALPN h2 and http/1.1), h2c (cleartext HTTP/2 with
//     prior knowledge) and unix sockets, racing IPv6 and IPv4 addresses with
//     Happy Eyeballs (RFC 8305). It resolves and dials only through a
//     stack.Stack, so it keeps working when the stack is not the host's.
//   - Authenticator (auth.go) decides which TLS servers are trusted: the
//     system roots, a CA file, a pinned certificate or public key, or
//     nobody checked at all, when asked for explicitly.
//   - Transport (transport.go) is an http.RoundTripper built on the Dialer,
//     so any net/http client uses paf's dialing and authentication.
//
// Failures are *Error values whose Kind (resolve, connect, timeout, TLS,
// certificate, pin) lets a command map them to exit codes; KindOf finds
// the kind through net/http's wrapping.
//
// # Unix sockets
//
// Dialer.DialURL accepts unix:///path/to.sock, whose path is the socket.
// An HTTP request has a path of its own, so Transport sends requests for
// ordinary http://, https:// and h2c:// URLs to a socket instead when its
// UnixSocket field is set, as curl's --unix-socket does: the URL then only
// supplies the Host header (and the TLS server name) and the path.
package client
