package stack

import (
	"context"
	"errors"
	"io"
	"net"
	"slices"
	"syscall"
	"testing"
)

func TestHostListenDial(t *testing.T) {
	var s Stack = &Host{}
	ctx := context.Background()
	ln, err := s.Listen(ctx, "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	done := make(chan error, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			done <- err
			return
		}
		defer c.Close()
		_, err = io.Copy(c, c) // echo until the client half-closes
		done <- err
	}()
	c, err := s.Dial(ctx, "tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, "ping"); err != nil {
		t.Fatal(err)
	}
	c.(*net.TCPConn).CloseWrite()
	got, err := io.ReadAll(c)
	if err != nil || string(got) != "ping" {
		t.Errorf("echo %q, %v", got, err)
	}
	if err := <-done; err != nil {
		t.Error(err)
	}
}

func TestHostListenBusy(t *testing.T) {
	h := &Host{}
	ln, err := h.Listen(context.Background(), "tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if l2, err := h.Listen(context.Background(), "tcp", ln.Addr().String()); err == nil {
		l2.Close()
		t.Fatal("second Listen on the same address succeeded")
	} else if !errors.Is(err, syscall.EADDRINUSE) {
		t.Errorf("error %v, want EADDRINUSE", err)
	}
}

func TestHostDialCancelled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	c, err := (&Host{}).Dial(ctx, "tcp", "127.0.0.1:9")
	if err == nil {
		c.Close()
		t.Fatal("Dial with a cancelled context succeeded")
	}
	if !errors.Is(err, context.Canceled) {
		t.Errorf("error %v, want context.Canceled", err)
	}
}

func TestHostLookupLocalhost(t *testing.T) {
	addrs, err := (&Host{}).LookupHost(context.Background(), "localhost")
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(addrs, "127.0.0.1") && !slices.Contains(addrs, "::1") {
		t.Errorf("localhost resolves to %v", addrs)
	}
}
