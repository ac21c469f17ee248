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
// The goroutine runs only while some body is watched: when the list becomes empty it stops
// at once (the unwatch that empties it tells it to, so it does not linger until its next
// tick), and the next watch starts it again, so it never outlives the bodies it serves.
type idleWatch struct {
	idle time.Duration // cut after this long without a byte
	tick time.Duration // check period: idle/8, at least 5ms

	now atomic.Int64 // ticks counted so far; bodies stamp their reads with it

	mu   sync.Mutex
	head *body // guarded by mu; the watched bodies, linked by body.next and body.prev
	// stop is guarded by mu: the running loop goroutine's stop channel, closed to stop it;
	// nil when no loop runs. A loop whose channel is no longer stop has been told to stop.
	stop chan struct{}
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
	var stop chan struct{}
	if w.stop == nil {
		stop = make(chan struct{})
		w.stop = stop
	}
	w.mu.Unlock()
	if stop != nil {
		go w.loop(stop)
	}
}

// unwatch stops watching b. It may be called more than once.
func (w *idleWatch) unwatch(b *body) {
	if !b.listed.Load() {
		return
	}
	w.mu.Lock()
	w.unlink(b)
	if w.head == nil && w.stop != nil {
		close(w.stop) // nothing left to watch: the loop ends now, not at its next tick
		w.stop = nil
	}
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

// loop checks the watched bodies every tick until stop is closed or it finds the list empty.
func (w *idleWatch) loop(stop chan struct{}) {
	t := time.NewTicker(w.tick)
	defer t.Stop()
	// A body is cut once it has seen no byte for more than limit whole ticks: between
	// idle and idle plus one tick after its last byte.
	limit := int64((w.idle + w.tick - 1) / w.tick)
	var expired []*body
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		w.mu.Lock()
		if w.stop != stop {
			// Told to stop after this tick fired; a loop started since then counts the
			// ticks now.
			w.mu.Unlock()
			return
		}
		now := w.now.Add(1)
		for b := w.head; b != nil; {
			next := b.next
			if now-b.lastTick.Load() > limit {
				w.unlink(b)
				expired = append(expired, b)
			}
			b = next
		}
		done := w.head == nil
		if done {
			w.stop = nil
		}
		w.mu.Unlock()
		for i, b := range expired {
			b.expire() // outside the lock: closing may wait, and the reader then unwatches
			expired[i] = nil
		}
		expired = expired[:0]
		if done {
			return
		}
	}
}
