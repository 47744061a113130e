package site

import (
	"mime"
	"path"
	"strings"

	"github.com/gabriel-vasile/mimetype"
)

// builtinTypes maps extensions to types so that results do not depend on
// the host's /etc/mime.types (which differs between a laptop, a Debian
// server and a scratch container).
var builtinTypes = map[string]string{
	".html":        "text/html",
	".htm":         "text/html",
	".css":         "text/css",
	".js":          "text/javascript",
	".mjs":         "text/javascript",
	".cjs":         "text/javascript",
	".json":        "application/json",
	".jsonld":      "application/ld+json",
	".webmanifest": "application/manifest+json",
	".map":         "application/json",
	".svg":         "image/svg+xml",
	".png":         "image/png",
	".apng":        "image/apng",
	".jpg":         "image/jpeg",
	".jpeg":        "image/jpeg",
	".gif":         "image/gif",
	".webp":        "image/webp",
	".avif":        "image/avif",
	".ico":         "image/vnd.microsoft.icon",
	".bmp":         "image/bmp",
	".woff":        "font/woff",
	".woff2":       "font/woff2",
	".ttf":         "font/ttf",
	".otf":         "font/otf",
	".eot":         "application/vnd.ms-fontobject",
	".txt":         "text/plain",
	".md":          "text/markdown",
	".csv":         "text/csv",
	".xml":         "application/xml",
	".rss":         "application/rss+xml",
	".atom":        "application/atom+xml",
	".xsl":         "application/xslt+xml",
	".pdf":         "application/pdf",
	".wasm":        "application/wasm",
	".zip":         "application/zip",
	".gz":          "application/gzip",
	".br":          "application/x-brotli",
	".zst":         "application/zstd",
	".tar":         "application/x-tar",
	".mp4":         "video/mp4",
	".webm":        "video/webm",
	".mp3":         "audio/mpeg",
	".ogg":         "audio/ogg",
	".opus":        "audio/ogg",
	".wav":         "audio/wav",
	".asc":         "text/plain",
	".sig":         "application/pgp-signature",
	".yaml":        "application/yaml",
	".yml":         "application/yaml",
	".toml":        "application/toml",
}

// contentType decides the Content-Type of the file at site path p whose
// content starts with head: an override, the built-in table, the system
// table, then sniffing. Text types get a UTF-8 charset when none is given.
func contentType(p string, head []byte, overrides map[string]string) string {
	if t, ok := overrides[p]; ok && t != "" {
		return withCharset(t)
	}
	ext := strings.ToLower(path.Ext(p))
	if t, ok := builtinTypes[ext]; ok {
		return withCharset(t)
	}
	if ext != "" {
		if t := mime.TypeByExtension(ext); t != "" {
			return withCharset(t)
		}
	}
	return withCharset(mimetype.Detect(head).String())
}

// withCharset appends "; charset=utf-8" to textual types that lack a
// charset, so browsers do not guess the encoding.
func withCharset(t string) string {
	if !isText(t) || strings.Contains(strings.ToLower(t), "charset=") {
		return t
	}
	return t + "; charset=utf-8"
}

// mediaType returns t without parameters, lower-cased.
func mediaType(t string) string {
	if i := strings.IndexByte(t, ';'); i >= 0 {
		t = t[:i]
	}
	return strings.ToLower(strings.TrimSpace(t))
}

// isText reports whether t is a textual type that should carry a charset.
func isText(t string) bool {
	m := mediaType(t)
	switch {
	case strings.HasPrefix(m, "text/"),
		strings.HasSuffix(m, "+xml"), strings.HasSuffix(m, "+json"),
		m == "application/javascript", m == "application/x-javascript",
		m == "application/json", m == "application/xml",
		m == "application/yaml", m == "application/toml":
		return true
	}
	return false
}

// isCompressible reports whether content of type t gains from gzip, brotli
// or zstd; already compressed formats (most images, woff/woff2, archives,
// audio, video) do not.
func isCompressible(t string) bool {
	if isText(t) {
		return true
	}
	switch mediaType(t) {
	case "application/wasm", "image/vnd.microsoft.icon", "image/x-icon",
		"image/bmp", "font/ttf", "font/otf", "application/vnd.ms-fontobject",
		"application/x-font-ttf", "application/x-tar":
		return true
	}
	return false
}
