package health

import (
	"bytes"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/holoproxy/holoproxy/internal/netobs"
)

// fakeClock is a Clock moved by hand.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)} }

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

const (
	upA = "https://proxy-a.test"
	upB = "https://proxy-b.test"
	upC = "https://proxy-c.test"
)

func ok(up string, ttfb time.Duration) netobs.Sample {
	return netobs.Sample{Upstream: up, Kind: "mod", Status: 200, TTFB: ttfb, Total: ttfb}
}

func fail(up, class string) netobs.Sample {
	return netobs.Sample{Upstream: up, Kind: "mod", ErrClass: class}
}

func newTestScorer(t *testing.T, cfg Config) (*Scorer, *fakeClock, *bytes.Buffer) {
	t.Helper()
	clk := newFakeClock()
	var logs bytes.Buffer
	cfg.Clock = clk
	cfg.Logger = slog.New(slog.NewTextHandler(&logs, nil))
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	return s, clk, &logs
}

// step is one event fed to a Scorer in a table-driven test.
type step struct {
	advance time.Duration
	sample  *netobs.Sample
	verify  *bool // checksum verification outcome for upA: true = failed
	slow    bool  // a slow signal for upA (Scorer.Slow)
	want    State // state of upA after the step ("" = do not check)
}

func smp(s netobs.Sample) *netobs.Sample { return &s }
func boolp(b bool) *bool                 { return &b }

