package health

import (
	"testing"
	"time"
)

func TestHedgerDelay(t *testing.T) {
	tests := []struct {
		name    string
		ttfb    time.Duration
		samples int
		want    time.Duration
	}{
		{"too few samples gives Max", 100 * time.Millisecond, 5, 2 * time.Second},
		{"p95 within bounds", 300 * time.Millisecond, 40, 300 * time.Millisecond},
		{"clamped to Min", time.Millisecond, 40, 50 * time.Millisecond},
		{"clamped to Max", 4 * time.Second, 40, 2 * time.Second},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, _, _ := newTestScorer(t, Config{})
			h := NewHedger(s, HedgeConfig{Min: 50 * time.Millisecond, Max: 2 * time.Second})
			for range tt.samples {
				s.Observe(ok(upA, tt.ttfb))
			}
			got, hedge := h.Delay(upA)
			if !hedge {
				t.Fatal("Delay said never hedge")
			}
			// The histogram answers the upper bound of a 25 % bucket.
			if got < tt.want || float64(got) > float64(tt.want)*histGrowth {
				t.Fatalf("delay %v, want %v (within a bucket)", got, tt.want)
			}
		})
	}
}

func TestHedgerDelayTracksTail(t *testing.T) {
	tests := []struct {
		name     string
		fast     time.Duration // the answers of most requests
		slow     time.Duration // the answers of every tenth, or fifth, request
		every    int
		min, max time.Duration // the delay wanted
	}{
		// A spread whose p95 is within four medians: the delay is the p95.
		{"smooth spread: the p95", 40 * time.Millisecond, 120 * time.Millisecond, 10, 120 * time.Millisecond, 150 * time.Millisecond},
		// 10 % of first bytes take 800ms: the p95 is in the slow mode, four medians are not.
		{"slow mode past the p95: four medians", 40 * time.Millisecond, 800 * time.Millisecond, 10, 160 * time.Millisecond, 200 * time.Millisecond},
		// 20 % take 500ms more (the lab's TestHedgingKeepsTailLatency): a few medians.
		{"near upstream slow on a fifth: four medians", 5 * time.Millisecond, 505 * time.Millisecond, 5, 20 * time.Millisecond, 30 * time.Millisecond},
		// Below Min, Min.
		{"four medians below Min: Min", 2 * time.Millisecond, 505 * time.Millisecond, 5, 20 * time.Millisecond, 20 * time.Millisecond},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, _, _ := newTestScorer(t, Config{})
			h := NewHedger(s, HedgeConfig{})
			for i := range 100 {
				d := tt.fast
				if i%tt.every == 0 {
					d = tt.slow
				}
				s.Observe(ok(upA, d))
			}
			got, _ := h.Delay(upA)
			if got < tt.min || got > tt.max {
				t.Fatalf("delay %v, want %v to %v", got, tt.min, tt.max)
			}
		})
	}
}

func TestHedgerBudget(t *testing.T) {
	s, _, _ := newTestScorer(t, Config{})
	h := NewHedger(s, HedgeConfig{Share: 0.1, Burst: 2})
	allowed := 0
	for range 1000 {
		h.Delay(upA)
		if h.Allow(upA, upB) { // every attempt is slow: the budget is the only limit
			allowed++
		}
	}
	// At most Burst + Share·attempts, and the bucket refills: close to it.
	if allowed > 2+100 || allowed < 100 {
		t.Fatalf("%d hedges allowed in 1000 attempts, want about 100 and at most 102", allowed)
	}
	st := h.Stats()
	if st.Fired != int64(allowed) || st.Capped != int64(1000-allowed) || st.Attempts != 1000 {
		t.Fatalf("stats %+v, want %d fired, %d capped, 1000 attempts", st, allowed, 1000-allowed)
	}
	// Every slow attempt, hedged or capped, charged A a slow signal.
	if f := s.Statuses()[0].ErrorsByClass["slow_first_byte"]; f != 1000 {
		t.Fatalf("%d slow signals charged, want 1000", f)
	}
}
