package server

import (
	"context"
	"log/slog"
	"strings"
)

// errorLogWriter turns net/http's ErrorLog lines into slog records. Lines
// that any public server sees all day (clients hanging up on HTTP/2) go to
// Debug, panics and accept failures to Error, the rest to Warn. (Failed
// TLS handshakes never reach it: handshakeListener runs and logs them.)
type errorLogWriter struct{ log *slog.Logger }

// Write implements io.Writer; each call is one log line.
func (w errorLogWriter) Write(p []byte) (int, error) {
	msg := strings.TrimSuffix(string(p), "\n")
	level := slog.LevelWarn
	switch {
	case strings.HasPrefix(msg, "http2: "):
		level = slog.LevelDebug
	case strings.HasPrefix(msg, "http: panic serving"),
		strings.HasPrefix(msg, "http: Accept error"):
		level = slog.LevelError
	}
	w.log.Log(context.Background(), level, msg, slog.String("source", "net/http"))
	return len(p), nil
}