func TestScorerStates(t *testing.T) {
	// warmup returns 20 fast successes followed by more steps (a fresh slice each time).
	warmup := func(more ...step) []step {
		var out []step
		for range 20 {
			out = append(out, step{sample: smp(ok(upA, 50*time.Millisecond))})
		}
		return append(out, more...)
	}
	tests := []struct {
		name  string
		steps []step
	}{
		{"no data is healthy", []step{{want: StateHealthy}}},
		{"fast successes stay healthy", warmup(step{want: StateHealthy})},
		{"404 answers are not failures", []step{
			{sample: smp(netobs.Sample{Upstream: upA, Status: 404, TTFB: 10 * time.Millisecond})},
			{sample: smp(netobs.Sample{Upstream: upA, Status: 410, TTFB: 10 * time.Millisecond})},
			{sample: smp(netobs.Sample{Upstream: upA, Status: 404, TTFB: 10 * time.Millisecond}), want: StateHealthy},
		}},
		{"a run of tcp_timeout opens the circuit even after many successes", warmup(
			step{sample: smp(fail(upA, netobs.ClassTCPTimeout)), want: StateHealthy},
			step{sample: smp(fail(upA, netobs.ClassTCPTimeout)), want: StateHealthy},
			step{sample: smp(fail(upA, netobs.ClassTCPTimeout)), want: StateUnhealthy},
		)},
		{"cancelled exchanges are ignored", []step{
			{sample: smp(fail(upA, netobs.ClassCanceled))},
			{sample: smp(fail(upA, netobs.ClassCanceled))},
			{sample: smp(fail(upA, netobs.ClassCanceled))},
			{sample: smp(fail(upA, netobs.ClassCanceled)), want: StateHealthy},
		}},
		{"waits cut by the cap on connections are ignored", warmup(
			step{sample: smp(fail(upA, netobs.ClassConnCap))},
			step{sample: smp(fail(upA, netobs.ClassConnCap))},
			step{sample: smp(fail(upA, netobs.ClassConnCap))},
			step{sample: smp(fail(upA, netobs.ClassConnCap)), want: StateHealthy},
		)},
		{"a success breaks a run of failures; the error rate degrades", warmup(
			step{sample: smp(fail(upA, netobs.HTTPClass(503)))},
			step{sample: smp(fail(upA, netobs.ClassTimeout))},
			step{sample: smp(ok(upA, 50*time.Millisecond))},
			step{sample: smp(fail(upA, netobs.ClassTCPReset))},
			step{sample: smp(fail(upA, netobs.ClassTCPReset))},
			step{sample: smp(ok(upA, 50*time.Millisecond))},
			step{sample: smp(netobs.Sample{Upstream: upA, Status: 502})},
			step{sample: smp(ok(upA, 50*time.Millisecond))},
			step{sample: smp(netobs.Sample{Upstream: upA, Status: 500})},
			step{sample: smp(netobs.Sample{Upstream: upA, Status: 500})},
			step{sample: smp(ok(upA, 50*time.Millisecond))},
			step{sample: smp(fail(upA, netobs.ClassTimeout))},
			step{sample: smp(fail(upA, netobs.ClassTimeout))},
			step{sample: smp(ok(upA, 50*time.Millisecond)), want: StateDegraded},
		)},
		{"slow first bytes degrade", []step{
			{sample: smp(ok(upA, 3*time.Second))},
			{sample: smp(ok(upA, 3*time.Second))},
			{sample: smp(ok(upA, 3*time.Second)), want: StateDegraded},
		}},
		{"missing the hedge delay more often than the budget degrades; healthy again later", warmup(
			step{slow: true}, step{sample: smp(ok(upA, 50*time.Millisecond))},
			step{slow: true}, step{sample: smp(ok(upA, 50*time.Millisecond))},
			step{slow: true, want: StateHealthy}, // 3 of 33: within SlowShare (10 %)
			step{sample: smp(ok(upA, 50*time.Millisecond))},
			step{slow: true, want: StateDegraded}, // 4 of 35, though the score is 0.93
			step{advance: 31 * time.Second, sample: smp(ok(upA, 50*time.Millisecond)), want: StateHealthy},
		)},
		{"failures leave the window", func() []step {
			var steps []step
			for range 12 { // 12 failures among 44 exchanges: 27 %
				steps = append(steps, step{sample: smp(fail(upA, netobs.ClassTimeout))}, step{sample: smp(ok(upA, 50*time.Millisecond))})
			}
			steps[len(steps)-1].want = StateDegraded
			return warmup(append(steps, step{advance: 31 * time.Second, sample: smp(ok(upA, 50*time.Millisecond)), want: StateHealthy})...)
		}()},
		{"an error rate of 10 % stays healthy", func() []step {
			var steps []step
			for range 3 {
				steps = append(steps, step{sample: smp(fail(upA, netobs.ClassTimeout))})
				for range 9 {
					steps = append(steps, step{sample: smp(ok(upA, 50*time.Millisecond))})
				}
			}
			steps[len(steps)-1].want = StateHealthy
			return steps
		}()},
		{"half-open success closes the circuit", []step{
			{sample: smp(fail(upA, netobs.ClassTCPTimeout))},
			{sample: smp(fail(upA, netobs.ClassTCPTimeout))},
			{sample: smp(fail(upA, netobs.ClassTCPTimeout)), want: StateUnhealthy},
			{advance: 999 * time.Millisecond, want: StateUnhealthy},
			{advance: time.Millisecond, want: StateHalfOpen},
			{sample: smp(ok(upA, 50*time.Millisecond)), want: StateHalfOpen},
			{sample: smp(ok(upA, 50*time.Millisecond)), want: StateHalfOpen},
			{sample: smp(ok(upA, 50*time.Millisecond)), want: StateHealthy},
			// The window was cleared on close: one more failure does not reopen it.
			{sample: smp(fail(upA, netobs.ClassTCPTimeout)), want: StateHealthy},
		}},
		{"half-open failure reopens", []step{
			{sample: smp(fail(upA, netobs.ClassTCPRefused))},
			{sample: smp(fail(upA, netobs.ClassTCPRefused))},
			{sample: smp(fail(upA, netobs.ClassTCPRefused)), want: StateUnhealthy},
			{advance: time.Second, want: StateHalfOpen},
			{sample: smp(ok(upA, 50*time.Millisecond)), want: StateHalfOpen},
			{sample: smp(fail(upA, netobs.ClassTCPRefused)), want: StateUnhealthy},
			{advance: time.Second, want: StateUnhealthy}, // backoff doubled to 2s
			{advance: time.Second, want: StateHalfOpen},
		}},
		{"checksum failures degrade an otherwise perfect upstream", warmup(
			step{verify: boolp(false)},
			step{verify: boolp(false)},
			step{verify: boolp(false)},
			step{verify: boolp(false)},
			step{verify: boolp(false)},
			step{verify: boolp(false)},
			step{verify: boolp(false)},
			step{verify: boolp(false), want: StateHealthy},
			step{verify: boolp(true), want: StateHealthy}, // one bad file among nine
			step{verify: boolp(true), want: StateHealthy},
			step{verify: boolp(true), want: StateDegraded}, // three among eleven
		)},
		{"a second checksum failure alone degrades", []step{
			{verify: boolp(true), want: StateHealthy},
			{verify: boolp(true), want: StateDegraded},
		}},
		{"many checksum failures open the circuit", []step{
			{verify: boolp(true)},
			{verify: boolp(true)},
			{verify: boolp(true), want: StateUnhealthy},
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, clk, _ := newTestScorer(t, Config{})
			for i, st := range tt.steps {
				clk.Advance(st.advance)
				if st.sample != nil {
					s.Observe(*st.sample)
				}
				if st.verify != nil {
					s.ReportVerify(upA, *st.verify)
				}
				if st.slow {
					s.Slow(upA)
				}
				if st.want != "" {
					if got := s.State(upA); got != st.want {
						t.Fatalf("step %d: state %s, want %s (status %+v)", i, got, st.want, s.Statuses())
					}
				}
			}
		})
	}
}

