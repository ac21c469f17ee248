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

	"golang.org/x/sys/unix"
)

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
	d, _, err := connectRTT(ctx, h, addr)
	return d, err
}

// connectRTT returns how long a TCP connect from h to addr takes as the test process sees it,
// and the round-trip time the kernel measured for it (SYN to SYN-ACK), which no scheduling
// delay of the test process inflates.
func connectRTT(ctx context.Context, h *Host, addr string) (wall, kernel time.Duration, err error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	start := time.Now()
	c, err := h.DialContext(ctx, "tcp", addr)
	wall = time.Since(start)
	if err != nil {
		return wall, 0, err
	}
	defer c.Close()
	rc, err := c.(*net.TCPConn).SyscallConn()
	if err != nil {
		return wall, 0, err
	}
	var info *unix.TCPInfo
	cerr := rc.Control(func(fd uintptr) { info, err = unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO) })
	if err = errors.Join(cerr, err); err != nil {
		return wall, 0, err
	}
	return wall, time.Duration(info.Rtt) * time.Microsecond, nil
}

// medianConnect returns the medians of n connects' wall-clock and kernel RTTs.
func medianConnect(t *testing.T, h *Host, addr string, n int) (wall, kernel time.Duration) {
	t.Helper()
	var ws, ks []time.Duration
	for range n {
		w, k, err := connectRTT(t.Context(), h, addr)
		if err != nil {
			t.Fatalf("connect %s -> %s: %v", h.Name(), addr, err)
		}
		ws, ks = append(ws, w), append(ks, k)
	}
	slices.Sort(ws)
	slices.Sort(ks)
	return ws[n/2], ks[n/2]
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

	base, baseK := medianConnect(t, client, addr, 9)
	t.Logf("connect at 0 ms: %v (kernel RTT %v)", base, baseK)
	if baseK > 2*time.Millisecond {
		t.Errorf("kernel RTT at 0 ms %v, want well under 2ms", baseK)
	}

	for _, h := range []*Host{client, server} {
		if err := h.SetLink(Link{Delay: 20 * time.Millisecond}); err != nil {
			t.Fatal(err)
		}
	}
	wall, rtt := medianConnect(t, client, addr, 9)
	st, _ := server.Stats()
	t.Logf("connect at 20 ms + 20 ms: %v (kernel RTT %v); server link late by %v mean, %v max",
		wall, rtt, st.MeanLate, st.MaxLate)
	if rtt < 34*time.Millisecond || rtt > 46*time.Millisecond {
		t.Errorf("connect RTT %v, want 40ms ±15%%", rtt)
	}
	if wall < rtt {
		t.Errorf("connect took %v, less than its RTT %v", wall, rtt)
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
	var ds []time.Duration
	for range 15 {
		d, err := connectTime(t.Context(), client, addr)
		if err != nil {
			t.Fatal(err)
		}
		ds = append(ds, d)
		// Let the connection's last frames leave first: frames are never reordered, so a
		// SYN right behind a FIN would wait for it, and the delays would skew high.
		time.Sleep(50 * time.Millisecond)
	}
	slices.Sort(ds)
	t.Logf("connect with 20ms ± 10ms one way: %v", ds)
	// A frame never leaves early, so the minimum is a hard bound; the quartiles and the
	// median are robust to a late timer wake-up on a loaded machine.
	q1, med, q3 := ds[3], ds[7], ds[11]
	if ds[0] < 10*time.Millisecond || med < 15*time.Millisecond || med > 27*time.Millisecond || q3-q1 < 2*time.Millisecond {
		t.Errorf("connect times %v: want minimum >= 10ms, median about 20ms, quartiles spread", ds)
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
