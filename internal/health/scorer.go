package health

import (
	"cmp"
	"context"
	"log/slog"
	"math"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/holoproxy/holoproxy/internal/netobs"
)

// State is an upstream's health state.
type State string

// The states. Healthy and Degraded are the closed circuit split by score; Unhealthy is the
// open circuit (the upstream is tried only when every other one is open too); HalfOpen is
// the circuit after its backoff, letting trial requests and probes through.
const (
	StateHealthy   State = "healthy"
	StateDegraded  State = "degraded"
	StateUnhealthy State = "unhealthy"
	StateHalfOpen  State = "half-open"
)

// States lists every State from best to worst, for metrics and renderers.
var States = []State{StateHealthy, StateDegraded, StateHalfOpen, StateUnhealthy}

// tier is the position group of a state in Order: healthy first, then degraded and
// half-open, then open.
func (s State) tier() int {
	switch s {
	case StateHealthy:
		return 0
	case StateDegraded, StateHalfOpen:
		return 1
	}
	return 2
}

// Weights are the base weights of the score's four components. They should sum to 1.
type Weights struct {
	Connect  float64 `json:"connect"`  // TCP and TLS handshake success rate
	TTFB     float64 `json:"ttfb"`     // time to first byte, log-scaled between TTFBGood and TTFBBad
	Errors   float64 `json:"errors"`   // exchanges without a failure, failures weighted by class
	Checksum float64 `json:"checksum"` // verified files without a checksum mismatch
}

// Components are the four score components of one upstream, each in [0,1] (1 is perfect).
type Components = Weights

// Config configures a Scorer. Zero fields take the documented defaults.
type Config struct {
	// Window is the span of the sliding window the rates are computed over (default 30s),
	// in buckets of Bucket (default 1s).
	Window, Bucket time.Duration
	// Weights are the base component weights (default connect 0.2, ttfb 0.25, errors 0.4,
	// checksum 0.15).
	Weights Weights
	// Prior is the number of pseudo-successes added to every rate's denominator, so that one
	// failure among few exchanges does not condemn an upstream (default 2).
	Prior float64
	// FailureBad is the failure rate at which the errors and connect components reach 0
	// (default 0.4): a quarter of exchanges failing is already a degraded upstream.
	FailureBad float64
	// TTFBGood and TTFBBad bound the TTFB component: a window p90 TTFB at or below TTFBGood
	// scores 1, at or above TTFBBad scores 0, log-linear between (defaults 250ms and 5s).
	TTFBGood, TTFBBad time.Duration
	// ChecksumBad is the checksum failure rate at which the checksum component reaches 0
	// (default 0.5); ChecksumSaturation the rate at which the checksum component takes the
	// whole weight of the score (default 0.2).
	ChecksumBad, ChecksumSaturation float64
	// ClassWeights weighs failures by error class (the classes of netobs; "http_5xx" stands
	// for every 5xx status). A class not listed weighs 1; "canceled" is never counted, since
	// it is the walk's own cancellation of a hedged loser.
	ClassWeights map[string]float64
	// SlowWeight is the failure weight charged when an upstream sent no first byte within its
	// hedge delay (Slow; default 0.5).
	SlowWeight float64
	// SlowShare is the share of an upstream's exchanges in the window (Prior included) that
	// may miss their hedge delay (Slow) before a healthy upstream is degraded, whatever its
	// score (default 0.1, the hedge budget's default share: serve passes --hedge-share). Past
	// it the hedge budget cannot cover the upstream's tail, so it goes behind its peers; it is
	// healthy again once the share is at most half of SlowShare and the score is healthy.
	SlowShare float64
	// Healthy and Unhealthy are the score thresholds (defaults 0.8 and 0.5): at or above
	// Healthy an upstream is healthy, below Unhealthy its circuit opens.
	Healthy, Unhealthy float64
	// MinRequests is the number of exchanges in the window below which a low score does not
	// open the circuit (default 3). ConsecutiveFailures opens it regardless of the score
	// (default 3 hard failures in a row).
	MinRequests         int
	ConsecutiveFailures int
	// ConsecutiveSlow opens the circuit after that many slow signals (Slow) with no success
	// between them (default 5): an upstream that stopped answering is caught by the hedge
	// delays, before its requests time out — or when hedging cancels them before they can.
	ConsecutiveSlow int
	// BackoffMin and BackoffMax bound how long an open circuit waits before half-open; the
	// wait doubles with every trip that follows within a Window of the last close
	// (defaults 1s and 1m).
	BackoffMin, BackoffMax time.Duration
	// HalfOpenSuccesses is the number of successes in half-open that close the circuit
	// (default 3). A hard failure in half-open opens it again.
	HalfOpenSuccesses int
	// TransitionLog is the number of recent transitions kept for Transitions (default 200).
	TransitionLog int

	// Clock tells the time (default the system clock).
	Clock Clock
	// Logger receives a line per transition: warnings for degraded and open (default
	// slog.Default()).
	Logger *slog.Logger
	// Registerer receives the health metrics (default: none registered).
	Registerer prometheus.Registerer
}

