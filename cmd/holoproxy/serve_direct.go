package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"time"

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

// directResult is the result label of a direct fetch's outcome.
func directResult(err error) string {
	var de *goproxy.DirectError
	switch {
	case err == nil:
		return "ok"
	case errors.As(err, &de) && de.TimedOut:
		return "timeout"
	case errors.Is(err, fs.ErrNotExist):
		return "not_found"
	case errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded):
		return "canceled"
	}
	return "failed"
}

// listHasDirect reports whether the GOPROXY list has a "direct" entry.
func listHasDirect(list string) bool {
	for _, e := range strings.FieldsFunc(list, func(r rune) bool { return r == ',' || r == '|' }) {
		if strings.TrimSpace(e) == "direct" {
			return true
		}
	}
	return false
}

// newDirect returns the Direct that the "direct" entries of the upstream lists fetch
// through, its runs working in dir: nil when none has one (lists are the main chain and
// the routes') or direct is turned off. goprivate, when not empty, is the GOPRIVATE of
// the go command's runs (it decides which origins GOVCS lets them use); else they read
// the go command's own. reg, when not nil, gets the runs' metrics; log, when not nil, a
// line saying that direct is on.
func newDirect(ctx context.Context, o directOptions, lists []string, dir, goprivate string, reg prometheus.Registerer, log *slog.Logger) (*goproxy.Direct, *directStats, error) {
	if o.jobs == 0 || !slices.ContainsFunc(lists, listHasDirect) {
		return nil, nil, nil
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
	ds := &directStats{jobs: o.jobs}
	d, err := goproxy.NewDirect(ctx, goproxy.DirectConfig{
		Dir: dir, Env: env, Jobs: o.jobs, Timeout: o.timeout,
		OnFetch: func(kind goproxy.Kind, took time.Duration, err error) {
			result := directResult(err)
			runs.WithLabelValues(string(kind), result).Observe(took.Seconds())
			ds.count(result, err)
		},
	})
	if err != nil {
		return nil, nil, fmt.Errorf("%w (direct is in an upstream list; --direct-jobs 0 ends the lists there instead)", err)
	}
	ds.d = d
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
			return nil, nil, err
		}
	}
	if log == nil {
		return d, ds, nil
	}
	log.Info("direct: modules are fetched from their version control origins by the go command",
		"go", d.GoVersion(), "jobs", o.jobs, "timeout", o.timeout)
	return d, ds, nil
}

// directStats counts the outcomes of direct's fetches for the dashboard.
type directStats struct {
	d    *goproxy.Direct
	jobs int

	mu                             sync.Mutex
	ok, notFound, failed, timedOut int64
	lastError                      string
	lastFailed                     bool
}

func (s *directStats) count(result string, err error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.lastFailed = result == "timeout" || result == "failed"
	switch result {
	case "ok":
		s.ok++
	case "not_found":
		s.notFound++
	case "timeout":
		s.timedOut++
		s.lastError = err.Error()
	case "failed":
		s.failed++
		s.lastError = err.Error()
	}
}

// snapshot returns the figures the dashboard shows.
func (s *directStats) snapshot() dashboard.DirectStats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return dashboard.DirectStats{Jobs: s.jobs, Running: s.d.Running(), Runs: s.d.Runs(), OK: s.ok,
		NotFound: s.notFound, Failed: s.failed, TimedOut: s.timedOut, LastError: s.lastError, LastFailed: s.lastFailed}
}
