package netobs

import (
	"sync/atomic"
	"time"
)

// idleWatch cuts response bodies that received no byte for the body idle timeout. One
// goroutine per Transport checks every watched body each tick, instead of a timer per
// body that every Read would have to reset. The per-request path is lock-free: watching
// pushes the body on an atomic list, a Read stores the current tick number, and the end of
// the body sets a flag; the goroutine drops finished bodies itself.
//
// The goroutine runs only while some body is watched: when its set is empty it stops, and
// the next watch starts it again, so it never outlives the bodies it serves.
type idleWatch struct {
	idle time.Duration // cut after this long without a byte
	tick time.Duration // check period: idle/8, at least 5ms

	now     atomic.Int64         // ticks counted so far; bodies stamp their reads with it
	pending atomic.Pointer[body] // bodies to add, linked by body.nextPending
	running atomic.Bool          // a loop goroutine is running
}

func newIdleWatch(idle time.Duration) *idleWatch {
	return &idleWatch{idle: idle, tick: max(idle/8, 5*time.Millisecond)}
}

// watch starts watching b; its idle clock starts now.
func (w *idleWatch) watch(b *body) {
	b.lastTick.Store(w.now.Load())
	for {
		old := w.pending.Load()
		b.nextPending = old
		if w.pending.CompareAndSwap(old, b) {
			break
		}
	}
	if !w.running.Load() && w.running.CompareAndSwap(false, true) {
		go w.loop()
	}
}

// unwatch stops watching b (the loop forgets it at its next tick).
func (w *idleWatch) unwatch(b *body) { b.finished.Store(true) }

// touch records that b just received bytes.
func (w *idleWatch) touch(b *body) { b.lastTick.Store(w.now.Load()) }

func (w *idleWatch) loop() {
	t := time.NewTicker(w.tick)
	defer t.Stop()
	// A body is cut once it has seen no byte for more than limit whole ticks: between
	// idle and idle plus one tick after its last byte.
	limit := int64((w.idle + w.tick - 1) / w.tick)
	bodies := make(map[*body]struct{}) // owned by this goroutine
	for range t.C {
		now := w.now.Add(1)
		for b := w.pending.Swap(nil); b != nil; {
			next := b.nextPending
			b.nextPending = nil
			bodies[b] = struct{}{}
			b = next
		}
		for b := range bodies {
			switch {
			case b.finished.Load():
				delete(bodies, b)
			case now-b.lastTick.Load() > limit:
				delete(bodies, b)
				b.expire()
			}
		}
		if len(bodies) == 0 {
			w.running.Store(false)
			// A body pushed after the drain but before the store above saw running
			// set and started nothing: take it over unless a new loop already has.
			if w.pending.Load() == nil || !w.running.CompareAndSwap(false, true) {
				return
			}
		}
	}
}