func (c *Config) setDefaults() {
	dur := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	num := func(f *float64, v float64) {
		if *f <= 0 {
			*f = v
		}
	}
	integer := func(i *int, v int) {
		if *i <= 0 {
			*i = v
		}
	}
	dur(&c.Window, 30*time.Second)
	dur(&c.Bucket, time.Second)
	if c.Weights == (Weights{}) {
		c.Weights = Weights{Connect: 0.2, TTFB: 0.25, Errors: 0.4, Checksum: 0.15}
	}
	num(&c.Prior, 8)
	num(&c.FailureBad, 0.4)
	dur(&c.TTFBGood, 250*time.Millisecond)
	dur(&c.TTFBBad, 5*time.Second)
	num(&c.ChecksumBad, 0.5)
	num(&c.ChecksumSaturation, 0.2)
	num(&c.SlowWeight, 0.5)
	num(&c.SlowShare, 0.1)
	integer(&c.ConsecutiveSlow, 5)
	num(&c.Healthy, 0.8)
	num(&c.Unhealthy, 0.5)
	integer(&c.MinRequests, 3)
	integer(&c.ConsecutiveFailures, 3)
	dur(&c.BackoffMin, time.Second)
	dur(&c.BackoffMax, time.Minute)
	integer(&c.HalfOpenSuccesses, 3)
	integer(&c.TransitionLog, 200)
	if c.Clock == nil {
		c.Clock = systemClock{}
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
}

// Status is a snapshot of one upstream's health.
type Status struct {
	Upstream   string     `json:"upstream"`
	State      State      `json:"state"`
	Since      time.Time  `json:"since"` // when it entered State
	Score      float64    `json:"score"`
	Components Components `json:"components"`
	// Weights are the effective weights (shifted toward checksum as its failure rate rises).
	Weights Weights `json:"weights"`
	// Requests and Failures count the window's exchanges (Failures weighted by class).
	Requests float64 `json:"requests"`
	Failures float64 `json:"failures"`
	// ChecksumFailures and Verified count the window's verified files.
	ChecksumFailures float64        `json:"checksum_failures"`
	Verified         float64        `json:"verified"`
	ErrorsByClass    map[string]int `json:"errors_by_class,omitempty"`
	// TTFBP50 and TTFBP95 are the window's TTFB quantiles (zero without observations).
	TTFBP50 time.Duration `json:"ttfb_p50_ns"`
	TTFBP95 time.Duration `json:"ttfb_p95_ns"`
	// RetryAt is when an open circuit goes half-open; Backoff the wait it was given.
	RetryAt time.Time     `json:"retry_at,omitzero"`
	Backoff time.Duration `json:"backoff_ns,omitempty"`
}

// Transition is one change of an upstream's state.
type Transition struct {
	At       time.Time `json:"at"`
	Upstream string    `json:"upstream"`
	From     State     `json:"from"`
	To       State     `json:"to"`
	Score    float64   `json:"score"`
	Reason   string    `json:"reason"`
}

// Scorer keeps the health of every upstream. It is a netobs.Sink: hand it every Sample
// (Observe never blocks on I/O). Verification results come through ReportVerify. It is safe
// for concurrent use.
type Scorer struct {
	cfg     Config
	metrics *metrics

	mu          sync.Mutex
	upstreams   map[string]*upstream // guarded by mu
	names       []string             // guarded by mu; in the order first seen or tracked
	transitions []Transition         // guarded by mu; ring of the last cfg.TransitionLog
	nextTrans   int                  // guarded by mu
}

// upstream is the health record of one upstream, guarded by Scorer.mu.
type upstream struct {
	name  string
	win   *window
	state State
	since time.Time
	score float64
	comp  Components
	eff   Weights

	consecutive int           // hard failures in a row
	slow        int           // slow signals since the last success
	openedAt    time.Time     // when the circuit last opened
	backoff     time.Duration // the current open wait
	trips       int           // opens since the circuit last stayed closed for a Window
	closedAt    time.Time     // when the circuit last closed from half-open
	halfOK      int           // successes since half-open
}

// New returns a Scorer for cfg. It fails only when its metrics cannot be registered.
func New(cfg Config) (*Scorer, error) {
	cfg.setDefaults()
	m, err := newMetrics(cfg.Registerer)
	if err != nil {
		return nil, err
	}
	return &Scorer{cfg: cfg, metrics: m, upstreams: map[string]*upstream{}}, nil
}

// Config returns the Scorer's configuration with the defaults filled in.
func (s *Scorer) Config() Config { return s.cfg }

// Track declares upstreams in their configured order, so that snapshots list them that way
// and they show as healthy before any traffic.
func (s *Scorer) Track(names ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, n := range names {
		s.get(n, s.cfg.Clock.Now())
	}
}

// get returns the record of name, creating it healthy. s.mu must be held.
func (s *Scorer) get(name string, now time.Time) *upstream {
	u, ok := s.upstreams[name]
	if !ok {
		u = &upstream{name: name, win: newWindow(s.cfg.Window, s.cfg.Bucket), state: StateHealthy, since: now, score: 1,
			comp: Components{1, 1, 1, 1}, eff: s.cfg.Weights}
		s.upstreams[name] = u
		s.names = append(s.names, name)
		s.metrics.setState(name, StateHealthy, 1)
	}
	return u
}

// classWeight is the failure weight of an error class ("" for none) and HTTP status.
func (s *Scorer) classWeight(class string, status int) (string, float64) {
	if class == "" {
		switch {
		case status >= 500:
			class = netobs.HTTPClass(status)
		case status == 429:
			class = netobs.HTTPClass(status)
		default:
			return "", 0
		}
	}
	if w, ok := s.cfg.ClassWeights[class]; ok {
		return class, w
	}
	if strings.HasPrefix(class, "http_5") {
		if w, ok := s.cfg.ClassWeights["http_5xx"]; ok {
			return class, w
		}
	}
	return class, 1
}

// Observe records one finished exchange. Samples without an upstream label, cancelled
// exchanges and those that never had a connection because the transport's cap on
// connections was reached (they never reached the upstream; the requests holding the
// connections report how it answers) are ignored.
func (s *Scorer) Observe(smp netobs.Sample) {
	if smp.Upstream == "" || smp.ErrClass == netobs.ClassCanceled || smp.ErrClass == netobs.ClassConnCap {
		return
	}
	class, fw := s.classWeight(smp.ErrClass, smp.Status)
	hard := fw > 0 && class != netobs.HTTPClass(429)

	s.mu.Lock()
	now := s.cfg.Clock.Now()
	u := s.get(smp.Upstream, now)
	var trs []Transition
	if u.state == StateUnhealthy {
		trs = s.evaluate(u, now, "", trs) // half-open first if the backoff elapsed
	}
	b := u.win.at(now)
	b.requests++
	b.failures += fw
	if class != "" {
		b.addClass(class)
	}
	handshakeFail := !smp.Reused && (strings.HasPrefix(smp.ErrClass, "tcp_") || strings.HasPrefix(smp.ErrClass, "tls_"))
	if smp.Connect > 0 || handshakeFail {
		b.dials++
		if handshakeFail {
			b.dialFails++
		}
	}
	if smp.ErrClass == "" && smp.Status > 0 && smp.TTFB > 0 {
		b.ttfbN++
		b.ttfb[histIndex(smp.TTFB)]++
	}
	if hard {
		u.consecutive++
		if u.state == StateHalfOpen {
			trs = s.open(u, now, "failure in half-open: "+class, trs)
		}
	} else if fw == 0 {
		u.consecutive = 0
		u.slow = 0
		if u.state == StateHalfOpen {
			u.halfOK++
			if u.halfOK >= s.cfg.HalfOpenSuccesses {
				trs = s.close(u, now, trs)
			}
		}
	}
	trs = s.evaluate(u, now, class, trs)
	s.mu.Unlock()
	s.emit(trs)
}

// ReportVerify records the outcome of verifying a file (a .mod or .zip) an upstream
// served: failed is true for a checksum mismatch.
func (s *Scorer) ReportVerify(upstreamName string, failed bool) {
	if upstreamName == "" {
		return
	}
	s.mu.Lock()
	now := s.cfg.Clock.Now()
	u := s.get(upstreamName, now)
	b := u.win.at(now)
	b.verified++
	reason := ""
	if failed {
		b.ckFails++
		reason = netobs.ClassChecksumMismatch
		b.addClass(reason)
	}
	trs := s.evaluate(u, now, reason, nil)
	s.mu.Unlock()
	s.emit(trs)
}

// Slow records that an upstream sent no first byte within its hedge delay (a request was
// hedged away from it, or would have been but for the hedge budget): a soft failure
// (Config.SlowWeight) that counts toward the score, and toward ConsecutiveSlow until a
// success.
func (s *Scorer) Slow(upstreamName string) {
	if upstreamName == "" {
		return
	}
	s.mu.Lock()
	now := s.cfg.Clock.Now()
	u := s.get(upstreamName, now)
	b := u.win.at(now)
	b.requests++
	b.failures += s.cfg.SlowWeight
	b.slow++
	b.addClass("slow_first_byte")
	u.slow++
	trs := s.evaluate(u, now, "no first byte within the hedge delay", nil)
	s.mu.Unlock()
	s.emit(trs)
}

// score computes the score of a window's stats. It returns the score, the components and
// the effective weights.
func (s *Scorer) score(st *stats) (float64, Components, Weights) {
	c := &s.cfg
	p := c.Prior
	var comp Components
	comp.Errors = 1 - st.failures/(st.requests+p)/c.FailureBad
	comp.Connect = 1 - st.dialFails/(st.dials+p)/c.FailureBad
	comp.TTFB = 1
	if q, ok := st.quantile(0.9); ok && q > c.TTFBGood {
		comp.TTFB = 1 - math.Log(float64(q)/float64(c.TTFBGood))/math.Log(float64(c.TTFBBad)/float64(c.TTFBGood))
	}
	ckRate := st.ckFails / (st.verified + p)
	comp.Checksum = 1 - ckRate/c.ChecksumBad
	for _, v := range []*float64{&comp.Errors, &comp.Connect, &comp.TTFB, &comp.Checksum} {
		*v = clamp01(*v)
	}
	// The checksum weight grows from its base toward 1 as the failure rate approaches
	// ChecksumSaturation; the other weights shrink in proportion.
	w := c.Weights
	base := w.Checksum
	wk := base + (1-base)*math.Min(1, ckRate/c.ChecksumSaturation)
	scale := 1.0
	if base < 1 {
		scale = (1 - wk) / (1 - base)
	}
	eff := Weights{Connect: w.Connect * scale, TTFB: w.TTFB * scale, Errors: w.Errors * scale, Checksum: wk}
	sum := eff.Connect + eff.TTFB + eff.Errors + eff.Checksum
	if sum <= 0 {
		return 1, comp, eff
	}
	score := (eff.Connect*comp.Connect + eff.TTFB*comp.TTFB + eff.Errors*comp.Errors + eff.Checksum*comp.Checksum) / sum
	return clamp01(score), comp, eff
}

func clamp01(f float64) float64 { return math.Max(0, math.Min(1, f)) }

// evaluate recomputes u's score and moves its state: open to half-open after the backoff,
// closed between healthy and degraded by score, closed to open on a low score or a run of
// hard failures. s.mu must be held; transitions are appended to trs.
func (s *Scorer) evaluate(u *upstream, now time.Time, why string, trs []Transition) []Transition {
	st := u.win.sum(now)
	u.score, u.comp, u.eff = s.score(&st)
	s.metrics.score.WithLabelValues(u.name).Set(u.score)
	tail := st.slow / (st.requests + s.cfg.Prior) // share of exchanges that missed the hedge delay
	switch u.state {
	case StateUnhealthy:
		if !now.Before(u.openedAt.Add(u.backoff)) {
			u.halfOK = 0
			trs = s.move(u, now, StateHalfOpen, "backoff of "+u.backoff.String()+" elapsed", trs)
		}
	case StateHealthy, StateDegraded:
		switch {
		case u.consecutive >= s.cfg.ConsecutiveFailures:
			trs = s.open(u, now, plural(u.consecutive, "failure")+" in a row, last "+why, trs)
		case u.slow >= s.cfg.ConsecutiveSlow:
			trs = s.open(u, now, itoa(u.slow)+" requests without a first byte in time and no success between", trs)
		case u.score < s.cfg.Unhealthy && st.requests+st.verified >= float64(s.cfg.MinRequests):
			trs = s.open(u, now, "score below "+ftoa(s.cfg.Unhealthy)+reasonSuffix(why), trs)
		case u.score < s.cfg.Healthy && u.state == StateHealthy:
			trs = s.move(u, now, StateDegraded, "score below "+ftoa(s.cfg.Healthy)+reasonSuffix(why), trs)
		case tail > s.cfg.SlowShare && u.state == StateHealthy:
			trs = s.move(u, now, StateDegraded, pct(tail)+" of requests without a first byte within the hedge delay, more than the hedge budget's "+pct(s.cfg.SlowShare), trs)
		case u.score >= s.cfg.Healthy && tail <= s.cfg.SlowShare/2 && u.state == StateDegraded:
			trs = s.move(u, now, StateHealthy, "score recovered", trs)
		}
	}
	return trs
}

// open opens u's circuit with a backoff that doubles on each trip following the last close
// within a Window.
func (s *Scorer) open(u *upstream, now time.Time, why string, trs []Transition) []Transition {
	if !u.closedAt.IsZero() && now.Sub(u.closedAt) >= s.cfg.Window {
		u.trips = 0
	}
	u.trips++
	b := s.cfg.BackoffMin
	for i := 1; i < u.trips && b < s.cfg.BackoffMax; i++ {
		b *= 2
	}
	u.backoff = min(b, s.cfg.BackoffMax)
	u.openedAt = now
	u.consecutive = 0
	u.slow = 0
	u.halfOK = 0
	return s.move(u, now, StateUnhealthy, why, trs)
}

// close closes u's circuit after successes in half-open. The window is cleared: the
// failures that opened the circuit have been answered by the trial successes.
func (s *Scorer) close(u *upstream, now time.Time, trs []Transition) []Transition {
	u.win.reset()
	u.closedAt = now
	u.consecutive = 0
	u.slow = 0
	u.halfOK = 0
	return s.move(u, now, StateHealthy, plural(s.cfg.HalfOpenSuccesses, "success")+" in half-open", trs)
}

func (s *Scorer) move(u *upstream, now time.Time, to State, why string, trs []Transition) []Transition {
	if u.state == to {
		return trs
	}
	t := Transition{At: now, Upstream: u.name, From: u.state, To: to, Score: u.score, Reason: why}
	s.metrics.setState(u.name, u.state, 0)
	s.metrics.setState(u.name, to, 1)
	s.metrics.transitions.WithLabelValues(u.name, string(t.From), string(to)).Inc()
	u.state, u.since = to, now
	if len(s.transitions) < s.cfg.TransitionLog {
		s.transitions = append(s.transitions, t)
	} else {
		s.transitions[s.nextTrans] = t
		s.nextTrans = (s.nextTrans + 1) % len(s.transitions)
	}
	return append(trs, t)
}

// emit logs transitions; called without s.mu held.
func (s *Scorer) emit(trs []Transition) {
	for _, t := range trs {
		level := slog.LevelInfo
		if t.To.tier() > t.From.tier() || t.To == StateUnhealthy {
			level = slog.LevelWarn
		}
		s.cfg.Logger.Log(context.Background(), level, "upstream health changed",
			"upstream", t.Upstream, "from", string(t.From), "to", string(t.To),
			"score", math.Round(t.Score*1000)/1000, "reason", t.Reason)
	}
}

// tick moves every upstream whose backoff elapsed to half-open. s.mu must be held.
func (s *Scorer) tick(now time.Time) []Transition {
	var trs []Transition
	for _, n := range s.names {
		u := s.upstreams[n]
		if u.state == StateUnhealthy {
			trs = s.evaluate(u, now, "", trs)
		}
	}
	return trs
}

// State returns the current state of an upstream (healthy when it is unknown).
func (s *Scorer) State(name string) State {
	s.mu.Lock()
	now := s.cfg.Clock.Now()
	trs := s.tick(now)
	st := StateHealthy
	if u, ok := s.upstreams[name]; ok {
		st = u.state
	}
	s.mu.Unlock()
	s.emit(trs)
	return st
}

// Statuses returns a snapshot of every known upstream, in the order tracked or first seen.
func (s *Scorer) Statuses() []Status {
	s.mu.Lock()
	now := s.cfg.Clock.Now()
	trs := s.tick(now)
	out := make([]Status, 0, len(s.names))
	for _, n := range s.names {
		u := s.upstreams[n]
		st := u.win.sum(now)
		u.score, u.comp, u.eff = s.score(&st)
		ss := Status{Upstream: n, State: u.state, Since: u.since, Score: u.score, Components: u.comp, Weights: u.eff,
			Requests: st.requests, Failures: st.failures, ChecksumFailures: st.ckFails, Verified: st.verified,
			ErrorsByClass: st.classes}
		ss.TTFBP50, _ = st.quantile(0.5)
		ss.TTFBP95, _ = st.quantile(0.95)
		if u.state == StateUnhealthy {
			ss.RetryAt, ss.Backoff = u.openedAt.Add(u.backoff), u.backoff
		}
		out = append(out, ss)
	}
	s.mu.Unlock()
	s.emit(trs)
	return out
}

// Transitions returns the recent transitions, oldest first.
func (s *Scorer) Transitions() []Transition {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Transition, 0, len(s.transitions))
	out = append(out, s.transitions[s.nextTrans:]...)
	out = append(out, s.transitions[:s.nextTrans]...)
	return out
}

