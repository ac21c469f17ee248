package netobs

import (
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// TestMetricsPhases checks that each upstream gets the histograms of the phases it has:
// an HTTP upstream dns to transfer, an upstream answered by a child process (direct)
// lookup, vcs, go and transfer, and neither the other's.
func TestMetricsPhases(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	m.Observe(Sample{Upstream: "https://proxy.test", Status: 200, DNS: time.Millisecond, Connect: 2 * time.Millisecond,
		TLS: 3 * time.Millisecond, TTFB: 4 * time.Millisecond, Transfer: 5 * time.Millisecond})
	direct := Sample{Upstream: "direct", Status: 200, Transfer: time.Millisecond, Steps: []Step{
		{Phase: PhaseGo, Offset: 0, Duration: 100 * time.Millisecond},
		{Phase: PhaseLookup, Offset: 5 * time.Millisecond, Duration: 10 * time.Millisecond},
		{Phase: PhaseVCS, Offset: 20 * time.Millisecond, Duration: 40 * time.Millisecond},
	}}
	direct.SetStepPhases()
	m.Observe(direct)
	m.Observe(direct)
	// A fetch answered without a run (a file an earlier run left): a transfer alone.
	m.Observe(Sample{Upstream: "direct", Status: 200, Transfer: time.Millisecond})
	m.Observe(Sample{Upstream: "direct", ErrClass: "direct_not_found", Err: "not found"})

	want := map[string]map[string]uint64{
		"https://proxy.test": {"dns": 1, "connect": 1, "tls": 1, "ttfb": 1, "transfer": 1},
		"direct":             {"lookup": 2, "vcs": 2, "go": 2, "transfer": 3},
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]map[string]uint64{}
	for _, mf := range mfs {
		if mf.GetName() != "holoproxy_upstream_phase_seconds" {
			continue
		}
		for _, mt := range mf.GetMetric() {
			var up, ph string
			for _, l := range mt.GetLabel() {
				switch l.GetName() {
				case "upstream":
					up = l.GetValue()
				case "phase":
					ph = l.GetValue()
				}
			}
			if got[up] == nil {
				got[up] = map[string]uint64{}
			}
			got[up][ph] = mt.GetHistogram().GetSampleCount()
		}
	}
	for up, phases := range want {
		for ph, n := range phases {
			if got[up][ph] != n {
				t.Errorf("%s %s: %d observations; want %d", up, ph, got[up][ph], n)
			}
		}
		if len(got[up]) != len(phases) {
			t.Errorf("%s has the phases %v; want only %v", up, got[up], phases)
		}
	}
	counters := map[string]float64{}
	for _, mf := range mfs {
		for _, mt := range mf.GetMetric() {
			if mt.GetCounter() == nil {
				continue
			}
			key := mf.GetName()
			for _, l := range mt.GetLabel() {
				key += " " + l.GetValue() // labels in name order
			}
			counters[key] = mt.GetCounter().GetValue()
		}
	}
	for key, n := range map[string]float64{
		"holoproxy_upstream_requests_total 200 direct":            3,
		"holoproxy_upstream_requests_total error direct":          1,
		"holoproxy_upstream_errors_total direct_not_found direct": 1,
	} {
		if counters[key] != n {
			t.Errorf("%s = %v; want %v", key, counters[key], n)
		}
	}
}
