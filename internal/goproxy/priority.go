package goproxy

import (
	"context"
	"errors"
	"sync/atomic"
)

// Background marks the fetches of work nobody waits for yet (the prefetcher's): scarce
// capacity, direct's job slots, goes to the clients' fetches first. A client that comes
// to share a background fetch promotes it.
type Background struct {
	promoted atomic.Bool
}

// Promote makes the fetches under b foreground from now on.
func (b *Background) Promote() {
	if b != nil {
		b.promoted.Store(true)
	}
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

// ErrDirectBusy is the answer of direct to a background fetch when none of the job slots
// background fetches may use is free: the fetch is skipped, never queued (a client's
// fetch would wait behind it) and never counted as a failure. A client's fetch does not
// get it.
var ErrDirectBusy = errors.New(DirectName + ": no job free for background fetches")
