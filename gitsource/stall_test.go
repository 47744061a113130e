package gitsource

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// stallServer accepts connections and never answers, like a remote that
// hangs; its connections are closed when the test ends.
func stallServer(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var conns []net.Conn
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		l.Close()
		<-done
		mu.Lock()
		defer mu.Unlock()
		for _, c := range conns {
			c.Close()
		}
	})
	return l.Addr().String()
}

// TestStalledRemote checks that Fetch and Publish return when their context
// ends even though the remote accepted the connection and went silent.
func TestStalledRemote(t *testing.T) {
	addr := stallServer(t)
	dir := t.TempDir()
	key := filepath.Join(dir, "key")
	testKey(t, key)
	pin := Auth{SSHKey: key, SSHAuthenticator: "SHA256:" + "47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU"}
	for _, tt := range []struct {
		name string
		url  string
		auth Auth
	}{
		{"git", fmt.Sprintf("git://%s/x.git", addr), Auth{}},
		{"http", fmt.Sprintf("http://%s/x.git", addr), Auth{}},
		{"ssh", fmt.Sprintf("ssh://git@%s/x.git", addr), pin},
	} {
		t.Run(tt.name, func(t *testing.T) {
			s := newSource(t, Remote{URL: tt.url}, tt.auth)
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			defer cancel()
			_, err := s.Fetch(ctx)
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("Fetch from a stalled remote: %v, want deadline exceeded", err)
			}
			_, err = Publish(ctx, dir, PublishOptions{Remote: Remote{URL: tt.url}, Auth: tt.auth, AllowEmpty: true})
			if !errors.Is(err, context.DeadlineExceeded) {
				t.Errorf("Publish to a stalled remote: %v, want deadline exceeded", err)
			}
		})
	}
}

// testKey writes a fresh unencrypted ed25519 key for tests that never
// reach authentication.
func testKey(t *testing.T, path string) {
	t.Helper()
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	blk, err := ssh.MarshalPrivateKey(priv, "test")
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, path, string(pem.EncodeToMemory(blk)))
}
