package server

import (
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the server's Prometheus metrics, documented in docs/metrics.md under
// "Server (serve)".
type metrics struct {
	duration *prometheus.HistogramVec // by kind, cache
	cache    *prometheus.CounterVec   // answers by kind, cache
	bytes    *prometheus.CounterVec   // body bytes served by kind, cache
	answers  sync.Map                 // kind+"/"+cache -> *answerMetrics, resolved once
	fills    *prometheus.CounterVec   // upstream attempts by upstream, outcome
	refused  *prometheus.CounterVec   // refused upstream answers by upstream, reason
	inflight prometheus.Gauge
	// sendTimeouts counts client connections the send timeout closed (sendTimeoutConn).
	sendTimeouts prometheus.Counter
	// relayed counts answers relayed from memory, not stored (relay).
	relayed prometheus.Counter
	// panics counts panics recovered, by where (recovered).
	panics *prometheus.CounterVec
}

// newMetrics creates the metrics and registers them on reg when it is not nil.
func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "holoproxy_server_request_duration_seconds",
			Help:    "Time to answer a GOPROXY request, by endpoint kind (list, latest, info, mod, zip, invalid) and cache state (hit, miss, stale, negative).",
			Buckets: []float64{.0005, .001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30, 60},
		}, []string{"kind", "cache"}),
		cache: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "holoproxy_server_cache_answers_total",
			Help: "Answers by endpoint kind and cache state (hit, miss, stale, negative).",
		}, []string{"kind", "cache"}),
		bytes: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "holoproxy_server_response_bytes_total",
			Help: "Body bytes sent to clients, by endpoint kind and cache state.",
		}, []string{"kind", "cache"}),
		fills: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "holoproxy_server_fill_attempts_total",
			Help: "Attempts to fill a cache miss from an upstream, by outcome (ok, not_found, refused, error, local_error: this server could neither store nor relay the answer, internal_error: a bug of this server, see holoproxy_server_panics_total).",
		}, []string{"upstream", "outcome"}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "holoproxy_server_refused_answers_total",
			Help: "Upstream answers refused before storing, by reason (too_large, body_truncated, timeout, invalid_zip, invalid_mod, invalid_info, invalid_list, checksum_mismatch, ...).",
		}, []string{"upstream", "reason"}),
		inflight: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "holoproxy_server_fills_in_flight",
			Help: "Fills from the upstream chain in progress (one per key, however many requests wait on it).",
		}),
		sendTimeouts: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "holoproxy_server_send_timeouts_total",
			Help: "Client connections closed because the client took no byte of an answer for the send timeout (--send-timeout).",
		}),
		relayed: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "holoproxy_server_unstored_answers_total",
			Help: "Fills answered from memory and not stored because the cache could not take files (disk full, over quota or read-only).",
		}),
		panics: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "holoproxy_server_panics_total",
			Help: "Internal errors: panics recovered (and logged with their stack) while answering a request, filling a key or prefetching, by where (request, fill, prefetch). The request got 500; the server went on. Any is a bug to report.",
		}, []string{"where"}),
	}
	if reg == nil {
		return m, nil
	}
	for _, c := range []prometheus.Collector{m.duration, m.cache, m.bytes, m.fills, m.refused, m.inflight, m.sendTimeouts, m.relayed, m.panics} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("server metrics: %w", err)
		}
	}
	return m, nil
}

// registerRelay registers the gauge of r's state on reg when it is not nil.
func (m *metrics) registerRelay(reg prometheus.Registerer, r *relay) error {
	if reg == nil {
		return nil
	}
	g := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "holoproxy_server_store_unwritable",
		Help: "1 from the moment the cache refused a file for lack of room (or being read-only) until it takes one again: meanwhile misses are relayed from memory, not stored.",
	}, func() float64 {
		if r.down.Load() {
			return 1
		}
		return 0
	})
	if err := reg.Register(g); err != nil {
		return fmt.Errorf("server metrics: %w", err)
	}
	return nil
}

// answerMetrics are the children of one kind and cache state. Looking them up by label
// values hashes and locks on every request; there are a few dozen pairs, so each is looked
// up once.
type answerMetrics struct {
	duration prometheus.Observer
	count    prometheus.Counter
	bytes    prometheus.Counter
}

// observeRequest records one answered request.
func (m *metrics) observeRequest(kind, cache string, bytes int64, d time.Duration) {
	key := kind + "/" + cache
	v, ok := m.answers.Load(key)
	if !ok {
		v, _ = m.answers.LoadOrStore(key, &answerMetrics{
			duration: m.duration.WithLabelValues(kind, cache),
			count:    m.cache.WithLabelValues(kind, cache),
			bytes:    m.bytes.WithLabelValues(kind, cache),
		})
	}
	am := v.(*answerMetrics)
	am.duration.Observe(d.Seconds())
	am.count.Inc()
	if bytes > 0 {
		am.bytes.Add(float64(bytes))
	}
}
