package lab

import (
	"context"
	"errors"
	"net"
	"os"
	"slices"
	"testing"
	"time"
)

func TestMain(m *testing.M) { Main(m) }

// acceptAll accepts and closes connections on ln until it is closed.
func acceptAll(ln net.Listener) {
	for {
		c, err := ln.Accept()
		if err != nil {
			return
		}
		c.Close()
	}
}

// connectTime returns how long a TCP connect from h to addr takes.
func connectTime(ctx context.Context, h *Host, addr string) (time.Duration, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	start := time.Now()
	c, err := h.DialContext(ctx, "tcp", addr)
	d := time.Since(start)
	if err != nil {
		return d, err
	}
	c.Close()
	return d, nil
}

func medianConnect(t *testing.T, h *Host, addr string, n int) time.Duration {
	t.Helper()
	var ds []time.Duration
	for range n {
		d, err := connectTime(t.Context(), h, addr)
		if err != nil {
			t.Fatalf("connect %s -> %s: %v", h.Name(), addr, err)
		}
		ds = append(ds, d)
	}
	slices.Sort(ds)
	return ds[len(ds)/2]
}

// TestLinkDelayLossHeal proves the link emulator's figures: 20 ms one-way on two hosts is a
// 40 ms round trip (±15 %) for a TCP connect, 100 % loss makes connects time out, and healing
// the link restores them.
func TestLinkDelayLossHeal(t *testing.T) {
	l := New(t, Options{})
	client := l.MustAddHost(t, "client")
	server := l.MustAddHost(t, "server")
	ln, err := server.Listen("tcp", ":7000")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go acceptAll(ln)
	addr := net.JoinHostPort(server.Addr().String(), "7000")

	base := medianConnect(t, client, addr, 9)
	t.Logf("connect RTT at 0 ms: %v", base)
	if base > 5*time.Millisecond {
		t.Errorf("connect at 0 ms took %v, want well under 5ms", base)
	}

	for _, h := range []*Host{client, server} {
		if err := h.SetLink(Link{Delay: 20 * time.Millisecond}); err != nil {
			t.Fatal(err)
		}
	}
	rtt := medianConnect(t, client, addr, 9)
	t.Logf("connect RTT at 20 ms + 20 ms: %v", rtt)
	if rtt < 34*time.Millisecond || rtt > 46*time.Millisecond {
		t.Errorf("connect RTT %v, want 40ms ±15%%", rtt)
	}

	if err := server.SetLink(Link{Delay: 20 * time.Millisecond, Loss: 1}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 500*time.Millisecond)
	_, err = client.DialContext(ctx, "tcp", addr)
	cancel()
	if err == nil {
		t.Fatal("connect to a blackholed host succeeded")
	}
	if !errors.Is(err, context.DeadlineExceeded) && !os.IsTimeout(err) {
		t.Errorf("connect to a blackholed host: %v, want a timeout", err)
	}

	if err := server.SetLink(Link{}); err != nil {
		t.Fatal(err)
	}
	if err := client.SetLink(Link{}); err != nil {
		t.Fatal(err)
	}
	if d, err := connectTime(t.Context(), client, addr); err != nil {
		t.Errorf("connect after healing: %v", err)
	} else {
		t.Logf("connect after healing: %v", d)
	}
}
