package goproxy

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
)

// Background marks the fetches of work nobody waits for yet (the prefetcher's): scarce
// capacity, direct's job slots, goes to the clients' fetches first. A client that comes
// to share a background fetch promotes it. The zero value is ready to use.
type Background struct {
	promoted atomic.Bool
	mu       sync.Mutex
	ch       chan struct{} // closed by Promote; made by the first Promoted
}

// Promote makes the fetches under b foreground from now on, waking those waiting as
// background.
func (b *Background) Promote() {
	if b == nil {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.promoted.Swap(true) && b.ch != nil {
		close(b.ch)
	}
}

// Promoted returns a channel closed once b is promoted.
func (b *Background) Promoted() <-chan struct{} {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.ch == nil {
		b.ch = make(chan struct{})
		if b.promoted.Load() {
			close(b.ch)
		}
	}
	return b.ch
}

type backgroundKey struct{}

// WithBackground returns ctx with its fetches marked background under b.
func WithBackground(ctx context.Context, b *Background) context.Context {
	return context.WithValue(ctx, backgroundKey{}, b)
}

// BackgroundOf returns the Background ctx carries, or nil.
func BackgroundOf(ctx context.Context) *Background {
	b, _ := ctx.Value(backgroundKey{}).(*Background)
	return b
}

// IsBackground reports whether ctx's fetches are background (and not promoted).
func IsBackground(ctx context.Context) bool {
	b := BackgroundOf(ctx)
	return b != nil && !b.promoted.Load()
}

// ErrDirectBusy is the answer of direct to a background fetch when background fetches
// may hold none of its job slots (one job in all): the fetch is skipped, never counted
// as a failure. A client's fetch does not get it.
var ErrDirectBusy = errors.New(DirectName + ": no job for background fetches")
