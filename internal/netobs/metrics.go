package netobs

import (
	"fmt"
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

// Metrics turns Samples and DNS queries into Prometheus metrics. It is a Sink (hand it to
// TransportConfig.Sink) and a DNSObserver (hand it to Resolver.Observer). The metrics are
// documented in docs/metrics.md.
type Metrics struct {
	phase       *prometheus.HistogramVec
	requests    *prometheus.CounterVec
	errors      *prometheus.CounterVec
	conns       *prometheus.CounterVec
	handshakes  *prometheus.CounterVec
	dnsQueries  *prometheus.CounterVec
	dnsDuration *prometheus.HistogramVec
}

// NewMetrics creates the metrics and registers them on reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		phase: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "holoproxy_upstream_phase_seconds",
			Help:    "Duration of each phase of upstream exchanges (dns, connect, tls, ttfb, transfer).",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"upstream", "phase"}),
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "holoproxy_upstream_requests_total",
			Help: "Upstream exchanges by HTTP status code (\"error\" when no answer came).",
		}, []string{"upstream", "code"}),
		errors: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "holoproxy_upstream_errors_total",
			Help: "Failed upstream exchanges by error class.",
		}, []string{"upstream", "class"}),
		conns: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "holoproxy_upstream_connections_total",
			Help: "Connections used by upstream exchanges: newly opened or reused from the pool.",
		}, []string{"upstream", "state"}),
		handshakes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "holoproxy_upstream_tls_handshakes_total",
			Help: "Completed TLS handshakes by version, key-exchange group and resumption.",
		}, []string{"upstream", "version", "group", "resumed"}),
		dnsQueries: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "holoproxy_dns_queries_total",
			Help: "DNS lookups by backend, response code and cache state (miss, hit, stale, coalesced).",
		}, []string{"backend", "rcode", "cache"}),
		dnsDuration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "holoproxy_dns_query_seconds",
			Help:    "Time to get an answer from the DNS backend (cache misses only).",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5},
		}, []string{"backend"}),
	}
	for _, c := range []prometheus.Collector{m.phase, m.requests, m.errors, m.conns, m.handshakes, m.dnsQueries, m.dnsDuration} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("netobs metrics: %w", err)
		}
	}
	return m, nil
}

// Observe implements Sink.
func (m *Metrics) Observe(s Sample) {
	up := s.Upstream
	if up == "" {
		up = s.Host
	}
	for _, p := range Phases {
		if d := s.PhaseDuration(p); d > 0 {
			m.phase.WithLabelValues(up, string(p)).Observe(d.Seconds())
		}
	}
	code := "error"
	if s.Status != 0 {
		code = strconv.Itoa(s.Status)
	}
	m.requests.WithLabelValues(up, code).Inc()
	if s.ErrClass != "" {
		m.errors.WithLabelValues(up, s.ErrClass).Inc()
	}
	switch {
	case s.Reused:
		m.conns.WithLabelValues(up, "reused").Inc()
	case s.Connect > 0 && s.RemoteAddr != "":
		m.conns.WithLabelValues(up, "new").Inc()
	}
	if s.TLSVersion != "" {
		m.handshakes.WithLabelValues(up, s.TLSVersion, s.TLSCurve, strconv.FormatBool(s.TLSResumed)).Inc()
	}
}

// ObserveDNS implements DNSObserver.
func (m *Metrics) ObserveDNS(q DNSQuery) {
	m.dnsQueries.WithLabelValues(q.Backend, q.Rcode, q.Cache).Inc()
	if q.Cache == CacheMiss || q.Cache == CacheStale {
		m.dnsDuration.WithLabelValues(q.Backend).Observe(q.Latency.Seconds())
	}
}
