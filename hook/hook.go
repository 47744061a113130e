// Package hook implements the authenticated webhook that tells paf to fetch
// its source at once, instead of waiting for the next poll.
//
// unipi's hook is a bare URL: whoever knows it can make the unikernel pull.
// paf's hook accepts only a POST whose body is signed with a shared secret,
// the way forges sign their webhooks:
//
//   - GitHub (and Forgejo, GitLab's compatible mode): X-Hub-Signature-256:
//     sha256=<hex HMAC-SHA256 of the body>
//   - Gitea: X-Gitea-Signature: <hex HMAC-SHA256 of the body>
//
// Anything else is refused before the update runs, so an unauthenticated
// request can never change what is served.
package hook

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"
)

// DefaultMaxBody bounds the request body: GitHub's cap on webhook
// payloads. The body is hashed as it streams, never held in memory, and
// read only after a well-formed signature header.
const DefaultMaxBody = 25 << 20

// bodyTimeout bounds reading the request body.
const bodyTimeout = 30 * time.Second

// DefaultTimeout bounds the update a hook request runs. Forges give up on
// a webhook after about 10 s; the update goes on past that only if the
// Update function itself ignores its context.
const DefaultTimeout = 2 * time.Minute

// Handler is an http.Handler for the webhook.
type Handler struct {
	// Secret is the shared HMAC key. A Handler with an empty Secret refuses
	// every request: there is no unauthenticated mode.
	Secret []byte

	// Update fetches the source and swaps in what it found. It runs
	// synchronously, so that when the forge's request gets its 200 the new
	// version is being served. The string it returns is sent back as the
	// response body (e.g. "updated to <commit>").
	Update func(ctx context.Context) (string, error)

	// MaxBody bounds the accepted body in bytes; 0 means DefaultMaxBody.
	MaxBody int64

	// Timeout bounds Update; 0 means DefaultTimeout.
	Timeout time.Duration

	// Logger receives one line per refused or failed request; nil discards.
	Logger *slog.Logger
}

// Errors Verify returns, telling why a request was refused.
var (
	// ErrNoSignature: the request carries neither signature header.
	ErrNoSignature = errors.New("no X-Hub-Signature-256 or X-Gitea-Signature header")
	// ErrBadSignature: a signature is present but does not match the body.
	ErrBadSignature = errors.New("signature does not match the body")
)

// Verify checks the request headers' signature of body against secret. It
// returns nil, ErrNoSignature or ErrBadSignature.
func Verify(secret []byte, h http.Header, body []byte) error {
	return VerifyReader(secret, h, bytes.NewReader(body))
}

// VerifyReader is Verify for a body read from r, which it reads only when
// the headers carry a well-formed signature: the body is hashed as it
// streams, never held in memory. An error reading r is returned as is.
func VerifyReader(secret []byte, h http.Header, r io.Reader) error {
	got, err := signature(h)
	if err != nil {
		return err
	}
	if len(secret) == 0 {
		return ErrBadSignature
	}
	mac := hmac.New(sha256.New, secret)
	if _, err := io.Copy(mac, r); err != nil {
		return err
	}
	if !hmac.Equal(got, mac.Sum(nil)) {
		return ErrBadSignature
	}
	return nil
}

// signature decodes the request's signature header.
func signature(h http.Header) ([]byte, error) {
	var sig string
	switch {
	case h.Get("X-Hub-Signature-256") != "":
		v := h.Get("X-Hub-Signature-256")
		hexsig, ok := strings.CutPrefix(v, "sha256=")
		if !ok {
			return nil, fmt.Errorf("%w: X-Hub-Signature-256 lacks the sha256= prefix", ErrBadSignature)
		}
		sig = hexsig
	case h.Get("X-Gitea-Signature") != "":
		sig = h.Get("X-Gitea-Signature")
	default:
		return nil, ErrNoSignature
	}
	got, err := hex.DecodeString(strings.TrimSpace(sig))
	if err != nil {
		return nil, fmt.Errorf("%w: not hex", ErrBadSignature)
	}
	return got, nil
}

// Sign returns the X-Hub-Signature-256 value for body: what a forge sends,
// and what `paf` users can compute with `openssl dgst -sha256 -hmac`.
func Sign(secret, body []byte) string {
	mac := hmac.New(sha256.New, secret)
	mac.Write(body)
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}

// ServeHTTP implements http.Handler.
//
// Status codes: 405 for a method other than POST, 413 for a body above
// MaxBody, 401 when no signature is present, 403 when it does not match,
// 502 when the update fails (the old version keeps being served), 200 with
// Update's message otherwise.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		http.Error(w, "the hook accepts POST only", http.StatusMethodNotAllowed)
		return
	}
	max := h.MaxBody
	if max <= 0 {
		max = DefaultMaxBody
	}
	// The body is read before it can be authenticated: bound the time a
	// client may take to send it, not only its size (the server sets no
	// ReadTimeout, which would cut slow downloads elsewhere).
	http.NewResponseController(w).SetReadDeadline(time.Now().Add(bodyTimeout))
	err := VerifyReader(h.Secret, r.Header, http.MaxBytesReader(w, r.Body, max))
	var tooBig *http.MaxBytesError
	switch {
	case errors.As(err, &tooBig):
		http.Error(w, "hook body too large", http.StatusRequestEntityTooLarge)
		return
	case err != nil && !errors.Is(err, ErrNoSignature) && !errors.Is(err, ErrBadSignature):
		http.Error(w, "reading the hook body failed", http.StatusBadRequest)
		return
	case err != nil:
		h.log(r, "hook refused", err)
		if errors.Is(err, ErrNoSignature) {
			w.Header().Set("WWW-Authenticate", `HMAC realm="paf hook", headers="X-Hub-Signature-256"`)
			http.Error(w, "hook: "+err.Error(), http.StatusUnauthorized)
			return
		}
		http.Error(w, "hook: "+err.Error(), http.StatusForbidden)
		return
	}
	timeout := h.Timeout
	if timeout <= 0 {
		timeout = DefaultTimeout
	}
	// The update outlives a forge that hangs up early: a fetch cut in the
	// middle would only be redone by the next hook or poll.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(r.Context()), timeout)
	defer cancel()
	msg, err := h.Update(ctx)
	if err != nil {
		h.log(r, "hook update failed", err)
		http.Error(w, "hook: update failed: "+err.Error(), http.StatusBadGateway)
		return
	}
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	io.WriteString(w, msg+"\n")
}

func (h *Handler) log(r *http.Request, msg string, err error) {
	if h.Logger == nil {
		return
	}
	h.Logger.LogAttrs(r.Context(), slog.LevelWarn, msg,
		slog.String("remote", r.RemoteAddr), slog.String("error", err.Error()))
}
