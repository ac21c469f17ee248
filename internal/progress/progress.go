// Package progress draws a one-line progress bar on a terminal for commands that run longer
// than a moment, such as `holoproxy trace`: done of total, a bar, the rate and the time
// spent, redrawn in place. It only draws; the caller decides whether its writer is a
// terminal.
package progress

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"time"
)

// Bar is a progress bar on one line of a terminal. Make it with New, report with Set and
// end it with Stop; its methods are safe for concurrent use.
type Bar struct {
	w     io.Writer
	plain bool // one line every period instead of a bar redrawn in place
	label string
	delay time.Duration // nothing is drawn before this much time has passed
	every time.Duration // redraw period

	mu          sync.Mutex // guards the fields below and the writes to w
	done, total int
	detail      func() string
	shown       bool // something was drawn: Stop must end the line
	stopped     bool

	start time.Time
	quit  chan struct{}
	wg    sync.WaitGroup
}

// Defaults of New.
const (
	// DefaultDelay is how long a task runs before its bar appears: what finishes within a
	// second needs none.
	DefaultDelay = time.Second
	// DefaultEvery is the redraw period.
	DefaultEvery = 200 * time.Millisecond
)

// New starts a bar on w (a terminal: it redraws with a carriage return and an erase-line
// escape) labelled label, e.g. "requests". It draws nothing before delay has passed (zero
// means DefaultDelay) and then redraws every DefaultEvery until Stop.
func New(w io.Writer, label string, delay time.Duration) *Bar {
	if delay <= 0 {
		delay = DefaultDelay
	}
	b := &Bar{w: w, label: label, delay: delay, every: DefaultEvery, start: time.Now(), quit: make(chan struct{})}
	b.wg.Add(1)
	go b.loop()
	return b
}

// NewPlain starts a progress report for a writer that is not a terminal (a log, a CI
// console): one line without the bar or control characters every period (zero means 5
// seconds), the first after one period, and a last one at Stop if any was written.
func NewPlain(w io.Writer, label string, period time.Duration) *Bar {
	if period <= 0 {
		period = 5 * time.Second
	}
	b := &Bar{w: w, plain: true, label: label, delay: period, every: period, start: time.Now(), quit: make(chan struct{})}
	b.wg.Add(1)
	go b.loop()
	return b
}

func (b *Bar) loop() {
	defer b.wg.Done()
	wait := time.NewTimer(b.delay)
	defer wait.Stop()
	select {
	case <-b.quit:
		return
	case <-wait.C:
	}
	tick := time.NewTicker(b.every)
	defer tick.Stop()
	for {
		b.draw(false)
		select {
		case <-b.quit:
			return
		case <-tick.C:
		}
	}
}

// Set reports that done of total units are finished. Reports from concurrent workers may
// arrive out of order, so done never goes back; a total below done is raised to it.
func (b *Bar) Set(done, total int) {
	b.mu.Lock()
	b.done = max(b.done, done)
	b.total = max(total, b.done)
	b.mu.Unlock()
}

// Stop ends the bar: when it was shown it is drawn a last time and the line is ended, so
// what the program writes next starts on a line of its own. Later calls do nothing.
func (b *Bar) Stop() {
	b.mu.Lock()
	if b.stopped {
		b.mu.Unlock()
		return
	}
	b.stopped = true
	b.mu.Unlock()
	close(b.quit)
	b.wg.Wait()
	b.draw(true)
}

// SetDetail adds f's text to every line after the counts: a command's own figures, such
// as bytes and their rate. f is called with the bar's lock held, so it must not call the
// Bar; it may be called from another goroutine.
func (b *Bar) SetDetail(f func() string) {
	b.mu.Lock()
	b.detail = f
	b.mu.Unlock()
}

// Line returns the bar as drawn now, without the terminal control characters.
func (b *Bar) Line() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.line()
}

// line renders the bar; b.mu must be held.
func (b *Bar) line() string {
	const width = 30
	frac := 0.0
	if b.total > 0 {
		frac = float64(b.done) / float64(b.total)
	}
	fill := int(frac * width)
	return fmt.Sprintf("[%s%s] %3.0f%% %s", strings.Repeat("=", fill), strings.Repeat(" ", width-fill), frac*100, b.counts())
}

// counts renders done of total, the rate and the time spent; b.mu must be held.
func (b *Bar) counts() string {
	el := time.Since(b.start)
	rate := 0.0
	if s := el.Seconds(); s > 0 {
		rate = float64(b.done) / s
	}
	s := fmt.Sprintf("%d/%d %s, %.0f/s, %s", b.done, b.total, b.label, rate, el.Round(100*time.Millisecond))
	if b.detail != nil {
		if d := b.detail(); d != "" {
			s += ", " + d
		}
	}
	return s
}

// draw redraws the line in place; final ends it (only if anything was shown before).
func (b *Bar) draw(final bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case b.plain && (!final || b.shown):
		b.shown = true
		fmt.Fprintf(b.w, "%s\n", b.counts())
	case b.plain:
	case final && b.shown:
		fmt.Fprintf(b.w, "\r\x1b[K%s\n", b.line())
	case !final:
		b.shown = true
		fmt.Fprintf(b.w, "\r\x1b[K%s", b.line())
	}
}
