package testpeer

import (
	"bytes"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// StartDaemon starts a peer server (git daemon, sshd, ...) in its own
// process group, killed as a group when the test ends, and waits until addr
// accepts connections. It returns a function that stops it earlier, for
// tests that take the peer down on purpose; calling it twice is harmless.
func StartDaemon(t testing.TB, addr string, name string, args ...string) (stop func()) {
	t.Helper()
	cmd := exec.Command(name, args...)
	var out SyncBuffer
	cmd.Stderr = &out
	cmd.Stdout = &out
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
			<-exited
		})
	}
	t.Cleanup(stop)
	for i := 0; ; i++ {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return stop
		}
		select {
		case <-exited:
			t.Fatalf("%s exited: %s", name, out.String())
		case <-time.After(50 * time.Millisecond):
		}
		if i == 200 {
			t.Fatalf("%s not accepting on %s: %v\n%s", name, addr, err, out.String())
		}
	}
}

// SyncBuffer is a bytes.Buffer safe for concurrent writes and reads: a
// peer process's output, or a logger's written by background goroutines.
type SyncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

// Write appends p.
func (s *SyncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// String returns what was written so far.
func (s *SyncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// GitDaemon serves the repositories under base over git:// on a free
// loopback port, through StartDaemon (so that the children it forks per
// connection end with it), with extra options (--enable=receive-pack for
// pushes) before base. It returns the address, host:port, and StartDaemon's
// stop function.
func GitDaemon(t testing.TB, base string, extra ...string) (addr string, stop func()) {
	t.Helper()
	bin := Need(t, "git-daemon")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	args := []string{"--reuseaddr", "--export-all", "--base-path=" + base,
		"--listen=127.0.0.1", "--port=" + strconv.Itoa(port)}
	args = append(append(args, extra...), base)
	addr = net.JoinHostPort("127.0.0.1", strconv.Itoa(port))
	return addr, StartDaemon(t, addr, bin, args...)
}

// Git runs the git binary for tests, isolated from the machine's
// configuration (a HOME of its own, an empty global configuration file
// rather than /dev/null, which another process on a shared machine may
// have damaged, no system configuration) and with a fixed identity.
type Git struct {
	T    testing.TB
	Bin  string
	Home string
}

// NewGit finds git (through Need) and makes its HOME.
func NewGit(t testing.TB) *Git {
	t.Helper()
	g := &Git{T: t, Bin: Need(t, "git"), Home: t.TempDir()}
	if err := os.WriteFile(filepath.Join(g.Home, "gitconfig"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	return g
}

// Env is the environment git runs with.
func (g *Git) Env() []string {
	return append(os.Environ(),
		"HOME="+g.Home, "GIT_CONFIG_NOSYSTEM=1", "GIT_CONFIG_GLOBAL="+filepath.Join(g.Home, "gitconfig"),
		"GIT_AUTHOR_NAME=Test", "GIT_AUTHOR_EMAIL=test@example.org",
		"GIT_COMMITTER_NAME=Test", "GIT_COMMITTER_EMAIL=test@example.org",
		"GIT_TERMINAL_PROMPT=0")
}

// Run runs git in dir and returns its trimmed standard output, failing the
// test with git's error output on failure.
func (g *Git) Run(dir string, args ...string) string {
	g.T.Helper()
	cmd := exec.Command(g.Bin, args...)
	cmd.Dir = dir
	cmd.Env = g.Env()
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		g.T.Fatalf("git %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return strings.TrimSpace(string(out))
}
