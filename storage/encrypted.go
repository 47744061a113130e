package storage

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"strings"
	"time"

	"filippo.io/age"
	"filippo.io/age/armor"
	"github.com/caddyserver/certmagic"
)

// KeyringKey is where Encrypted keeps its keyring in the inner storage: an
// age X25519 identity, encrypted with the passphrase (scrypt). Encrypted
// refuses to overwrite or delete it.
const KeyringKey = "paf/keyring.age"

// keyringLock serializes keyring creation across a cluster, so that two
// instances starting at once on an empty storage agree on one keyring.
const keyringLock = "paf_keyring"

// scryptWorkFactor is age's default: scrypt with N=2^18, about a second
// and 256 MiB, paid once per start.
const scryptWorkFactor = 18

// Encrypted is a certmagic.Storage that encrypts private keys before they
// reach the storage it wraps. Values that are private keys (keys ending in
// ".key", and any value containing "PRIVATE KEY" as a safety net) are
// stored as armored age files encrypted to the keyring's X25519 recipient;
// so is a value that itself looks like an age file, so that Load, which
// decrypts whatever looks like one, returns exactly what Store was given.
// Everything else (certificates, metadata) is stored as is, so that it
// stays readable without the passphrase. Its methods are safe for
// concurrent use when the inner storage's are.
type Encrypted struct {
	inner     certmagic.Storage
	identity  *age.X25519Identity
	recipient *age.X25519Recipient
}

var (
	_ certmagic.Storage          = (*Encrypted)(nil)
	_ certmagic.TryLocker        = (*Encrypted)(nil)
	_ certmagic.LockLeaseRenewer = (*Encrypted)(nil)
)

// Encrypt opens the keyring in inner with passphrase, creating it (under
// inner's lock) when inner has none, and returns the encrypting storage.
// A passphrase that does not open an existing keyring is an error wrapping
// ErrWrongPassphrase, returned before anything is written. Opening costs
// one scrypt derivation (about a second).
func Encrypt(ctx context.Context, inner certmagic.Storage, passphrase []byte) (*Encrypted, error) {
	return encrypt(ctx, inner, passphrase, scryptWorkFactor)
}

// encrypt is Encrypt with the scrypt work factor used for a new keyring,
// which tests lower.
func encrypt(ctx context.Context, inner certmagic.Storage, passphrase []byte, logN int) (*Encrypted, error) {
	if inner == nil {
		return nil, errors.New("storage: encrypt: nil inner storage")
	}
	if len(bytes.TrimSpace(passphrase)) == 0 {
		return nil, errors.New("storage: encrypt: empty passphrase")
	}
	id, err := loadKeyring(ctx, inner, passphrase)
	if errors.Is(err, fs.ErrNotExist) {
		id, err = createKeyring(ctx, inner, passphrase, logN)
	}
	if err != nil {
		return nil, err
	}
	return &Encrypted{inner: inner, identity: id, recipient: id.Recipient()}, nil
}

// loadKeyring reads and decrypts the keyring; an error wrapping
// fs.ErrNotExist means there is none yet.
func loadKeyring(ctx context.Context, inner certmagic.Storage, passphrase []byte) (*age.X25519Identity, error) {
	b, err := inner.Load(ctx, KeyringKey)
	if err != nil {
		return nil, fmt.Errorf("storage: load keyring %s: %w", KeyringKey, err)
	}
	sid, err := age.NewScryptIdentity(string(passphrase))
	if err != nil {
		return nil, fmt.Errorf("storage: keyring: %w", err)
	}
	r, err := age.Decrypt(armor.NewReader(bytes.NewReader(b)), sid)
	if err != nil {
		var nim *age.NoIdentityMatchError
		if errors.As(err, &nim) || errors.Is(err, age.ErrIncorrectIdentity) {
			return nil, fmt.Errorf("storage: keyring %s in %v: %w: the passphrase (--certs-pass-file or PAF_CERTS_PASS) does not decrypt it; nothing was changed", KeyringKey, inner, ErrWrongPassphrase)
		}
		return nil, fmt.Errorf("storage: keyring %s in %v: %w: %v", KeyringKey, inner, ErrCorrupt, err)
	}
	plain, err := io.ReadAll(io.LimitReader(r, 64<<10))
	if err != nil {
		return nil, fmt.Errorf("storage: keyring %s in %v: %w: %v", KeyringKey, inner, ErrCorrupt, err)
	}
	ids, err := age.ParseIdentities(bytes.NewReader(plain))
	if err != nil {
		return nil, fmt.Errorf("storage: keyring %s in %v: %w: %v", KeyringKey, inner, ErrCorrupt, err)
	}
	for _, id := range ids {
		if x, ok := id.(*age.X25519Identity); ok {
			return x, nil
		}
	}
	return nil, fmt.Errorf("storage: keyring %s in %v: %w: no X25519 identity in it", KeyringKey, inner, ErrCorrupt)
}

