package storage

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/pafhq/paf/gitsource"
)

// TestCluster: three instances with their own clones on one git daemon
// remote, keyrings created concurrently, see each other's values.
func TestCluster(t *testing.T) {
	r := newRemote(t)
	r.serve(t)
	ctx := testCtx(t)
	var enc [3]*Encrypted
	var wg sync.WaitGroup
	errs := make([]error, 3)
	for i := range enc {
		g := openGit(t, r, fmt.Sprint("inst", i), "", 2*time.Second)
		wg.Add(1)
		go func() {
			defer wg.Done()
			enc[i], errs[i] = encrypt(ctx, g, []byte("cluster pass"), testWorkFactor)
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("Encrypt on instance %d: %v", i, err)
		}
	}
	key := pemKey(t)
	if err := enc[0].Store(ctx, "certificates/ca/a.example/a.example.key", key); err != nil {
		t.Fatal(err)
	}
	if err := enc[1].Store(ctx, "acme/ca/challenge_tokens/a.example.json", []byte(`{"token":"x"}`)); err != nil {
		t.Fatal(err)
	}
	for i := range enc {
		// No Refresh: a miss fetches, as a challenge request would.
		got, err := enc[i].Load(ctx, "certificates/ca/a.example/a.example.key")
		if err != nil || !bytes.Equal(got, key) {
			t.Errorf("instance %d: Load key = %v; want the key instance 0 stored", i, err)
		}
		got, err = enc[i].Load(ctx, "acme/ca/challenge_tokens/a.example.json")
		if err != nil || string(got) != `{"token":"x"}` {
			t.Errorf("instance %d: Load token = %q, %v", i, got, err)
		}
	}
	log := r.log()
	if n := count(log, "add paf/keyring.age"); n != 1 {
		t.Errorf("%d keyring commits, want 1:\n%s", n, strings.Join(log, "\n"))
	}
	if !contains(log, "add certificates/ca/a.example/a.example.key (private key,") {
		t.Errorf("no commit message naming the key:\n%s", strings.Join(log, "\n"))
	}
	if body := r.g.Run(r.bare, "log", "-1", "--format=%an <%ae>%n%s", "main"); !strings.Contains(body, "paf <paf@localhost>") || !strings.Contains(body, "pid "+strconv.Itoa(os.Getpid())) {
		t.Errorf("commit author and body = %q; want paf's identity, host and pid", body)
	}
	if strings.Contains(r.everything(), "PRIVATE KEY") {
		t.Error("the repository holds a plaintext PRIVATE KEY")
	}
}

// TestConcurrentStores: two instances store at once; every rejected push
// is fetched, re-applied and pushed again, so every value lands, each in
// its own commit.
func TestConcurrentStores(t *testing.T) {
	r := newRemote(t)
	r.serve(t)
	ctx := testCtx(t)
	gs := []*Git{openGit(t, r, "a", "", 2*time.Second), openGit(t, r, "b", "", 2*time.Second)}
	const perInstance = 4
	var wg sync.WaitGroup
	for i, g := range gs {
		for j := range perInstance {
			wg.Add(1)
			go func() {
				defer wg.Done()
				k := fmt.Sprintf("certificates/ca/n%d-%d/n%d-%d.crt", i, j, i, j)
				if err := g.Store(ctx, k, []byte(k)); err != nil {
					t.Errorf("Store %s: %v", k, err)
				}
			}()
		}
	}
	wg.Wait()
	log := r.log()
	for i := range gs {
		for j := range perInstance {
			k := fmt.Sprintf("certificates/ca/n%d-%d/n%d-%d.crt", i, j, i, j)
			if !contains(log, "add "+k+" ") {
				t.Errorf("no commit for %s in the remote's history:\n%s", k, strings.Join(log, "\n"))
			}
			for _, g := range gs {
				if err := g.Refresh(ctx); err != nil {
					t.Fatal(err)
				}
				if got, err := g.Load(ctx, k); err != nil || string(got) != k {
					t.Errorf("%s: Load %s = %q, %v", g, k, got, err)
				}
			}
		}
	}
	if len(log) != 2*perInstance {
		t.Errorf("%d commits, want %d:\n%s", len(log), 2*perInstance, strings.Join(log, "\n"))
	}
}

