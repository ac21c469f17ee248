package goproxy

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"sync"
	"time"
)

// HedgePolicy decides when WalkHedged sends the same request to a second proxy because the
// first is slow to answer.
type HedgePolicy struct {
	// Delay returns how long to wait for c's first response byte before hedging to the next
	// proxy of its '|' run; false means never hedge away from c. Required.
	Delay func(c *Client) (time.Duration, bool)
	// Allow, when set, is asked when the delay has passed without a first byte from slow: it
	// reports whether the hedge to next may start now (a rate cap lives here). Nil allows
	// every hedge.
	Allow func(slow, next *Client) bool
}

type firstByteKey struct{}

// withFirstByte returns a context whose Client requests call f once the response headers
// of the first request made under it have arrived.
func withFirstByte(ctx context.Context, f func()) context.Context {
	return context.WithValue(ctx, firstByteKey{}, f)
}

// notifyFirstByte tells the walk that owns ctx, if any, that an answer has started.
func notifyFirstByte(ctx context.Context) {
	if f, ok := ctx.Value(firstByteKey{}).(func()); ok {
		f()
	}
}

// WalkHedged is Walk with hedged requests. When the proxy being tried has not sent the first
// byte of its answer (its response headers, as Client.Fetch returns) within hp.Delay, and
// the proxy is followed by '|', try is started on the next proxy of the run as well, without
// cancelling the first. The first attempt to return nil wins; every other attempt's context
// is cancelled, and WalkHedged returns only after all of them have returned.
//
// The GOPROXY semantics are Walk's: a hedge only ever goes to the proxy the walk would try
// next after an error of the current one, never across ',' and never to direct or off; an
// attempt that fails moves the walk on exactly as in Walk; and whether the walk goes past
// the end of a '|' run depends, as in Walk, only on the error of the run's last proxy as the
// list writes it, wherever order put it.
// try must return promptly when its context is cancelled.
func (c *Chain) WalkHedged(ctx context.Context, order func([]*Client) []*Client, hp HedgePolicy, try func(context.Context, *Client) error) error {
	if hp.Delay == nil {
		return c.Walk(ctx, order, try)
	}
	var errs []error
	for _, r := range c.runs(order) {
		h := hedgedRun{group: r.entries, last: r.last, hp: hp, try: try}
		next, runErrs := h.run(ctx)
		errs = append(errs, runErrs...)
		if next == runWon {
			return nil
		}
		if next == runStop {
			return &WalkError{Errs: errs}
		}
	}
	if len(errs) == 0 {
		errs = append(errs, fmt.Errorf("no upstream: %w", fs.ErrNotExist))
	}
	return &WalkError{Errs: errs}
}

// The outcomes of one hedged run.
const (
	runWon      = iota // an attempt succeeded
	runStop            // the walk ends with failure
	runContinue        // the run's last proxy (as written) answered not found: on to the next run
)

// hedgedRun is the state of walking one run of entries joined by '|'.
type hedgedRun struct {
	group []Entry
	last  int // position of the run's last entry as written (run.last)
	hp    HedgePolicy
	try   func(context.Context, *Client) error

	next     int // position of the next entry to start
	frontier int // position of the attempt started last
	running  int
	cancels  []context.CancelFunc
	errs     []error // by position
	results  chan attemptResult
	first    chan int // positions whose first byte arrived
	gotFirst []bool
	timer    *time.Timer
	timerC   <-chan time.Time
}

type attemptResult struct {
	pos int
	err error
}

