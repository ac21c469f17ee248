package warm

import (
	"fmt"
	"io"
	"sync/atomic"
	"time"

	"github.com/holoproxy/holoproxy/internal/progress"
)

// Progress reports a Run's progress on a writer (stderr): as a bar redrawn in place on a
// terminal, or as a plain line now and then otherwise (internal/progress draws both). Make
// it with NewProgress and hand it to Config.Progress; Run starts and stops it.
type Progress struct {
	w        io.Writer
	bar      bool
	interval time.Duration

	bars                     *progress.Bar
	mods, modsTotal, failed  atomic.Int64
	files, filesTotal, bytes atomic.Int64
	begin                    time.Time
}

// NewProgress returns a Progress writing to w: a bar redrawn in place when bar is set (w is
// a terminal, or the user asked for it), shown after interval (zero means a second), else
// a plain line every interval (zero means 5 seconds).
func NewProgress(w io.Writer, bar bool, interval time.Duration) *Progress {
	return &Progress{w: w, bar: bar, interval: interval}
}

func (p *Progress) start(plan *Plan, begin time.Time) {
	p.modsTotal.Store(int64(len(plan.Items)))
	p.filesTotal.Store(int64(plan.Files()))
	p.begin = begin
	if p.bar {
		p.bars = progress.New(p.w, "files", p.interval)
	} else {
		p.bars = progress.NewPlain(p.w, "files", p.interval)
	}
	p.bars.SetDetail(p.detail)
	p.bars.Set(0, int(p.filesTotal.Load()))
}

// stop draws the final state and ends the line.
func (p *Progress) stop() { p.bars.Stop() }

func (p *Progress) fileDone(n int64) {
	p.bytes.Add(n)
	p.bars.Set(int(p.files.Add(1)), int(p.filesTotal.Load()))
}

func (p *Progress) modDone(failed bool) {
	p.mods.Add(1)
	if failed {
		p.failed.Add(1)
	}
}

// detail is warm's part of each line: modules, bytes and their rate, failures.
func (p *Progress) detail() string {
	b := p.bytes.Load()
	rate := 0.0
	if el := time.Since(p.begin).Seconds(); el > 0 {
		rate = float64(b) / el
	}
	s := fmt.Sprintf("%d/%d modules, %s, %s/s", p.mods.Load(), p.modsTotal.Load(), FormatBytes(b), FormatBytes(int64(rate)))
	if f := p.failed.Load(); f > 0 {
		s += fmt.Sprintf(", %d failed", f)
	}
	return s
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
