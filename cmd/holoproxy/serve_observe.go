package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/spf13/pflag"

	"github.com/holoproxy/holoproxy/internal/netobs"
)

// observeOptions are the flags of serve's shared DNS cache (the backend and the trusted
// roots are upstreamFlags, shared with the other subcommands).
type observeOptions struct {
	dnsMinTTL time.Duration
	dnsMaxTTL time.Duration
}

// addObserveFlags defines the flags of o on f.
func addObserveFlags(f *pflag.FlagSet, o *observeOptions) {
	f.DurationVar(&o.dnsMinTTL, "dns-min-ttl", 5*time.Second, "floor on how long a DNS answer is cached")
	f.DurationVar(&o.dnsMaxTTL, "dns-max-ttl", time.Hour, "ceiling on how long a DNS answer is cached")
}

// observability is what serve observes its upstreams with: one Prometheus registry for
// /metrics, the netobs metrics, the shared DNS resolver, and the sinks every upstream
// Sample goes to.
type observability struct {
	reg      *prometheus.Registry
	metrics  *netobs.Metrics
	resolver *netobs.Resolver
	// sinks receive the Sample of every upstream exchange: the metrics and the debug log
	// line. Append to it before upstreamClient builds the transport.
	sinks netobs.Sinks
}

// newObservability builds the registry (with the Go and process collectors), the netobs
// metrics, and the resolver of the DNS flags (o's cache bounds, u's backend and roots).
// Bad flag values are usage errors.
func newObservability(o observeOptions, u upstreamFlags, log *slog.Logger) (*observability, error) {
	if o.dnsMinTTL <= 0 || o.dnsMaxTTL <= 0 || o.dnsMinTTL > o.dnsMaxTTL {
		return nil, usagef("--dns-min-ttl %v and --dns-max-ttl %v: want both above zero and min <= max", o.dnsMinTTL, o.dnsMaxTTL)
	}
	backend, err := u.backend()
	if err != nil {
		return nil, err
	}
	reg := prometheus.NewRegistry()
	if err := reg.Register(collectors.NewGoCollector()); err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	// go_build_info{path,version,checksum}: which holoproxy each replica runs (go_info,
	// from the Go collector, says which Go built it).
	if err := reg.Register(collectors.NewBuildInfoCollector()); err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	if err := reg.Register(collectors.NewProcessCollector(collectors.ProcessCollectorOpts{})); err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	m, err := netobs.NewMetrics(reg)
	if err != nil {
		return nil, err
	}
	return &observability{
		reg:      reg,
		metrics:  m,
		resolver: &netobs.Resolver{Backend: backend, MinTTL: o.dnsMinTTL, MaxTTL: o.dnsMaxTTL, Observer: m},
		sinks:    netobs.Sinks{m, sampleLogger(log)},
	}, nil
}

// handler serves the registry at /metrics.
func (ob *observability) handler() http.Handler {
	return promhttp.HandlerFor(ob.reg, promhttp.HandlerOpts{})
}

// sampleLogger logs every upstream exchange, its whole Sample, at debug level.
func sampleLogger(log *slog.Logger) netobs.Sink {
	return netobs.SinkFunc(func(s netobs.Sample) {
		ctx := context.Background()
		if log.Enabled(ctx, slog.LevelDebug) {
			log.LogAttrs(ctx, slog.LevelDebug, "upstream exchange", slog.Any("sample", s))
		}
	})
}

// userAgentTransport sets holoproxy's User-Agent on upstream requests that carry none, so
// that upstreams and the checksum database can tell holoproxy from the go command.
type userAgentTransport struct {
	rt http.RoundTripper
	ua string
}

func (t userAgentTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Header.Get("User-Agent") != "" {
		return t.rt.RoundTrip(req)
	}
	r := *req // a RoundTripper must not change the caller's request
	r.Header = req.Header.Clone()
	if r.Header == nil {
		r.Header = http.Header{}
	}
	r.Header.Set("User-Agent", t.ua)
	return t.rt.RoundTrip(&r)
}
