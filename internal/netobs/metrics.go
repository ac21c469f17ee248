package netobs

import (
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"

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
	connWaits   *prometheus.Desc

	// waitSources are the Transports whose requests waiting for a connection the
	// connection_waiters gauge counts (WatchConnWaits).
	waitMu      sync.Mutex
	waitSources []*Transport

	// byUpstream caches the children of one upstream (string -> *upstreamMetrics), so that
	// observing a Sample does not hash label values for every metric it touches.
	byUpstream sync.Map
	// last is the upstream observed last: a Transport mostly talks to one upstream at a
	// time, and checking it first skips the map's hashing (~35 ns of ~1 µs, BenchmarkOwnCost).
	last atomic.Pointer[upstreamMetrics]
}

// upstreamMetrics holds the label-bound children of one upstream.
type upstreamMetrics struct {
	name string
	// phase holds the histogram of each phase (indexed like phaseOrder), made when the
	// upstream first has the phase: an HTTP upstream never shows direct's step phases,
	// nor direct the phases of an HTTP exchange.
	phase          [len(phaseOrder)]atomic.Pointer[phaseObserver]
	reused, opened prometheus.Counter
	// codes holds the request counter of each status code (index 0: no answer), made on
	// first use; an array, not a map, so that no lookup boxes the code.
	codes [600]atomic.Pointer[codeCounter]
}

type codeCounter struct{ prometheus.Counter }

type phaseObserver struct{ prometheus.Observer }

// phaseOrder fixes the array size of upstreamMetrics.phase: the phases of an HTTP
// exchange (Phases), then those of one answered by a child process (StepPhases).
var phaseOrder = [...]Phase{PhaseDNS, PhaseConnect, PhaseTLS, PhaseTTFB, PhaseTransfer, PhaseLookup, PhaseVCS, PhaseGo}

// observePhase observes d in the histogram of phase i, made on first use.
func (u *upstreamMetrics) observePhase(m *Metrics, i int, d float64) {
	o := u.phase[i].Load()
	if o == nil {
		o = &phaseObserver{m.phase.WithLabelValues(u.name, string(phaseOrder[i]))}
		if !u.phase[i].CompareAndSwap(nil, o) {
			o = u.phase[i].Load()
		}
	}
	o.Observe(d)
}

func (m *Metrics) upstream(up string) *upstreamMetrics {
	if u := m.last.Load(); u != nil && u.name == up {
		return u
	}
	if u, ok := m.byUpstream.Load(up); ok {
		m.last.Store(u.(*upstreamMetrics))
		return u.(*upstreamMetrics)
	}
	u := &upstreamMetrics{
		name:   up,
		reused: m.conns.WithLabelValues(up, "reused"),
		opened: m.conns.WithLabelValues(up, "new"),
	}
	actual, _ := m.byUpstream.LoadOrStore(up, u)
	return actual.(*upstreamMetrics)
}

func (u *upstreamMetrics) code(m *Metrics, up string, status int) prometheus.Counter {
	if status < 0 || status >= len(u.codes) {
		return m.requests.WithLabelValues(up, strconv.Itoa(status))
	}
	if c := u.codes[status].Load(); c != nil {
		return c.Counter
	}
	code := "error"
	if status != 0 {
		code = strconv.Itoa(status)
	}
	c := &codeCounter{m.requests.WithLabelValues(up, code)}
	if !u.codes[status].CompareAndSwap(nil, c) {
		c = u.codes[status].Load()
	}
	return c.Counter
}

// NewMetrics creates the metrics and registers them on reg.
func NewMetrics(reg prometheus.Registerer) (*Metrics, error) {
	m := &Metrics{
		phase: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "holoproxy_upstream_phase_seconds",
			Help:    "Duration of each phase of upstream exchanges (dns, connect, tls, ttfb, transfer; for direct: lookup, vcs, go, transfer).",
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
	m.connWaits = prometheus.NewDesc("holoproxy_upstream_connection_waiters",
		"Upstream requests waiting now for a connection because the cap on connections to the upstream's host is reached.",
		[]string{"upstream"}, nil)
	for _, c := range []prometheus.Collector{m.phase, m.requests, m.errors, m.conns, m.handshakes, m.dnsQueries, m.dnsDuration, connWaitCollector{m}} {
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
	u := m.upstream(up)
	for i, p := range phaseOrder {
		if d := s.PhaseDuration(p); d > 0 {
			u.observePhase(m, i, d.Seconds())
		}
	}
	u.code(m, up, s.Status).Inc()
	if s.ErrClass != "" {
		m.errors.WithLabelValues(up, s.ErrClass).Inc()
	}
	switch {
	case s.Reused:
		u.reused.Inc()
	case s.Connect > 0 && s.RemoteAddr != "":
		u.opened.Inc()
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

// WatchConnWaits makes holoproxy_upstream_connection_waiters count the requests of t that
// wait for a connection under its MaxConnsPerHost (added up over every Transport watched).
func (m *Metrics) WatchConnWaits(t *Transport) {
	m.waitMu.Lock()
	defer m.waitMu.Unlock()
	m.waitSources = append(m.waitSources, t)
}

// connWaitCollector reads the connection waiters of the watched Transports when scraped:
// requests wait rarely, and a gauge kept up to date would cost every request two updates.
type connWaitCollector struct{ m *Metrics }

func (c connWaitCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.m.connWaits }

// Collect reports the waiters of each upstream, and 0 for every other upstream observed
// (when some Transport with a cap is watched), so that the series do not come and go.
func (c connWaitCollector) Collect(ch chan<- prometheus.Metric) {
	m := c.m
	m.waitMu.Lock()
	sources := m.waitSources
	m.waitMu.Unlock()
	n := map[string]int{}
	capped := false
	for _, t := range sources {
		capped = capped || t.waits != nil
		t.ConnWaiting(n)
	}
	if !capped {
		return
	}
	m.byUpstream.Range(func(k, _ any) bool {
		if _, ok := n[k.(string)]; !ok {
			n[k.(string)] = 0
		}
		return true
	})
	for up, v := range n {
		ch <- prometheus.MustNewConstMetric(m.connWaits, prometheus.GaugeValue, float64(v), up)
	}
}
