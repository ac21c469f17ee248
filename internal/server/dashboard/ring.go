package dashboard

import (
	"sync"

	"github.com/holoproxy/holoproxy/internal/netobs"
)

// Ring keeps the most recent Samples for the dashboard. It is a netobs.Sink: Observe copies
// the Sample into a fixed buffer and never blocks on anything but a short lock.
type Ring struct {
	mu   sync.Mutex
	buf  []netobs.Sample // guarded by mu
	next int             // guarded by mu; slot of the next Sample
	full bool            // guarded by mu
}

// NewRing returns a Ring holding the last n Samples (n < 1 means 4096).
func NewRing(n int) *Ring {
	if n < 1 {
		n = 4096
	}
	return &Ring{buf: make([]netobs.Sample, n)}
}

// Observe records s, dropping the oldest Sample when the ring is full.
func (r *Ring) Observe(s netobs.Sample) {
	r.mu.Lock()
	r.buf[r.next] = s
	r.next++
	if r.next == len(r.buf) {
		r.next, r.full = 0, true
	}
	r.mu.Unlock()
}

// Samples returns a copy of the kept Samples, oldest first.
func (r *Ring) Samples() []netobs.Sample {
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.full {
		return append([]netobs.Sample(nil), r.buf[:r.next]...)
	}
	out := make([]netobs.Sample, 0, len(r.buf))
	out = append(out, r.buf[r.next:]...)
	return append(out, r.buf[:r.next]...)
}
