package main

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"math/big"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"filippo.io/age"
	"filippo.io/age/armor"

	"github.com/pafhq/paf/internal/pebbletest"
	"github.com/pafhq/paf/internal/testpeer"
)

// clusterPass is the passphrase every instance of the cluster shares.
const clusterPass = "cluster passphrase, shared by all"

// pushDaemon serves the bare repositories under base over git:// with
// pushes enabled, and returns the URL of base and a function stopping the
// daemon (also called in t.Cleanup). git daemon updates refs as git does,
// atomically: a push is refused unless the branch is still at the commit
// the pusher built on, which is the compare-and-swap the cluster's locks
// rely on.
func pushDaemon(t *testing.T, base string) (url string, stop func()) {
	t.Helper()
	addr, stop := testpeer.GitDaemon(t, base, "--enable=receive-pack")
	return "git://" + addr + "/", stop
}

// switchRelay listens on the port where Pebble validates one challenge
// type and relays each connection to the instance the test points it at.
// While it points nowhere, connections wait (parked) instead of being
// refused, so that a validation arriving before the test has chosen an
// instance is relayed once it has, and the test can see that Pebble is
// validating.
type switchRelay struct {
	ln net.Listener

	mu      sync.Mutex
	target  string
	changed chan struct{} // closed and replaced when target changes
	parked  map[net.Conn]bool
	conns   map[net.Conn]bool
	closed  bool
	wg      sync.WaitGroup
}

func newSwitchRelay(t *testing.T, port int) *switchRelay {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(port))
	if err != nil {
		t.Fatal(err)
	}
	r := &switchRelay{ln: ln, changed: make(chan struct{}), parked: map[net.Conn]bool{}, conns: map[net.Conn]bool{}}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			r.mu.Lock()
			if r.closed {
				r.mu.Unlock()
				c.Close()
				return
			}
			r.conns[c] = true
			r.wg.Add(1)
			r.mu.Unlock()
			go func() {
				defer r.wg.Done()
				r.relay(c)
			}()
		}
	}()
	t.Cleanup(func() {
		r.mu.Lock()
		r.closed = true
		ln.Close()
		for c := range r.conns {
			c.Close()
		}
		close(r.changed)
		r.changed = make(chan struct{})
		r.mu.Unlock()
		r.wg.Wait()
	})
	return r
}

// relay waits for a target, then copies between c and it.
func (r *switchRelay) relay(c net.Conn) {
	defer func() {
		c.Close()
		r.mu.Lock()
		delete(r.conns, c)
		delete(r.parked, c)
		r.mu.Unlock()
	}()
	var target string
	for {
		r.mu.Lock()
		if r.closed {
			r.mu.Unlock()
			return
		}
		if r.target != "" {
			target = r.target
			delete(r.parked, c)
			r.mu.Unlock()
			break
		}
		r.parked[c] = true
		ch := r.changed
		r.mu.Unlock()
		<-ch
		r.mu.Lock()
		dropped := !r.conns[c]
		r.mu.Unlock()
		if dropped {
			return
		}
	}
	u, err := net.DialTimeout("tcp", target, 10*time.Second)
	if err != nil {
		return
	}
	defer u.Close()
	done := make(chan struct{}, 2)
	go func() { io.Copy(u, c); u.(*net.TCPConn).CloseWrite(); done <- struct{}{} }()
	go func() { io.Copy(c, u); c.(*net.TCPConn).CloseWrite(); done <- struct{}{} }()
	<-done
	<-done
}

// point relays new and parked connections to addr; "" parks them.
func (r *switchRelay) point(addr string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.target = addr
	close(r.changed)
	r.changed = make(chan struct{})
}

// drop closes the parked connections: the validations they carry fail.
func (r *switchRelay) drop() {
	r.mu.Lock()
	defer r.mu.Unlock()
	for c := range r.parked {
		delete(r.conns, c)
		delete(r.parked, c)
		c.Close()
	}
	close(r.changed)
	r.changed = make(chan struct{})
}

// nparked counts the connections waiting for a target.
func (r *switchRelay) nparked() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.parked)
}

// challengeRelays are the HTTP-01 and TLS-ALPN-01 relays, switched
// together: whichever challenge CertMagic picks, the instance the test
// chose answers it.
type challengeRelays struct{ http, tls *switchRelay }

// answerBy points both relays at p's listeners; nil parks.
func (cr challengeRelays) answerBy(p *proc) {
	if p == nil {
		cr.http.point("")
		cr.tls.point("")
		return
	}
	cr.http.point(p.addr("http"))
	cr.tls.point(p.addr("https"))
}

