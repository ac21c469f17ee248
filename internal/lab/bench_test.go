package lab

import (
	"context"
	"fmt"
	"io"
	"net"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// Benchmarks of the link emulator against a baseline measured in the same run: two namespaces
// joined by one veth pair, without the switch. Reproduce with:
//
//	go test -run '^$' -bench . -benchtime 2s ./internal/lab/

// pair is two endpoints: a place to listen and a place to dial from.
type pair struct {
	listen func(network, addr string) (net.Listener, error)
	dial   func(ctx context.Context, network, addr string) (net.Conn, error)
	server string  // the listening side's address
	hosts  []*Host // the lab hosts of the pair, if any
}

// directPair joins two new namespaces of l by a veth pair of their own.
func directPair(b *testing.B, l *Lab) pair {
	b.Helper()
	na, nb := l.name+"-_a", l.name+"-_b"
	ctx := context.Background()
	for _, ns := range []string{na, nb} {
		if err := run(ctx, "", "ip", "netns", "add", ns); err != nil {
			b.Fatal(err)
		}
		l.addCloser(func() error { return deleteNetns(ns) })
		if err := sysctlNetns(ns, noIPv6); err != nil {
			b.Fatal(err)
		}
	}
	if err := run(ctx, "", "ip", "-n", na, "link", "add", "eth0", "type", "veth", "peer", "name", "eth0", "netns", nb); err != nil {
		b.Fatal(err)
	}
	for i, ns := range []string{na, nb} {
		cmds := fmt.Sprintf("addr add 10.213.2.%d/24 dev eth0\nlink set eth0 up\nlink set lo up\n", i+1)
		if err := run(ctx, cmds, "ip", "-n", ns, "-batch", "-"); err != nil {
			b.Fatal(err)
		}
	}
	return pair{
		listen: func(network, addr string) (ln net.Listener, err error) {
			err = inNetns(nb, func() error { ln, err = net.Listen(network, addr); return err })
			return ln, err
		},
		dial: func(ctx context.Context, network, addr string) (c net.Conn, err error) {
			err = inNetns(na, func() error { c, err = (&net.Dialer{}).DialContext(ctx, network, addr); return err })
			return c, err
		},
		server: "10.213.2.2",
	}
}

// switchPair adds two hosts to l with the given link settings each.
func switchPair(b *testing.B, l *Lab, prefix string, link Link) pair {
	b.Helper()
	ha, err := l.AddHost(prefix + "a")
	if err != nil {
		b.Fatal(err)
	}
	hb, err := l.AddHost(prefix + "b")
	if err != nil {
		b.Fatal(err)
	}
	for _, h := range []*Host{ha, hb} {
		if err := h.SetLink(link); err != nil {
			b.Fatal(err)
		}
	}
	return pair{listen: hb.Listen, dial: ha.DialContext, server: hb.Addr().String(), hosts: []*Host{ha, hb}}
}

// BenchmarkLinkRTT measures a one-byte TCP ping-pong: ns/op is the round-trip time.
func BenchmarkLinkRTT(b *testing.B) {
	l := New(b, Options{})
	cases := []struct {
		name string
		p    pair
	}{
		{"veth-direct", directPair(b, l)},
		{"switch-0ms", switchPair(b, l, "z", Link{})},
		{"switch-20ms+20ms", switchPair(b, l, "w", Link{Delay: 20 * time.Millisecond})},
	}
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			ln, err := c.p.listen("tcp", ":7001")
			if err != nil {
				b.Fatal(err)
			}
			defer ln.Close()
			go func() {
				for {
					conn, err := ln.Accept()
					if err != nil {
						return
					}
					go func() { defer conn.Close(); _, _ = io.Copy(conn, conn) }()
				}
			}()
			conn, err := c.p.dial(b.Context(), "tcp", net.JoinHostPort(c.p.server, "7001"))
			if err != nil {
				b.Fatal(err)
			}
			defer conn.Close()
			buf := []byte{1}
			b.ResetTimer()
			for b.Loop() {
				if _, err := conn.Write(buf); err != nil {
					b.Fatal(err)
				}
				if _, err := io.ReadFull(conn, buf); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			// The kernel's smoothed RTT of the connection, and the emulator's lateness: what
			// the wall-clock figure holds besides the test process's own scheduling.
			rc, _ := conn.(*net.TCPConn).SyscallConn()
			_ = rc.Control(func(fd uintptr) {
				if info, err := unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO); err == nil {
					b.ReportMetric(float64(info.Rtt), "kernel-rtt-µs")
				}
			})
			var late time.Duration
			for _, h := range c.p.hosts {
				if st, err := h.Stats(); err == nil {
					late = max(late, st.MeanLate)
				}
			}
			b.ReportMetric(float64(late.Microseconds()), "late-µs")
		})
	}
}

