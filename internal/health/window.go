package health

import (
	"math"
	"time"
)

// Clock tells the time. The Scorer takes one so that tests drive time by hand.
type Clock interface {
	Now() time.Time
}

type systemClock struct{}

func (systemClock) Now() time.Time { return time.Now() }

// histN is the number of TTFB histogram buckets; bucket i holds durations up to
// histBase·histGrowth^i (1 ms to about 56 s, 25 % apart).
const (
	histN      = 50
	histBase   = time.Millisecond
	histGrowth = 1.25
)

var histBounds = func() [histN]time.Duration {
	var b [histN]time.Duration
	for i := range b {
		b[i] = time.Duration(float64(histBase) * math.Pow(histGrowth, float64(i)))
	}
	return b
}()

func histIndex(d time.Duration) int {
	if d <= histBase {
		return 0
	}
	i := int(math.Ceil(math.Log(float64(d)/float64(histBase)) / math.Log(histGrowth)))
	// Guard against rounding at exact bucket bounds.
	for i > 0 && histBounds[i-1] >= d {
		i--
	}
	if i >= histN {
		return histN - 1
	}
	return i
}

// stats are the counters of one window bucket, or of a whole window summed.
type stats struct {
	requests  float64 // exchanges that got an answer or failed (cancelled ones excluded)
	failures  float64 // weighted by class
	slow      float64 // slow signals (no first byte within the hedge delay), also in requests
	dials     float64 // new connections attempted
	dialFails float64 // of which the TCP or TLS handshake failed
	verified  float64 // .mod and .zip files checksum-verified
	ckFails   float64 // of which failed verification
	ttfbN     uint32
	ttfb      [histN]uint32  // TTFB of answered exchanges
	classes   map[string]int // failures by error class; nil until the first failure
}

func (s *stats) add(o *stats) {
	s.requests += o.requests
	s.failures += o.failures
	s.slow += o.slow
	s.dials += o.dials
	s.dialFails += o.dialFails
	s.verified += o.verified
	s.ckFails += o.ckFails
	s.ttfbN += o.ttfbN
	for i, n := range o.ttfb {
		s.ttfb[i] += n
	}
	for c, n := range o.classes {
		if s.classes == nil {
			s.classes = map[string]int{}
		}
		s.classes[c] += n
	}
}

func (s *stats) addClass(class string) {
	if s.classes == nil {
		s.classes = map[string]int{}
	}
	s.classes[class]++
}

// quantile returns the q-quantile of the TTFB histogram (the upper bound of the bucket it
// falls in) and false when there are no TTFB observations.
func (s *stats) quantile(q float64) (time.Duration, bool) {
	if s.ttfbN == 0 {
		return 0, false
	}
	want := uint32(math.Ceil(q * float64(s.ttfbN)))
	if want == 0 {
		want = 1
	}
	var cum uint32
	for i, n := range s.ttfb {
		cum += n
		if cum >= want {
			return histBounds[i], true
		}
	}
	return histBounds[histN-1], true
}

// window is a sliding window of stats in fixed-width time buckets kept in a ring.
type window struct {
	width   time.Duration
	ids     []int64 // bucket id (time / width) each ring slot holds
	buckets []stats
}

func newWindow(span, width time.Duration) *window {
	n := int(span / width)
	if n < 1 {
		n = 1
	}
	w := &window{width: width, ids: make([]int64, n), buckets: make([]stats, n)}
	for i := range w.ids {
		w.ids[i] = math.MinInt64
	}
	return w
}

func (w *window) id(t time.Time) int64 { return t.UnixNano() / int64(w.width) }

// at returns the bucket for time t, recycling a slot whose bucket has left the window.
func (w *window) at(t time.Time) *stats {
	id := w.id(t)
	slot := int(((id % int64(len(w.ids))) + int64(len(w.ids))) % int64(len(w.ids)))
	if w.ids[slot] != id {
		w.ids[slot] = id
		w.buckets[slot] = stats{}
	}
	return &w.buckets[slot]
}

// sum adds up the buckets still inside the window at time now.
func (w *window) sum(now time.Time) stats {
	cur := w.id(now)
	var s stats
	for i, id := range w.ids {
		if id <= cur && id > cur-int64(len(w.ids)) {
			s.add(&w.buckets[i])
		}
	}
	return s
}

// reset forgets everything.
func (w *window) reset() {
	for i := range w.ids {
		w.ids[i] = math.MinInt64
		w.buckets[i] = stats{}
	}
}