// TestLockExclusive: goroutines on two instances increment a counter
// under the lock; none is lost and no two critical sections overlap.
func TestLockExclusive(t *testing.T) {
	r := newRemote(t)
	r.serve(t)
	ctx := testCtx(t)
	gs := []*Git{openGit(t, r, "a", "", 5*time.Second), openGit(t, r, "b", "", 5*time.Second)}
	const n = 6
	var inside atomic.Int32
	var wg sync.WaitGroup
	for _, g := range gs {
		for range 2 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for range n {
					if err := g.Lock(ctx, "counter"); err != nil {
						t.Errorf("Lock: %v", err)
						return
					}
					if inside.Add(1) != 1 {
						t.Error("two holders inside the critical section")
					}
					v := 0
					if b, err := g.Load(ctx, "counter"); err == nil {
						v, _ = strconv.Atoi(string(b))
					} else if !errors.Is(err, fs.ErrNotExist) {
						t.Errorf("Load: %v", err)
					}
					if err := g.Store(ctx, "counter", []byte(strconv.Itoa(v+1))); err != nil {
						t.Errorf("Store: %v", err)
					}
					inside.Add(-1)
					if err := g.Unlock(ctx, "counter"); err != nil {
						t.Errorf("Unlock: %v", err)
					}
				}
			}()
		}
	}
	wg.Wait()
	if err := gs[0].Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	got, err := gs[0].Load(ctx, "counter")
	if err != nil || string(got) != strconv.Itoa(4*n) {
		t.Errorf("counter = %q, %v; want %d", got, err, 4*n)
	}
	if gs[0].Exists(ctx, lockKey("counter")) {
		t.Error("lock file left after the last Unlock")
	}
}

// TestLockTakeover: a holder that stops renewing (closed without Unlock,
// as if it crashed) loses its lock once the lease has run out, and its
// late Unlock does not remove the new holder's lock.
func TestLockTakeover(t *testing.T) {
	r := newRemote(t)
	r.serve(t)
	ctx := testCtx(t)
	const lease = time.Second
	a := openGit(t, r, "a", "", lease)
	b := openGit(t, r, "b", "", lease)
	c := openGit(t, r, "c", "", lease)
	if err := a.Lock(ctx, "issue_cert_a.example"); err != nil {
		t.Fatal(err)
	}
	// A holder that renews keeps its lock past the lease.
	if err := c.Lock(ctx, "renewed"); err != nil {
		t.Fatal(err)
	}
	a.Close() // crash: no Unlock, no more renewals
	if err := b.Lock(ctx, "issue_cert_a.example"); err != nil {
		t.Fatalf("Lock after the holder crashed: %v", err)
	}
	log := r.log()
	if !contains(log, "take over lock issue_cert_a.example (") {
		t.Errorf("no takeover commit:\n%s", strings.Join(log, "\n"))
	}
	// Waiting for the crashed lock took longer than a lease: c's lock must
	// have been renewed, so b cannot take it.
	if ok, err := b.TryLock(ctx, "renewed"); err != nil || ok {
		t.Errorf("TryLock of a lock its live holder renews = %v, %v; want false", ok, err)
	}
	if !contains(r.log(), "renew lock renewed until") {
		t.Error("no renewal commit")
	}
	if err := c.Unlock(ctx, "renewed"); err != nil {
		t.Fatal(err)
	}
	if err := b.RenewLockLease(ctx, "issue_cert_a.example", time.Hour); err != nil {
		t.Errorf("RenewLockLease by the holder: %v", err)
	}
	if err := c.RenewLockLease(ctx, "issue_cert_a.example", time.Hour); err == nil {
		t.Error("RenewLockLease by a non-holder: no error")
	}
	if err := b.Unlock(ctx, "issue_cert_a.example"); err != nil {
		t.Fatal(err)
	}
}

