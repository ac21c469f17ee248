package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/holoproxy/holoproxy/internal/goproxy"
	"github.com/holoproxy/holoproxy/internal/health"
	"github.com/holoproxy/holoproxy/internal/netobs"
	"github.com/holoproxy/holoproxy/internal/server/dashboard"
)

// RepairConfig configures the repair side of serve: upstream health, hedging, prefetch and
// the dashboard. Zero fields take the defaults of the packages they configure.
type RepairConfig struct {
	// Scorer configures the health scorer (docs/health.md). Its Registerer and Logger
	// default to the ones below.
	Scorer health.Config
	// Hedge configures hedging; NoHedge turns it off.
	Hedge   health.HedgeConfig
	NoHedge bool
	// ProbeInterval is the active probe period of each upstream (default 5s; negative turns
	// probing off); ProbeTimeout bounds a probe (default 2s); ProbePath is the path probed
	// below each base URL (default "/").
	ProbeInterval time.Duration
	ProbeTimeout  time.Duration
	ProbePath     string
	// Prefetch is the number of prefetch workers (0 turns prefetch off).
	Prefetch int
	// Samples is the number of recent Samples the dashboard keeps (default 4096).
	Samples int
	// Registerer receives the metrics; Logger the transitions.
	Registerer prometheus.Registerer
	Logger     *slog.Logger
	// Version names the running program on the dashboard ("v1.2.3 go1.26.8").
	Version string
}

// Repair is the repair side of serve: it scores every upstream from the Samples of the
// shared transport and from verification, orders interchangeable upstreams by health,
// hedges slow requests, prefetches the module graph, probes upstreams, and serves the
// dashboard. Wire it in this order:
//
//	rp, _ := server.NewRepair(cfg)
//	sinks = append(sinks, rp.Sink())   // before the upstream transport is built
//	serverConfig.DirectSink = netobs.Sinks{metrics, rp.DirectSink()}
//	chain, _ := goproxy.ParseChain(list, hc)
//	rp.Configure(&serverConfig, chain) // Order, Hedge, OnFill, OnRequest, OnAnswer
//	srv, _ := server.New(serverConfig)
//	rp.Start(srv, hc)                  // prober and prefetch workers
//	defer rp.Stop()
//	rt := server.NewRoutes(srv)
//	rp.Mount(rt)                       // "/" dashboard, "/api/chain", "/assets/"
type Repair struct {
	cfg    RepairConfig
	Scorer *health.Scorer
	Hedger *health.Hedger // nil when hedging is off
	ring   *dashboard.Ring
	cache  *dashboard.CacheCounter
	chain  string
	routes []dashboard.Route // cfg.Routes, for the dashboard
	names  []string
	probed []string // names of the upstreams the prober probes (not file trees)

	// StoreStats, when set before Mount, gives the dashboard the state of the cache's
	// store (Server.StoreState and the size bound's figures).
	StoreStats func() dashboard.StoreStats
	// DirectStats, when set before Mount, gives the dashboard what the direct entry did.
	DirectStats func() dashboard.DirectStats

	probeClient    *http.Client // set by SetProbeClient before Start
	probeCloseIdle func()

	mu       sync.Mutex
	prefetch atomic.Pointer[prefetcher] // set by Start; read on every request, so not under mu
	cancel   context.CancelFunc
	wg       sync.WaitGroup
}

// NewRepair builds the scorer, the hedger and the dashboard's sample ring.
func NewRepair(cfg RepairConfig) (*Repair, error) {
	if cfg.Scorer.Registerer == nil {
		cfg.Scorer.Registerer = cfg.Registerer
	}
	if cfg.Scorer.Logger == nil {
		cfg.Scorer.Logger = cfg.Logger
	}
	if cfg.Scorer.SlowShare == 0 && !cfg.NoHedge && cfg.Hedge.Share > 0 {
		// An upstream that misses its hedge delay more often than the budget can hedge is
		// degraded (moved behind its peers) rather than left to blow the tail.
		cfg.Scorer.SlowShare = cfg.Hedge.Share
	}
	sc, err := health.New(cfg.Scorer)
	if err != nil {
		return nil, err
	}
	r := &Repair{cfg: cfg, Scorer: sc, ring: dashboard.NewRing(cfg.Samples), cache: &dashboard.CacheCounter{Header: CacheHeader}}
	if !cfg.NoHedge {
		r.Hedger = health.NewHedger(sc, cfg.Hedge)
	}
	return r, nil
}

