package main

import (
	"log/slog"
	"runtime"
	"time"

	"github.com/spf13/pflag"

	"github.com/holoproxy/holoproxy/internal/health"
	"github.com/holoproxy/holoproxy/internal/server"
)

// repairOptions are the flags of serve's repair side: upstream health, hedging, prefetch and
// the dashboard (docs/health.md).
type repairOptions struct {
	hedge         bool
	hedgeMin      time.Duration
	hedgeMax      time.Duration
	hedgeShare    float64
	prefetch      int
	probeInterval time.Duration
	probePath     string
	dashboard     bool
}

// addRepairFlags defines the flags of o on f.
func addRepairFlags(f *pflag.FlagSet, o *repairOptions) {
	f.BoolVar(&o.hedge, "hedge", true, "when an upstream has sent no first byte within its recent p95 time to first byte or four times its median, whichever is shorter (bounded by --hedge-min and --hedge-max), ask the next proxy of its '|' run too; the first valid answer wins")
	f.DurationVar(&o.hedgeMin, "hedge-min", 20*time.Millisecond, "shortest wait for an upstream's first byte before hedging")
	f.DurationVar(&o.hedgeMax, "hedge-max", 2*time.Second, "longest wait for an upstream's first byte before hedging")
	f.Float64Var(&o.hedgeShare, "hedge-share", 0.1, "at most this share of upstream requests is hedged; an upstream missing its hedge delay on more than this share of its requests is degraded (moved behind its peers)")
	f.IntVar(&o.prefetch, "prefetch", 16, "background workers prefetching the module graph: after a .mod, its requirements' .mod and .info; after a client's .mod, its .info; after a client's .info, its .mod and .zip (0 turns prefetch off)")
	f.DurationVar(&o.probeInterval, "probe-interval", 5*time.Second, "active health probe period of each upstream (0 turns probing off)")
	f.StringVar(&o.probePath, "probe-path", "/", "path probed below each upstream's base URL; any answer below 500 is alive")
	f.BoolVar(&o.dashboard, "dashboard", true, "serve the live dashboard at / and its data at /api/chain")
}

// newRepair builds serve's Repair from o.
func newRepair(o repairOptions, obs *observability, log *slog.Logger) (*server.Repair, error) {
	if o.hedgeMin <= 0 || o.hedgeMax < o.hedgeMin {
		return nil, usagef("--hedge-min %v and --hedge-max %v: want 0 < min <= max", o.hedgeMin, o.hedgeMax)
	}
	if o.hedgeShare <= 0 || o.hedgeShare > 1 {
		return nil, usagef("--hedge-share %v: want a share above 0 and at most 1", o.hedgeShare)
	}
	if o.prefetch < 0 || o.prefetch > 256 {
		return nil, usagef("--prefetch %d: want 0 to 256 workers", o.prefetch)
	}
	if o.probeInterval < 0 {
		return nil, usagef("--probe-interval %v: want 0 (off) or a period", o.probeInterval)
	}
	interval := o.probeInterval
	if interval == 0 {
		interval = -1 // off
	}
	return server.NewRepair(server.RepairConfig{
		Hedge:         health.HedgeConfig{Min: o.hedgeMin, Max: o.hedgeMax, Share: o.hedgeShare},
		NoHedge:       !o.hedge,
		Prefetch:      o.prefetch,
		ProbeInterval: interval,
		ProbePath:     o.probePath,
		Registerer:    obs.reg,
		Logger:        log,
		Version:       buildVersion() + " " + runtime.Version(),
	})
}
