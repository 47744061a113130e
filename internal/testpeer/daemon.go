package testpeer

import (
	"bytes"
	"net"
	"os/exec"
	"strconv"
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
