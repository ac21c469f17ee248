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
// and taken off, and the goroutine stops when nothing is left to watch.
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
	if n := listLen(w); n != 1 || ended.listed.Load() {
		t.Fatalf("after unwatch: list has %d, ended body listed %v; want 1, false", n, ended.listed.Load())
	}
	deadline := time.Now().Add(time.Minute) // a bound on waiting, not an expectation
	for stalledRC.closed.Load() == 0 || w.isRunning() {
		if time.Now().After(deadline) {
			t.Fatalf("stalled body closed %d times, watch running %v", stalledRC.closed.Load(), w.isRunning())
		}
		time.Sleep(time.Millisecond)
	}
	if !stalled.cut.Load() || stalled.listed.Load() || listLen(w) != 0 {
		t.Errorf("stalled body: cut %v, listed %v, list length %d; want true, false, 0", stalled.cut.Load(), stalled.listed.Load(), listLen(w))
	}
	if endedRC.closed.Load() != 0 {
		t.Error("the watch closed a body that had ended")
	}
	w.unwatch(stalled) // as the reader does when its Read fails
	// The next watch starts the goroutine again.
	again, againRC := newBody()
	w.watch(again)
	if !w.isRunning() {
		t.Error("watch after the goroutine stopped did not start it again")
	}
	for againRC.closed.Load() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("body watched after a restart was never cut")
		}
		time.Sleep(time.Millisecond)
	}
}

// TestIdleWatchStopsWhenEmpty: when the last watched body ends, the goroutine stops at
// once, not at its next tick (an eighth of the idle timeout: 3.75s by default), so a
// transport whose exchanges are over runs no goroutine.
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
		t.Error("the watch still runs with no body watched")
	}
	goleak.VerifyNone(t, before)
	// The next watch starts it again, and the last unwatch stops it again.
	w.watch(a)
	if !w.isRunning() {
		t.Error("watch after the goroutine stopped did not start it again")
	}
	w.unwatch(a)
	goleak.VerifyNone(t, before)
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
	return w.stop != nil
}
