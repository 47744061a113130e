package server

import (
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestSendTimeout: a client that stops reading is cut after SendTimeout,
// while a slow client that keeps reading gets the whole body, taking longer
// than SendTimeout, through both the Write path and the ReadFrom (sendfile)
// path.
func TestSendTimeout(t *testing.T) {
	body := bytes.Repeat([]byte("0123456789abcdef"), 4<<20>>4) // 4 MiB
	file := filepath.Join(t.TempDir(), "body")
	if err := os.WriteFile(file, body, 0o644); err != nil {
		t.Fatal(err)
	}
	big := bytes.Repeat([]byte("x"), 64<<20) // fills every buffer on the way
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/write":
			w.Header().Set("Content-Length", fmt.Sprint(len(body)))
			for p := body; len(p) > 0; p = p[min(len(p), 32<<10):] {
				if _, err := w.Write(p[:min(len(p), 32<<10)]); err != nil {
					return
				}
			}
		case "/sendfile":
			f, err := os.Open(file)
			if err != nil {
				t.Error(err)
				return
			}
			defer f.Close()
			w.Header().Set("Content-Length", fmt.Sprint(len(body)))
			io.Copy(w, f) // reaches ReadFrom
		case "/big":
			w.Header().Set("Content-Length", fmt.Sprint(len(big)))
			w.Write(big)
		}
	})
	r := start(t, Config{Handler: h, SendTimeout: 3 * time.Second}, true, false)
	addr := r.srv.HTTPAddr().String()

	for _, path := range []string{"/write", "/sendfile"} {
		t.Run("slow reader"+path, func(t *testing.T) {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", path)
			// 64 KiB every 60 ms (4 s in all). A blocked write wakes only when half
			// of the kernel's send buffer has drained (Linux's
			// sk_stream_min_wspace), which on loopback autotunes to MiBs:
			// the send timeout must leave room for that, as nginx's
			// 60 s send_timeout does.
			var got bytes.Buffer
			buf := make([]byte, 64<<10)
			c.SetReadDeadline(time.Now().Add(time.Minute))
			paced := 0
			for i := 0; i < 1<<20; i++ {
				n, err := c.Read(buf)
				got.Write(buf[:n])
				if err != nil {
					break
				}
				if paced += n; paced >= 64<<10 {
					paced = 0
					time.Sleep(60 * time.Millisecond)
				}
			}
			_, b, ok := strings.Cut(got.String(), "\r\n\r\n")
			if !ok || sha256.Sum256([]byte(b)) != sha256.Sum256(body) {
				t.Fatalf("slow reader got %d body bytes, want all %d", len(b), len(body))
			}
		})
	}
	t.Run("stalled reader", func(t *testing.T) {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		fmt.Fprintf(c, "GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
		time.Sleep(8 * time.Second) // more than two send timeouts without reading
		c.SetReadDeadline(time.Now().Add(30 * time.Second))
		n, err := io.Copy(io.Discard, c)
		if err != nil {
			t.Fatalf("reading after the stall: %v (want the server to have closed)", err)
		}
		if n >= int64(len(big)) {
			t.Fatalf("got %d bytes: the stalled response was not cut", n)
		}
	})
}
