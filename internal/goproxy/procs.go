package goproxy

import (
	"context"
	"fmt"
	"sync/atomic"
	"time"
)

// processes tracks the runs of child processes that their owner (a Direct, the GOAUTH
// state) must end before its program exits: the kernel's parent-death signal kills the
// child alone, not what it started (git and its helpers), and a run shared by callers
// (singleflight) or detached from them (context.WithoutCancel) outlives every caller's
// context. The zero value is not usable: use newProcesses.
type processes struct {
	closed  context.Context
	close   context.CancelCauseFunc
	running atomic.Int64
	cause   error // the runs' cause after Close; wraps context.Canceled
}

func newProcesses(cause error) *processes {
	p := &processes{cause: cause}
	p.closed, p.close = context.WithCancelCause(context.Background())
	return p
}

// start begins a run under ctx: it returns a context that also ends at Close, and done,
// to call when the run's processes are gone. After Close it returns the cause instead.
func (p *processes) start(ctx context.Context) (_ context.Context, done func(), err error) {
	p.running.Add(1)
	ctx, cancel := context.WithCancelCause(ctx)
	stop := context.AfterFunc(p.closed, func() { cancel(p.cause) })
	done = func() {
		stop()
		cancel(nil)
		p.running.Add(-1)
	}
	if p.closed.Err() != nil {
		done()
		return nil, nil, p.cause
	}
	return ctx, done, nil
}

// closeAndWait ends every run (their commands are killed as their contexts end) and
// returns once all are done, or with ctx's error; what names the runs in that error.
func (p *processes) closeAndWait(ctx context.Context, what string) error {
	p.close(p.cause)
	t := time.NewTicker(10 * time.Millisecond)
	defer t.Stop()
	for p.running.Load() > 0 {
		select {
		case <-t.C:
		case <-ctx.Done():
			return fmt.Errorf("%d %s still going: %w", p.running.Load(), what, context.Cause(ctx))
		}
	}
	return nil
}
