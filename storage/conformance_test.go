package storage

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/caddyserver/certmagic"
)

// backends are the storages the certmagic.Storage contract is checked on.
// Each returns the storage and a function dumping every stored byte.
var backends = []struct {
	name string
	open func(t *testing.T) (certmagic.Storage, func() string)
}{
	{"encrypted-filestorage", func(t *testing.T) (certmagic.Storage, func() string) {
		dir := t.TempDir()
		e, err := encrypt(testCtx(t), &certmagic.FileStorage{Path: dir}, []byte("correct horse"), testWorkFactor)
		if err != nil {
			t.Fatal(err)
		}
		return e, func() string { return dumpDir(t, dir) }
	}},
	{"git-daemon", func(t *testing.T) (certmagic.Storage, func() string) {
		r := newRemote(t)
		r.serve(t)
		return openGit(t, r, "a", "", 2*time.Second), r.everything
	}},
	{"encrypted-git-daemon", func(t *testing.T) (certmagic.Storage, func() string) {
		r := newRemote(t)
		r.serve(t)
		e, err := encrypt(testCtx(t), openGit(t, r, "a", "", 2*time.Second), []byte("correct horse"), testWorkFactor)
		if err != nil {
			t.Fatal(err)
		}
		return e, r.everything
	}},
	{"encrypted-git-file", func(t *testing.T) (certmagic.Storage, func() string) {
		r := newRemote(t)
		e, err := encrypt(testCtx(t), openGit(t, r, "a", "", 2*time.Second), []byte("correct horse"), testWorkFactor)
		if err != nil {
			t.Fatal(err)
		}
		return e, r.everything
	}},
}

func dumpDir(t *testing.T, dir string) string {
	var b strings.Builder
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			data, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			b.Write(data)
		}
		return nil
	})
	return b.String()
}

