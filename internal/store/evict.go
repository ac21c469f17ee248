package store

import (
	"cmp"
	"context"
	"log/slog"
	"slices"
	"strings"
	"sync/atomic"
	"time"
)

// Evictor keeps a store under a size. Every entry of a canonical version is immutable and
// may be fetched again, so a bounded cache gives up what is least likely to be asked for
// next: when the store's entries take more than Max bytes, a pass deletes the .zip files
// read least recently (Info.Accessed, else ModTime) until they take Low bytes at most.
// Only zips go: they are nearly all of a cache's bytes, while the .mod and .info files
// that the go command's graph walks ask for by the hundred stay. A pass walks the whole
// store; it runs every Interval, and as soon as the bytes stored since the last pass
// (Stored) take the store over Max, or the store refused a file (Refused).
type Evictor struct {
	store    Store
	max, low int64
	interval time.Duration
	log      *slog.Logger

	trigger chan struct{}
	// est is the store's size at the last pass plus what was stored since.
	est atomic.Int64
	// The figures of the passes, for metrics.
	size, files, bytes, passes atomic.Int64
}

// EvictorConfig configures NewEvictor.
type EvictorConfig struct {
	// Max is the size the store's entries are kept under, in bytes. Required.
	Max int64
	// Low is what a pass brings them down to (default 90% of Max).
	Low int64
	// Interval is the time between passes (default 1m).
	Interval time.Duration
	// Logger receives a line per pass that deleted files, and the failures.
	Logger *slog.Logger
}

// NewEvictor returns an Evictor of st; Run starts it.
func NewEvictor(st Store, cfg EvictorConfig) *Evictor {
	if cfg.Low <= 0 || cfg.Low > cfg.Max {
		cfg.Low = cfg.Max / 10 * 9
	}
	if cfg.Interval <= 0 {
		cfg.Interval = time.Minute
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Evictor{store: st, max: cfg.Max, low: cfg.Low, interval: cfg.Interval, log: cfg.Logger,
		trigger: make(chan struct{}, 1)}
}

// Stored tells the Evictor that n bytes were stored; a pass starts when they take the
// store over Max. It never blocks.
func (e *Evictor) Stored(n int64) {
	if e.est.Add(n) > e.max {
		e.Trigger()
	}
}

// Trigger starts a pass now, unless one is already due. It never blocks.
func (e *Evictor) Trigger() {
	select {
	case e.trigger <- struct{}{}:
	default:
	}
}

// Run makes passes until ctx ends: one at once, then every Interval and on Trigger.
func (e *Evictor) Run(ctx context.Context) {
	t := time.NewTicker(e.interval)
	defer t.Stop()
	for {
		if _, err := e.Pass(ctx); err != nil && ctx.Err() == nil {
			e.log.Warn("cache eviction pass failed", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-e.trigger:
		}
	}
}

// PassResult is what one pass found and did.
type PassResult struct {
	Size    int64 // bytes of every entry, after the pass
	Deleted int   // .zip files deleted
	Freed   int64 // their bytes
}

type candidate struct {
	key  string
	size int64
	used time.Time
}

// Pass measures the store and, when it is over Max, deletes the least recently read .zip
// files until it is at Low or below. A zip deleted while a client reads it is read to its
// end (the client holds the open file).
func (e *Evictor) Pass(ctx context.Context) (PassResult, error) {
	var res PassResult
	var zips []candidate
	err := e.store.Walk(ctx, "", func(key string, info Info) error {
		res.Size += info.Size
		if strings.HasSuffix(key, ".zip") {
			used := info.Accessed
			if used.Before(info.ModTime) {
				used = info.ModTime
			}
			zips = append(zips, candidate{key, info.Size, used})
		}
		return nil
	})
	if err != nil {
		return res, err
	}
	e.passes.Add(1)
	if res.Size > e.max {
		slices.SortFunc(zips, func(a, b candidate) int { return cmp.Or(a.used.Compare(b.used), cmp.Compare(a.key, b.key)) })
		for _, z := range zips {
			if res.Size <= e.low {
				break
			}
			if err := e.store.Delete(ctx, z.key); err != nil {
				if ctx.Err() != nil {
					break
				}
				e.log.Warn("cache eviction: deleting a zip failed", "key", z.key, "err", err)
				continue
			}
			res.Size -= z.size
			res.Deleted++
			res.Freed += z.size
		}
		e.files.Add(int64(res.Deleted))
		e.bytes.Add(res.Freed)
		e.log.Info("cache eviction: deleted the least recently read zips", "files", res.Deleted, "bytes", res.Freed,
			"size", res.Size, "max", e.max)
		if res.Size > e.max {
			e.log.Warn("the cache is still over its maximum size: what is left is not zips (.mod, .info, lists, the checksum database's tiles)",
				"size", res.Size, "max", e.max)
		}
	}
	e.size.Store(res.Size)
	e.est.Store(res.Size)
	return res, nil
}

// Stats returns the size the last pass left, and the .zip files and bytes deleted so far.
func (e *Evictor) Stats() (size, files, bytes int64) {
	return e.size.Load(), e.files.Load(), e.bytes.Load()
}
