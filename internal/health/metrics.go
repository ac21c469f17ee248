package health

import (
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the health metrics, documented in docs/health.md.
type metrics struct {
	score       *prometheus.GaugeVec
	state       *prometheus.GaugeVec
	transitions *prometheus.CounterVec
	probes      *prometheus.CounterVec
	hedges      *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		score: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "holoproxy_upstream_health_score",
			Help: "Health score of each upstream in [0,1] (docs/health.md).",
		}, []string{"upstream"}),
		state: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "holoproxy_upstream_health_state",
			Help: "1 for the current health state of each upstream (healthy, degraded, half-open, unhealthy), else 0.",
		}, []string{"upstream", "state"}),
		transitions: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "holoproxy_upstream_health_transitions_total",
			Help: "Changes of upstream health state.",
		}, []string{"upstream", "from", "to"}),
		probes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "holoproxy_upstream_probes_total",
			Help: "Active health probes by result (ok, error).",
		}, []string{"upstream", "result"}),
		hedges: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "holoproxy_hedged_requests_total",
			Help: "Hedging decisions when an upstream was slow to send its first byte: fired, or capped by the hedge budget.",
		}, []string{"upstream", "result"}),
	}
	if reg != nil {
		for _, c := range []prometheus.Collector{m.score, m.state, m.transitions, m.probes, m.hedges} {
			if err := reg.Register(c); err != nil {
				return nil, fmt.Errorf("health metrics: %w", err)
			}
		}
	}
	return m, nil
}

func (m *metrics) setState(upstream string, st State, v float64) {
	m.state.WithLabelValues(upstream, string(st)).Set(v)
}