// Sink is what the shared upstream transport must hand every Sample to: the scorer and the
// dashboard's ring.
func (r *Repair) Sink() netobs.Sink { return netobs.Sinks{r.Scorer, r.ring} }

// DirectSink is what Config.DirectSink must hand direct's Samples to, besides the
// metrics: the dashboard's ring alone. direct is not scored (it is never reordered,
// hedged nor probed), so its Samples never reach the scorer, and its slowness or
// failures change no upstream's health.
func (r *Repair) DirectSink() netobs.Sink { return r.ring }

// Configure sets cfg's Order (health), Hedge (the hedger), OnFill (verification results
// to the scorer, accepted answers to the prefetcher, then any OnFill cfg already had) and
// OnRequest (client requests to the prefetcher, then any OnRequest cfg already had) and
// OnAnswer (the dashboard's cache figures, then any OnAnswer cfg already had) for chain
// and the chains of cfg.Routes (set Routes first).
func (r *Repair) Configure(cfg *Config, chain *goproxy.Chain) {
	r.chain = chain.String()
	r.names, r.probed = nil, nil
	chains := []*goproxy.Chain{chain}
	r.routes = nil
	for _, rt := range cfg.Routes { // their upstreams are scored, probed and shown too
		chains = append(chains, rt.Chain)
		r.routes = append(r.routes, dashboard.Route{Patterns: rt.Patterns, Chain: rt.Chain.String()})
	}
	for _, ch := range chains {
		for _, c := range ch.Clients() {
			if slices.Contains(r.names, c.Name()) {
				continue
			}
			r.names = append(r.names, c.Name())
			if !c.Local() { // a file tree has no network to probe
				r.probed = append(r.probed, c.Name())
			}
		}
	}
	r.Scorer.Track(r.names...)
	cfg.Order = func(cs []*goproxy.Client) []*goproxy.Client { return health.OrderBy(r.Scorer, cs) }
	cfg.Hedge = r.HedgePolicy()
	nextReq := cfg.OnRequest
	cfg.OnRequest = func(req goproxy.Request) {
		r.prefetch.Load().requested(req)
		if nextReq != nil {
			nextReq(req)
		}
	}
	next := cfg.OnFill
	cfg.OnFill = func(upstream string, req goproxy.Request, err error) {
		r.onFill(upstream, req, err)
		if next != nil {
			next(upstream, req, err)
		}
	}
	// The dashboard's cache figures, from the server's own accounting: wrapping the handler
	// to read its response headers cost every answer a second ResponseWriter wrapper.
	nextAnswer := cfg.OnAnswer
	cfg.OnAnswer = func(cache string, bytes int64) {
		r.cache.Count(cache, bytes)
		if nextAnswer != nil {
			nextAnswer(cache, bytes)
		}
	}
}

// HedgePolicy returns the hedger as the chain's hedge policy (a zero policy, which never
// hedges, when hedging is off).
func (r *Repair) HedgePolicy() goproxy.HedgePolicy {
	if r.Hedger == nil {
		return goproxy.HedgePolicy{}
	}
	return goproxy.HedgePolicy{
		Delay: func(c *goproxy.Client) (time.Duration, bool) { return r.Hedger.Delay(c.Name()) },
		Allow: func(slow, next *goproxy.Client) bool { return r.Hedger.Allow(slow.Name(), next.Name()) },
	}
}

// badContent lists the refusals that mean an upstream served wrong bytes: charged to its
// checksum component.
var badContent = map[string]bool{
	ReasonChecksum:   true,
	ReasonInvalidMod: true,
	ReasonInvalidZip: true,
}

