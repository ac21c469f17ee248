package report

import (
	"sort"
	"sync"

	"github.com/holoproxy/holoproxy/internal/netobs"
)

// Collector gathers the Samples of one Run: hand it to the Recorder as its netobs.Sink
// while the workload runs, then put Samples() into the Run. It is safe for concurrent use
// and never blocks for long.
type Collector struct {
	mu      sync.Mutex
	samples []netobs.Sample
}

var _ netobs.Sink = (*Collector)(nil)

// Observe records s.
func (c *Collector) Observe(s netobs.Sample) {
	c.mu.Lock()
	c.samples = append(c.samples, s)
	c.mu.Unlock()
}

// Samples returns a copy of the Samples observed so far, in order of their start time.
func (c *Collector) Samples() []netobs.Sample {
	c.mu.Lock()
	out := append([]netobs.Sample(nil), c.samples...)
	c.mu.Unlock()
	sort.SliceStable(out, func(i, j int) bool { return out[i].Start.Before(out[j].Start) })
	return out
}
