package netobs

import (
	"context"
	"fmt"
	"sync"
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
// ClassConnCap. As with idleWatch, one goroutine per Transport checks the list each tick,
// and runs only while the list is not empty; the list is linked through the waiters, so
// listing and unlisting allocate nothing.
type connWatch struct {
	limit   time.Duration // the longest wait: the connect timeout
	tick    time.Duration // check period: limit/8, at least 5ms
	maxConn int           // the cap, for the error message

	now atomic.Int64 // ticks counted so far; waiters stamp their GetConn with it

	mu      sync.Mutex
	head    *connWaiter // guarded by mu; the waiters, linked by connWaiter.next and prev
	running bool        // guarded by mu; a loop goroutine is running
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

	since      atomic.Int64 // the watch's tick when the wait began
	listed     atomic.Bool  // on the watch's list; set and cleared under the watch's lock
	next, prev *connWaiter  // the watch's list; guarded by its lock
}

func newConnWatch(limit time.Duration, maxConn int) *connWatch {
	return &connWatch{limit: limit, tick: max(limit/8, 5*time.Millisecond), maxConn: maxConn}
}

// getConn is the GetConn hook: the request starts waiting for a connection. A retry of the
// request on another connection starts a new wait.
func (w *connWaiter) getConn(string) {
	cw := w.watch
	w.since.Store(cw.now.Load())
	cw.mu.Lock()
	if !w.listed.Load() {
		w.next, w.prev = cw.head, nil
		if cw.head != nil {
			cw.head.prev = w
		}
		cw.head = w
		w.listed.Store(true)
	}
	start := !cw.running
	cw.running = true
	cw.mu.Unlock()
	if start {
		go cw.loop()
	}
}

// done ends the wait: the request has a connection, a dial started for it, or it ended.
// It may be called more than once.
func (w *connWaiter) done() {
	if !w.listed.Load() {
		return
	}
	cw := w.watch
	cw.mu.Lock()
	cw.unlink(w)
	cw.mu.Unlock()
}

// unlink takes w off the list if it is on it. cw.mu must be held.
func (cw *connWatch) unlink(w *connWaiter) {
	if !w.listed.Load() {
		return
	}
	if w.prev != nil {
		w.prev.next = w.next
	} else {
		cw.head = w.next
	}
	if w.next != nil {
		w.next.prev = w.prev
	}
	w.next, w.prev = nil, nil
	w.listed.Store(false)
}

// waiting returns how many requests wait for a connection now, by upstream.
func (cw *connWatch) waiting(into map[string]int) {
	cw.mu.Lock()
	defer cw.mu.Unlock()
	for w := cw.head; w != nil; w = w.next {
		into[w.upstream]++
	}
}

func (cw *connWatch) loop() {
	t := time.NewTicker(cw.tick)
	defer t.Stop()
	// A request is cut once it has waited more than limit whole ticks: between limit and
	// limit plus one tick after its GetConn.
	limit := int64((cw.limit + cw.tick - 1) / cw.tick)
	var expired []*connWaiter
	for range t.C {
		now := cw.now.Add(1)
		cw.mu.Lock()
		for w := cw.head; w != nil; {
			next := w.next
			if now-w.since.Load() > limit {
				cw.unlink(w)
				expired = append(expired, w)
			}
			w = next
		}
		stop := cw.head == nil
		if stop {
			cw.running = false
		}
		cw.mu.Unlock()
		for i, w := range expired {
			w.cancel(cw.capError(w.host))
			expired[i] = nil
		}
		expired = expired[:0]
		if stop {
			return
		}
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
