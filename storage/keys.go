// Package storage keeps paf's TLS material (ACME accounts, certificates,
// private keys, challenge tokens, locks) behind CertMagic's Storage
// interface, in two layers that compose:
//
//   - Encrypted wraps any certmagic.Storage so that private keys reach it
//     only as age ciphertext, under an X25519 keyring that is itself
//     encrypted with the passphrase through scrypt (memory-hard KDF,
//     ChaCha20-Poly1305 AEAD).
//   - Git keeps the keys as files in a Git branch shared by a cluster:
//     reads come from a local clone kept fresh, every write is a commit
//     pushed with compare-and-swap semantics, and locks are committed
//     files with an expiry their holder renews.
//
// paf uses Encrypted(Git) for --certs-remote and Encrypted(FileStorage) for
// --certs.
package storage

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// maxValue bounds one stored value. CertMagic's values are a few KiB (a
// certificate chain, a key, a JSON document); the bound keeps a stray large
// file committed into the repository from being held in memory.
const maxValue = 8 << 20

// Errors matched with errors.Is.
var (
	// ErrWrongPassphrase means the passphrase does not decrypt the
	// keyring already in the storage. Nothing was written.
	ErrWrongPassphrase = errors.New("wrong passphrase")
	// ErrCorrupt means a stored value cannot be used as it is: an
	// encrypted value that does not decrypt, a private key stored in
	// plaintext, a file too large. The error names the key; paf never
	// replaces such a value on its own.
	ErrCorrupt = errors.New("corrupt value")
	// ErrClosed is returned by a Git storage used after Close.
	ErrClosed = errors.New("storage closed")
)

// checkKey enforces CertMagic's key syntax ('/'-separated, no leading or
// trailing slash) and refuses what Git cannot hold or what would escape
// the tree: empty, "." and ".." components, ".git", NUL.
func checkKey(key string) error {
	if key == "" {
		return errors.New("empty key")
	}
	if len(key) > 1024 {
		return fmt.Errorf("key of %d bytes (limit 1024)", len(key))
	}
	if strings.ContainsRune(key, 0) {
		return fmt.Errorf("key %q contains NUL", key)
	}
	for _, c := range strings.Split(key, "/") {
		switch {
		case c == "":
			return fmt.Errorf("key %q has an empty component (leading, trailing or double slash)", key)
		case c == "." || c == "..":
			return fmt.Errorf("key %q has a %q component", key, c)
		case strings.EqualFold(c, ".git"):
			return fmt.Errorf("key %q has a .git component", key)
		}
	}
	return nil
}

// lockKey is the storage key of the lock file for a lock name. Names are
// escaped into a single path component, so any name is safe.
func lockKey(name string) string {
	return "locks/" + url.PathEscape(name) + ".lock"
}

// mustBeFresh reports whether reads of key must see the remote as it is
// now rather than as the clone last fetched it. An ACME challenge token is
// pushed by the instance that ordered a certificate just before the CA
// asks any instance for it; a clone fetched a moment earlier may hold an
// older token for the same name (left by a holder that crashed mid-order),
// and answering with it fails the validation.
func mustBeFresh(key string) bool {
	return strings.Contains(key, "challenge_tokens/")
}

// describe says what a CertMagic key holds, for commit messages: a reader
// of `git log` sees why a file changed without knowing CertMagic's layout.
func describe(key string) string {
	switch {
	case strings.HasPrefix(key, "locks/"):
		return "lock"
	case strings.HasPrefix(key, "paf/keyring"):
		return "encryption keyring"
	case strings.Contains(key, "challenge_tokens/"):
		return "ACME challenge token"
	case strings.HasPrefix(key, "ocsp/"):
		return "OCSP staple"
	case strings.Contains(key, "/users/"):
		return "ACME account"
	case strings.HasSuffix(key, ".crt"):
		return "certificate"
	case strings.HasSuffix(key, ".key"):
		return "private key"
	case strings.HasSuffix(key, ".json"):
		return "metadata"
	}
	return "value"
}
