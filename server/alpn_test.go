package server

import (
	"strconv"
	"strings"
	"testing"
)

// TestNextProtosForName: the protocols offered follow the SNI when
// Config.NextProtosForName says so; other names keep h2 and http/1.1, and
// extra protocols (acme-tls/1) stay offered everywhere.
func TestNextProtosForName(t *testing.T) {
	r := start(t, Config{
		NextProtos: []string{"acme-tls/1"},
		NextProtosForName: func(name string) []string {
			if name == "localhost" {
				return []string{"http/1.1"}
			}
			return nil
		},
	}, false, true)
	p := strconv.Itoa(r.httpsPort())
	tests := []struct {
		name string
		args []string
		want string
	}{
		{"curl h2 to an http/1.1-only name", []string{"--http2", "--cacert", r.caFile, "--resolve", "localhost:" + p + ":127.0.0.1", "https://localhost:" + p + "/"}, "1.1"},
		{"curl h2 to another name", []string{"--http2", "--cacert", r.caFile, "https://127.0.0.1:" + p + "/"}, "2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, err := curl(t, append([]string{"-o", "/dev/null", "-w", "%{http_version}"}, tt.args...)...)
			if err != nil {
				t.Fatal(err)
			}
			if out != tt.want {
				t.Errorf("HTTP version %q, want %q", out, tt.want)
			}
		})
	}
	for _, tt := range []struct{ alpn, want string }{
		{"h2,http/1.1", "ALPN protocol: http/1.1"},
		{"acme-tls/1", "ALPN protocol: acme-tls/1"},
	} {
		out, err := sClient(t, r, "-alpn", tt.alpn)
		if err != nil || !strings.Contains(out, tt.want) {
			t.Errorf("openssl -alpn %s: %v, want %q in:\n%s", tt.alpn, err, tt.want, out)
		}
	}
}
