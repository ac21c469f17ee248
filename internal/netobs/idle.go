package netobs

import (
	"sync"
	"sync/atomic"
	"time"
)

// idleWatch cuts response bodies that received no byte for the body idle timeout. One
// goroutine per Transport checks every watched body each tick, instead of a timer per
// body that every Read would have to reset: a Read only stores the current tick number.
// The goroutine runs only while some body is watched; the last unwatch lets it exit at its
// next tick, and the next watch starts it again, so it never outlives the bodies it serves.
//
// Lock order: idleWatch.mu, then nothing.
type idleWatch struct {
	idle time.Duration // cut after this long without a byte
	tick time.Duration // check period: idle/8, at least 5ms

	now atomic.Int64 // ticks since the watch started, read by bodies

	mu      sync.Mutex
	bodies  map[*body]struct{} // guarded by mu
	running bool               // guarded by mu
}

func newIdleWatch(idle time.Duration) *idleWatch {
	return &idleWatch{idle: idle, tick: max(idle/8, 5*time.Millisecond), bodies: make(map[*body]struct{})}
}

// watch starts watching b; its idle clock starts now.
func (w *idleWatch) watch(b *body) {
	b.lastTick.Store(w.now.Load())
	w.mu.Lock()
	w.bodies[b] = struct{}{}
	if !w.running {
		w.running = true
		go w.loop()
	}
	w.mu.Unlock()
}

// unwatch stops watching b.
func (w *idleWatch) unwatch(b *body) {
	w.mu.Lock()
	delete(w.bodies, b)
	w.mu.Unlock()
}

// touch records that b just received bytes.
func (w *idleWatch) touch(b *body) { b.lastTick.Store(w.now.Load()) }

func (w *idleWatch) loop() {
	t := time.NewTicker(w.tick)
	defer t.Stop()
	// A body is cut once it has seen no byte for limit whole ticks: between idle and
	// idle plus one tick after its last byte.
	limit := int64((w.idle + w.tick - 1) / w.tick)
	var expired []*body
	for range t.C {
		now := w.now.Add(1)
		w.mu.Lock()
		if len(w.bodies) == 0 {
			w.running = false
			w.mu.Unlock()
			return
		}
		for b := range w.bodies {
			if now-b.lastTick.Load() > limit {
				delete(w.bodies, b)
				expired = append(expired, b)
			}
		}
		w.mu.Unlock()
		for _, b := range expired {
			b.expire() // outside the lock: Close may block briefly
		}
		clear(expired)
		expired = expired[:0]
	}
}
