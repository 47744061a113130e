package hook

import (
	"bytes"
	"encoding/hex"
	"errors"
	"net/http"
	"strings"
	"testing"
)

// FuzzVerify feeds arbitrary signature headers and bodies to Verify: it
// must never panic, and must accept only the one correct signature.
func FuzzVerify(f *testing.F) {
	secret := []byte("fuzz secret")
	f.Add("sha256="+Sign(secret, []byte("{}"))[7:], "", []byte("{}"))
	f.Add("", Sign(secret, []byte("x"))[7:], []byte("x"))
	f.Add("sha256=", "", []byte(""))
	f.Add("sha1=abcd", "zz", []byte("body"))
	f.Add("sha256=0000", "", []byte{0, 1, 2})
	f.Fuzz(func(t *testing.T, hub, gitea string, body []byte) {
		h := http.Header{}
		if hub != "" {
			h.Set("X-Hub-Signature-256", hub)
		}
		if gitea != "" {
			h.Set("X-Gitea-Signature", gitea)
		}
		err := Verify(secret, h, body)
		if err == nil {
			// Accepted: the header must decode to the body's true MAC.
			got := h.Get("X-Hub-Signature-256")
			if got != "" {
				got = strings.TrimPrefix(got, "sha256=")
			} else {
				got = h.Get("X-Gitea-Signature")
			}
			mac, derr := hex.DecodeString(strings.TrimSpace(got))
			want, _ := hex.DecodeString(Sign(secret, body)[len("sha256="):])
			if derr != nil || !bytes.Equal(mac, want) {
				t.Fatalf("accepted %q for a body whose signature is %x", got, want)
			}
			return
		}
		if !errors.Is(err, ErrNoSignature) && !errors.Is(err, ErrBadSignature) {
			t.Fatalf("unexpected error %v", err)
		}
	})
}
