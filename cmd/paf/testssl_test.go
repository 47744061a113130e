package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pafhq/paf/internal/testpeer"
)

// testsslFinding is one entry of testssl.sh's flat JSON output
// (--jsonfile).
type testsslFinding struct {
	ID       string `json:"id"`
	Severity string `json:"severity"`
	Finding  string `json:"finding"`
}

// severityRank orders testssl.sh's severities. WARN and FATAL mark scan
// problems (the scan itself went wrong), which fail the test like a
// critical finding would.
var severityRank = map[string]int{
	"DEBUG": 0, "INFO": 0, "OK": 0, "LOW": 1,
	"MEDIUM": 2, "HIGH": 3, "CRITICAL": 4, "WARN": 5, "FATAL": 5,
}

// allowedFindings are the findings rated MEDIUM or worse that are about the
// test setup rather than paf: each is allowed up to the given severity, so
// that, say, an expired certificate (CRITICAL) still fails. Anything not
// listed here fails the scan.
var allowedFindings = map[string]struct {
	max    string
	reason string
}{
	"cert_expirationStatus": {"HIGH", "paf's local CA issues 7-day certificates on purpose (short-lived, renewed automatically); testssl rates anything under 30 days HIGH"},
	"cert_notAfter":         {"HIGH", "same 7-day local-CA lifetime, reported a second time as the notAfter date"},
	"cert_revocation":       {"HIGH", "a local CA trusted only on this machine has no CRL or OCSP responder to point to"},
	"BREACH":                {"MEDIUM", "testssl flags any HTTP compression; BREACH needs a secret and attacker input reflected in the same compressed body, and paf serve sends static files and sets no cookies (testssl: \"can be ignored for static pages\")"},
}

// TestTLSScan runs testssl.sh against paf serve's HTTPS listener: only
// TLS 1.2 and 1.3, forward secrecy for every cipher, nothing rated MEDIUM
// or worse beyond allowedFindings, and HSTS exactly when --hsts is given.
// The default configuration gets every check of testssl.sh's default run
// except client simulation (which only reports, unrated, which old clients
// connect, and takes the longest): about a minute on 2 busy cores. The
// --hsts run only needs the header checks.
func TestTLSScan(t *testing.T) {
	bin, ok := testpeer.Find("testssl.sh") // upstream's name
	if !ok {
		bin = testpeer.Need(t, "testssl") // Debian's testssl.sh package
	}
	tests := []struct {
		name  string
		flags []string // extra paf serve flags
		scan  []string // testssl.sh checks
		check func(t *testing.T, f map[string]testsslFinding)
	}{
		{
			name: "default",
			scan: []string{
				"--protocols", "--std", "--pfs", "--server-preference", "--server-defaults",
				"--headers", "--vulnerable", "--each-cipher",
			},
			check: func(t *testing.T, f map[string]testsslFinding) {
				checkProtocols(t, f)
				checkForwardSecrecy(t, f)
				if h := need(t, f, "HSTS"); !strings.HasPrefix(h.Finding, "not offered") {
					t.Errorf("HSTS without --hsts: %q, want not offered", h.Finding)
				}
			},
		},
		{
			name:  "hsts",
			flags: []string{"--hsts"},
			scan:  []string{"--headers"},
			check: func(t *testing.T, f map[string]testsslFinding) {
				h := need(t, f, "HSTS_time")
				if h.Severity != "OK" || !strings.Contains(h.Finding, "31536000") {
					t.Errorf("HSTS with --hsts: %s %q, want OK with max-age 31536000 (365 days)", h.Severity, h.Finding)
				}
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			data := t.TempDir()
			p := startPaf(t, nil, append([]string{"serve", "--data-dir", data, "--http", "127.0.0.1:0", "--https", "127.0.0.1:0"}, tt.flags...)...)
			ca, _ := p.waitLog("no --tls-cert given: serving certificates from paf's local CA; trust it to avoid browser warnings", time.Second)["ca"].(string)
			if ca == "" {
				t.Fatal("paf serve logged no CA file")
			}
			findings := runTestssl(t, bin, ca, "https://localhost:"+port(t, p.addr("https")), tt.scan...)
			checkSeverities(t, findings)
			tt.check(t, findings)
		})
	}
}

