package site

import (
	"bytes"
	"fmt"

	"github.com/andybalholm/brotli"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
)

// A coding is a content coding a Snapshot can hold a variant in, indexed
// in server preference order: on equal q-values brotli beats zstd beats
// gzip (smallest output first).
type coding int

const (
	codingBr coding = iota
	codingZstd
	codingGzip
	numCodings
)

// name is the coding's Content-Encoding token.
func (c coding) name() string {
	return [...]string{"br", "zstd", "gzip"}[c]
}

// ext is the extension of a precompressed sibling file in this coding.
func (c coding) ext() string {
	return [...]string{".br", ".zst", ".gz"}[c]
}

// compressor compresses whole files at build time. One is made per Build:
// its zstd encoder is safe for concurrent EncodeAll calls.
type compressor struct {
	zstd *zstd.Encoder
}

// newCompressor makes a compressor for files of at most maxSize bytes.
func newCompressor(maxSize int64) (*compressor, error) {
	// The window need not exceed the largest file compressed; a smaller
	// one makes the encoder's first use much cheaper. Browsers refuse
	// windows above 8 MiB.
	window := 1 << 16
	for int64(window) < maxSize && window < 8<<20 {
		window <<= 1
	}
	enc, err := zstd.NewWriter(nil,
		zstd.WithEncoderLevel(zstd.SpeedBestCompression),
		zstd.WithWindowSize(window))
	if err != nil {
		return nil, fmt.Errorf("site: zstd encoder: %w", err)
	}
	return &compressor{zstd: enc}, nil
}

func (c *compressor) close() { c.zstd.Close() }

// compress returns b in coding k.
func (c *compressor) compress(k coding, b []byte) ([]byte, error) {
	switch k {
	case codingZstd:
		return c.zstd.EncodeAll(b, make([]byte, 0, len(b)/2)), nil
	case codingBr:
		// Quality 11 is slow (about 1 MB/s) but runs once per build; on
		// bigger files quality 9 keeps a rebuild of a large site short.
		q := brotli.BestCompression
		if len(b) > 256<<10 {
			q = 9
		}
		var buf bytes.Buffer
		w := brotli.NewWriterOptions(&buf, brotli.WriterOptions{Quality: q, LGWin: 22})
		if _, err := w.Write(b); err != nil {
			return nil, err
		}
		if err := w.Close(); err != nil {
			return nil, err
		}
		return buf.Bytes(), nil
	case codingGzip:
		var buf bytes.Buffer
		w, err := gzip.NewWriterLevel(&buf, gzip.BestCompression)
		if err != nil {
			return nil, err
		}
		if _, err := w.Write(b); err != nil {
			return nil, err
		}
		if err := w.Close(); err != nil {
			return nil, err
		}
		return buf.Bytes(), nil
	}
	return nil, fmt.Errorf("site: unknown coding %d", k)
}

// worthIt reports whether a variant of n bytes is meaningfully smaller
// than the identity of size bytes: at least 10% and 64 bytes saved, so that
// tiny or incompressible files are not served with a coding that only costs
// the client CPU.
func worthIt(n, size int) bool {
	saved := size - n
	return saved >= 64 && saved*10 >= size
}
