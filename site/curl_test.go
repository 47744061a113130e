package site

import (
	"context"
	"encoding/pem"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/pafhq/paf/internal/testpeer"
)

// TestCurl checks compressed and range responses with curl over HTTP/1.1
// and HTTP/2 (ALPN on TLS).
func TestCurl(t *testing.T) {
	curl := testpeer.Need(t, "curl")
	snap := mustBuild(t, memTree(testFiles(t)), Options{})
	srvs := servers(t, snap)
	tls := srvs[1].srv
	dir := t.TempDir()
	ca := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: tls.Certificate().Raw}), 0o644); err != nil {
		t.Fatal(err)
	}
	// The httptest certificate covers 127.0.0.1.
	url := tls.URL

	for _, c := range []struct {
		name, flag, version string
	}{{"http1.1", "--http1.1", "1.1"}, {"http2", "--http2", "2"}} {
		t.Run(c.name, func(t *testing.T) {
			run := func(args ...string) (string, string) {
				t.Helper()
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				out := filepath.Join(dir, c.name+".body")
				args = append([]string{"-sS", c.flag, "--cacert", ca, "-o", out, "-w", "%{http_version} %{http_code} %header{content-encoding}"}, args...)
				got, err := exec.CommandContext(ctx, curl, args...).CombinedOutput()
				if err != nil {
					t.Fatalf("curl %v: %v\n%s", args, err, got)
				}
				body, err := os.ReadFile(out)
				if err != nil {
					t.Fatal(err)
				}
				return string(got), string(body)
			}
			meta, body := run("--compressed", url+"/")
			if meta != c.version+" 200 br" && meta != c.version+" 200 zstd" && meta != c.version+" 200 gzip" {
				t.Errorf("compressed: %q", meta)
			}
			if body != indexHTML {
				t.Errorf("compressed body differs: %q", truncate([]byte(body)))
			}
			meta, body = run("-r", "10-19", url+"/style.css")
			if meta != c.version+" 206 " || body != styleCSS[10:20] {
				t.Errorf("range: %q %q", meta, body)
			}
		})
	}
}