// runTestssl scans url (on 127.0.0.1) with the checks in scan, trusting the
// CA file, and returns the findings by id.
func runTestssl(t *testing.T, bin, ca, url string, scan ...string) map[string]testsslFinding {
	t.Helper()
	dir := t.TempDir()
	jsonFile := filepath.Join(dir, "scan.json")
	args := []string{
		"--jsonfile", jsonFile, "--quiet", "--color", "0", "--warnings", "off",
		"--ip", "127.0.0.1", // localhost is the name on the certificate
		"--nodns", "none", // no DNS (CAA, rDNS): loopback only, and CI may be offline
		"--add-ca", ca,
	}
	args = append(append(args, scan...), url)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "TMPDIR="+dir)
	// testssl.sh runs openssl and bash children: on timeout, kill them all.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	cmd.Cancel = func() error { return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) }
	cmd.WaitDelay = 10 * time.Second
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	start := time.Now()
	err := cmd.Run()
	t.Logf("testssl %s: %v in %v", strings.Join(scan, " "), err, time.Since(start).Round(time.Second))
	// testssl.sh exits with 242 or more on a scan error; below that the
	// status counts findings, which the JSON judges instead.
	if ee, ok := err.(*exec.ExitError); err != nil && (!ok || ee.ExitCode() >= 242 || ee.ExitCode() < 0) {
		t.Fatalf("testssl: %v\n%s", err, out.String())
	}
	b, err := os.ReadFile(jsonFile)
	if err != nil {
		t.Fatalf("testssl wrote no JSON: %v\n%s", err, out.String())
	}
	var list []testsslFinding
	if err := json.Unmarshal(b, &list); err != nil {
		t.Fatalf("testssl JSON: %v\n%s", err, b)
	}
	findings := make(map[string]testsslFinding, len(list))
	for _, f := range list {
		findings[f.ID] = f
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("testssl output:\n%s", out.String())
		}
	})
	return findings
}

// need returns the finding with id, failing the test when the scan did
// not report it (a check that silently did not run proves nothing).
func need(t *testing.T, findings map[string]testsslFinding, id string) testsslFinding {
	t.Helper()
	f, ok := findings[id]
	if !ok {
		t.Fatalf("testssl reported no %q finding", id)
	}
	return f
}

// checkSeverities fails on every finding rated MEDIUM or worse (or a scan
// problem) that allowedFindings does not excuse at that level.
func checkSeverities(t *testing.T, findings map[string]testsslFinding) {
	t.Helper()
	for _, f := range findings {
		rank, known := severityRank[f.Severity]
		if !known {
			t.Errorf("%s: unknown severity %q: %q", f.ID, f.Severity, f.Finding)
			continue
		}
		if rank < severityRank["MEDIUM"] {
			continue
		}
		if a, ok := allowedFindings[f.ID]; ok && rank <= severityRank[a.max] {
			t.Logf("allowed %s %s (%q): %s", f.Severity, f.ID, f.Finding, a.reason)
			continue
		}
		t.Errorf("%s %s: %q", f.Severity, f.ID, f.Finding)
	}
}

// checkProtocols wants TLS 1.2 and 1.3 offered, and nothing older.
func checkProtocols(t *testing.T, findings map[string]testsslFinding) {
	t.Helper()
	for _, tt := range []struct {
		id      string
		offered bool
	}{
		{"SSLv2", false}, {"SSLv3", false}, {"TLS1", false}, {"TLS1_1", false},
		{"TLS1_2", true}, {"TLS1_3", true},
	} {
		f := need(t, findings, tt.id)
		if got := strings.HasPrefix(f.Finding, "offered"); got != tt.offered || (!got && !strings.HasPrefix(f.Finding, "not offered")) {
			t.Errorf("%s: %q, want offered=%v", tt.id, f.Finding, tt.offered)
		}
	}
}

// checkForwardSecrecy wants every cipher the server accepts to use an
// ephemeral key exchange: the per-cipher findings (cipher_xHHHH, "hexcode
// name kx bits ...") all name ECDH or DH, and the TLS 1.2 order lists only
// ECDHE/DHE suites.
func checkForwardSecrecy(t *testing.T, findings map[string]testsslFinding) {
	t.Helper()
	if f := need(t, findings, "PFS"); f.Severity != "OK" || f.Finding != "offered" {
		t.Errorf("PFS: %s %q, want OK offered", f.Severity, f.Finding)
	}
	n := 0
	for id, f := range findings {
		if !strings.HasPrefix(id, "cipher_x") {
			continue
		}
		n++
		fields := strings.Fields(f.Finding)
		if len(fields) < 3 || (fields[2] != "ECDH" && fields[2] != "DH") {
			t.Errorf("%s without forward secrecy: %q", id, f.Finding)
		}
	}
	if n == 0 {
		t.Error("testssl listed no accepted cipher (cipher_x...)")
	}
	for _, c := range strings.Fields(need(t, findings, "cipherorder_TLSv1_2").Finding) {
		if !strings.HasPrefix(c, "ECDHE-") && !strings.HasPrefix(c, "DHE-") {
			t.Errorf("TLS 1.2 cipher %s without forward secrecy", c)
		}
	}
}