// TestConformance checks the certmagic.Storage contract, as its doc
// comments state it, on every backend. Keys live under "conf/" so that
// the keyring and lock files of a backend stay out of the way.
func TestConformance(t *testing.T) {
	for _, be := range backends {
		t.Run(be.name, func(t *testing.T) {
			s, dump := be.open(t)
			ctx := testCtx(t)
			key := pemKey(t)
			mustStore := func(k string, v []byte) {
				t.Helper()
				if err := s.Store(ctx, k, v); err != nil {
					t.Fatalf("Store %s: %v", k, err)
				}
			}
			steps := []struct {
				name string
				run  func(t *testing.T)
			}{
				{"missing", func(t *testing.T) {
					if _, err := s.Load(ctx, "conf/nope"); !errors.Is(err, fs.ErrNotExist) {
						t.Errorf("Load missing: %v, want fs.ErrNotExist", err)
					}
					if _, err := s.Stat(ctx, "conf/nope"); !errors.Is(err, fs.ErrNotExist) {
						t.Errorf("Stat missing: %v, want fs.ErrNotExist", err)
					}
					if _, err := s.List(ctx, "conf/nope", true); !errors.Is(err, fs.ErrNotExist) {
						t.Errorf("List missing: %v, want fs.ErrNotExist", err)
					}
					if s.Exists(ctx, "conf/nope") {
						t.Error("Exists missing: true")
					}
					if err := s.Delete(ctx, "conf/nope"); err != nil {
						t.Errorf("Delete missing: %v, want nil", err)
					}
				}},
				{"store-load-overwrite", func(t *testing.T) {
					mustStore("conf/a/one.json", []byte(`{"v":1}`))
					mustStore("conf/a/one.json", []byte(`{"v":2}`))
					got, err := s.Load(ctx, "conf/a/one.json")
					if err != nil || string(got) != `{"v":2}` {
						t.Errorf("Load after overwrite = %q, %v; want the last value", got, err)
					}
				}},
				{"private-key-roundtrip", func(t *testing.T) {
					mustStore("conf/a/site.key", key)
					mustStore("conf/a/pem-in-json", append([]byte(`{"k":"`), key...))
					for k, want := range map[string][]byte{"conf/a/site.key": key, "conf/a/pem-in-json": append([]byte(`{"k":"`), key...)} {
						got, err := s.Load(ctx, k)
						if err != nil || !bytes.Equal(got, want) {
							t.Errorf("Load %s = %q, %v; want what was stored", k, got, err)
						}
					}
				}},
				{"exists-stat", func(t *testing.T) {
					mustStore("conf/b/c/deep.crt", []byte("cert"))
					for _, k := range []string{"conf", "conf/b", "conf/b/c", "conf/b/c/deep.crt"} {
						if !s.Exists(ctx, k) {
							t.Errorf("Exists %s: false", k)
						}
					}
					fi, err := s.Stat(ctx, "conf/b/c/deep.crt")
					if err != nil || fi.Key != "conf/b/c/deep.crt" || !fi.IsTerminal || fi.Size != 4 || fi.Modified.IsZero() {
						t.Errorf("Stat file = %+v, %v", fi, err)
					}
					di, err := s.Stat(ctx, "conf/b")
					if err != nil || di.IsTerminal || di.Key != "conf/b" {
						t.Errorf("Stat directory = %+v, %v", di, err)
					}
				}},
				{"list", func(t *testing.T) {
					got, err := s.List(ctx, "conf", false)
					want := []string{"conf/a", "conf/b"}
					if err != nil || !reflect.DeepEqual(sorted(got), want) {
						t.Errorf("List conf = %q, %v; want %q", got, err, want)
					}
					got, err = s.List(ctx, "conf/b", true)
					want = []string{"conf/b/c", "conf/b/c/deep.crt"}
					if err != nil || !reflect.DeepEqual(sorted(got), want) {
						t.Errorf("List conf/b recursive = %q, %v; want %q", got, err, want)
					}
					got, err = s.List(ctx, "conf/a", false)
					want = []string{"conf/a/one.json", "conf/a/pem-in-json", "conf/a/site.key"}
					if err != nil || !reflect.DeepEqual(sorted(got), want) {
						t.Errorf("List conf/a = %q, %v; want %q", got, err, want)
					}
				}},
				{"delete", func(t *testing.T) {
					if err := s.Delete(ctx, "conf/a/one.json"); err != nil {
						t.Fatal(err)
					}
					if s.Exists(ctx, "conf/a/one.json") {
						t.Error("deleted file still exists")
					}
					if err := s.Delete(ctx, "conf/b"); err != nil {
						t.Fatal(err)
					}
					if _, err := s.Load(ctx, "conf/b/c/deep.crt"); !errors.Is(err, fs.ErrNotExist) {
						t.Errorf("file under deleted directory: %v, want fs.ErrNotExist", err)
					}
					if _, err := s.Load(ctx, "conf/a/site.key"); err != nil {
						t.Errorf("sibling of a deleted file: %v", err)
					}
				}},
				{"locks", func(t *testing.T) {
					if err := s.Lock(ctx, "conf_lock"); err != nil {
						t.Fatal(err)
					}
					ok, err := s.(certmagic.TryLocker).TryLock(ctx, "conf_lock")
					if err != nil || ok {
						t.Errorf("TryLock of a held lock = %v, %v; want false", ok, err)
					}
					if err := s.Unlock(ctx, "conf_lock"); err != nil {
						t.Fatal(err)
					}
					ok, err = s.(certmagic.TryLocker).TryLock(ctx, "conf_lock")
					if err != nil || !ok {
						t.Fatalf("TryLock of a free lock = %v, %v; want true", ok, err)
					}
					if err := s.Unlock(ctx, "conf_lock"); err != nil {
						t.Fatal(err)
					}
				}},
				{"no-plaintext-key", func(t *testing.T) {
					if _, ok := s.(*Git); ok {
						t.Skip("Git alone stores what it is given")
					}
					all := dump()
					if strings.Contains(all, "PRIVATE KEY") {
						t.Error("a stored byte contains PRIVATE KEY")
					}
					if !strings.Contains(all, "BEGIN AGE ENCRYPTED FILE") {
						t.Error("no age file stored: the dump does not see the storage")
					}
				}},
			}
			for _, st := range steps {
				t.Run(st.name, st.run)
			}
		})
	}
}

func sorted(s []string) []string {
	s = append([]string(nil), s...)
	for i := range s {
		for j := i + 1; j < len(s); j++ {
			if s[j] < s[i] {
				s[i], s[j] = s[j], s[i]
			}
		}
	}
	return s
}
