package netobs

import (
	"sync"
	"sync/atomic"
	"time"
)

// tickWatch expires the values on its list that were not stamped within limit: the bodies
// of idleWatch (no byte for the body idle timeout) and the requests of connWatch (no
// connection within the connect timeout). One timer per watch checks every listed value
// each tick, instead of a timer per value that every stamp would have to reset: a stamp
// only stores the current tick number. The list is linked through the values themselves
// (a tickEntry is a field of each), so listing and unlisting allocate nothing, and a value
// leaves the list as soon as it is done with: the watch never keeps it alive (the garbage
// collector would mark it again and again).
//
// The timer is set only while some value is listed: the remove that empties the list
// stops it, and the next add sets it again. Between ticks no goroutine runs, and once the
// list is empty nothing of the watch is left running or pending, so the watch never
// outlives the values it serves. A timer, not a goroutine with a ticker: stopping and
// setting it again costs a sequence of one-at-a-time requests (the go command's graph
// walk) no goroutine start per request.
type tickWatch[T any] struct {
	limit time.Duration // expire a value not stamped for this long
	tick  time.Duration // check period: limit/8, at least 5ms
	// expire is called, outside the lock, for each value a check took off the list for
	// being too old.
	expire func(*T)

	now atomic.Int64 // ticks counted so far; values are stamped with it

	mu    sync.Mutex
	head  *tickEntry[T] // guarded by mu; the listed values, linked by tickEntry.next and prev
	timer *time.Timer   // guarded by mu; runs check, made by the first add
	// armed is guarded by mu: the timer is set, or has fired and its check has not taken
	// mu yet.
	armed bool
	// stale is guarded by mu: checks whose timer fired before a Stop that came too late
	// (Stop reported false). Each one finds mu taken, then must do nothing: the list
	// emptied meanwhile, and an add since then may have set the timer again.
	stale int
}

// tickEntry is a value's place on a tickWatch's list: a field of the value.
type tickEntry[T any] struct {
	// self is the value this is a field of while it is on the watch's list, nil while it
	// is not (one word for both, which keeps the exchange in its allocation size class).
	// Set and cleared under the watch's lock.
	self       atomic.Pointer[T]
	stamp      atomic.Int64  // the watch's tick when last stamped
	next, prev *tickEntry[T] // the watch's list; guarded by its lock
}

// listed reports whether the value is on the watch's list.
func (e *tickEntry[T]) listed() bool { return e.self.Load() != nil }

// init readies a zero tickWatch to call expire for the values not stamped within limit.
func (w *tickWatch[T]) init(limit time.Duration, expire func(*T)) {
	w.limit, w.tick, w.expire = limit, max(limit/8, 5*time.Millisecond), expire
}

// list stamps v, whose entry is e, and puts it on the list if it is not on it: its clock
// starts (again) now.
func (w *tickWatch[T]) list(v *T, e *tickEntry[T]) {
	w.touch(e)
	w.mu.Lock()
	if !e.listed() {
		w.add(v, e)
	}
	w.mu.Unlock()
}

// unlist takes the value whose entry is e off the list. It may be called more than once.
func (w *tickWatch[T]) unlist(e *tickEntry[T]) {
	if !e.listed() {
		return
	}
	w.mu.Lock()
	w.remove(e)
	w.mu.Unlock()
}

// touch stamps the value whose entry is e with the current tick.
func (w *tickWatch[T]) touch(e *tickEntry[T]) { e.stamp.Store(w.now.Load()) }

// add puts v, whose entry is e, on the list and sets the timer if it is not set. w.mu
// must be held, and e must not be listed.
func (w *tickWatch[T]) add(v *T, e *tickEntry[T]) {
	e.next, e.prev = w.head, nil
	if w.head != nil {
		w.head.prev = e
	}
	w.head = e
	e.self.Store(v)
	if !w.armed {
		w.armed = true
		if w.timer == nil {
			w.timer = time.AfterFunc(w.tick, w.check)
		} else {
			w.timer.Reset(w.tick)
		}
	}
}

// remove takes e off the list and stops the timer when nothing is left to watch: now,
// not at its next tick. w.mu must be held.
func (w *tickWatch[T]) remove(e *tickEntry[T]) {
	w.unlink(e)
	if w.head == nil && w.armed {
		w.armed = false
		if !w.timer.Stop() {
			w.stale++ // it fired: its check is waiting for mu
		}
	}
}

// unlink takes e off the list if it is on it. w.mu must be held.
func (w *tickWatch[T]) unlink(e *tickEntry[T]) {
	if !e.listed() {
		return
	}
	if e.prev != nil {
		e.prev.next = e.next
	} else {
		w.head = e.next
	}
	if e.next != nil {
		e.next.prev = e.prev
	}
	e.next, e.prev = nil, nil
	e.self.Store(nil)
}

// check is one tick: it counts the tick, expires the values stamped too long ago and sets
// the timer again while some value is still listed.
func (w *tickWatch[T]) check() {
	// A value expires once its stamp is more than limit whole ticks old: between limit
	// and limit plus one tick after it was stamped.
	limit := int64((w.limit + w.tick - 1) / w.tick)
	var expired []*T
	w.mu.Lock()
	if w.stale > 0 {
		w.stale--
		w.mu.Unlock()
		return
	}
	now := w.now.Add(1)
	for e := w.head; e != nil; {
		next := e.next
		if now-e.stamp.Load() > limit {
			expired = append(expired, e.self.Load())
			w.unlink(e)
		}
		e = next
	}
	if w.head != nil {
		w.timer.Reset(w.tick)
	} else {
		w.armed = false
	}
	w.mu.Unlock()
	for _, v := range expired {
		w.expire(v) // outside the lock: expiring may wait, and may unlist other values
	}
}
