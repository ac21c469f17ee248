package checksum

import (
	"errors"
	"fmt"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics exposes checksum verification on /metrics: whether it is on (and why not), a
// Verifier's outcomes, a SumDBProxy's answers, and the checksum failures charged to each
// upstream, which the server reports through ObserveFill. The metrics are documented in
// docs/metrics.md under "Checksum (serve)".
type Metrics struct {
	v        *Verifier
	p        *SumDBProxy
	failures *prometheus.CounterVec

	enabled, warning, verifications, security    *prometheus.Desc
	proxyAnswers, proxyPrivate, proxyUpstreamErr *prometheus.Desc
}

// NewMetrics creates the metrics of v and p (either may be nil) and registers them on reg.
func NewMetrics(reg prometheus.Registerer, v *Verifier, p *SumDBProxy) (*Metrics, error) {
	m := &Metrics{
		v: v,
		p: p,
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "holoproxy_checksum_failures_total",
			Help: "Upstream answers (.mod or .zip) refused because their hash differs from the checksum database's, by upstream.",
		}, []string{"upstream"}),
		enabled: prometheus.NewDesc("holoproxy_checksum_verification_enabled",
			"1 when every .mod and .zip is verified against the checksum database before it is stored, 0 when verification is off.",
			[]string{"database"}, nil),
		warning: prometheus.NewDesc("holoproxy_checksum_verification_warning",
			"1, with the reason, when verification is off although a checksum database was asked for (no key known for it).",
			[]string{"reason"}, nil),
		verifications: prometheus.NewDesc("holoproxy_checksum_verifications_total",
			"Files checked before storing, by outcome: verified, mismatch, exempt (GONOSUMDB/GOPRIVATE or verification off), error (could not be verified).",
			[]string{"outcome"}, nil),
		security: prometheus.NewDesc("holoproxy_checksum_database_misbehavior_total",
			"Times the checksum database was caught serving signed trees that are not one timeline; verification refuses everything after the first until a restart.",
			nil, nil),
		proxyAnswers: prometheus.NewDesc("holoproxy_sumdb_proxy_answers_total",
			"Answers of /sumdb/ (lookup, tile, latest), by cache state: hit, miss (fetched from the database), stale (cached copy served because the database failed).",
			[]string{"cache"}, nil),
		proxyPrivate: prometheus.NewDesc("holoproxy_sumdb_proxy_private_refused_total",
			"Lookups through /sumdb/ of GONOSUMDB/GOPRIVATE module paths, answered 404 and never sent to the database.",
			nil, nil),
		proxyUpstreamErr: prometheus.NewDesc("holoproxy_sumdb_proxy_upstream_errors_total",
			"Fetches of /sumdb/ from the checksum database that failed (whether or not a stale copy was served).",
			nil, nil),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.failures, statsCollector{m}} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("checksum metrics: %w", err)
		}
	}
	return m, nil
}

// ObserveFill counts err against upstream when it is a checksum mismatch
// (errors.Is(err, ErrChecksumMismatch)); other outcomes are ignored. Its signature fits the
// server's OnFill hook, minus the request.
func (m *Metrics) ObserveFill(upstream string, err error) {
	if err != nil && errors.Is(err, ErrChecksumMismatch) {
		m.failures.WithLabelValues(upstream).Inc()
	}
}

// statsCollector turns the Stats of the Verifier and the SumDBProxy into metrics when scraped.
type statsCollector struct{ m *Metrics }

func (c statsCollector) Describe(ch chan<- *prometheus.Desc) {
	m := c.m
	for _, d := range []*prometheus.Desc{m.enabled, m.warning, m.verifications, m.security,
		m.proxyAnswers, m.proxyPrivate, m.proxyUpstreamErr} {
		ch <- d
	}
}

func (c statsCollector) Collect(ch chan<- prometheus.Metric) {
	m := c.m
	if v := m.v; v != nil {
		on := 0.0
		if v.Enabled() {
			on = 1
		}
		ch <- prometheus.MustNewConstMetric(m.enabled, prometheus.GaugeValue, on, v.DB().Name)
		if w := v.Warning(); w != "" {
			ch <- prometheus.MustNewConstMetric(m.warning, prometheus.GaugeValue, 1, w)
		}
		s := v.Stats()
		for _, o := range []struct {
			outcome string
			n       int64
		}{{"verified", s.Verified}, {"mismatch", s.Mismatches}, {"exempt", s.Exempt}, {"error", s.Errors}} {
			ch <- prometheus.MustNewConstMetric(m.verifications, prometheus.CounterValue, float64(o.n), o.outcome)
		}
		ch <- prometheus.MustNewConstMetric(m.security, prometheus.CounterValue, float64(s.Security))
	}
	if p := m.p; p != nil {
		s := p.Stats()
		ch <- prometheus.MustNewConstMetric(m.proxyAnswers, prometheus.CounterValue, float64(s.Hits), "hit")
		ch <- prometheus.MustNewConstMetric(m.proxyAnswers, prometheus.CounterValue, float64(s.Misses), "miss")
		ch <- prometheus.MustNewConstMetric(m.proxyAnswers, prometheus.CounterValue, float64(s.Stale), "stale")
		ch <- prometheus.MustNewConstMetric(m.proxyPrivate, prometheus.CounterValue, float64(s.PrivateRefused))
		ch <- prometheus.MustNewConstMetric(m.proxyUpstreamErr, prometheus.CounterValue, float64(s.UpstreamErrors))
	}
}
