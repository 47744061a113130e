package site

import (
	"log/slog"
	"strings"
)

// DefaultLargeFile is the size above which a file is streamed from its
// Source per request rather than held in memory, when Options.LargeFile is
// zero. 1 MiB keeps typical pages, scripts and images in memory (and
// compressed) while media and downloads are left on disk.
const DefaultLargeFile = 1 << 20

// Options configure how a Tree becomes a Snapshot and how it is served.
// The zero value is usable: sniffed and extension-based types, 1 MiB large
// file threshold, a 404 for missing paths, any Host accepted, logs to
// slog.Default.
type Options struct {
	// MIMETypes overrides the Content-Type of individual files, keyed by
	// site path with or without the leading slash ("/feed":
	// "application/atom+xml"). It comes from --mime-type PATH:TYPE. A text
	// type without a charset gets "; charset=utf-8" like detected ones.
	MIMETypes map[string]string
	// LargeFile is the size in bytes above which a file is not held in
	// memory but opened through Entry.Open for every request and streamed.
	// Large files are not compressed (a precompressed sibling x.gz, x.br or
	// x.zst is still used). Zero means DefaultLargeFile; a negative value
	// makes every non-empty file large.
	LargeFile int64
	// Default, when set, is the URL missing paths are redirected to with
	// 302 Found instead of answering 404 (unipi's --default).
	Default string
	// Hostnames, when non-empty, are the only Host values (port stripped,
	// compared case-insensitively) served; other requests get 421
	// Misdirected Request so that a certificate or connection shared by
	// several names cannot be used to fetch this site under another one.
	Hostnames []string
	// Logger receives build summaries and serving errors. Nil means
	// slog.Default().
	Logger *slog.Logger
}

func (o *Options) largeFile() int64 {
	switch {
	case o.LargeFile == 0:
		return DefaultLargeFile
	case o.LargeFile < 0:
		return 0
	}
	return o.LargeFile
}

func (o *Options) logger() *slog.Logger {
	if o.Logger != nil {
		return o.Logger
	}
	return slog.Default()
}

// mimeOverrides returns MIMETypes keyed by clean site path without the
// leading slash.
func (o *Options) mimeOverrides() map[string]string {
	if len(o.MIMETypes) == 0 {
		return nil
	}
	m := make(map[string]string, len(o.MIMETypes))
	for k, v := range o.MIMETypes {
		m[strings.TrimPrefix(k, "/")] = v
	}
	return m
}

// hostnames returns Hostnames lower-cased without a trailing dot.
func (o *Options) hostnames() []string {
	var hs []string
	for _, h := range o.Hostnames {
		h = strings.TrimSuffix(strings.ToLower(strings.TrimSpace(h)), ".")
		if h != "" {
			hs = append(hs, h)
		}
	}
	return hs
}