// BenchmarkLinkThroughput measures one TCP stream: MB/s is the goodput.
func BenchmarkLinkThroughput(b *testing.B) {
	l := New(b, Options{})
	cases := []struct {
		name string
		p    pair
	}{
		{"veth-direct", directPair(b, l)},
		{"switch-0ms", switchPair(b, l, "z", Link{})},
		{"switch-0ms-mtu-frames", switchPair(b, New(b, Options{MTUFrames: true}), "m", Link{})},
	}
	chunk := make([]byte, 1<<20)
	for _, c := range cases {
		b.Run(c.name, func(b *testing.B) {
			ln, err := c.p.listen("tcp", ":7002")
			if err != nil {
				b.Fatal(err)
			}
			defer ln.Close()
			got := make(chan int64, 1)
			go func() {
				conn, err := ln.Accept()
				if err != nil {
					got <- -1
					return
				}
				defer conn.Close()
				n, _ := io.Copy(io.Discard, conn)
				got <- n
			}()
			conn, err := c.p.dial(b.Context(), "tcp", net.JoinHostPort(c.p.server, "7002"))
			if err != nil {
				b.Fatal(err)
			}
			b.SetBytes(int64(len(chunk)))
			b.ResetTimer()
			var sent int64
			for b.Loop() {
				n, err := conn.Write(chunk)
				sent += int64(n)
				if err != nil {
					b.Fatal(err)
				}
			}
			_ = conn.(*net.TCPConn).CloseWrite()
			select {
			case n := <-got:
				if n != sent {
					b.Fatalf("received %d of %d bytes", n, sent)
				}
			case <-time.After(30 * time.Second):
				b.Fatal("receiver did not finish")
			}
			b.StopTimer()
			conn.Close()
		})
	}
}

// BenchmarkBringUp measures bringing up a lab of 4 hosts (namespaces, veths, switch ports,
// neighbour entries) with its DNS server on one of them; BenchmarkTearDown closing it.
func BenchmarkBringUp(b *testing.B) {
	Require(b)
	for b.Loop() {
		l := bringUp4(b)
		b.StopTimer()
		if err := l.Close(); err != nil {
			b.Fatal(err)
		}
		b.StartTimer()
	}
}

// BenchmarkTearDown measures closing a lab of 4 hosts with its DNS server.
func BenchmarkTearDown(b *testing.B) {
	Require(b)
	for b.Loop() {
		b.StopTimer()
		l := bringUp4(b)
		b.StartTimer()
		if err := l.Close(); err != nil {
			b.Fatal(err)
		}
	}
}

func bringUp4(b *testing.B) *Lab {
	l, err := Start(Options{DNSHost: "h4"})
	if err != nil {
		b.Fatal(err)
	}
	for _, n := range []string{"h1", "h2", "h3", "h4"} {
		if _, err := l.AddHost(n); err != nil {
			l.Close()
			b.Fatal(err)
		}
	}
	if _, err := l.DNS(); err != nil {
		l.Close()
		b.Fatal(err)
	}
	return l
}