// TestLockOwnPushAccepted: a lock push that the remote accepted but whose
// answer never came (a timeout) is retried on a head that holds this
// acquisition's own lock file; that is success at once, not another
// holder to wait a lease for. A lock file with another token still is.
func TestLockOwnPushAccepted(t *testing.T) {
	r := newRemote(t)
	r.serve(t)
	ctx := testCtx(t)
	g := openGit(t, r, "a", "", time.Hour)
	if err := g.Store(ctx, "x", []byte("x")); err != nil {
		t.Fatal(err)
	}
	// The remote gets the lock file the lost push carried; the clone
	// does not know of it, as after a push whose answer timed out.
	pushLock := func(name, holder, token string) {
		t.Helper()
		work := t.TempDir()
		r.g.Run(work, "clone", "-q", r.bare, ".")
		now := time.Now()
		b, err := json.Marshal(lockFile{Holder: holder, Token: token, Acquired: now, Expires: now.Add(time.Hour)})
		if err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(work, lockKey(name))
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, b, 0o644); err != nil {
			t.Fatal(err)
		}
		r.g.Run(work, "add", "-A")
		r.g.Run(work, "commit", "-q", "-m", "lock "+name)
		r.g.Run(work, "push", "-q", "origin", "HEAD:main")
	}
	for _, tt := range []struct {
		name   string
		theirs bool // the lock file carries another acquisition's token
		want   bool
	}{
		{"own", false, true},
		{"other", true, false},
	} {
		const token = "our-token"
		pushed := token
		if tt.theirs {
			pushed = "their-token"
		}
		pushLock(tt.name, "a", pushed)
		head := r.head()
		ok, holder, err := g.tryLockToken(ctx, tt.name, token)
		if err != nil || ok != tt.want {
			t.Fatalf("%s: tryLock with the remote holding a lock with token %q = %v, %v; want %v", tt.name, pushed, ok, err, tt.want)
		}
		if !ok && (holder == nil || holder.Token != pushed) {
			t.Errorf("%s: holder = %+v; want the lock with token %q", tt.name, holder, pushed)
		}
		if after := r.head(); after != head {
			t.Errorf("%s: remote head moved from %s to %s; want nothing pushed", tt.name, head, after)
		}
		if ok {
			if err := g.Unlock(ctx, tt.name); err != nil {
				t.Fatal(err)
			}
			if err := g.Refresh(ctx); err != nil {
				t.Fatal(err)
			}
			if g.Exists(ctx, lockKey(tt.name)) {
				t.Errorf("%s: lock file left after Unlock", tt.name)
			}
		}
	}
}

// TestWrongPassphrase: a passphrase that does not open the keyring fails
// Encrypt with ErrWrongPassphrase and leaves the remote untouched.
func TestWrongPassphrase(t *testing.T) {
	r := newRemote(t)
	r.serve(t)
	ctx := testCtx(t)
	e, err := encrypt(ctx, openGit(t, r, "a", "", 2*time.Second), []byte("right"), testWorkFactor)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Store(ctx, "acme/ca/users/me/me.key", pemKey(t)); err != nil {
		t.Fatal(err)
	}
	before := r.head()
	_, err = Encrypt(ctx, openGit(t, r, "b", "", 2*time.Second), []byte("wrong"))
	if !errors.Is(err, ErrWrongPassphrase) || !strings.Contains(err.Error(), "PAF_CERTS_PASS") {
		t.Fatalf("Encrypt with a wrong passphrase: %v; want ErrWrongPassphrase naming the option", err)
	}
	if after := r.head(); after != before {
		t.Errorf("remote head moved from %s to %s", before, after)
	}
	if _, err := Encrypt(ctx, openGit(t, r, "c", "", 2*time.Second), []byte("")); err == nil {
		t.Error("Encrypt with an empty passphrase: no error")
	}
}

