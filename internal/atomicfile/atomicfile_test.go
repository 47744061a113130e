package atomicfile

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestWrite(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "f")
	if err := Write(p, []byte("one"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := Write(p, []byte("two"), 0o600); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(p)
	fi, _ := os.Stat(p)
	if string(b) != "two" || fi.Mode().Perm() != 0o600 {
		t.Fatalf("content %q mode %v", b, fi.Mode())
	}
	// A failed check leaves the old content and no temporary file.
	bad := errors.New("does not verify")
	if err := WriteFrom(p, strings.NewReader("three"), 0o600, func() error { return bad }); !errors.Is(err, bad) {
		t.Fatalf("err = %v", err)
	}
	b, _ = os.ReadFile(p)
	entries, _ := os.ReadDir(dir)
	if string(b) != "two" || len(entries) != 1 {
		t.Fatalf("after a failed write: %q, %d entries", b, len(entries))
	}
	// A device is never replaced by a regular file.
	if err := Write(os.DevNull, []byte("x"), 0o600); !errors.Is(err, ErrNotRegular) {
		t.Fatalf("writing %s: %v, want ErrNotRegular", os.DevNull, err)
	}
	if fi, err := os.Stat(os.DevNull); err != nil || fi.Mode().IsRegular() {
		t.Fatalf("%s is now %v", os.DevNull, fi.Mode())
	}
	if err := Write(filepath.Join(dir, "missing", "f"), nil, 0o600); err == nil {
		t.Fatal("write into a missing directory succeeded")
	}
}
