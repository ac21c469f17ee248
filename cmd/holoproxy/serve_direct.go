package main

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/dustin/go-humanize"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/pflag"

	"github.com/holoproxy/holoproxy/internal/goproxy"
	"github.com/holoproxy/holoproxy/internal/server/dashboard"
)

// directDir is where, under the cache directory, the go command's runs for "direct" keep
// their module cache (with the version control clones) and build cache. Its leading dot
// keeps it out of the GOPROXY tree, as the checksum verifier's state.
const directDir = ".direct"

// directOptions are the flags of the "direct" entry of the upstream chain.
type directOptions struct {
	jobs    int
	timeout time.Duration
}

func (o *directOptions) register(f *pflag.FlagSet) {
	f.IntVar(&o.jobs, "direct-jobs", 4, "how many go commands may fetch from version control origins at once for the direct entry of the upstream chain (the others wait); 0 turns direct off: the chain ends there, as the go command's client would then fetch on its own")
	f.DurationVar(&o.timeout, "direct-timeout", 10*time.Minute, "how long one go command fetching from a version control origin may run, clone included, before it is killed")
}

func (o *directOptions) check() error {
	if o.jobs < 0 {
		return usagef("--direct-jobs %d: want 0 (off) or more", o.jobs)
	}
	if o.timeout <= 0 {
		return usagef("--direct-timeout must be above zero")
	}
	return nil
}

// newDirect returns the Direct that the "direct" entries of the upstream lists fetch
// through, its runs working in dir: nil when none has one (lists are the main chain and
// the routes') or direct is turned off. goprivate, when not empty, is the GOPRIVATE of
// the go command's runs (it decides which origins GOVCS lets them use); else they read
// the go command's own. reg, when not nil, gets the runs' metrics; log, when not nil, a
// line saying that direct is on.
// directCloseTimeout bounds the wait for direct's runs to end at exit: each is killed at
// once, and the go command's WaitDelay (5 s) bounds the rest.
const directCloseTimeout = 10 * time.Second

// closeDirect kills direct's runs still going, with the git processes they started, and
// waits for them: a command calls it before it returns (the kernel kills only the go
// command with its parent). logf reports a wait that ran out.
func closeDirect(d *goproxy.Direct, logf func(format string, args ...any)) {
	closeWithin(directCloseTimeout, d.Close, logf)
}

func newDirect(ctx context.Context, o directOptions, lists []string, dir, goprivate string, reg prometheus.Registerer, log *slog.Logger) (*goproxy.Direct, error) {
	if o.jobs == 0 || !slices.ContainsFunc(lists, goproxy.ListHasDirect) {
		return nil, nil
	}
	var env []string
	if goprivate != "" {
		env = append(env, "GOPRIVATE="+goprivate)
	}
	runs := prometheus.NewHistogramVec(prometheus.HistogramOpts{
		Name:    "holoproxy_direct_run_duration_seconds",
		Help:    "Fetches from version control origins (runs of the go command for the direct entry), by request kind and result (ok, not_found, failed, timeout, canceled): how long each took, the wait for a job slot included.",
		Buckets: []float64{0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 180, 600},
	}, []string{"kind", "result"})
	d, err := goproxy.NewDirect(ctx, goproxy.DirectConfig{
		Dir: dir, Env: env, Jobs: o.jobs, Timeout: o.timeout,
		OnFetch: func(kind goproxy.Kind, took time.Duration, err error) {
			runs.WithLabelValues(string(kind), goproxy.DirectResult(err)).Observe(took.Seconds())
		},
	})
	if err != nil {
		return nil, fmt.Errorf("%w (direct is in an upstream list; --direct-jobs 0 ends the lists there instead)", err)
	}
	running := prometheus.NewGaugeFunc(prometheus.GaugeOpts{
		Name: "holoproxy_direct_jobs_running",
		Help: "Runs of the go command for direct holding a job slot now (at most --direct-jobs; more are waiting when it is there).",
	}, func() float64 { return float64(d.Running()) })
	started := prometheus.NewCounterFunc(prometheus.CounterOpts{
		Name: "holoproxy_direct_go_runs_total",
		Help: "Times the go command was started for direct (a .info or .mod an earlier run left is answered without one).",
	}, func() float64 { return float64(d.Runs()) })
	for _, c := range []prometheus.Collector{runs, running, started} {
		if reg == nil {
			break
		}
		if err := reg.Register(c); err != nil {
			return nil, err
		}
	}
	if log == nil {
		return d, nil
	}
	log.Info("direct: modules are fetched from their version control origins by the go command",
		"go", d.GoVersion(), "jobs", o.jobs, "timeout", o.timeout)
	return d, nil
}