// createKeyring makes a new identity and stores it encrypted with the
// passphrase, unless another instance did so while this one waited for
// the lock.
func createKeyring(ctx context.Context, inner certmagic.Storage, passphrase []byte, logN int) (*age.X25519Identity, error) {
	if err := inner.Lock(ctx, keyringLock); err != nil {
		return nil, fmt.Errorf("storage: create keyring: %w", err)
	}
	defer inner.Unlock(context.WithoutCancel(ctx), keyringLock)
	id, err := loadKeyring(ctx, inner, passphrase)
	if !errors.Is(err, fs.ErrNotExist) {
		return id, err
	}
	id, err = age.GenerateX25519Identity()
	if err != nil {
		return nil, fmt.Errorf("storage: create keyring: %w", err)
	}
	sr, err := age.NewScryptRecipient(string(passphrase))
	if err != nil {
		return nil, fmt.Errorf("storage: create keyring: %w", err)
	}
	sr.SetWorkFactor(logN)
	plain := fmt.Sprintf("# paf certificate keyring, created %s\n# public key: %s\n%s\n",
		time.Now().UTC().Format(time.RFC3339), id.Recipient(), id)
	sealed, err := armorEncrypt(sr, []byte(plain))
	if err != nil {
		return nil, fmt.Errorf("storage: create keyring: encrypt: %w", err)
	}
	if err := inner.Store(ctx, KeyringKey, sealed); err != nil {
		return nil, fmt.Errorf("storage: create keyring: %w", err)
	}
	return id, nil
}

// Unwrap returns the storage Encrypted writes to, for callers that report
// where certificates are kept.
func (e *Encrypted) Unwrap() certmagic.Storage { return e.inner }

// String names the inner storage.
func (e *Encrypted) String() string { return "encrypted " + e.where() }

// where names the inner storage for messages: its String when it has one
// (paf's storages name their directory or remote, with credentials
// redacted), its type otherwise, never a struct dump that could carry
// credentials.
func (e *Encrypted) where() string {
	if s, ok := e.inner.(fmt.Stringer); ok {
		return s.String()
	}
	return fmt.Sprintf("%T", e.inner)
}

// secret reports whether a value must be encrypted: CertMagic names
// private keys *.key, and a PEM private key anywhere else is caught by
// its block type.
func secret(key string, value []byte) bool {
	return strings.HasSuffix(key, ".key") || bytes.Contains(value, []byte("PRIVATE KEY"))
}

// isAge reports whether a stored value is an age file, armored or binary.
func isAge(b []byte) bool {
	t := bytes.TrimLeft(b, " \t\r\n")
	return bytes.HasPrefix(t, []byte(armor.Header)) || bytes.HasPrefix(b, []byte("age-encryption.org/"))
}

func reserved(key string) bool {
	return key == "" || key == "paf" || key == KeyringKey
}

// Store implements certmagic.Storage, encrypting private keys, and any
// value that looks like an age file: Load would otherwise try to decrypt
// it, so the round trip would not be exact.
func (e *Encrypted) Store(ctx context.Context, key string, value []byte) error {
	if reserved(key) {
		return fmt.Errorf("storage: store %q: reserved for the keyring", key)
	}
	if !secret(key, value) && !isAge(value) {
		return e.inner.Store(ctx, key, value)
	}
	sealed, err := armorEncrypt(e.recipient, value)
	if err != nil {
		return fmt.Errorf("storage: store %s: encrypt: %w", key, err)
	}
	return e.inner.Store(ctx, key, sealed)
}

