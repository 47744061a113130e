package storage

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"filippo.io/age"
	"github.com/caddyserver/certmagic"
)

// fuzzIdentity is a throwaway age identity, fixed so that the committed
// seeds of FuzzDecrypt (encrypted to it) decrypt and the fuzzer starts
// from valid files. It protects nothing.
const fuzzIdentity = "AGE-SECRET-KEY-1D4U7NPG3D6607EA7CWCC4YCG47MJQFAQM8FFLT59XWF26ECR4YJQZRSS3Y"

// memStorage is a minimal in-memory certmagic.Storage: fuzzing cannot
// afford a file system round trip per input.
type memStorage struct {
	mu sync.Mutex
	m  map[string][]byte
}

var _ certmagic.Storage = (*memStorage)(nil)

func newMemStorage() *memStorage { return &memStorage{m: map[string][]byte{}} }

// String names the storage in errors, as FileStorage's path does, rather
// than letting %v print every value held.
func (s *memStorage) String() string { return "memory storage" }

func (s *memStorage) Lock(ctx context.Context, name string) error   { return nil }
func (s *memStorage) Unlock(ctx context.Context, name string) error { return nil }

func (s *memStorage) Store(ctx context.Context, key string, value []byte) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.m[key] = bytes.Clone(value)
	return nil
}

func (s *memStorage) Load(ctx context.Context, key string) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.m[key]
	if !ok {
		return nil, fs.ErrNotExist
	}
	return bytes.Clone(v), nil
}

func (s *memStorage) Delete(ctx context.Context, key string) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.m[key]; !ok {
		return fs.ErrNotExist
	}
	delete(s.m, key)
	return nil
}

func (s *memStorage) Exists(ctx context.Context, key string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.m[key]
	return ok
}

func (s *memStorage) List(ctx context.Context, path string, recursive bool) ([]string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	var keys []string
	for k := range s.m {
		if strings.HasPrefix(k, path+"/") {
			keys = append(keys, k)
		}
	}
	return keys, nil
}

func (s *memStorage) Stat(ctx context.Context, key string) (certmagic.KeyInfo, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v, ok := s.m[key]
	if !ok {
		return certmagic.KeyInfo{}, fs.ErrNotExist
	}
	return certmagic.KeyInfo{Key: key, Size: int64(len(v)), Modified: time.Unix(0, 0), IsTerminal: true}, nil
}

// fuzzEncrypted returns an Encrypted over a fresh memStorage with the
// fixed fuzzIdentity, built directly: no keyring, no scrypt.
func fuzzEncrypted(tb testing.TB) (*Encrypted, *memStorage) {
	tb.Helper()
	id, err := age.ParseX25519Identity(fuzzIdentity)
	if err != nil {
		tb.Fatal(err)
	}
	mem := newMemStorage()
	return &Encrypted{inner: mem, identity: id, recipient: id.Recipient()}, mem
}

// FuzzDecrypt feeds arbitrary stored bytes to Encrypted.Load, the path
// that decodes (armor, age header, X25519 stanza, payload) what the inner
// storage holds: it never panics, fails only with ErrCorrupt, returns a
// value it did not decrypt only when it is not an age file and not a
// private key (by name or content), and never returns more than the value limit. The same
// bytes stored through Encrypted.Store load back unchanged.
//
// Seeds: the f.Add calls below and testdata/fuzz/FuzzDecrypt (files
// encrypted to fuzzIdentity, armored and binary). Run with
//
//	go test ./storage/ -run '^$' -fuzz '^FuzzDecrypt$' -fuzztime 20s
func FuzzDecrypt(f *testing.F) {
	ctx := context.Background()
	e, mem := fuzzEncrypted(f)
	for _, v := range [][]byte{pemKey(f), []byte("x"), nil} {
		if err := e.Store(ctx, "seed.key", v); err != nil {
			f.Fatal(err)
		}
		armored := mem.m["seed.key"]
		f.Add(armored)
		f.Add(bytes.Replace(armored, []byte("\n"), []byte("\r\n"), -1))
	}
	f.Add([]byte("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n"))
	f.Add([]byte("age-encryption.org/v1\n-> X25519 AAAA\nAAAA\n--- AAAA\n"))
	f.Add([]byte("-----BEGIN AGE ENCRYPTED FILE-----\n-----END AGE ENCRYPTED FILE-----\n"))
	f.Add([]byte("  \n-----BEGIN AGE ENCRYPTED FILE-----\nYWdl\n-----END AGE ENCRYPTED FILE-----\n"))
	f.Fuzz(checkDecrypt)
}

// checkDecrypt is FuzzDecrypt's property for one stored value.
func checkDecrypt(t *testing.T, stored []byte) {
	{
		ctx := context.Background()
		e, mem := fuzzEncrypted(t)
		for _, key := range []string{"certificates/a/a.key", "certificates/a/a.crt"} {
			mem.Store(ctx, key, stored)
			got, err := e.Load(ctx, key)
			if err != nil {
				if !errors.Is(err, ErrCorrupt) {
					t.Fatalf("Load %s: error not wrapping ErrCorrupt: %v", key, err)
				}
				continue
			}
			if len(got) > maxValue {
				t.Fatalf("Load %s: %d bytes, over the %d limit", key, len(got), maxValue)
			}
			if !isAge(stored) {
				if secret(key, stored) {
					t.Fatalf("Load %s: a private key stored in plaintext was returned", key)
				}
				if !bytes.Equal(got, stored) {
					t.Fatalf("Load %s: a plain value changed", key)
				}
			}
		}
		if len(stored) > maxValue {
			return
		}
		// Store encrypts secrets and values that look like age files, so
		// every value round-trips.
		for _, key := range []string{"x.key", "x.crt"} {
			if err := e.Store(ctx, key, stored); err != nil {
				t.Fatalf("Store %s: %v", key, err)
			}
			got, err := e.Load(ctx, key)
			if err != nil || !bytes.Equal(got, stored) {
				t.Fatalf("Store then Load %s: %v; got %d bytes, stored %d", key, err, len(got), len(stored))
			}
		}
	}
}

// TestFuzzDecryptSeeds checks that the committed seeds encrypted to
// fuzzIdentity still decrypt, so that FuzzDecrypt starts from valid files
// and not only from ones Load rejects at once.
func TestFuzzDecryptSeeds(t *testing.T) {
	for name, want := range map[string]string{
		"armored-pem-key": "-----BEGIN EC PRIVATE KEY-----",
		"armored-crlf":    "-----BEGIN EC PRIVATE KEY-----",
		"binary":          "binary age file, not armored",
	} {
		b, err := os.ReadFile(filepath.Join("testdata", "fuzz", "FuzzDecrypt", name))
		if err != nil {
			t.Fatal(err)
		}
		_, lit, ok := strings.Cut(strings.TrimSpace(string(b)), "\n")
		lit, ok2 := strings.CutPrefix(lit, "[]byte(")
		lit, ok3 := strings.CutSuffix(lit, ")")
		stored, err := strconv.Unquote(lit)
		if !ok || !ok2 || !ok3 || err != nil {
			t.Fatalf("%s: not a go test fuzz v1 []byte file: %v", name, err)
		}
		e, mem := fuzzEncrypted(t)
		mem.m["a.key"] = []byte(stored)
		got, err := e.Load(context.Background(), "a.key")
		if err != nil || !strings.HasPrefix(string(got), want) {
			t.Errorf("%s: Load = %.40q, %v; want %q...", name, got, err, want)
		}
	}
}
