package server

import (
	"context"
	"encoding/xml"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"testing"
	"time"

	"github.com/pafhq/paf/internal/testpeer"
)

// knownH2specDeviations are h2spec cases where net/http's HTTP/2 server
// (not this package) knowingly differs from the letter of RFC 7540, keyed
// by h2spec section and case title. They are logged, not failed; any other
// failure fails the test.
var knownH2specDeviations = map[string]string{
	// net/http answers 400 Bad Request instead of a PROTOCOL_ERROR stream
	// reset (h2_bundle.go: checkValidHTTP2RequestHeaders).
	"http2/8.1.2.2: Sends a HEADERS frame that contains the connection-specific header field":                     "net/http answers 400",
	`http2/8.1.2.2: Sends a HEADERS frame that contains the TE header field with any value other than "trailers"`: "net/http answers 400",
	// With h2c, a connection that does not start with the HTTP/2 preface
	// is served as HTTP/1.1, as it must be on a listener speaking both.
	"http2/3.5: Sends invalid connection preface": "h2c falls back to HTTP/1.1",
	// net/http treats a SETTINGS frame that repeats a setting as a
	// connection error; reproduced with a bare http.Server.
	"http2/6.5.3: Sends multiple values of SETTINGS_INITIAL_WINDOW_SIZE": "net/http rejects repeated settings",
}

// h2specReruns is how many more times a failing case outside the known
// deviations runs alone before it fails the test. On a loaded 2-core
// machine a few cases race net/http's frame ordering against h2spec's
// timeout; a real regression fails every run.
const h2specReruns = 2

// junitReport is the part of h2spec's JUnit report the test reads.
type junitReport struct {
	Suites []struct {
		Cases []struct {
			Package   string  `xml:"package,attr"`
			Classname string  `xml:"classname,attr"`
			Error     *string `xml:"error"`
			Failure   *string `xml:"failure"`
		} `xml:"testcase"`
	} `xml:"testsuite"`
}

// TestH2spec runs the h2spec conformance suite against HTTP/2 over TLS and
// h2c. It takes about a minute, so -short skips it.
func TestH2spec(t *testing.T) {
	if testing.Short() {
		t.Skip("h2spec runs 145 cases with timeouts")
	}
	bin := testpeer.Need(t, "h2spec")
	// h2spec assumes the default SETTINGS_MAX_FRAME_SIZE of 16 KiB.
	tlsRun := start(t, Config{MaxReadFrameSize: 16 << 10}, false, true)
	h2cRun := start(t, Config{MaxReadFrameSize: 16 << 10, H2C: true}, true, false)
	tests := []struct {
		name string
		args []string
	}{
		{"tls", []string{"-p", strconv.Itoa(tlsRun.httpsPort()), "-t", "-k"}},
		{"h2c", []string{"-p", strconv.Itoa(h2cRun.httpPort())}},
	}
	summary := regexp.MustCompile(`(\d+) tests, (\d+) passed, (\d+) skipped, (\d+) failed`)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			report := filepath.Join(t.TempDir(), "junit.xml")
			args := append([]string{"-h", "127.0.0.1", "-o", "5", "-j", report}, tt.args...)
			out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput()
			m := summary.FindSubmatch(out)
			if m == nil {
				t.Fatalf("h2spec %v: %v, no summary:\n%s", args, err, out)
			}
			t.Logf("h2spec %s: %s", tt.name, m[0])
			for _, f := range h2specFailures(t, report) {
				if why, ok := knownH2specDeviations[f.id]; ok {
					t.Logf("known deviation (%s): %s", why, f.id)
					continue
				}
				passed := false
				for i := 0; i < h2specReruns && !passed; i++ {
					rerun := filepath.Join(t.TempDir(), "rerun.xml")
					rargs := append(append([]string{"-h", "127.0.0.1", "-o", "5", "-j", rerun}, tt.args...), f.section)
					exec.CommandContext(ctx, bin, rargs...).Run()
					passed = true
					for _, again := range h2specFailures(t, rerun) {
						if again.id == f.id {
							passed = false
						}
					}
				}
				if passed {
					t.Logf("h2spec %s failed once, then passed alone: %s", tt.name, f.id)
					continue
				}
				t.Errorf("h2spec failed: %s\n%s", f.id, f.detail)
			}
		})
	}
}

type h2specFailure struct{ section, id, detail string }

// h2specFailures reads the failed cases of an h2spec JUnit report.
func h2specFailures(t *testing.T, report string) []h2specFailure {
	t.Helper()
	data, err := os.ReadFile(report)
	if err != nil {
		t.Fatal(err)
	}
	var rep junitReport
	if err := xml.Unmarshal(data, &rep); err != nil {
		t.Fatalf("h2spec report: %v", err)
	}
	var out []h2specFailure
	for _, s := range rep.Suites {
		for _, c := range s.Cases {
			switch {
			case c.Error != nil:
				out = append(out, h2specFailure{c.Package, c.Package + ": " + c.Classname, *c.Error})
			case c.Failure != nil:
				out = append(out, h2specFailure{c.Package, c.Package + ": " + c.Classname, *c.Failure})
			}
		}
	}
	return out
}
