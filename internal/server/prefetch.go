package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"golang.org/x/mod/modfile"

	"github.com/holoproxy/holoproxy/internal/goproxy"
	"github.com/holoproxy/holoproxy/internal/server/dashboard"
)

// prefetcher fetches, in the background, the files the go command is about to ask for, so
// that upstream round trips overlap with its work: the go command walks the module graph
// almost one .mod at a time, with only GOMAXPROCS-way parallelism.
//
//   - After a version's .mod was filled from an upstream, the .info and .mod of every module
//     it requires (the next layer of the graph; prefetched .mod files expand in turn, so
//     the walk follows the graph, each key once).
//   - When a client asks for a version's .mod, its .info (tiny; go mod download asks for it
//     next, and nothing else names the modules the client's own go.mod requires).
//   - When a client asks for a version's .info, its .mod and .zip (the order of go mod
//     download), whether the .info was in the cache or not: the graph's .info files are
//     prefetched, so most of them are hits. A prefetched .info does not pull its .zip.
//
// Prefetches are ordinary fills (one per key, validated, verified, stored), run by a fixed
// number of workers from a bounded queue: when the queue is full a prefetch is dropped,
// never waited for. Close stops the workers.
type prefetcher struct {
	fetch func(ctx context.Context, r goproxy.Request) error           // fills r
	read  func(ctx context.Context, r goproxy.Request) ([]byte, error) // fills r and reads its answer
	queue chan prefetchTask

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu   sync.Mutex
	seen map[seenKey]struct{} // guarded by mu; keys queued by the prefetcher (bounded by maxPrefetchSeen)

	queued, fetched, dropped, failed atomic.Int64
	metric                           *prometheus.CounterVec

	// pausedUntil (UnixNano) holds every worker back after an upstream rate-limited a
	// prefetch (429): a cache warming itself must not take the upstream's capacity from
	// the clients it serves.
	pausedUntil atomic.Int64
	log         *slog.Logger
	// onPanic, when set, is told of a panic recovered in a task (the task counts as
	// failed; the worker goes on).
	onPanic func(v any)
}

// throttledError is a prefetch refused by an upstream's rate limit (429): the workers wait
// that long before the next prefetch.
type throttledError struct {
	err  error
	wait time.Duration
}

func (e *throttledError) Error() string { return e.err.Error() }
func (e *throttledError) Unwrap() error { return e.err }

// maxPrefetchPause bounds a pause, whatever Retry-After said.
const maxPrefetchPause = time.Minute

// pause holds the workers back for d (at most maxPrefetchPause) from now, unless they are
// held longer already.
func (p *prefetcher) pause(d time.Duration) {
	until := time.Now().Add(min(d, maxPrefetchPause)).UnixNano()
	for {
		cur := p.pausedUntil.Load()
		if cur >= until {
			return
		}
		if p.pausedUntil.CompareAndSwap(cur, until) {
			if cur < time.Now().UnixNano() {
				p.log.Info("an upstream rate-limits prefetches (429): prefetching paused", "for", min(d, maxPrefetchPause))
			}
			p.metric.WithLabelValues("throttled").Inc()
			return
		}
	}
}

// waitPause returns once no pause holds the workers back, or false when ctx ends first.
func (p *prefetcher) waitPause() bool {
	for {
		d := time.Duration(p.pausedUntil.Load() - time.Now().UnixNano())
		if d <= 0 {
			return true
		}
		t := time.NewTimer(d)
		select {
		case <-p.ctx.Done():
			t.Stop()
			return false
		case <-t.C:
		}
	}
}

// prefetchTask is one job of a worker: fill req, or (expand) read the stored .mod req and
// queue the next layer of the graph.
type prefetchTask struct {
	req    goproxy.Request
	expand bool
}

// maxPrefetchSeen bounds the memory of queued keys; past it the set starts over (a key may
// then be queued twice, which costs a store lookup).
const maxPrefetchSeen = 100000

// newPrefetcher starts workers workers under parent. It returns nil when workers < 1: every
// method of a nil prefetcher does nothing.
func newPrefetcher(parent context.Context, workers int, reg prometheus.Registerer, log *slog.Logger,
	fetch func(context.Context, goproxy.Request) error, read func(context.Context, goproxy.Request) ([]byte, error)) (*prefetcher, error) {
	if workers < 1 {
		return nil, nil
	}
	if log == nil {
		log = slog.Default()
	}
	m := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "holoproxy_prefetch_total",
		Help: "Background prefetches of the module graph by result: queued, fetched, failed, dropped (queue full, or no direct job free for prefetches), throttled (an upstream answered 429: prefetching paused).",
	}, []string{"result"})
	if reg != nil {
		if err := reg.Register(m); err != nil {
			return nil, fmt.Errorf("prefetch metrics: %w", err)
		}
	}
	// Background: a client's fetch goes first where capacity is scarce (direct's jobs).
	ctx, cancel := context.WithCancel(goproxy.WithBackground(parent, &goproxy.Background{}))
	p := &prefetcher{fetch: fetch, read: read, queue: make(chan prefetchTask, 64*workers),
		ctx: ctx, cancel: cancel, seen: map[seenKey]struct{}{}, metric: m, log: log}
	for range workers {
		p.wg.Add(1)
		go p.work()
	}
	return p, nil
}