func TestBackoffGrows(t *testing.T) {
	s, clk, _ := newTestScorer(t, Config{BackoffMin: time.Second, BackoffMax: 5 * time.Second})
	trip := func() {
		for range 3 {
			s.Observe(fail(upA, netobs.ClassTimeout))
		}
	}
	trip()
	var got []time.Duration
	for range 5 {
		st := s.Statuses()[0]
		if st.State != StateUnhealthy {
			t.Fatalf("state %s, want unhealthy", st.State)
		}
		got = append(got, st.Backoff)
		clk.Advance(st.Backoff)
		if s.State(upA) != StateHalfOpen {
			t.Fatalf("not half-open after the backoff %s", st.Backoff)
		}
		s.Observe(fail(upA, netobs.ClassTimeout)) // the trial fails
	}
	want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 5 * time.Second, 5 * time.Second}
	if !equal(got, want) {
		t.Fatalf("backoffs %v, want %v", got, want)
	}
	// Closed for longer than a window, the next trip starts from the minimum again.
	clk.Advance(5 * time.Second)
	for range 3 {
		s.Observe(ok(upA, time.Millisecond))
	}
	if s.State(upA) != StateHealthy {
		t.Fatalf("state %s after half-open successes, want healthy", s.State(upA))
	}
	clk.Advance(31 * time.Second)
	trip()
	if b := s.Statuses()[0].Backoff; b != time.Second {
		t.Fatalf("backoff after a stable close %s, want 1s", b)
	}
}

func equal[T comparable](a, b []T) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

type named string

func (n named) Name() string { return string(n) }

func names(ns []named) string {
	var out []string
	for _, n := range ns {
		out = append(out, string(n))
	}
	return strings.Join(out, " ")
}

func TestOrderBy(t *testing.T) {
	configured := []named{upA, upB, upC}
	tests := []struct {
		name  string
		setup func(s *Scorer, clk *fakeClock)
		want  []named
	}{
		{"all healthy keeps configured order", func(*Scorer, *fakeClock) {}, []named{upA, upB, upC}},
		{"degraded moves behind healthy", func(s *Scorer, _ *fakeClock) {
			for range 3 {
				s.Observe(ok(upA, 3*time.Second))
			}
		}, []named{upB, upC, upA}},
		{"open moves behind degraded", func(s *Scorer, _ *fakeClock) {
			for range 3 {
				s.Observe(ok(upB, 3*time.Second))
				s.Observe(fail(upA, netobs.ClassTCPTimeout))
			}
		}, []named{upC, upB, upA}},
		{"all open keeps configured order", func(s *Scorer, _ *fakeClock) {
			for range 3 {
				for _, u := range configured {
					s.Observe(fail(string(u), netobs.ClassTCPTimeout))
				}
			}
		}, []named{upA, upB, upC}},
		{"half-open ranks with degraded", func(s *Scorer, clk *fakeClock) {
			for range 3 {
				s.Observe(fail(upA, netobs.ClassTCPTimeout))
				s.Observe(fail(upB, netobs.ClassTCPTimeout))
			}
			clk.Advance(time.Second) // A and B half-open
			for range 3 {
				s.Observe(fail(upC, netobs.ClassTCPTimeout)) // C open
			}
		}, []named{upA, upB, upC}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, clk, _ := newTestScorer(t, Config{})
			s.Track(upA, upB, upC)
			tt.setup(s, clk)
			got := OrderBy(s, configured)
			if names(got) != names(tt.want) {
				t.Fatalf("order %s, want %s", names(got), names(tt.want))
			}
			if names(configured) != names([]named{upA, upB, upC}) {
				t.Fatal("OrderBy changed its argument")
			}
		})
	}
}