// TTFBQuantile returns the q-quantile of an upstream's TTFB over the window and the number
// of observations it is computed from.
func (s *Scorer) TTFBQuantile(name string, q float64) (time.Duration, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	u, ok := s.upstreams[name]
	if !ok {
		return 0, 0
	}
	st := u.win.sum(s.cfg.Clock.Now())
	d, _ := st.quantile(q)
	return d, int(st.ttfbN)
}

// Named is anything that carries an upstream name; *goproxy.Client satisfies it.
type Named interface {
	Name() string
}

// OrderBy returns items ordered for trying: healthy upstreams first, then degraded and
// half-open ones, then those with an open circuit, each tier in the given (configured)
// order. When every upstream is open the result is the given order: nothing is ever
// skipped outright. It matches the Order hook of goproxy.Chain.Walk:
//
//	Order: func(cs []*goproxy.Client) []*goproxy.Client { return health.OrderBy(scorer, cs) }
func OrderBy[T Named](s *Scorer, items []T) []T {
	s.mu.Lock()
	now := s.cfg.Clock.Now()
	trs := s.tick(now)
	tiers := make(map[string]int, len(items))
	for _, it := range items {
		if u, ok := s.upstreams[it.Name()]; ok {
			tiers[it.Name()] = u.state.tier()
		}
	}
	s.mu.Unlock()
	s.emit(trs)
	out := slices.Clone(items)
	slices.SortStableFunc(out, func(a, b T) int { return cmp.Compare(tiers[a.Name()], tiers[b.Name()]) })
	return out
}

func plural(n int, word string) string {
	if n == 1 {
		return "1 " + word
	}
	if strings.HasSuffix(word, "s") {
		return itoa(n) + " " + word + "es"
	}
	return itoa(n) + " " + word + "s"
}

func reasonSuffix(why string) string {
	if why == "" {
		return ""
	}
	return " (" + why + ")"
}