func (r *Repair) onFill(upstream string, req goproxy.Request, err error) {
	// direct is not scored: it is never reordered nor hedged, and its runs have their own
	// metrics.
	if upstream != goproxy.DirectName && (req.Kind == goproxy.KindMod || req.Kind == goproxy.KindZip) {
		var refused *RefusedError
		switch {
		case err == nil:
			r.Scorer.ReportVerify(upstream, false)
		case errors.As(err, &refused) && badContent[refused.Reason]:
			r.Scorer.ReportVerify(upstream, true)
		}
	}
	if err == nil {
		r.prefetch.Load().filled(req)
	}
}

// SetProbeClient makes the prober send through c instead of the shared client given to
// Start, calling closeIdle before each round so that every probe times a TCP and TLS
// handshake (health.Prober.CloseIdle). c's transport must hand its Samples to Sink too.
// Call it before Start.
func (r *Repair) SetProbeClient(c *http.Client, closeIdle func()) {
	r.probeClient, r.probeCloseIdle = c, closeIdle
}

// Start starts the prober (through hc, the shared client, so probe Samples reach the
// scorer) and the prefetch workers (filling through srv). Stop ends both.
func (r *Repair) Start(srv *Server, hc *http.Client) error {
	ctx, cancel := context.WithCancel(context.Background())
	p, err := newPrefetcher(ctx, r.cfg.Prefetch, r.cfg.Registerer, srv.log,
		func(ctx context.Context, req goproxy.Request) error {
			if srv.relay.skipDisk() {
				return errNotStoring // a prefetch that cannot be stored is wasted
			}
			res, release := srv.fill(ctx, req, nil)
			release()
			if res.throttled > 0 {
				return &throttledError{err: res.err, wait: res.throttled}
			}
			if res.err != nil {
				return res.err
			}
			return nil
		},
		func(ctx context.Context, req goproxy.Request) ([]byte, error) {
			if srv.relay.skipDisk() {
				return nil, errNotStoring
			}
			return srv.readAnswer(ctx, req, goproxy.MaxModSize)
		})
	if err != nil {
		cancel()
		return fmt.Errorf("repair: %w", err)
	}
	if p != nil {
		p.onPanic = func(v any) { srv.recovered("prefetch", v) }
	}
	r.mu.Lock()
	r.cancel = cancel
	r.mu.Unlock()
	r.prefetch.Store(p)
	if r.cfg.ProbeInterval >= 0 && len(r.probed) > 0 {
		pc := hc
		if r.probeClient != nil {
			pc = r.probeClient
		}
		pr := &health.Prober{Client: pc, Scorer: r.Scorer, Upstreams: r.probed, Path: r.cfg.ProbePath,
			Interval: r.cfg.ProbeInterval, Timeout: r.cfg.ProbeTimeout, CloseIdle: r.probeCloseIdle}
		r.wg.Add(1)
		go func() {
			defer r.wg.Done()
			_ = pr.Run(ctx) // returns nil when ctx ends; its arguments are set above
		}()
	}
	return nil
}

// Stop stops the prober and the prefetch workers and waits for them.
func (r *Repair) Stop() {
	r.mu.Lock()
	cancel := r.cancel
	r.mu.Unlock()
	p := r.prefetch.Load()
	if cancel != nil {
		cancel()
	}
	p.close()
	r.wg.Wait()
}

// Dashboard returns the dashboard handler.
func (r *Repair) Dashboard() *dashboard.Handler {
	cfg := dashboard.Config{Health: r.Scorer, Samples: r.ring, Cache: r.cache.Stats, Chain: r.chain, Routes: r.routes,
		Version: r.cfg.Version, Prefetch: func() dashboard.PrefetchStats { return r.prefetch.Load().stats() }}
	if r.Hedger != nil {
		cfg.Hedges = r.Hedger.Stats
	}
	cfg.Store = r.StoreStats
	cfg.Direct = r.DirectStats
	return dashboard.New(cfg)
}

// Mount registers the dashboard on rt: the page at "/", its data at "/api/chain" and its
// assets under "/assets/" (none of them a module path). Its cache figures come from the
// server's OnAnswer hook, set by Configure.
func (r *Repair) Mount(rt *Routes) {
	d := r.Dashboard()
	rt.Handle("/", d)
	rt.Handle("/api/chain", d)
	rt.Handle("/assets/", d)
}
