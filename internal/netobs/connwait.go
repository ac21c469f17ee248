package netobs

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"
)

// A Transport with MaxConnsPerHost set lets net/http cap the connections to each host
// (http.Transport.MaxConnsPerHost). A request that finds the cap reached and no idle
// connection waits in net/http's queue until a connection of that host goes idle or
// closes, or until the request's context ends: net/http puts no timeout on that wait, and
// none of the phase timeouts covers it (the connect and TLS timeouts start with a dial,
// the first-byte timeout once the request is written). The connWatch bounds it: the wait
// for a connection counts against the connect timeout.
//
// Every request of a capped Transport runs under a cancellable context of its own, and is
// on the watch's list from net/http's GetConn until it has a connection (GotConn) or a
// dial starts for it (from then on the DNS, connect and TLS timeouts bound it). A request
// still on the list after the connect timeout is cancelled with an *Error of class
// ClassConnCap. The list is a tickWatch, as idleWatch's is: its timer is set only while
// some request waits, and the done that empties the list stops it, so between requests
// nothing of the watch runs or is pending.
type connWatch struct {
	tickWatch[connWaiter] // its limit is the longest wait: the connect timeout

	maxConn int // the cap, for the error message
}

// connWaiter is a request of a capped Transport: its cancel function, and its place on
// the watch's list while it waits for a connection.
type connWaiter struct {
	watch *connWatch
	// ctx is the request's own context, under the caller's, which cancel cancels; the
	// exchange's context answers as ctx while on is set (see exchangeContext).
	ctx      context.Context
	cancel   context.CancelCauseFunc
	on       atomic.Bool
	upstream string // the Sample's upstream (or host), for the gauge
	host     string // host:port, for the error

	tickEntry[connWaiter] // on the watch's list while waiting; stamped at GetConn
}

func newConnWatch(limit time.Duration, maxConn int) *connWatch {
	cw := &connWatch{maxConn: maxConn}
	cw.init(limit, func(w *connWaiter) { w.cancel(cw.capError(w.host)) })
	return cw
}

// getConn is the GetConn hook: the request starts waiting for a connection. A retry of the
// request on another connection starts a new wait.
func (w *connWaiter) getConn(string) { w.watch.list(w, &w.tickEntry) }

// done ends the wait: the request has a connection, a dial started for it, or it ended.
// It may be called more than once.
func (w *connWaiter) done() { w.watch.unlist(&w.tickEntry) }

// waiting returns how many requests wait for a connection now, by upstream.
func (cw *connWatch) waiting(into map[string]int) {
	cw.mu.Lock()
	defer cw.mu.Unlock()
	for e := cw.head; e != nil; e = e.next {
		into[e.self.Load().upstream]++
	}
}

// capError is the failure of a request that waited the whole connect timeout for a
// connection to host.
func (cw *connWatch) capError(host string) error {
	return &Error{Class: ClassConnCap, Phase: PhaseConnect, Err: fmt.Errorf(
		"%s: %w: no connection free within %v (all %d in use)", host, ErrConnCap, cw.limit, cw.maxConn)}
}

// waiterFrom returns the connWaiter of the request whose context ctx is (or derives from,
// as net/http's dial context does), or nil.
func waiterFrom(ctx context.Context) *connWaiter {
	if rec := RecorderFrom(ctx); rec != nil {
		return rec.waiter
	}
	return nil
}

// dialStarts ends the connection wait of the request a dial under ctx is for: from now on
// the dial's own timeouts bound it.
func dialStarts(ctx context.Context) {
	if w := waiterFrom(ctx); w != nil {
		w.done()
	}
}
