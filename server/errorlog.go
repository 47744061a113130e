package server

import (
	"context"
	"log/slog"
	"strings"
)

// errorLogWriter turns net/http's ErrorLog lines into slog records. Lines
// that any public server sees all day (failed TLS handshakes, clients
// hanging up on HTTP/2) go to Debug, panics and accept failures to Error,
// the rest to Warn.
type errorLogWriter struct{ log *slog.Logger }

// Write implements io.Writer; each call is one log line.
func (w errorLogWriter) Write(p []byte) (int, error) {
	msg := strings.TrimSuffix(string(p), "\n")
	level := slog.LevelWarn
	switch {
	case strings.Contains(msg, "TLS handshake error"),
		strings.HasPrefix(msg, "http2: "),
		strings.Contains(msg, "client sent an HTTP request to an HTTPS server"):
		level = slog.LevelDebug
	case strings.HasPrefix(msg, "http: panic serving"),
		strings.HasPrefix(msg, "http: Accept error"):
		level = slog.LevelError
	}
	w.log.Log(context.Background(), level, msg, slog.String("source", "net/http"))
	return len(p), nil
}
