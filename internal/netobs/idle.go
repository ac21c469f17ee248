package netobs

import (
	"sync"
	"sync/atomic"
	"time"
)

// idleWatch cuts response bodies that received no byte for the body idle timeout. One
// timer per Transport checks every watched body each tick, instead of a timer per body
// that every Read would have to reset: a Read only stores the current tick number. The
// watched bodies are a list linked through the bodies themselves, so watching and
// unwatching allocate nothing, and a body leaves the list as soon as it ends: the watch
// never keeps a finished exchange alive (the garbage collector would mark it again and
// again).
//
// The timer is set only while some body is watched: the unwatch that empties the list
// stops it, and the next watch sets it again. Between ticks no goroutine runs, and once the
// last body has ended nothing of the watch is left running or pending, so the watch never
// outlives the bodies it serves. A timer, not a goroutine with a ticker: stopping and
// setting it again costs a sequence of one-at-a-time requests (the go command's graph
// walk) no goroutine start per request.
type idleWatch struct {
	idle time.Duration // cut after this long without a byte
	tick time.Duration // check period: idle/8, at least 5ms

	now atomic.Int64 // ticks counted so far; bodies stamp their reads with it

	mu    sync.Mutex
	head  *body       // guarded by mu; the watched bodies, linked by body.next and body.prev
	timer *time.Timer // guarded by mu; runs check, made by the first watch
	// armed is guarded by mu: the timer is set, or has fired and its check has not taken
	// mu yet.
	armed bool
	// stale is guarded by mu: checks whose timer fired before a Stop that came too late
	// (Stop reported false). Each one finds mu taken, then must do nothing: the list
	// emptied meanwhile, and a watch since then may have set the timer again.
	stale int
}

func newIdleWatch(idle time.Duration) *idleWatch {
	return &idleWatch{idle: idle, tick: max(idle/8, 5*time.Millisecond)}
}

// watch starts watching b; its idle clock starts now.
func (w *idleWatch) watch(b *body) {
	b.lastTick.Store(w.now.Load())
	w.mu.Lock()
	w.add(b)
	w.mu.Unlock()
}

// add puts b on the list and sets the timer if it is not set. w.mu must be held.
func (w *idleWatch) add(b *body) {
	b.next, b.prev = w.head, nil
	if w.head != nil {
		w.head.prev = b
	}
	w.head = b
	b.listed.Store(true)
	if !w.armed {
		w.armed = true
		if w.timer == nil {
			w.timer = time.AfterFunc(w.tick, w.check)
		} else {
			w.timer.Reset(w.tick)
		}
	}
}

// unwatch stops watching b. It may be called more than once.
func (w *idleWatch) unwatch(b *body) {
	if !b.listed.Load() {
		return
	}
	w.mu.Lock()
	w.remove(b)
	w.mu.Unlock()
}

// remove takes b off the list and stops the timer when nothing is left to watch: now,
// not at its next tick. w.mu must be held.
func (w *idleWatch) remove(b *body) {
	w.unlink(b)
	if w.head == nil && w.armed {
		w.armed = false
		if !w.timer.Stop() {
			w.stale++ // it fired: its check is waiting for mu
		}
	}
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

// check is one tick: it counts the tick, cuts the bodies idle for too long and sets the
// timer again while some body is still watched.
func (w *idleWatch) check() {
	// A body is cut once it has seen no byte for more than limit whole ticks: between
	// idle and idle plus one tick after its last byte.
	limit := int64((w.idle + w.tick - 1) / w.tick)
	var expired []*body
	w.mu.Lock()
	if w.stale > 0 {
		w.stale--
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
	if w.head != nil {
		w.timer.Reset(w.tick)
	} else {
		w.armed = false
	}
	w.mu.Unlock()
	for _, b := range expired {
		b.expire() // outside the lock: closing may wait, and the reader then unwatches
	}
}