// run walks the run and returns its outcome and the failures of its attempts in position
// order.
func (h *hedgedRun) run(ctx context.Context) (int, []error) {
	n := len(h.group)
	if n == 1 {
		return h.runOne(ctx)
	}
	h.cancels = make([]context.CancelFunc, n)
	h.errs = make([]error, n)
	h.gotFirst = make([]bool, n)
	h.results = make(chan attemptResult, n)
	h.first = make(chan int, n)
	defer h.stopTimer()

	if err := h.start(ctx); err != nil {
		return runStop, append(h.collect(), err)
	}
	var endErr error // a keyword reached, or the context's end
	for h.running > 0 {
		select {
		case <-ctx.Done():
			h.cancelAll()
			h.drain()
			return runStop, append(h.collect(), ctx.Err())
		case pos := <-h.first:
			h.gotFirst[pos] = true
			if pos == h.frontier {
				h.stopTimer()
			}
		case <-h.timerC:
			h.timerC = nil
			h.pendingFirstBytes() // a first byte that raced the timer counts as in time
			if h.gotFirst[h.frontier] || h.next >= n || !h.group[h.frontier].FallbackOnError || h.group[h.next].Client == nil {
				continue
			}
			if h.hp.Allow != nil && !h.hp.Allow(h.group[h.frontier].Client, h.group[h.next].Client) {
				continue
			}
			if err := h.start(ctx); err != nil {
				endErr = err
			}
		case r := <-h.results:
			h.running--
			h.cancels[r.pos]()
			if r.err == nil {
				h.cancelAll()
				h.drain()
				return runWon, nil
			}
			h.errs[r.pos] = r.err
			if r.pos != h.frontier || endErr != nil {
				continue // an attempt already hedged over: the walk has moved past it
			}
			if h.next < n {
				if err := h.start(ctx); err != nil {
					endErr = err
				}
			}
			// Else every entry of the run has been started: the attempts still running
			// (hedged over) may yet win, and once they are done the run's last entry as
			// written decides whether the walk goes on.
		}
	}
	errs := h.collect()
	if endErr != nil {
		return runStop, append(errs, endErr)
	}
	// (A run that ends with '|' ends the list: nothing follows either way.)
	if h.group[n-1].FallbackOnError || errors.Is(h.errs[h.last], fs.ErrNotExist) {
		return runContinue, errs
	}
	return runStop, errs
}

// runOne is run for a run of one entry (a proxy followed by ',' or ending the list, the
// common case): nothing to hedge to, so try runs in the caller's goroutine, as in Walk,
// without the goroutine, channels and timer of a hedged run (a cold fill makes hundreds of
// walks a second; each attempt goroutine also grew its stack by copying).
func (h *hedgedRun) runOne(ctx context.Context) (int, []error) {
	e := h.group[0]
	switch {
	case ctx.Err() != nil:
		return runStop, []error{ctx.Err()}
	case e.Off:
		return runStop, []error{ErrOff}
	case e.Direct && e.Client == nil:
		return runStop, []error{ErrDirect}
	}
	err := h.try(ctx, e.Client)
	switch {
	case err == nil:
		return runWon, nil
	case !e.FallbackOnError && !errors.Is(err, fs.ErrNotExist):
		return runStop, []error{err}
	}
	return runContinue, []error{err}
}

// start starts try on the next entry, or returns the error that ends the walk there (off,
// direct, or the context's end).
func (h *hedgedRun) start(ctx context.Context) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	pos := h.next
	e := h.group[pos]
	switch {
	case e.Off:
		return ErrOff
	case e.Direct && e.Client == nil:
		return ErrDirect
	}
	h.next++
	h.frontier = pos
	actx, cancel := context.WithCancel(ctx)
	var once sync.Once
	actx = withFirstByte(actx, func() { once.Do(func() { h.first <- pos }) })
	h.cancels[pos] = cancel
	h.running++
	go func() {
		h.results <- attemptResult{pos: pos, err: h.try(actx, e.Client)}
	}()
	h.stopTimer()
	// Never hedge from or to direct: a second run of the go command against an origin
	// costs a clone, not a request.
	if h.next < len(h.group) && e.FallbackOnError && !e.Direct && h.group[h.next].Client != nil && !h.group[h.next].Direct {
		if d, ok := h.hp.Delay(e.Client); ok {
			h.timer = time.NewTimer(d)
			h.timerC = h.timer.C
		}
	}
	return nil
}

// pendingFirstBytes records first-byte notices already queued.
func (h *hedgedRun) pendingFirstBytes() {
	for {
		select {
		case pos := <-h.first:
			h.gotFirst[pos] = true
		default:
			return
		}
	}
}

func (h *hedgedRun) stopTimer() {
	if h.timer != nil {
		h.timer.Stop()
		h.timer = nil
	}
	h.timerC = nil
}

func (h *hedgedRun) cancelAll() {
	for _, cancel := range h.cancels {
		if cancel != nil {
			cancel()
		}
	}
}

// drain waits for every running attempt to return.
func (h *hedgedRun) drain() {
	for ; h.running > 0; h.running-- {
		r := <-h.results
		h.cancels[r.pos]()
	}
}

// collect returns the recorded failures in position order.
func (h *hedgedRun) collect() []error {
	var out []error
	for _, err := range h.errs {
		if err != nil {
			out = append(out, err)
		}
	}
	return out
}