// armorEncrypt encrypts plain to r as an ASCII-armored age file, text
// that Git diffs and stores like any other.
func armorEncrypt(r age.Recipient, plain []byte) ([]byte, error) {
	var buf bytes.Buffer
	aw := armor.NewWriter(&buf)
	w, err := age.Encrypt(aw, r)
	if err == nil {
		_, err = w.Write(plain)
	}
	if err == nil {
		err = w.Close()
	}
	if err == nil {
		err = aw.Close()
	}
	return buf.Bytes(), err
}

// Load implements certmagic.Storage, decrypting what Store encrypted. A
// value that does not decrypt, or a plaintext value Store would have
// encrypted (a *.key, or anything containing "PRIVATE KEY"), is an error
// wrapping ErrCorrupt and naming the key: a private key in clear in the
// storage was not written by paf, and is not used. The keyring itself is
// returned as stored.
func (e *Encrypted) Load(ctx context.Context, key string) ([]byte, error) {
	b, err := e.inner.Load(ctx, key)
	if err != nil {
		return nil, err
	}
	if key == KeyringKey {
		// Encrypted with the passphrase, not the keyring: returned as is.
		return b, nil
	}
	if !isAge(b) {
		if secret(key, b) {
			return nil, fmt.Errorf("storage: load %s from %s: %w: private key is not encrypted (written by something other than paf?); remove it or add it again with paf", key, e.where(), ErrCorrupt)
		}
		return b, nil
	}
	var src io.Reader = bytes.NewReader(b)
	if !bytes.HasPrefix(b, []byte("age-encryption.org/")) {
		src = armor.NewReader(bytes.NewReader(bytes.TrimLeft(b, " \t\r\n")))
	}
	r, err := age.Decrypt(src, e.identity)
	if err == nil {
		var plain []byte
		plain, err = io.ReadAll(io.LimitReader(r, maxValue+1))
		if err == nil && len(plain) > maxValue {
			err = fmt.Errorf("more than %d bytes", maxValue)
		}
		if err == nil {
			return plain, nil
		}
	}
	return nil, fmt.Errorf("storage: load %s from %s: %w: cannot decrypt (damaged, or encrypted with another keyring): %v", key, e.where(), ErrCorrupt, err)
}

// Delete implements certmagic.Storage.
func (e *Encrypted) Delete(ctx context.Context, key string) error {
	if reserved(key) {
		return fmt.Errorf("storage: delete %q: reserved for the keyring", key)
	}
	return e.inner.Delete(ctx, key)
}

// Exists implements certmagic.Storage.
func (e *Encrypted) Exists(ctx context.Context, key string) bool { return e.inner.Exists(ctx, key) }

// List implements certmagic.Storage. The keyring is listed like any key.
func (e *Encrypted) List(ctx context.Context, path string, recursive bool) ([]string, error) {
	return e.inner.List(ctx, path, recursive)
}

// Stat implements certmagic.Storage. Size is the stored (for private
// keys, encrypted) size.
func (e *Encrypted) Stat(ctx context.Context, key string) (certmagic.KeyInfo, error) {
	return e.inner.Stat(ctx, key)
}

// Lock implements certmagic.Locker with the inner storage's lock.
func (e *Encrypted) Lock(ctx context.Context, name string) error { return e.inner.Lock(ctx, name) }

// Unlock implements certmagic.Locker with the inner storage's lock.
func (e *Encrypted) Unlock(ctx context.Context, name string) error {
	return e.inner.Unlock(ctx, name)
}

// TryLock implements certmagic.TryLocker when the inner storage does; on
// one that does not it returns an error.
func (e *Encrypted) TryLock(ctx context.Context, name string) (bool, error) {
	tl, ok := e.inner.(certmagic.TryLocker)
	if !ok {
		return false, fmt.Errorf("storage: trylock %s: %T does not support TryLock", name, e.inner)
	}
	return tl.TryLock(ctx, name)
}

// RenewLockLease implements certmagic.LockLeaseRenewer when the inner
// storage does; otherwise it does nothing, as CertMagic does for a storage
// without it.
func (e *Encrypted) RenewLockLease(ctx context.Context, lockKey string, leaseDuration time.Duration) error {
	if r, ok := e.inner.(certmagic.LockLeaseRenewer); ok {
		return r.RenewLockLease(ctx, lockKey, leaseDuration)
	}
	return nil
}
