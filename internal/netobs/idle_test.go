package netobs

import (
	"io"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.uber.org/goleak"
)

// closeCounter is a response body that counts its closes.
type closeCounter struct {
	io.Reader
	closed atomic.Int32
}

func (c *closeCounter) Close() error {
	c.closed.Add(1)
	return nil
}

// TestIdleWatch checks the watch's list: an ended body leaves it at once (so the watch
// keeps no finished exchange alive), unwatching twice is harmless, a stalled body is cut
// and taken off, and the timer stops when nothing is left to watch.
func TestIdleWatch(t *testing.T) {
	w := newIdleWatch(10 * time.Millisecond)
	newBody := func() (*body, *closeCounter) {
		rc := &closeCounter{Reader: strings.NewReader("x")}
		return &body{ex: &exchange{}, rc: rc, watch: w}, rc
	}
	ended, endedRC := newBody()
	stalled, stalledRC := newBody()
	w.watch(ended)
	w.watch(stalled)
	if n := listLen(w); n != 2 {
		t.Fatalf("watching 2 bodies, list has %d", n)
	}
	w.unwatch(ended)
	w.unwatch(ended)
	if n := listLen(w); n != 1 || ended.listed() {
		t.Fatalf("after unwatch: list has %d, ended body listed %v; want 1, false", n, ended.listed())
	}
	deadline := time.Now().Add(time.Minute) // a bound on waiting, not an expectation
	for stalledRC.closed.Load() == 0 || w.isRunning() {
		if time.Now().After(deadline) {
			t.Fatalf("stalled body closed %d times, watch's timer set %v", stalledRC.closed.Load(), w.isRunning())
		}
		time.Sleep(time.Millisecond)
	}
	if !stalled.cut.Load() || stalled.listed() || listLen(w) != 0 {
		t.Errorf("stalled body: cut %v, listed %v, list length %d; want true, false, 0", stalled.cut.Load(), stalled.listed(), listLen(w))
	}
	if endedRC.closed.Load() != 0 {
		t.Error("the watch closed a body that had ended")
	}
	w.unwatch(stalled) // as the reader does when its Read fails
	// The next watch sets the timer again.
	again, againRC := newBody()
	w.watch(again)
	if !w.isRunning() {
		t.Error("watch after the timer stopped did not set it again")
	}
	for againRC.closed.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("body watched after a restart was never cut")
		}
		time.Sleep(time.Millisecond)
	}
}

// TestIdleWatchStopsWhenEmpty: when the last watched body ends, the watch's timer is
// stopped at once, not left to fire at its next tick (an eighth of the idle timeout: 3.75s
// by default), so a transport whose exchanges are over has nothing running or pending.
func TestIdleWatchStopsWhenEmpty(t *testing.T) {
	before := goleak.IgnoreCurrent()
	w := newIdleWatch(time.Hour) // a tick of 7.5 minutes: only the unwatch can stop it
	a := &body{ex: &exchange{}, rc: io.NopCloser(strings.NewReader("a")), watch: w}
	b := &body{ex: &exchange{}, rc: io.NopCloser(strings.NewReader("b")), watch: w}
	w.watch(a)
	w.watch(b)
	w.unwatch(a)
	if !w.isRunning() {
		t.Fatal("the watch stopped with a body still watched")
	}
	w.unwatch(b)
	if w.isRunning() {
		t.Error("the watch's timer is still set with no body watched")
	}
	if w.timer.Stop() {
		t.Error("the timer was still pending with no body watched")
	}
	goleak.VerifyNone(t, before)
	// The next watch sets it again, and the last unwatch stops it again.
	w.watch(a)
	if !w.isRunning() {
		t.Error("watch after the timer stopped did not set it again")
	}
	w.unwatch(a)
	if w.isRunning() {
		t.Error("the watch's timer is still set with no body watched")
	}
	goleak.VerifyNone(t, before)
}

// TestIdleWatchLateStop: a tick that fired just before the unwatch that emptied the list
// stopped the timer does nothing when its check runs, even when a watch has set the timer
// again meanwhile: it neither counts a tick (which would cut a body a tick early) nor
// stops the timer the watch set.
func TestIdleWatchLateStop(t *testing.T) {
	w := newIdleWatch(time.Hour)
	a := &body{ex: &exchange{}, rc: io.NopCloser(strings.NewReader("a")), watch: w}
	w.watch(a)
	for attempt := 0; ; attempt++ {
		w.mu.Lock() // the check of a tick that fires now waits here
		w.timer.Reset(time.Nanosecond)
		time.Sleep(10 * time.Millisecond) // the timer fires; its check blocks on mu
		w.remove(&a.tickEntry)            // the last body ends: Stop comes too late
		late := w.stale == 1
		w.add(a, &a.tickEntry) // and a new one is watched before the check runs
		w.mu.Unlock()
		if late {
			break
		}
		// The timer had not fired yet (a loaded machine): the Stop was in time. Again.
		if attempt == 100 {
			t.Fatal("the timer never fired within 10ms")
		}
		w.timer.Reset(time.Hour)
	}
	deadline := time.Now().Add(time.Minute) // a bound on waiting, not an expectation
	for {
		w.mu.Lock()
		stale, now, armed := w.stale, w.now.Load(), w.armed
		w.mu.Unlock()
		if stale == 0 {
			if now != 0 || !armed {
				t.Errorf("after the late check: %d ticks counted, timer set %v; want 0, true", now, armed)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the late check never ran")
		}
		time.Sleep(time.Millisecond)
	}
	w.unwatch(a)
	if w.isRunning() {
		t.Error("the watch's timer is still set with no body watched")
	}
}

func listLen(w *idleWatch) int {
	w.mu.Lock()
	defer w.mu.Unlock()
	n := 0
	for b := w.head; b != nil; b = b.next {
		n++
	}
	return n
}

func (w *idleWatch) isRunning() bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.armed
}
