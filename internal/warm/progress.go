package warm

import (
	"fmt"
	"io"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Progress reports a Run's progress on a writer (stderr): as a bar redrawn in place on a
// terminal, or as a plain line now and then otherwise. Make it with NewProgress and hand
// it to Config.Progress; Run starts and stops it.
type Progress struct {
	w        io.Writer
	bar      bool
	interval time.Duration

	mods, modsTotal, failed int64
	files, filesTotal       int64
	bytes                   atomic.Int64
	counts                  sync.Mutex // guards the counters above except bytes

	begin time.Time
	done  chan struct{}
	wg    sync.WaitGroup
}

// NewProgress returns a Progress writing to w: a bar redrawn every 200ms when bar is set
// (w is a terminal, or the user asked for it), else a plain line every interval (zero
// means 5 seconds).
func NewProgress(w io.Writer, bar bool, interval time.Duration) *Progress {
	if interval <= 0 {
		interval = 5 * time.Second
	}
	if bar {
		interval = 200 * time.Millisecond
	}
	return &Progress{w: w, bar: bar, interval: interval}
}

func (p *Progress) start(plan *Plan, begin time.Time) {
	p.counts.Lock()
	p.modsTotal, p.filesTotal = int64(len(plan.Items)), int64(plan.Files())
	p.counts.Unlock()
	p.begin = begin
	p.done = make(chan struct{})
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		t := time.NewTicker(p.interval)
		defer t.Stop()
		for {
			select {
			case <-p.done:
				return
			case <-t.C:
				p.draw(false)
			}
		}
	}()
}

// stop ends the reporting goroutine and draws the final state.
func (p *Progress) stop() {
	close(p.done)
	p.wg.Wait()
	p.draw(true)
}

func (p *Progress) fileDone(n int64) {
	p.bytes.Add(n)
	p.counts.Lock()
	p.files++
	p.counts.Unlock()
}

func (p *Progress) modDone(failed bool) {
	p.counts.Lock()
	p.mods++
	if failed {
		p.failed++
	}
	p.counts.Unlock()
}

// line returns the current state in one line, without the bar.
func (p *Progress) line() string {
	p.counts.Lock()
	mods, modsTotal, failed, files, filesTotal := p.mods, p.modsTotal, p.failed, p.files, p.filesTotal
	p.counts.Unlock()
	b := p.bytes.Load()
	el := time.Since(p.begin)
	rate := 0.0
	if el > 0 {
		rate = float64(b) / el.Seconds()
	}
	s := fmt.Sprintf("%d/%d modules, %d/%d files, %s, %s/s, %s", mods, modsTotal, files, filesTotal,
		FormatBytes(b), FormatBytes(int64(rate)), el.Round(100*time.Millisecond))
	if failed > 0 {
		s += fmt.Sprintf(", %d failed", failed)
	}
	return s
}

func (p *Progress) draw(final bool) {
	line := p.line()
	if !p.bar {
		fmt.Fprintf(p.w, "warm: %s\n", line)
		return
	}
	p.counts.Lock()
	frac := 1.0
	if p.filesTotal > 0 {
		frac = float64(p.files) / float64(p.filesTotal)
	}
	p.counts.Unlock()
	const width = 30
	fill := int(frac * width)
	bar := "[" + strings.Repeat("=", fill) + strings.Repeat(" ", width-fill) + "]"
	end := ""
	if final {
		end = "\n"
	}
	fmt.Fprintf(p.w, "\r\x1b[K%s %3.0f%% %s%s", bar, frac*100, line, end)
}

// FormatBytes renders a byte count with a binary unit, e.g. "12.3 MiB".
func FormatBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
