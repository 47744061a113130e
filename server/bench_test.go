package server

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"testing"
	"time"

	"github.com/pafhq/paf/certs"
)

// benchBody is the 4 KiB response of the loopback benchmarks, the size
// where bench/serve.sh shows paf furthest behind nginx.
var benchBody = bytes.Repeat([]byte("0123456789abcdef"), 256)

// benchHandler answers like the site does for a small in-memory file:
// headers assigned directly, Content-Length set, one Write.
func benchHandler(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h["Content-Type"] = []string{"application/octet-stream"}
	h["Content-Length"] = []string{strconv.Itoa(len(benchBody))}
	w.Write(benchBody)
}

// BenchmarkServe fetches a 4 KiB response over loopback through the whole
// server (listener, TLS handshake listener, net/http, access log) with Go's
// client, over HTTP/1.1, HTTP/1.1 with TLS and HTTP/2. Client and server
// share the process and the CPUs, so the numbers track regressions of the
// stack, not what a separate load generator would see: bench/serve.sh does
// that. With -cpuprofile, filter on server frames (-focus 'net/http.\(\*conn\)|http2.\(\*serverConn\)').
func BenchmarkServe(b *testing.B) {
	for _, c := range []struct {
		name      string
		tls, h2   bool
		accessLog bool
	}{
		{name: "http1"},
		{name: "https1", tls: true},
		{name: "h2", tls: true, h2: true},
		{name: "https1-accesslog", tls: true, accessLog: true},
	} {
		b.Run(c.name, func(b *testing.B) {
			log := slog.New(slog.DiscardHandler)
			if c.accessLog {
				// A real handler formatting each record, writing nowhere.
				log = slog.New(slog.NewTextHandler(io.Discard, nil))
			}
			cfg := Config{Handler: http.HandlerFunc(benchHandler), Logger: log}
			tr := &http.Transport{MaxIdleConnsPerHost: 64, DisableCompression: true}
			protos := new(http.Protocols)
			scheme := "http"
			if c.tls {
				cfg.HTTPSAddr = "127.0.0.1:0"
				ca, err := certs.OpenLocalCA(b.TempDir())
				if err != nil {
					b.Fatal(err)
				}
				is, err := ca.Issuer([]string{"localhost"})
				if err != nil {
					b.Fatal(err)
				}
				cfg.Certificates = is
				pool := x509.NewCertPool()
				pool.AddCert(ca.Certificate())
				tr.TLSClientConfig = &tls.Config{RootCAs: pool, ServerName: "localhost"}
				scheme = "https"
				if c.h2 {
					protos.SetHTTP2(true)
				} else {
					protos.SetHTTP1(true)
				}
			} else {
				cfg.HTTPAddr = "127.0.0.1:0"
				protos.SetHTTP1(true)
			}
			tr.Protocols = protos
			srv, err := New(cfg)
			if err != nil {
				b.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			if err := srv.Listen(ctx); err != nil {
				cancel()
				b.Fatal(err)
			}
			done := make(chan error, 1)
			go func() { done <- srv.Serve(ctx) }()
			b.Cleanup(func() {
				tr.CloseIdleConnections()
				cancel()
				select {
				case <-done:
				case <-time.After(time.Minute):
					b.Error("Serve did not return")
				}
			})
			addr := srv.HTTPAddr()
			if c.tls {
				addr = srv.HTTPSAddr()
			}
			url := scheme + "://" + addr.String() + "/f"
			client := &http.Client{Transport: tr, Timeout: time.Minute}

			wantProto := "HTTP/1.1"
			if c.h2 {
				wantProto = "HTTP/2.0"
			}
			b.SetBytes(int64(len(benchBody)))
			b.ReportAllocs()
			b.SetParallelism(8) // 8 x GOMAXPROCS requests in flight
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					resp, err := client.Get(url)
					if err != nil {
						b.Error(err)
						return
					}
					n, err := io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if err != nil || resp.StatusCode != http.StatusOK || n != int64(len(benchBody)) || resp.Proto != wantProto {
						b.Errorf("GET %s: %s %s, %d bytes, %v", url, resp.Proto, resp.Status, n, err)
						return
					}
				}
			})
		})
	}
}

// nopWriter is a ResponseWriter that keeps nothing, so that
// BenchmarkAccessLog measures the wrapper alone.
type nopWriter struct{ h http.Header }

func (w *nopWriter) Header() http.Header         { return w.h }
func (w *nopWriter) WriteHeader(int)             {}
func (w *nopWriter) Write(p []byte) (int, error) { return len(p), nil }

// BenchmarkAccessLog measures what the access log adds to a request: with
// Info discarded (the handler runs unwrapped), and with a text handler
// formatting every record into io.Discard.
func BenchmarkAccessLog(b *testing.B) {
	for _, c := range []struct {
		name string
		log  *slog.Logger
	}{
		{"off", slog.New(slog.NewTextHandler(io.Discard, &slog.HandlerOptions{Level: slog.LevelWarn}))},
		{"text", slog.New(slog.NewTextHandler(io.Discard, nil))},
		{"json", slog.New(slog.NewJSONHandler(io.Discard, nil))},
	} {
		b.Run(c.name, func(b *testing.B) {
			h := accessLog(http.HandlerFunc(benchHandler), c.log)
			r, err := http.NewRequest("GET", "http://localhost/some/file.css", nil)
			if err != nil {
				b.Fatal(err)
			}
			r.RemoteAddr = "127.0.0.1:54321"
			w := &nopWriter{h: make(http.Header, 4)}
			b.ReportAllocs()
			for b.Loop() {
				clear(w.h)
				h.ServeHTTP(w, r)
			}
		})
	}
}
