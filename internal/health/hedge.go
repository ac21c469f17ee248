package health

import (
	"sync"
	"time"
)

// HedgeConfig configures a Hedger. Zero fields take the documented defaults.
type HedgeConfig struct {
	// Min and Max bound the hedge delay (defaults 20ms and 2s). An upstream with fewer than
	// MinSamples TTFB observations in the window (default 10) gets Max.
	Min, Max   time.Duration
	MinSamples int
	// Quantile is the TTFB quantile the delay is taken from (default 0.95), unless
	// MedianMultiple times the median is shorter (default 4): an upstream slow on more than
	// 1 − Quantile of its requests has its quantile inside the slow mode, and hedging after it
	// would rescue nothing; its median still tells how long a normal answer takes.
	Quantile       float64
	MedianMultiple float64
	// Share caps hedges at this share of attempts (default 0.1), with Burst hedges allowed
	// at once after a quiet spell (default 5): a token bucket credited Share per attempt.
	Share float64
	Burst float64
}

// Hedger decides when a request to a slow upstream is hedged to the next one: after the
// upstream's recent p95 TTFB or four times its median TTFB, whichever is shorter, clamped
// to [Min, Max], and only while the hedge budget (Share of attempts) lasts. Its two methods
// fit goproxy.HedgePolicy.
type Hedger struct {
	cfg    HedgeConfig
	scorer *Scorer

	mu     sync.Mutex
	tokens float64 // guarded by mu

	fired, capped, attempts int64 // guarded by mu
}

// NewHedger returns a Hedger that reads TTFB quantiles from s and charges hedge losses to it.
func NewHedger(s *Scorer, cfg HedgeConfig) *Hedger {
	if cfg.Min <= 0 {
		cfg.Min = 20 * time.Millisecond
	}
	if cfg.Max <= 0 {
		cfg.Max = 2 * time.Second
	}
	if cfg.Max < cfg.Min {
		cfg.Max = cfg.Min
	}
	if cfg.MinSamples <= 0 {
		cfg.MinSamples = 10
	}
	if cfg.Quantile <= 0 || cfg.Quantile >= 1 {
		cfg.Quantile = 0.95
	}
	if cfg.MedianMultiple <= 0 {
		cfg.MedianMultiple = 4
	}
	if cfg.Share <= 0 {
		cfg.Share = 0.1
	}
	if cfg.Burst <= 0 {
		cfg.Burst = 5
	}
	return &Hedger{cfg: cfg, scorer: s, tokens: cfg.Burst}
}

// Delay returns how long to wait for upstream's first byte before hedging: its recent
// TTFB quantile or MedianMultiple times its median, whichever is shorter, clamped to
// [Min, Max]. Each call is one attempt and credits the budget.
func (h *Hedger) Delay(upstream string) (time.Duration, bool) {
	h.mu.Lock()
	h.attempts++
	h.tokens = min(h.tokens+h.cfg.Share, h.cfg.Burst)
	h.mu.Unlock()
	d, n := h.scorer.TTFBQuantile(upstream, h.cfg.Quantile)
	if n < h.cfg.MinSamples {
		return h.cfg.Max, true
	}
	med, _ := h.scorer.TTFBQuantile(upstream, 0.5)
	d = min(d, time.Duration(h.cfg.MedianMultiple*float64(med)))
	return min(max(d, h.cfg.Min), h.cfg.Max), true
}

// Allow is asked when slow has sent no first byte within its delay: it reports whether a
// hedge to next may start, spending one token of the budget. Either way slow is charged a
// slow signal (Scorer.Slow).
func (h *Hedger) Allow(slow, next string) bool {
	h.mu.Lock()
	ok := h.tokens >= 1
	if ok {
		h.tokens--
		h.fired++
	} else {
		h.capped++
	}
	h.mu.Unlock()
	if ok {
		h.scorer.metrics.hedges.WithLabelValues(slow, "fired").Inc()
	} else {
		h.scorer.metrics.hedges.WithLabelValues(slow, "capped").Inc()
	}
	h.scorer.Slow(slow) // slow either way: the signal does not depend on the budget
	return ok
}

// HedgeStats counts a Hedger's decisions.
type HedgeStats struct {
	Attempts int64 `json:"attempts"` // calls of Delay
	Fired    int64 `json:"fired"`    // hedges allowed
	Capped   int64 `json:"capped"`   // hedges refused by the budget
}

// Stats returns the Hedger's counts so far.
func (h *Hedger) Stats() HedgeStats {
	h.mu.Lock()
	defer h.mu.Unlock()
	return HedgeStats{Attempts: h.attempts, Fired: h.fired, Capped: h.capped}
}
