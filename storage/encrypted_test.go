package storage

import (
	"bufio"
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"filippo.io/age/armor"
	"github.com/caddyserver/certmagic"
)

// TestEncryptDefaults: the keyring Encrypt makes uses age's scrypt
// recipient at work factor 18; the same passphrase opens it again and
// decrypts what the first instance stored; a wrong one changes no file.
func TestEncryptDefaults(t *testing.T) {
	if raceEnabled {
		t.Skip("scrypt at its real cost takes minutes under the race detector")
	}
	ctx := testCtx(t)
	dir := t.TempDir()
	fs := &certmagic.FileStorage{Path: dir}
	e1, err := Encrypt(ctx, fs, []byte("passphrase\n"))
	if err != nil {
		t.Fatal(err)
	}
	ring, err := os.ReadFile(filepath.Join(dir, KeyringKey))
	if err != nil {
		t.Fatal(err)
	}
	hdr, _ := bufio.NewReader(armor.NewReader(bytes.NewReader(ring))).ReadString('\n')
	hdr2, _ := bufio.NewReader(armor.NewReader(bytes.NewReader(ring))).ReadString(0)
	if !strings.HasPrefix(hdr, "age-encryption.org/v1") || !strings.Contains(hdr2, "-> scrypt ") || !strings.Contains(hdr2, " 18\n") {
		t.Errorf("keyring header = %q; want an age scrypt stanza with work factor 18", hdr2)
	}
	key := pemKey(t)
	if err := e1.Store(ctx, "acme/ca/users/me/me.key", key); err != nil {
		t.Fatal(err)
	}
	e2, err := Encrypt(ctx, fs, []byte("passphrase\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := e2.Load(ctx, "acme/ca/users/me/me.key"); err != nil || !bytes.Equal(got, key) {
		t.Errorf("Load by a second Encrypt: %v", err)
	}
	before := dumpDir(t, dir)
	if _, err := Encrypt(ctx, fs, []byte("passphrase")); !errors.Is(err, ErrWrongPassphrase) {
		t.Errorf("Encrypt with a wrong passphrase: %v", err)
	}
	if dumpDir(t, dir) != before {
		t.Error("a wrong passphrase changed the storage")
	}
}

// TestEncryptedReserved: the keyring cannot be overwritten or deleted
// through Encrypted.
func TestEncryptedReserved(t *testing.T) {
	ctx := testCtx(t)
	e, err := encrypt(ctx, &certmagic.FileStorage{Path: t.TempDir()}, []byte("p"), testWorkFactor)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{KeyringKey, "paf"} {
		if err := e.Store(ctx, k, []byte("x")); err == nil {
			t.Errorf("Store %s: no error", k)
		}
		if err := e.Delete(ctx, k); err == nil {
			t.Errorf("Delete %s: no error", k)
		}
	}
	if !e.Exists(ctx, KeyringKey) {
		t.Error("keyring gone")
	}
}

func TestSecret(t *testing.T) {
	for _, tt := range []struct {
		key   string
		value string
		want  bool
	}{
		{"certificates/ca/a/a.key", "anything", true},
		{"acme/ca/users/me/me.key", "", true},
		{"certificates/ca/a/a.crt", "-----BEGIN CERTIFICATE-----", false},
		{"certificates/ca/a/a.json", `{"pem":"-----BEGIN EC PRIVATE KEY-----"}`, true},
		{"x", "-----BEGIN PRIVATE KEY-----", true},
		{"certificates/ca/a/a.keyring", "x", false},
	} {
		if got := secret(tt.key, []byte(tt.value)); got != tt.want {
			t.Errorf("secret(%q, %q) = %v, want %v", tt.key, tt.value, got, tt.want)
		}
	}
}

func TestCheckKey(t *testing.T) {
	for _, tt := range []struct {
		key string
		ok  bool
	}{
		{"a", true},
		{"certificates/acme-v02.api.letsencrypt.org-directory/a.example/a.example.crt", true},
		{"", false},
		{"/a", false},
		{"a/", false},
		{"a//b", false},
		{"a/../b", false},
		{"./a", false},
		{".git/config", false},
		{"a/.GIT/b", false},
		{"a\x00b", false},
		{strings.Repeat("a", 2000), false},
	} {
		if err := checkKey(tt.key); (err == nil) != tt.ok {
			t.Errorf("checkKey(%q) = %v, want ok=%v", tt.key, err, tt.ok)
		}
	}
}

// TestLockKey: any lock name maps to one file directly under locks/.
func TestLockKey(t *testing.T) {
	for _, name := range []string{"issue_cert_a.example", "a/b", "..", "x y%", "ari_ABC.def"} {
		k := lockKey(name)
		if err := checkKey(k); err != nil || strings.Count(k, "/") != 1 || !strings.HasPrefix(k, "locks/") {
			t.Errorf("lockKey(%q) = %q (%v)", name, k, err)
		}
	}
	if lockKey("a/b") == lockKey("a_b") {
		t.Error("distinct names share a lock file")
	}
}

// TestEncryptedRoundTrip: whatever Store is given, Load returns exactly,
// including plain values that look like age files; values Store would
// encrypt are never left in clear in the inner storage.
func TestEncryptedRoundTrip(t *testing.T) {
	ctx := testCtx(t)
	dir := t.TempDir()
	e, err := encrypt(ctx, &certmagic.FileStorage{Path: dir}, []byte("p"), testWorkFactor)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		key, value string
		clear      bool // stored as is
	}{
		{"certificates/ca/a/a.crt", "-----BEGIN CERTIFICATE-----\nx\n", true},
		{"certificates/ca/a/a.json", `{"sans":["a"]}`, true},
		{"certificates/ca/a/a.key", "anything", false},
		{"certificates/ca/a/b.json", `{"pem":"-----BEGIN EC PRIVATE KEY-----"}`, false},
		{"notes/binary", "age-encryption.org/v1\n-> not really\n", false},
		{"notes/armored", "-----BEGIN AGE ENCRYPTED FILE-----\nnot really\n-----END AGE ENCRYPTED FILE-----\n", false},
		{"notes/indented", "\n  -----BEGIN AGE ENCRYPTED FILE-----\n", false},
		{"notes/empty", "", true},
	} {
		if err := e.Store(ctx, tt.key, []byte(tt.value)); err != nil {
			t.Fatalf("Store %s: %v", tt.key, err)
		}
		got, err := e.Load(ctx, tt.key)
		if err != nil || string(got) != tt.value {
			t.Errorf("Load %s = %q, %v; want %q", tt.key, got, err, tt.value)
		}
		raw, err := os.ReadFile(filepath.Join(dir, tt.key))
		if err != nil {
			t.Fatal(err)
		}
		if (string(raw) == tt.value) != tt.clear {
			t.Errorf("%s stored as %q; want clear=%v", tt.key, raw, tt.clear)
		}
	}
}

// TestEncryptedPlainSecret: a private key found in clear, under any key
// name, is refused with ErrCorrupt naming the key, not handed to CertMagic.
func TestEncryptedPlainSecret(t *testing.T) {
	ctx := testCtx(t)
	fs := &certmagic.FileStorage{Path: t.TempDir()}
	e, err := encrypt(ctx, fs, []byte("p"), testWorkFactor)
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct{ key, value string }{
		{"certificates/ca/a/a.key", "not encrypted"},
		{"certificates/ca/a/a.json", `{"pem":"-----BEGIN EC PRIVATE KEY-----"}`},
		{"somewhere/else", string(pemKey(t))},
	} {
		if err := fs.Store(ctx, tt.key, []byte(tt.value)); err != nil {
			t.Fatal(err)
		}
		_, err := e.Load(ctx, tt.key)
		if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), tt.key) {
			t.Errorf("Load of a plaintext secret %s: %v; want ErrCorrupt naming the key", tt.key, err)
		}
	}
}
