package hook

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
)

func TestHandler(t *testing.T) {
	secret := []byte("s3cret")
	body := `{"ref":"refs/heads/main"}`
	mac := hmac.New(sha256.New, secret)
	mac.Write([]byte(body))
	good := hex.EncodeToString(mac.Sum(nil))
	other := hmac.New(sha256.New, []byte("wrong"))
	other.Write([]byte(body))
	bad := hex.EncodeToString(other.Sum(nil))

	tests := []struct {
		name    string
		method  string
		header  map[string]string
		body    string
		fail    bool // Update returns an error
		status  int
		updated bool
	}{
		{"github signature", "POST", map[string]string{"X-Hub-Signature-256": "sha256=" + good}, body, false, 200, true},
		{"gitea signature", "POST", map[string]string{"X-Gitea-Signature": good}, body, false, 200, true},
		{"no signature", "POST", nil, body, false, 401, false},
		{"wrong secret github", "POST", map[string]string{"X-Hub-Signature-256": "sha256=" + bad}, body, false, 403, false},
		{"wrong secret gitea", "POST", map[string]string{"X-Gitea-Signature": bad}, body, false, 403, false},
		{"missing prefix", "POST", map[string]string{"X-Hub-Signature-256": good}, body, false, 403, false},
		{"not hex", "POST", map[string]string{"X-Hub-Signature-256": "sha256=zz"}, body, false, 403, false},
		{"body changed", "POST", map[string]string{"X-Hub-Signature-256": "sha256=" + good}, body + " ", false, 403, false},
		{"GET", "GET", map[string]string{"X-Hub-Signature-256": "sha256=" + good}, "", false, 405, false},
		{"too large", "POST", map[string]string{"X-Hub-Signature-256": "sha256=" + good}, strings.Repeat("x", 2<<20), false, 413, false},
		{"update fails", "POST", map[string]string{"X-Hub-Signature-256": "sha256=" + good}, body, true, 502, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var calls atomic.Int32
			h := &Handler{Secret: secret, MaxBody: 1 << 20, Update: func(context.Context) (string, error) {
				calls.Add(1)
				if tt.fail {
					return "", errors.New("remote unreachable")
				}
				return "updated to abc", nil
			}}
			srv := httptest.NewServer(h)
			defer srv.Close()
			req, _ := http.NewRequest(tt.method, srv.URL+"/.paf/hook", strings.NewReader(tt.body))
			for k, v := range tt.header {
				req.Header.Set(k, v)
			}
			resp, err := srv.Client().Do(req)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != tt.status {
				t.Fatalf("status %d, want %d (%s)", resp.StatusCode, tt.status, b)
			}
			if got := calls.Load() > 0; got != tt.updated {
				t.Fatalf("update called: %v, want %v", got, tt.updated)
			}
			if tt.status == 200 && string(b) != "updated to abc\n" {
				t.Fatalf("body %q", b)
			}
		})
	}
}

func TestEmptySecretRefusesAll(t *testing.T) {
	h := &Handler{Update: func(context.Context) (string, error) { t.Fatal("update ran"); return "", nil }}
	body := []byte("x")
	req := httptest.NewRequest("POST", "/", strings.NewReader(string(body)))
	req.Header.Set("X-Hub-Signature-256", Sign(nil, body))
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusForbidden {
		t.Fatalf("status %d, want 403", rec.Code)
	}
}

func TestSignVerifyRoundTrip(t *testing.T) {
	h := http.Header{}
	h.Set("X-Hub-Signature-256", Sign([]byte("k"), []byte("payload")))
	if err := Verify([]byte("k"), h, []byte("payload")); err != nil {
		t.Fatal(err)
	}
	if err := Verify([]byte("k2"), h, []byte("payload")); !errors.Is(err, ErrBadSignature) {
		t.Fatalf("err = %v, want ErrBadSignature", err)
	}
}

// countingReader counts the bytes read from it.
type countingReader struct{ n int }

func (c *countingReader) Read(p []byte) (int, error) {
	c.n += len(p)
	return len(p), nil // endless
}

// TestUnsignedBodyNotRead: without a signature header the body is never
// read, so an unauthenticated client cannot make paf read megabytes.
func TestUnsignedBodyNotRead(t *testing.T) {
	h := &Handler{Secret: []byte("s"), Update: func(context.Context) (string, error) { t.Fatal("update ran"); return "", nil }}
	body := &countingReader{}
	req := httptest.NewRequest("POST", "/.paf/hook", body)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusUnauthorized || body.n != 0 {
		t.Fatalf("status %d after reading %d bytes; want 401 and nothing read", rec.Code, body.n)
	}
	// A signed one is read only up to MaxBody.
	h.MaxBody = 1 << 20
	body = &countingReader{}
	req = httptest.NewRequest("POST", "/.paf/hook", body)
	req.Header.Set("X-Hub-Signature-256", Sign([]byte("s"), nil))
	rec = httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	if rec.Code != http.StatusRequestEntityTooLarge || body.n > 2<<20 {
		t.Fatalf("status %d after reading %d bytes; want 413 within about MaxBody", rec.Code, body.n)
	}
}