func (cr challengeRelays) nparked() int { return cr.http.nparked() + cr.tls.nparked() }
func (cr challengeRelays) drop()        { cr.http.drop(); cr.tls.drop() }

// waitFor polls cond every 100ms until it holds, failing the test with
// what (and extra, evaluated then) after bound.
func waitFor(t *testing.T, bound time.Duration, what string, cond func() bool, extra func() string) {
	t.Helper()
	deadline := time.Now().Add(bound)
	for !cond() {
		if time.Now().After(deadline) {
			msg := ""
			if extra != nil {
				msg = extra()
			}
			t.Fatalf("%s: not within %v\n%s", what, bound, msg)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// bareGit runs git on the bare repository and returns its output.
func bareGit(t *testing.T, bare string, args ...string) (string, error) {
	t.Helper()
	out, err := exec.Command("git", append([]string{"--git-dir", bare}, args...)...).CombinedOutput()
	return string(out), err
}

// lockHolderPid reads the lock file CertMagic's lock name becomes in the
// bare repository's main branch and returns the pid of its holder (the
// Git storage's holder is "HOST pid N #TOKEN").
func lockHolderPid(t *testing.T, bare, lock string) (int, bool) {
	t.Helper()
	out, err := bareGit(t, bare, "show", "refs/heads/main:locks/"+lock+".lock")
	if err != nil {
		return 0, false
	}
	var lf struct{ Holder string }
	if json.Unmarshal([]byte(out), &lf) != nil {
		return 0, false
	}
	f := strings.Fields(lf.Holder)
	for i := 0; i+1 < len(f); i++ {
		if f[i] == "pid" {
			if pid, err := strconv.Atoi(f[i+1]); err == nil {
				return pid, true
			}
		}
	}
	return 0, false
}

// servedSerial handshakes with p for name, verifying against roots.
func servedSerial(p *proc, name string, roots *x509.CertPool) (*big.Int, error) {
	c, err := leafOf(p.addr("https"), name, roots)
	if err != nil {
		return nil, err
	}
	return c.SerialNumber, nil
}

// waitSameCert waits until every instance serves a certificate for name
// that verifies against roots, and returns its serial, failing if they
// serve different ones.
func waitSameCert(t *testing.T, ps []*proc, name string, roots *x509.CertPool, bound time.Duration, logs func() string) *big.Int {
	t.Helper()
	serials := make([]*big.Int, len(ps))
	var lastErr error
	waitFor(t, bound, "every instance serving a verified certificate for "+name, func() bool {
		for i, p := range ps {
			if serials[i] != nil {
				continue
			}
			s, err := servedSerial(p, name, roots)
			if err != nil {
				lastErr = err
				return false
			}
			serials[i] = s
		}
		return true
	}, func() string { return fmt.Sprintf("last error: %v\n%s", lastErr, logs()) })
	for i := range serials {
		if serials[i].Cmp(serials[0]) != 0 {
			t.Fatalf("instances serve different certificates for %s: serials %x", name, serials)
		}
	}
	return serials[0]
}

// TestCluster runs three paf instances sharing one Git remote (a bare
// repository behind git daemon) and one hostname against Pebble:
//
//  1. One instance orders, another answers Pebble's validation (the
//     challenge token goes through the repository), one order reaches
//     Pebble and all three serve the same certificate.
//  2. The instance ordering a second name is killed (SIGKILL) while Pebble
//     validates its order; once its lock's lease expires a survivor orders
//     again, and both survivors serve the result.
//  3. No commit holds a private key in plaintext; each stored key decrypts
//     with the passphrase's keyring, and a paf given another passphrase
//     fails at start without touching the repository.
//  4. With the remote unreachable, an instance without a clone fails with
//     a one-line error, and one with a clone serves what it has.
func TestCluster(t *testing.T) {
	testpeer.Need(t, "git")
	dir := t.TempDir()
	bare := filepath.Join(dir, "repos", "certs.git")
	if out, err := exec.Command("git", "init", "--bare", "-q", "-b", "main", bare).CombinedOutput(); err != nil {
		t.Fatalf("git init: %v\n%s", err, out)
	}
	base, stopDaemon := pushDaemon(t, filepath.Join(dir, "repos"))
	remote := base + "certs.git"

	relays := challengeRelays{
		http: newSwitchRelay(t, pebbletest.FreePort(t)),
		tls:  newSwitchRelay(t, pebbletest.FreePort(t)),
	}
	peb := pebbletest.Start(t, pebbletest.Config{
		HTTPPort: relays.http.ln.Addr().(*net.TCPAddr).Port,
		TLSPort:  relays.tls.ln.Addr().(*net.TCPAddr).Port,
	})
	roots := rootPool(t, peb.IssuerRoot())
	passFile := filepath.Join(dir, "pass")
	if err := os.WriteFile(passFile, []byte(clusterPass+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	dataDirs := []string{filepath.Join(dir, "a"), filepath.Join(dir, "b"), filepath.Join(dir, "c")}
	start := func(data string, names ...string) *proc {
		args := []string{"serve", "--data-dir", data, "--http", "127.0.0.1:0", "--https", "127.0.0.1:0",
			"--poll", "0", "--acme", "--acme-ca", peb.DirectoryURL, "--acme-ca-root", peb.RootFile,
			"--acme-renew-check", "1s", "--certs-remote", remote, "--certs-pass-file", passFile,
			"--certs-lock-lease", "6s"}
		for _, n := range names {
			args = append(args, "--hostname", n)
		}
		return startPaf(t, []string{"PAF_CERTS_PASS="}, args...)
	}
	logsOf := func(ps []*proc) func() string {
		return func() string {
			var b strings.Builder
			for i, p := range ps {
				fmt.Fprintf(&b, "--- instance %d (pid %d):\n%s", i, p.cmd.Process.Pid, p.log())
			}
			return b.String() + "--- pebble:\n" + peb.Log()
		}
	}
	byPid := func(ps []*proc, pid int) *proc {
		for _, p := range ps {
			if p.cmd.Process.Pid == pid {
				return p
			}
		}
		return nil
	}
	servedKeyAuth := func(p *proc, name string) int {
		// Either challenge, answered from the repository.
		return p.countLog("served key authentication", "identifier", name, "distributed", true) +
			p.countLog("served key authentication certificate", "server_name", name, "distributed", true)
	}

	// 1. Three instances, one order, answered by an instance that did
	// not place it. Validations wait in the relays until the test knows
	// who holds the lock.
	relays.answerBy(nil)
	var ps []*proc
	for _, d := range dataDirs {
		ps = append(ps, start(d, "cluster.test"))
	}
	var holderPid int
	waitFor(t, 60*time.Second, "an instance holding the lock for cluster.test", func() bool {
		pid, ok := lockHolderPid(t, bare, "issue_cert_cluster.test")
		holderPid = pid
		return ok && byPid(ps, pid) != nil
	}, logsOf(ps))
	orderer := byPid(ps, holderPid)
	var answerer *proc
	for _, p := range ps {
		if p != orderer {
			answerer = p
			break
		}
	}
	relays.answerBy(answerer)
	clusterSerial := waitSameCert(t, ps, "cluster.test", roots, 90*time.Second, logsOf(ps))
	if n := peb.Orders(); n != 1 {
		t.Errorf("Pebble got %d orders for three instances, want 1", n)
	}
	if n := orderer.countLog("certificate obtained", "name", "cluster.test"); n != 1 {
		t.Errorf("the lock holder logged %d certificates obtained, want 1", n)
	}
	for _, p := range ps {
		if p != orderer && p.countLog("certificate obtained") != 0 {
			t.Errorf("instance pid %d obtained a certificate too", p.cmd.Process.Pid)
		}
	}
	if servedKeyAuth(answerer, "cluster.test") == 0 {
		t.Errorf("the answering instance (pid %d, not the orderer %d) did not log a challenge answered from the repository:\n%s",
			answerer.cmd.Process.Pid, holderPid, answerer.log())
	}
	for _, p := range ps {
		p.stop()
	}

	// 2. Restart the cluster with a second name; kill the instance
	// ordering it while Pebble is validating its order.
	relays.answerBy(nil)
	ordersBefore := peb.Orders()
	ps = nil
	for _, d := range dataDirs {
		ps = append(ps, start(d, "cluster.test", "kill.test"))
	}
	var killed *proc
	waitFor(t, 60*time.Second, "an instance holding the lock for kill.test", func() bool {
		pid, ok := lockHolderPid(t, bare, "issue_cert_kill.test")
		killed = byPid(ps, pid)
		return ok && killed != nil
	}, logsOf(ps))
	// Its order reached Pebble, which is validating it: the holder is
	// mid-order, waiting for the validation.
	waitFor(t, 60*time.Second, "Pebble validating the lock holder's order", func() bool {
		return peb.Orders() == ordersBefore+1 && relays.nparked() > 0
	}, logsOf(ps))
	killedPid := killed.cmd.Process.Pid
	if err := killed.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-killed.done
	relays.drop()
	var survivors []*proc
	for _, p := range ps {
		if p != killed {
			survivors = append(survivors, p)
		}
	}
	// cluster.test was in the repository: no instance ordered it again.
	if n := peb.Orders(); n != ordersBefore+1 {
		t.Errorf("Pebble got %d orders after the restart, want %d (only kill.test's)", n, ordersBefore+1)
	}
	var successor *proc
	waitFor(t, 60*time.Second, "a survivor taking over the lock for kill.test", func() bool {
		pid, ok := lockHolderPid(t, bare, "issue_cert_kill.test")
		successor = byPid(survivors, pid)
		return ok && successor != nil
	}, logsOf(ps))
	for _, p := range survivors {
		if p != successor {
			answerer = p
		}
	}
	// The other survivor answers: it has the killed holder's challenge
	// token in its clone, and must read the successor's instead.
	relays.answerBy(answerer)
	killSerial := waitSameCert(t, survivors, "kill.test", roots, 90*time.Second, logsOf(ps))
	if s := waitSameCert(t, survivors, "cluster.test", roots, 10*time.Second, logsOf(ps)); s.Cmp(clusterSerial) != 0 {
		t.Errorf("after the restart cluster.test is served with serial %x, want %x", s, clusterSerial)
	}
	// Exactly two orders for kill.test: the killed holder's, which the
	// test waited to see reach Pebble before the kill, and its
	// successor's. The successor's first attempt succeeds (no retry,
	// which would add orders), so no more.
	if n := peb.Orders(); n != ordersBefore+2 {
		t.Errorf("Pebble got %d orders for kill.test, want 2 (the killed holder's and its successor's)", n-ordersBefore)
	}
	if n := successor.countLog("storage: took over a stale lock", "lock", "issue_cert_kill.test"); n != 1 {
		t.Errorf("successor logged %d lock takeovers, want 1:\n%s", n, successor.log())
	}
	if servedKeyAuth(answerer, "kill.test") == 0 {
		t.Errorf("the answering survivor (pid %d) did not log a challenge answered from the repository:\n%s",
			answerer.cmd.Process.Pid, answerer.log())
	}
	for _, p := range survivors {
		p.stop()
	}
	t.Logf("killed holder pid %d; successor pid %d; answered by pid %d; Pebble orders %d",
		killedPid, successor.cmd.Process.Pid, answerer.cmd.Process.Pid, peb.Orders())

	// 3. No private key in plaintext in any commit; every stored key
	// decrypts with the keyring the passphrase opens, and fits its
	// certificate.
	history, err := bareGit(t, bare, "log", "-p", "--all")
	if err != nil {
		t.Fatalf("git log: %v\n%s", err, history)
	}
	if strings.Contains(history, "PRIVATE KEY") {
		t.Error("a commit holds a PRIVATE KEY block in plaintext")
	}
	checkStoredKeys(t, bare, []string{"cluster.test", "kill.test"})

	refs := func() string {
		out, err := bareGit(t, bare, "for-each-ref")
		if err != nil {
			t.Fatalf("git for-each-ref: %v\n%s", err, out)
		}
		return out
	}
	before := refs()
	serveArgs := []string{"serve", "--http", "127.0.0.1:0", "--https", "127.0.0.1:0", "--poll", "0",
		"--acme", "--acme-ca", peb.DirectoryURL, "--acme-ca-root", peb.RootFile, "--hostname", "cluster.test",
		"--certs-remote", remote}
	code, _, stderr := runPaf(t, []string{"PAF_CERTS_PASS=not the passphrase"},
		append(serveArgs, "--data-dir", filepath.Join(dir, "wrong"))...)
	if code == 0 || !strings.Contains(stderr, "--certs-pass-file") || !strings.Contains(stderr, "PAF_CERTS_PASS") {
		t.Errorf("wrong passphrase: exit %d, want an error naming --certs-pass-file and PAF_CERTS_PASS:\n%s", code, stderr)
	}
	oneLine(t, stderr)
	t.Logf("wrong passphrase: %s", strings.TrimSpace(stderr))
	if after := refs(); after != before {
		t.Errorf("a paf with a wrong passphrase changed the repository's refs:\n%s\nwas:\n%s", after, before)
	}

	// 4. Remote unreachable.
	stopDaemon()
	code, _, stderr = runPaf(t, []string{"PAF_CERTS_PASS=" + clusterPass},
		append(serveArgs, "--data-dir", filepath.Join(dir, "new"))...)
	if code == 0 || !strings.Contains(stderr, "--certs-remote") || !strings.Contains(stderr, "no usable local clone") {
		t.Errorf("unreachable remote, no clone: exit %d, want an error saying so:\n%s", code, stderr)
	}
	oneLine(t, stderr)
	t.Logf("unreachable remote: %s", strings.TrimSpace(stderr))
	p := startPaf(t, []string{"PAF_CERTS_PASS=" + clusterPass},
		"serve", "--data-dir", survivors[0].cmd.Args[slices.Index(survivors[0].cmd.Args, "--data-dir")+1],
		"--http", "127.0.0.1:0", "--https", "127.0.0.1:0", "--poll", "0",
		"--acme", "--acme-ca", peb.DirectoryURL, "--acme-ca-root", peb.RootFile,
		"--hostname", "cluster.test", "--hostname", "kill.test", "--certs-remote", remote)
	p.waitLog("storage: remote unreachable, serving the local clone", time.Second)
	for name, want := range map[string]*big.Int{"cluster.test": clusterSerial, "kill.test": killSerial} {
		if s := waitSameCert(t, []*proc{p}, name, roots, 30*time.Second, p.log); s.Cmp(want) != 0 {
			t.Errorf("remote down: %s served with serial %x, want %x", name, s, want)
		}
	}
	if n := peb.Orders(); n != ordersBefore+2 {
		t.Errorf("Pebble got %d orders in all, want %d: the instance with the remote down ordered", n, ordersBefore+2)
	}
}

// checkStoredKeys decrypts every .key file of the bare repository's main
// branch with the keyring that clusterPass opens, checks it is a PEM
// private key, and that the certificate of each name fits its key; a
// wrong passphrase does not open the keyring.
func checkStoredKeys(t *testing.T, bare string, names []string) {
	t.Helper()
	show := func(path string) []byte {
		out, err := exec.Command("git", "--git-dir", bare, "show", "refs/heads/main:"+path).Output()
		if err != nil {
			t.Fatalf("git show %s: %v", path, err)
		}
		return out
	}
	keyring := show("paf/keyring.age")
	if _, err := decryptKeyring(keyring, "not the passphrase"); err == nil {
		t.Error("the keyring decrypts with a wrong passphrase")
	}
	id, err := decryptKeyring(keyring, clusterPass)
	if err != nil {
		t.Fatalf("keyring: %v", err)
	}
	ls, err := bareGit(t, bare, "ls-tree", "-r", "--name-only", "refs/heads/main")
	if err != nil {
		t.Fatalf("git ls-tree: %v\n%s", err, ls)
	}
	plain := map[string][]byte{}
	for _, f := range strings.Fields(ls) {
		if !strings.HasSuffix(f, ".key") {
			continue
		}
		b := show(f)
		if !bytes.HasPrefix(b, []byte(armor.Header)) {
			t.Errorf("%s is not an armored age file:\n%.80s", f, b)
			continue
		}
		r, err := age.Decrypt(armor.NewReader(bytes.NewReader(b)), id)
		if err != nil {
			t.Errorf("%s does not decrypt with the keyring: %v", f, err)
			continue
		}
		k, err := io.ReadAll(r)
		if err != nil || !bytes.Contains(k, []byte("PRIVATE KEY")) {
			t.Errorf("%s decrypts to no PEM private key (%v)", f, err)
			continue
		}
		plain[f] = k
	}
	for _, n := range names {
		var crtPath string
		for _, f := range strings.Fields(ls) {
			if strings.HasSuffix(f, "/"+n+"/"+n+".crt") && strings.HasPrefix(f, "certificates/") {
				crtPath = f
			}
		}
		if crtPath == "" {
			t.Errorf("no certificate for %s in the repository:\n%s", n, ls)
			continue
		}
		key := plain[strings.TrimSuffix(crtPath, ".crt")+".key"]
		if _, err := tls.X509KeyPair(show(crtPath), key); err != nil {
			t.Errorf("%s: the decrypted key does not fit the certificate: %v", crtPath, err)
		}
	}
	if len(plain) < len(names)+1 { // the certificates' keys and the account key
		t.Errorf("decrypted %d keys, want at least %d:\n%s", len(plain), len(names)+1, ls)
	}
}

// decryptKeyring opens paf's keyring with pass, as paf does.
func decryptKeyring(b []byte, pass string) (*age.X25519Identity, error) {
	sid, err := age.NewScryptIdentity(pass)
	if err != nil {
		return nil, err
	}
	r, err := age.Decrypt(armor.NewReader(bytes.NewReader(b)), sid)
	if err != nil {
		return nil, err
	}
	ids, err := age.ParseIdentities(r)
	if err != nil {
		return nil, err
	}
	for _, id := range ids {
		if x, ok := id.(*age.X25519Identity); ok {
			return x, nil
		}
	}
	return nil, fmt.Errorf("no X25519 identity in the keyring")
}
