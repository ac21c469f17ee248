package report

import (
	"sync"
	"testing"
	"time"

	"github.com/holoproxy/holoproxy/internal/netobs"
)

// TestCollector feeds Samples from several goroutines (run with -race to check the
// locking) and expects all of them back in start order.
func TestCollector(t *testing.T) {
	tests := []struct {
		name    string
		writers int
		each    int
	}{
		{"empty", 0, 0},
		{"one writer", 1, 10},
		{"concurrent writers", 8, 50},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var c Collector
			var sink netobs.Sink = &c
			var wg sync.WaitGroup
			for w := range tc.writers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := range tc.each {
						sink.Observe(netobs.Sample{Start: t0.Add(time.Duration(i*tc.writers+w) * ms)})
					}
				}()
			}
			wg.Wait()
			got := c.Samples()
			if len(got) != tc.writers*tc.each {
				t.Fatalf("got %d samples, want %d", len(got), tc.writers*tc.each)
			}
			for i := 1; i < len(got); i++ {
				if got[i].Start.Before(got[i-1].Start) {
					t.Fatalf("samples out of order at %d", i)
				}
			}
			if len(got) > 0 {
				got[0].Upstream = "changed"
				if c.Samples()[0].Upstream == "changed" {
					t.Error("Samples returned the Collector's own slice")
				}
			}
		})
	}
}
