package netobs

import (
	"sync"
	"sync/atomic"
	"time"
)

// idleWatch cuts response bodies that received no byte for the body idle timeout. One
// goroutine per Transport checks every watched body each tick, instead of a timer per
// body that every Read would have to reset: a Read only stores the current tick number.
// The watched bodies are a list linked through the bodies themselves, so watching and
// unwatching allocate nothing, and a body leaves the list as soon as it ends: the watch
// never keeps a finished exchange alive (the garbage collector would mark it again and
// again).
//
// The goroutine runs only while some body is watched: when the list is empty it stops, and
// the next watch starts it again, so it never outlives the bodies it serves.
type idleWatch struct {
	idle time.Duration // cut after this long without a byte
	tick time.Duration // check period: idle/8, at least 5ms

	now atomic.Int64 // ticks counted so far; bodies stamp their reads with it

	mu      sync.Mutex
	head    *body // guarded by mu; the watched bodies, linked by body.next and body.prev
	running bool  // guarded by mu; a loop goroutine is running
}

func newIdleWatch(idle time.Duration) *idleWatch {
	return &idleWatch{idle: idle, tick: max(idle/8, 5*time.Millisecond)}
}

// watch starts watching b; its idle clock starts now.
func (w *idleWatch) watch(b *body) {
	b.lastTick.Store(w.now.Load())
	w.mu.Lock()
	b.next, b.prev = w.head, nil
	if w.head != nil {
		w.head.prev = b
	}
	w.head = b
	b.listed.Store(true)
	start := !w.running
	w.running = true
	w.mu.Unlock()
	if start {
		go w.loop()
	}
}

// unwatch stops watching b. It may be called more than once.
func (w *idleWatch) unwatch(b *body) {
	if !b.listed.Load() {
		return
	}
	w.mu.Lock()
	w.unlink(b)
	w.mu.Unlock()
}

// unlink takes b off the list if it is on it. w.mu must be held.
func (w *idleWatch) unlink(b *body) {
	if !b.listed.Load() {
		return
	}
	if b.prev != nil {
		b.prev.next = b.next
	} else {
		w.head = b.next
	}
	if b.next != nil {
		b.next.prev = b.prev
	}
	b.next, b.prev = nil, nil
	b.listed.Store(false)
}

// touch records that b just received bytes.
func (w *idleWatch) touch(b *body) { b.lastTick.Store(w.now.Load()) }

func (w *idleWatch) loop() {
	t := time.NewTicker(w.tick)
	defer t.Stop()
	// A body is cut once it has seen no byte for more than limit whole ticks: between
	// idle and idle plus one tick after its last byte.
	limit := int64((w.idle + w.tick - 1) / w.tick)
	var expired []*body
	for range t.C {
		now := w.now.Add(1)
		w.mu.Lock()
		for b := w.head; b != nil; {
			next := b.next
			if now-b.lastTick.Load() > limit {
				w.unlink(b)
				expired = append(expired, b)
			}
			b = next
		}
		stop := w.head == nil
		if stop {
			w.running = false
		}
		w.mu.Unlock()
		for i, b := range expired {
			b.expire() // outside the lock: closing may wait, and the reader then unwatches
			expired[i] = nil
		}
		expired = expired[:0]
		if stop {
			return
		}
	}
}
