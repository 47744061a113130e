package xconnect_test

import (
	"bufio"
	"crypto/tls"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/net/http2"

	"github.com/pafhq/paf/internal/testpeer"
	"github.com/pafhq/paf/internal/xconnect"
)

func TestWith(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"", "http2xconnect=1"},
		{"  ", "http2xconnect=1"},
		{"http2debug=1", "http2debug=1,http2xconnect=1"},
		{"http2xconnect=0", "http2xconnect=0"},
		{"tlsrsakex=1, http2xconnect=0", "tlsrsakex=1, http2xconnect=0"},
		{"http2xconnect=1", "http2xconnect=1"},
		{"nothttp2xconnect=0", "nothttp2xconnect=0,http2xconnect=1"},
	} {
		if got := xconnect.With(tc.in); got != tc.want {
			t.Errorf("With(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

// enableConnectProtocol connects to an HTTP/2 server over TLS and returns
// the SETTINGS_ENABLE_CONNECT_PROTOCOL value of its first SETTINGS frame
// (0 when absent, as RFC 8441 says).
func enableConnectProtocol(t *testing.T, addr string) uint32 {
	t.Helper()
	c, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"h2"}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if p := c.ConnectionState().NegotiatedProtocol; p != "h2" {
		t.Fatalf("ALPN %q, want h2", p)
	}
	if _, err := io.WriteString(c, http2.ClientPreface); err != nil {
		t.Fatal(err)
	}
	fr := http2.NewFramer(c, c)
	if err := fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	f, err := fr.ReadFrame()
	if err != nil {
		t.Fatal(err)
	}
	sf, ok := f.(*http2.SettingsFrame)
	if !ok || sf.IsAck() {
		t.Fatalf("first frame %v, want SETTINGS", f)
	}
	v, _ := sf.Value(http2.SettingEnableConnectProtocol)
	return v
}

// TestProgramAdvertises builds a program whose only tie to this package is
// a blank import and checks, on the wire, that its HTTP/2 server offers
// extended CONNECT: the proof that this init runs before net/http's.
func TestProgramAdvertises(t *testing.T) {
	goTool := testpeer.Need(t, "go")
	bin := filepath.Join(t.TempDir(), "h2server")
	build := exec.Command(goTool, "build", "-o", bin, "./testdata/h2server")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	for _, tc := range []struct {
		name    string
		godebug string // "-" leaves GODEBUG out of the environment
		want    uint32
	}{
		{"unset", "-", 1},
		{"other settings", "http2debug=0", 1},
		{"explicitly off", "http2xconnect=0", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cmd := exec.Command(bin)
			for _, kv := range os.Environ() {
				if !strings.HasPrefix(kv, "GODEBUG=") {
					cmd.Env = append(cmd.Env, kv)
				}
			}
			if tc.godebug != "-" {
				cmd.Env = append(cmd.Env, "GODEBUG="+tc.godebug)
			}
			stdin, err := cmd.StdinPipe()
			if err != nil {
				t.Fatal(err)
			}
			stdout, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			cmd.Stderr = os.Stderr
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() {
				stdin.Close()
				cmd.Process.Kill()
				cmd.Wait()
			})
			line, err := bufio.NewReader(stdout).ReadString('\n')
			if err != nil {
				t.Fatalf("reading the address: %v", err)
			}
			addr := strings.TrimSpace(line)
			if _, _, err := net.SplitHostPort(addr); err != nil {
				t.Fatalf("address %q: %v", addr, err)
			}
			if got := enableConnectProtocol(t, addr); got != tc.want {
				t.Errorf("SETTINGS_ENABLE_CONNECT_PROTOCOL = %d, want %d", got, tc.want)
			}
		})
	}
}