// directExposure returns the start warning for a direct that fetches any module path for
// any client beyond this machine: direct ends the main upstream list (not only routes),
// serve listens on an address other clients reach, and no --client-auth admits them. ""
// when there is nothing to warn of.
func directExposure(listen string, mainHasDirect, clientAuth bool) string {
	if !mainHasDirect || clientAuth {
		return ""
	}
	if loopbackListen(listen) {
		return ""
	}
	return "direct ends --upstream and serve listens beyond loopback without --client-auth: any client that reaches it can have this server fetch any module path from its origin, from this machine's network; send only your own hosts to direct (--route 'corp.example/*=direct', and no direct in --upstream) or admit clients with --client-auth"
}

// loopbackListen reports whether listen (host:port) takes connections from this machine
// only. A listen address that does not parse counts as loopback: it fails elsewhere.
func loopbackListen(listen string) bool {
	host, _, err := net.SplitHostPort(listen)
	if err != nil {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return host == "localhost" || (err == nil && ip.IsLoopback())
}

// runDirectPruner keeps d's directory under max bytes (goproxy.Direct.RunPruner), with
// metrics and a log line per pass that removed clones, until stop is called (which
// waits for the pass under way).
func runDirectPruner(d *goproxy.Direct, max int64, reg prometheus.Registerer, log *slog.Logger) (stop func(), err error) {
	size := prometheus.NewGauge(prometheus.GaugeOpts{
		Name: "holoproxy_direct_cache_size_bytes",
		Help: "Bytes under the cache directory's .direct (direct's version control clones and module cache), at the last measure.",
	})
	removed := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "holoproxy_direct_clones_removed_total",
		Help: "Version control clones of direct removed to keep .direct under --direct-max-size (cloned again when needed).",
	})
	if reg != nil {
		for _, c := range []prometheus.Collector{size, removed} {
			if err := reg.Register(c); err != nil {
				return nil, err
			}
		}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go d.RunPruner(ctx, max, time.Minute, func(res goproxy.PruneResult, err error) {
		size.Set(float64(res.After))
		removed.Add(float64(res.Clones))
		switch {
		case err != nil:
			log.Warn("direct: keeping its clones under --direct-max-size failed", "err", err)
		case res.Clones > 0:
			log.Info("direct: clones removed to stay under --direct-max-size", "max", humanize.IBytes(uint64(max)),
				"before", humanize.IBytes(uint64(res.Size)), "after", humanize.IBytes(uint64(res.After)), "clones", res.Clones,
				"repositories", strings.Join(res.Removed, " "))
		}
	}, done)
	return func() { cancel(); <-done }, nil
}

// directStats returns the dashboard's view of what d did.
func directStats(d *goproxy.Direct) func() dashboard.DirectStats {
	return func() dashboard.DirectStats {
		st := d.Stats()
		return dashboard.DirectStats{Jobs: st.Jobs, Running: st.Running, Runs: st.Runs, OK: st.OK,
			NotFound: st.NotFound, Failed: st.Failed, TimedOut: st.TimedOut, LastError: st.LastError,
			LastFailed: st.LastFailed}
	}
}