func (p *prefetcher) work() {
	defer p.wg.Done()
	for {
		select {
		case <-p.ctx.Done():
			return
		case t := <-p.queue:
			if t.expand {
				p.guard(func() error { p.expand(t.req); return nil })
				continue
			}
			if !p.waitPause() {
				return
			}
			if err := p.guard(func() error { return p.fetch(p.ctx, t.req) }); err != nil {
				if p.ctx.Err() != nil {
					return
				}
				if errors.Is(err, goproxy.ErrDirectBusy) {
					// Skipped for the clients' sake: as if the queue had been full.
					p.dropped.Add(1)
					p.metric.WithLabelValues("dropped").Inc()
					p.forget(keyOf(t.req))
					continue
				}
				var th *throttledError
				if errors.As(err, &th) {
					p.pause(th.wait)
				}
				p.failed.Add(1)
				p.metric.WithLabelValues("failed").Inc()
				continue
			}
			p.fetched.Add(1)
			p.metric.WithLabelValues("fetched").Inc()
		}
	}
}

// errPanicked is the failure of a task that panicked.
var errPanicked = errors.New("prefetch task panicked")

// guard runs task, turning a panic into errPanicked (reported to onPanic): a bug met on
// one module must not end the process, nor this worker.
func (p *prefetcher) guard(task func() error) (err error) {
	defer func() {
		if v := recover(); v != nil {
			if p.onPanic != nil {
				p.onPanic(v)
			}
			err = errPanicked
		}
	}()
	return task()
}

// enqueue queues r unless it was queued before; a full queue drops it.
func (p *prefetcher) enqueue(r goproxy.Request) {
	if r.Canonical() {
		p.enqueueCanonical(r)
	}
}

// enqueueCanonical is enqueue for a request known to name a canonical version.
func (p *prefetcher) enqueueCanonical(r goproxy.Request) {
	key := keyOf(r)
	if !p.mark(key) {
		return
	}
	select {
	case p.queue <- prefetchTask{req: r}:
		p.queued.Add(1)
		p.metric.WithLabelValues("queued").Inc()
	default:
		p.dropped.Add(1)
		p.metric.WithLabelValues("dropped").Inc()
		p.forget(key) // a later request may queue it again
	}
}

// forget removes key from the seen set.
func (p *prefetcher) forget(key seenKey) {
	p.mu.Lock()
	delete(p.seen, key)
	p.mu.Unlock()
}

// seenKey names a request in the seen set (expand: the expansion of a .mod, not its
// fill). The request is validated already, so its unescaped fields identify it. A struct,
// not a string: every client request asks to prefetch its neighbours, and building a
// string key allocated on each (escaping the path again, earlier, cost 7 % of a cached
// answer in a profile).
type seenKey struct {
	kind            goproxy.Kind
	module, version string
	expand          bool
}

func keyOf(r goproxy.Request) seenKey {
	return seenKey{kind: r.Kind, module: r.Module, version: r.Version}
}

// mark records key as seen and reports whether it was new.
func (p *prefetcher) mark(key seenKey) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if _, ok := p.seen[key]; ok {
		return false
	}
	if len(p.seen) >= maxPrefetchSeen {
		p.seen = map[seenKey]struct{}{}
	}
	p.seen[key] = struct{}{}
	return true
}

// requested is told of a client's request (Config.OnRequest), hit or miss: a .mod pulls its
// .info, an .info its .mod and .zip. It never blocks.
func (p *prefetcher) requested(r goproxy.Request) {
	if p == nil || !r.Canonical() {
		return
	}
	switch r.Kind {
	case goproxy.KindMod:
		p.enqueueCanonical(goproxy.Request{Kind: goproxy.KindInfo, Module: r.Module, Version: r.Version})
	case goproxy.KindInfo:
		p.enqueueCanonical(goproxy.Request{Kind: goproxy.KindMod, Module: r.Module, Version: r.Version})
		p.enqueueCanonical(goproxy.Request{Kind: goproxy.KindZip, Module: r.Module, Version: r.Version})
	}
}

// filled is told that an upstream's answer to r was accepted (Config.OnFill with a nil
// error). It never blocks: a .mod is read back and parsed by a worker.
func (p *prefetcher) filled(r goproxy.Request) {
	if p == nil || !r.Canonical() {
		return
	}
	switch r.Kind {
	case goproxy.KindMod:
		// Each .mod is expanded once: the graph is walked, not looped.
		k := keyOf(r)
		k.expand = true
		if !p.mark(k) {
			return
		}
		select {
		case p.queue <- prefetchTask{req: r, expand: true}:
		default:
			p.dropped.Add(1)
			p.metric.WithLabelValues("dropped").Inc()
		}
	}
}

// expand queues the .info and .mod of every module the .mod r requires. It fills r first:
// filled may be told of an answer before it is stored, and a fill of a stored key is a store
// lookup (or joins the fill in flight).
func (p *prefetcher) expand(r goproxy.Request) {
	data, err := p.read(p.ctx, r)
	if err != nil {
		return
	}
	mf, err := modfile.ParseLax(r.Path(), data, nil)
	if err != nil {
		return
	}
	// The .mod files first: the go command asks for every .mod of the graph before any .info.
	for _, req := range mf.Require {
		p.enqueue(goproxy.Request{Kind: goproxy.KindMod, Module: req.Mod.Path, Version: req.Mod.Version})
	}
	for _, req := range mf.Require {
		p.enqueue(goproxy.Request{Kind: goproxy.KindInfo, Module: req.Mod.Path, Version: req.Mod.Version})
	}
}

// stats returns the prefetch counters.
func (p *prefetcher) stats() dashboard.PrefetchStats {
	if p == nil {
		return dashboard.PrefetchStats{}
	}
	return dashboard.PrefetchStats{Queued: p.queued.Load(), Fetched: p.fetched.Load(), Dropped: p.dropped.Load(), Failed: p.failed.Load()}
}

// close stops the workers and waits for them; queued prefetches are abandoned.
func (p *prefetcher) close() {
	if p == nil {
		return
	}
	p.cancel()
	p.wg.Wait()
}