// TestCorrupt: values damaged in the repository are errors naming the key,
// never a panic or a silently replaced key.
func TestCorrupt(t *testing.T) {
	r := newRemote(t)
	r.serve(t)
	ctx := testCtx(t)
	g := openGit(t, r, "a", "", 2*time.Second)
	e, err := encrypt(ctx, g, []byte("pass"), testWorkFactor)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Store(ctx, "certificates/ca/a/a.key", pemKey(t)); err != nil {
		t.Fatal(err)
	}
	// Damage files with the git CLI, as a person or a bug might.
	work := t.TempDir()
	r.g.Run(work, "clone", "-q", r.bare, ".")
	enc, err := os.ReadFile(filepath.Join(work, "certificates/ca/a/a.key"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(string(enc), "\n")
	lines[2] = strings.Repeat("A", len(lines[2])) // inside the armored body
	files := map[string]string{
		"certificates/ca/a/a.key":         strings.Join(lines, "\n"),
		"certificates/ca/b/b.key":         "not a key at all\n",
		"certificates/ca/c/c.key":         "-----BEGIN AGE ENCRYPTED FILE-----\ngarbage\n-----END AGE ENCRYPTED FILE-----\n",
		"certificates/ca/d/d.crt":         "still served as is",
		"acme/ca/users/x/x.json":          `{"ok":true}`,
		"certificates/ca/e/e.key.garbage": "-",
	}
	for name, content := range files {
		os.MkdirAll(filepath.Dir(filepath.Join(work, name)), 0o755)
		if err := os.WriteFile(filepath.Join(work, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	r.g.Run(work, "add", "-A")
	r.g.Run(work, "commit", "-q", "-m", "damage")
	r.g.Run(work, "push", "-q", "origin", "HEAD:main")
	if err := g.Refresh(ctx); err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"certificates/ca/a/a.key", "certificates/ca/b/b.key", "certificates/ca/c/c.key"} {
		_, err := e.Load(ctx, k)
		if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), k) {
			t.Errorf("Load %s: %v; want ErrCorrupt naming the key", k, err)
		}
	}
	if got, err := e.Load(ctx, "certificates/ca/d/d.crt"); err != nil || string(got) != "still served as is" {
		t.Errorf("Load of an intact certificate = %q, %v", got, err)
	}
	// A fresh instance opens the damaged repository fine.
	if _, err := encrypt(ctx, openGit(t, r, "b", "", 2*time.Second), []byte("pass"), testWorkFactor); err != nil {
		t.Errorf("Encrypt on a repository with damaged values: %v", err)
	}
	// A damaged keyring is ErrCorrupt, not a wrong passphrase.
	if err := os.WriteFile(filepath.Join(work, KeyringKey), []byte("-----BEGIN AGE ENCRYPTED FILE-----\nAAAA\n-----END AGE ENCRYPTED FILE-----\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	r.g.Run(work, "commit", "-q", "-am", "damage keyring")
	r.g.Run(work, "push", "-q", "origin", "HEAD:main")
	_, err = encrypt(ctx, openGit(t, r, "c", "", 2*time.Second), []byte("pass"), testWorkFactor)
	if !errors.Is(err, ErrCorrupt) || errors.Is(err, ErrWrongPassphrase) {
		t.Errorf("Encrypt with a damaged keyring: %v; want ErrCorrupt", err)
	}
}

// TestRemoteDown: with the remote unreachable, an instance with a clone
// serves it; one without a clone fails clearly; writes fail without
// changing what reads see.
func TestRemoteDown(t *testing.T) {
	r := newRemote(t)
	r.serve(t)
	ctx := testCtx(t)
	dir := t.TempDir()
	g := openGit(t, r, "a", dir, 2*time.Second)
	e, err := encrypt(ctx, g, []byte("pass"), testWorkFactor)
	if err != nil {
		t.Fatal(err)
	}
	key := pemKey(t)
	if err := e.Store(ctx, "certificates/ca/a/a.key", key); err != nil {
		t.Fatal(err)
	}
	if err := e.Store(ctx, "certificates/ca/a/a.crt", []byte("cert")); err != nil {
		t.Fatal(err)
	}
	g.Close()
	r.stop()

	g2 := openGit(t, r, "a-restarted", dir, 2*time.Second)
	e2, err := encrypt(ctx, g2, []byte("pass"), testWorkFactor)
	if err != nil {
		t.Fatalf("Encrypt on the cached clone: %v", err)
	}
	if got, err := e2.Load(ctx, "certificates/ca/a/a.key"); err != nil || !bytes.Equal(got, key) {
		t.Errorf("Load from the cached clone: %v", err)
	}
	head := g2.Head()
	if err := e2.Store(ctx, "certificates/ca/a/a.crt", []byte("new cert")); err == nil {
		t.Error("Store with the remote down: no error")
	}
	if got, _ := e2.Load(ctx, "certificates/ca/a/a.crt"); string(got) != "cert" || g2.Head() != head {
		t.Errorf("after a failed Store: value %q, head %s (was %s); want both unchanged", got, g2.Head(), head)
	}
	if _, err := e2.Load(ctx, "certificates/ca/zz/zz.crt"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("Load missing with the remote down: %v", err)
	}

	_, err = tryOpenGit(t, r, "fresh", "", 2*time.Second)
	if err == nil || !strings.Contains(err.Error(), "no usable local clone") {
		t.Errorf("OpenGit with no clone and the remote down: %v", err)
	}
}

// TestBranchCreated: an empty remote, or one without the named branch,
// gets the branch at the first write, and other branches are untouched.
func TestBranchCreated(t *testing.T) {
	r := newRemote(t)
	r.serve(t)
	ctx := testCtx(t)
	dir := t.TempDir() // one Dir for both: each remote#branch has its clone
	for _, tt := range []struct {
		branch, key string
	}{
		{"", "on-main.json"}, // empty remote: HEAD's branch, main
		{"certs", "on-certs.json"},
	} {
		url := r.url
		if tt.branch != "" {
			url += "#" + tt.branch
		}
		g, err := OpenGit(ctx, GitConfig{Remote: mustRemote(t, url), Dir: dir, Logger: testLogger(t, tt.key)})
		if err != nil {
			t.Fatal(err)
		}
		if err := g.Store(ctx, tt.key, []byte("{}")); err != nil {
			t.Fatal(err)
		}
		g.Close()
	}
	if out := r.g.Run(r.bare, "show", "main:on-main.json"); out != "{}" {
		t.Errorf("branch main holds %q", out)
	}
	if out := r.g.Run(r.bare, "ls-tree", "--name-only", "certs"); out != "on-certs.json" {
		t.Errorf("branch certs holds %q, want only on-certs.json", out)
	}
}

func mustRemote(t *testing.T, s string) gitsource.Remote {
	t.Helper()
	rem, err := gitsource.ParseRemote(s)
	if err != nil {
		t.Fatal(err)
	}
	return rem
}

func count(lines []string, prefix string) int {
	n := 0
	for _, l := range lines {
		if strings.HasPrefix(l, prefix) {
			n++
		}
	}
	return n
}

func contains(lines []string, prefix string) bool { return count(lines, prefix) > 0 }

// TestBackgroundRefresh: an instance picks up another's update of a key
// it already has, without a read miss, through the periodic fetch.
func TestBackgroundRefresh(t *testing.T) {
	r := newRemote(t)
	r.serve(t)
	ctx := testCtx(t)
	a := openGit(t, r, "a", "", 2*time.Second)
	if err := a.Store(ctx, "k.json", []byte("1")); err != nil {
		t.Fatal(err)
	}
	b, err := OpenGit(ctx, GitConfig{Remote: mustRemote(t, r.url), Dir: t.TempDir(), FetchInterval: 100 * time.Millisecond, Logger: testLogger(t, "b")})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	if err := a.Store(ctx, "k.json", []byte("2")); err != nil {
		t.Fatal(err)
	}
	for i := 0; ; i++ {
		got, err := b.Load(ctx, "k.json")
		if err != nil {
			t.Fatal(err)
		}
		if string(got) == "2" {
			break
		}
		if i == 600 {
			t.Fatalf("after 600 polls, b still reads %q", got)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestBrokenClone: a local clone damaged on disk is set aside and cloned
// again from the remote.
func TestBrokenClone(t *testing.T) {
	r := newRemote(t)
	r.serve(t)
	ctx := testCtx(t)
	dir := t.TempDir()
	a := openGit(t, r, "a", dir, 2*time.Second)
	if err := a.Store(ctx, "k.json", []byte("kept")); err != nil {
		t.Fatal(err)
	}
	a.Close()
	clones, _ := filepath.Glob(filepath.Join(dir, "*", "objects"))
	if len(clones) != 1 {
		t.Fatalf("clones in %s: %q", dir, clones)
	}
	if err := os.RemoveAll(clones[0]); err != nil {
		t.Fatal(err)
	}
	b := openGit(t, r, "b", dir, 2*time.Second)
	if got, err := b.Load(ctx, "k.json"); err != nil || string(got) != "kept" {
		t.Errorf("Load after recloning = %q, %v", got, err)
	}
	if left, _ := filepath.Glob(filepath.Join(dir, "*.broken-*")); len(left) > 0 {
		t.Errorf("broken clone left behind: %q", left)
	}
}

// TestChallengeTokenFresh: an instance whose clone holds an old challenge
// token (left by a holder that crashed mid-order) reads the new one
// another instance just pushed, without waiting for a background fetch;
// other keys are read from the clone as it is.
func TestChallengeTokenFresh(t *testing.T) {
	r := newRemote(t)
	r.serve(t)
	ctx := testCtx(t)
	a := openGit(t, r, "a", "", 2*time.Second)
	b := openGit(t, r, "b", "", 2*time.Second)
	const token = "acme/ca/challenge_tokens/a.example.json"
	for _, kv := range [][2]string{{token, "old"}, {"other.json", "old"}} {
		if err := a.Store(ctx, kv[0], []byte(kv[1])); err != nil {
			t.Fatal(err)
		}
	}
	for _, k := range []string{token, "other.json"} {
		if got, err := b.Load(ctx, k); err != nil || string(got) != "old" {
			t.Fatalf("b: Load %s = %q, %v; want old", k, got, err)
		}
	}
	for _, k := range []string{token, "other.json"} {
		if err := a.Store(ctx, k, []byte("new")); err != nil {
			t.Fatal(err)
		}
	}
	// A plain hit is served from the clone (its background fetch is 30s
	// away), the token is fetched.
	if got, err := b.Load(ctx, "other.json"); err != nil || string(got) != "old" {
		t.Errorf("b: Load other.json = %q, %v; want the clone's old value", got, err)
	}
	if got, err := b.Load(ctx, token); err != nil || string(got) != "new" {
		t.Errorf("b: Load %s = %q, %v; want the token a just pushed", token, got, err)
	}
}
