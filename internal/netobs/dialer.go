package netobs

import (
	"context"
	"crypto/tls"
	"fmt"
	"net"
	"net/netip"
	rtrace "runtime/trace"
	"strconv"
	"time"
)

// defaultResolver serves Dialers without a Resolver of their own.
var defaultResolver = &Resolver{}

// Dialer opens TCP connections to upstreams: it resolves the host through its Resolver and
// races the addresses (happy eyeballs, RFC 8305). The zero value is ready to use. When the
// context carries a Recorder (every request through a Transport does), the lookup and the
// connect are recorded in it, failures included — httptrace has no hook for a failed dial.
type Dialer struct {
	// Resolver resolves host names. Nil means a package-wide Resolver on the system backend.
	Resolver *Resolver
	// Timeout bounds the whole connect phase (all addresses). Zero means 10 seconds.
	Timeout time.Duration
	// FallbackDelay is how long an attempt may run before the next address is tried in
	// parallel. Zero means 250 milliseconds (RFC 8305's recommendation).
	FallbackDelay time.Duration
	// KeepAlive is the TCP keep-alive period. Zero means the net package default.
	KeepAlive time.Duration
}

// DialContext connects to addr ("host:port") over network ("tcp", "tcp4", "tcp6"). Failures
// are *Error with class dns_*, tcp_refused, tcp_timeout, tcp_reset or tcp_unreachable.
func (d *Dialer) DialContext(ctx context.Context, network, addr string) (net.Conn, error) {
	rec := RecorderFrom(ctx)
	host, portStr, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, &Error{Class: ClassOther, Phase: PhaseConnect, Err: err}
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil {
		return nil, &Error{Class: ClassOther, Phase: PhaseConnect, Err: fmt.Errorf("bad port in %q: %w", addr, err)}
	}
	res := d.Resolver
	if res == nil {
		res = defaultResolver
	}
	region := rtrace.StartRegion(ctx, string(PhaseDNS)) // a region of the request's task, for go tool trace
	l, err := res.LookupIP(ctx, host)
	region.End()
	if rec != nil {
		rec.DNSDone(l, err)
	}
	if err != nil {
		return nil, &Error{Class: ClassOf(err), Phase: PhaseDNS, Err: err}
	}
	addrs := filterFamily(l.Addrs, network)
	if len(addrs) == 0 {
		return nil, &Error{Class: ClassDNSOther, Phase: PhaseDNS, Err: fmt.Errorf("%s has no %s address", host, network)}
	}

	start := time.Now()
	cctx, cancel := context.WithTimeoutCause(ctx, durOr(d.Timeout, 10*time.Second), errConnectTimeout)
	defer cancel()
	region = rtrace.StartRegion(ctx, string(PhaseConnect))
	c, attempts, err := d.race(cctx, network, addrs, uint16(port))
	region.End()
	if err != nil {
		rtrace.Log(ctx, string(PhaseConnect), "failed: "+err.Error()) // the region stands for no connection
		if context.Cause(cctx) == errConnectTimeout && ctx.Err() == nil {
			err = &Error{Class: ClassTCPTimeout, Phase: PhaseConnect, Err: fmt.Errorf("%w: %w", errConnectTimeout, err)}
		} else {
			err = &Error{Class: ClassOf(err), Phase: PhaseConnect, Err: err}
		}
	}
	if rec != nil {
		remote := ""
		if c != nil {
			remote = c.RemoteAddr().String()
		}
		rec.ConnectDone(remote, attempts, time.Since(start), err)
	}
	if err != nil {
		return nil, err
	}
	return &dialedConn{Conn: c, remote: c.RemoteAddr().String()}, nil
}

// dialedConn is a connection the Dialer opened. It keeps its remote address as a string,
// so that recording every request on a reused connection formats nothing.
type dialedConn struct {
	net.Conn
	remote string
}

// remoteString returns the remote address of c ("ip:port"), without formatting it anew
// when c is (or wraps) a connection of the Dialer.
func remoteString(c net.Conn) string {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	if ac, ok := c.(*alertConn); ok {
		c = ac.Conn
	}
	if dc, ok := c.(*dialedConn); ok {
		return dc.remote
	}
	return c.RemoteAddr().String()
}

func filterFamily(addrs []netip.Addr, network string) []netip.Addr {
	switch network {
	case "tcp4":
		var out []netip.Addr
		for _, a := range addrs {
			if a.Is4() {
				out = append(out, a)
			}
		}
		return out
	case "tcp6":
		var out []netip.Addr
		for _, a := range addrs {
			if a.Is6() {
				out = append(out, a)
			}
		}
		return out
	}
	return interleave(addrs)
}

// interleave orders addresses alternating families, starting with the first one's family
// (RFC 8305 section 4).
func interleave(addrs []netip.Addr) []netip.Addr {
	if len(addrs) < 2 {
		return addrs
	}
	var a, b []netip.Addr
	first := addrs[0].Is6()
	for _, x := range addrs {
		if x.Is6() == first {
			a = append(a, x)
		} else {
			b = append(b, x)
		}
	}
	out := make([]netip.Addr, 0, len(addrs))
	for i := 0; i < len(a) || i < len(b); i++ {
		if i < len(a) {
			out = append(out, a[i])
		}
		if i < len(b) {
			out = append(out, b[i])
		}
	}
	return out
}

type dialResult struct {
	c   net.Conn
	err error
}

// race starts a connection attempt to each address in turn, the next one when the previous
// failed or FallbackDelay passed, and returns the first that connects; the others are
// cancelled and closed. It returns the number of attempts started.
func (d *Dialer) race(ctx context.Context, network string, addrs []netip.Addr, port uint16) (net.Conn, int, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	nd := net.Dialer{KeepAlive: d.KeepAlive}
	results := make(chan dialResult, len(addrs)) // buffered: losers never block
	next, inflight := 0, 0
	startNext := func() {
		a := addrs[next]
		next++
		inflight++
		go func() {
			c, err := nd.DialContext(ctx, network, netip.AddrPortFrom(a, port).String())
			results <- dialResult{c, err}
		}()
	}
	delay := durOr(d.FallbackDelay, 250*time.Millisecond)
	startNext()
	var timer *time.Timer
	var timerC <-chan time.Time
	if len(addrs) > 1 {
		timer = time.NewTimer(delay)
		defer timer.Stop()
		timerC = timer.C
	}
	var firstErr error
	for inflight > 0 {
		select {
		case r := <-results:
			inflight--
			if r.err == nil {
				if inflight > 0 {
					go closeLosers(results, inflight)
				}
				return r.c, next, nil
			}
			if firstErr == nil {
				firstErr = r.err
			}
			if next < len(addrs) {
				startNext()
				timer.Reset(delay)
			}
		case <-timerC:
			if next < len(addrs) {
				startNext()
				timer.Reset(delay)
			}
		}
	}
	return nil, next, firstErr
}

// closeLosers waits for the n attempts still running after a winner (the deferred cancel
// stops them) and closes any that connected anyway.
func closeLosers(results <-chan dialResult, n int) {
	for range n {
		if r := <-results; r.c != nil {
			r.c.Close()
		}
	}
}
