package lab

import (
	"context"
	"errors"
	"io"
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

// TestLinkJitterAndRate proves jitter varies the delay within its bounds, and that Rate caps
// what a host sends (tbf) until it is lifted.
func TestLinkJitterAndRate(t *testing.T) {
	l := New(t, Options{})
	client := l.MustAddHost(t, "client")
	server := l.MustAddHost(t, "server")
	ln, err := server.Listen("tcp", ":7000")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	addr := net.JoinHostPort(server.Addr().String(), "7000")

	go acceptAll(ln)
	if err := client.SetLink(Link{Delay: 20 * time.Millisecond, Jitter: 10 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	lo, hi := time.Hour, time.Duration(0)
	for range 15 {
		d, err := connectTime(t.Context(), client, addr)
		if err != nil {
			t.Fatal(err)
		}
		lo, hi = min(lo, d), max(hi, d)
	}
	t.Logf("connect with 20ms ± 10ms one way: %v .. %v", lo, hi)
	if lo < 10*time.Millisecond || hi > 35*time.Millisecond || hi-lo < 3*time.Millisecond {
		t.Errorf("connect times %v..%v, want spread within 10ms..30ms (+5ms slack)", lo, hi)
	}
	if err := client.SetLink(Link{}); err != nil {
		t.Fatal(err)
	}
	ln.Close()

	// Rate: the server sends 1 MiB at 16 Mbit/s (2 MB/s), then again with no cap.
	const size = 1 << 20
	ln2, err := server.Listen("tcp", ":7001")
	if err != nil {
		t.Fatal(err)
	}
	defer ln2.Close()
	go func() {
		for {
			c, err := ln2.Accept()
			if err != nil {
				return
			}
			_, _ = c.Write(make([]byte, size))
			c.Close()
		}
	}()
	fetch := func() float64 {
		t.Helper()
		ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
		defer cancel()
		c, err := client.DialContext(ctx, "tcp", net.JoinHostPort(server.Addr().String(), "7001"))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		_ = c.SetDeadline(time.Now().Add(10 * time.Second))
		start := time.Now()
		n, err := io.Copy(io.Discard, c)
		if err != nil || n != size {
			t.Fatalf("read %d bytes: %v", n, err)
		}
		return float64(n) / time.Since(start).Seconds()
	}
	if err := server.SetLink(Link{Rate: 16_000_000}); err != nil {
		t.Fatal(err)
	}
	capped := fetch()
	if err := server.SetLink(Link{}); err != nil {
		t.Fatal(err)
	}
	free := fetch()
	t.Logf("1 MiB at Rate 16 Mbit/s: %.2f MB/s; uncapped: %.1f MB/s", capped/1e6, free/1e6)
	if capped < 0.6*2e6 || capped > 1.2*2e6 {
		t.Errorf("capped transfer at %.2f MB/s, want about 2 MB/s", capped/1e6)
	}
	if free < 5*capped {
		t.Errorf("uncapped transfer at %.2f MB/s, want far above the cap", free/1e6)
	}
}