func TestChecksumWeightGrows(t *testing.T) {
	s, _, _ := newTestScorer(t, Config{})
	var prevWeight, prevScore float64 = 0, 1
	for i := range 4 {
		for range 9 {
			s.ReportVerify(upA, false)
		}
		s.ReportVerify(upA, true)
		st := s.Statuses()[0]
		if i == 0 && st.Weights.Checksum <= s.cfg.Weights.Checksum {
			t.Fatalf("checksum weight %v did not grow above its base %v", st.Weights.Checksum, s.cfg.Weights.Checksum)
		}
		if st.Weights.Checksum < prevWeight {
			t.Fatalf("round %d: checksum weight fell from %v to %v", i, prevWeight, st.Weights.Checksum)
		}
		if st.Score > prevScore {
			t.Fatalf("round %d: score rose from %v to %v", i, prevScore, st.Score)
		}
		sum := st.Weights.Connect + st.Weights.TTFB + st.Weights.Errors + st.Weights.Checksum
		if sum < 0.999 || sum > 1.001 {
			t.Fatalf("effective weights sum to %v", sum)
		}
		prevWeight, prevScore = st.Weights.Checksum, st.Score
	}
	if prevWeight >= 1 {
		t.Fatalf("checksum weight %v at a 10%% failure rate, want below 1", prevWeight)
	}
	// At a 20 % failure rate (prior included) the checksum component carries the whole score.
	s2, _, _ := newTestScorer(t, Config{})
	s2.ReportVerify(upA, true)
	s2.ReportVerify(upA, true) // 2 / (2 + 8)
	if st := s2.Statuses()[0]; st.Weights.Checksum != 1 || st.Score != st.Components.Checksum {
		t.Fatalf("at a 20%% failure rate: weights %+v, score %v, component %v; want the checksum component alone",
			st.Weights, st.Score, st.Components.Checksum)
	}
}

func TestTransitionsLoggedAndCounted(t *testing.T) {
	reg := prometheus.NewRegistry()
	s, clk, logs := newTestScorer(t, Config{Registerer: reg})
	for range 3 {
		s.Observe(fail(upA, netobs.ClassTCPTimeout))
	}
	clk.Advance(time.Second)
	for range 3 {
		s.Observe(ok(upA, time.Millisecond))
	}
	trs := s.Transitions()
	var path []string
	for _, tr := range trs {
		path = append(path, string(tr.From)+">"+string(tr.To))
	}
	if got, want := strings.Join(path, " "), "healthy>degraded degraded>unhealthy unhealthy>half-open half-open>healthy"; got != want {
		t.Fatalf("transitions %q, want %q", got, want)
	}
	if n := value(t, s.metrics.transitions.WithLabelValues(upA, "degraded", "unhealthy")); n != 1 {
		t.Fatalf("transition metric %v, want 1", n)
	}
	if n := value(t, s.metrics.state.WithLabelValues(upA, "healthy")); n != 1 {
		t.Fatalf("healthy state gauge %v, want 1", n)
	}
	if n := value(t, s.metrics.state.WithLabelValues(upA, "unhealthy")); n != 0 {
		t.Fatalf("unhealthy state gauge %v, want 0", n)
	}
	if !strings.Contains(logs.String(), "level=WARN msg=\"upstream health changed\" upstream="+upA+" from=degraded to=unhealthy") {
		t.Fatalf("no warning for the open circuit in logs:\n%s", logs)
	}
}

func TestHistogramQuantile(t *testing.T) {
	var st stats
	for i := 1; i <= 100; i++ {
		st.ttfbN++
		st.ttfb[histIndex(time.Duration(i)*10*time.Millisecond)]++
	}
	for _, tc := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 500 * time.Millisecond}, {0.95, 950 * time.Millisecond}, {0.01, 10 * time.Millisecond}} {
		got, ok := st.quantile(tc.q)
		if !ok || got < tc.want || float64(got) > float64(tc.want)*histGrowth {
			t.Errorf("quantile(%v) = %v, want within a bucket above %v", tc.q, got, tc.want)
		}
	}
}

// value reads a counter or gauge.
func value(t *testing.T, m prometheus.Metric) float64 {
	t.Helper()
	var d dto.Metric
	if err := m.Write(&d); err != nil {
		t.Fatal(err)
	}
	switch {
	case d.Counter != nil:
		return d.Counter.GetValue()
	case d.Gauge != nil:
		return d.Gauge.GetValue()
	}
	t.Fatalf("metric %v is neither counter nor gauge", m.Desc())
	return 0
}
