package certs

import (
	"context"
	"log/slog"
	"strings"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// zapToSlog returns a zap.Logger whose entries go to log, so that
// CertMagic, which logs through zap, writes to paf's one log in paf's
// format. Entries keep their level, message, time and fields; the zap
// logger's name (such as "obtain" or "maintenance") becomes the "logger"
// attribute.
func zapToSlog(log *slog.Logger) *zap.Logger {
	return zap.New(&slogCore{h: log.Handler()})
}

// slogCore is a zapcore.Core writing to an slog.Handler.
type slogCore struct {
	h      slog.Handler
	fields []zapcore.Field
}

func slogLevel(l zapcore.Level) slog.Level {
	switch {
	case l <= zapcore.DebugLevel:
		return slog.LevelDebug
	case l == zapcore.InfoLevel:
		return slog.LevelInfo
	case l == zapcore.WarnLevel:
		return slog.LevelWarn
	}
	return slog.LevelError
}

// Enabled implements zapcore.LevelEnabler.
func (c *slogCore) Enabled(l zapcore.Level) bool {
	return c.h.Enabled(context.Background(), slogLevel(l))
}

// With implements zapcore.Core.
func (c *slogCore) With(fields []zapcore.Field) zapcore.Core {
	all := make([]zapcore.Field, 0, len(c.fields)+len(fields))
	all = append(append(all, c.fields...), fields...)
	return &slogCore{h: c.h, fields: all}
}

// Check implements zapcore.Core.
func (c *slogCore) Check(e zapcore.Entry, ce *zapcore.CheckedEntry) *zapcore.CheckedEntry {
	if c.Enabled(e.Level) {
		return ce.AddCore(e, c)
	}
	return ce
}

// Write implements zapcore.Core.
func (c *slogCore) Write(e zapcore.Entry, fields []zapcore.Field) error {
	r := slog.NewRecord(e.Time, slogLevel(e.Level), e.Message, 0)
	name := "certmagic"
	if n := strings.Trim(e.LoggerName, "."); n != "" {
		name += "." + strings.ReplaceAll(n, "..", ".")
	}
	r.AddAttrs(slog.String("logger", name))
	enc := zapcore.NewMapObjectEncoder()
	for _, f := range c.fields {
		f.AddTo(enc)
	}
	for _, f := range fields {
		f.AddTo(enc)
	}
	// Keep the order fields were given in, for readable text logs.
	seen := make(map[string]bool, len(enc.Fields))
	for _, list := range [][]zapcore.Field{c.fields, fields} {
		for _, f := range list {
			if seen[f.Key] {
				continue
			}
			v, ok := enc.Fields[f.Key]
			if !ok {
				continue
			}
			seen[f.Key] = true
			r.AddAttrs(slog.Any(f.Key, v))
		}
	}
	return c.h.Handle(context.Background(), r)
}

// Sync implements zapcore.Core.
func (c *slogCore) Sync() error { return nil }
