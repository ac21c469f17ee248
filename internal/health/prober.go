package health

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/holoproxy/holoproxy/internal/netobs"
)

// Prober checks upstreams actively: on an interval, a GET of a tiny known path through the
// shared http.Client, so that the probe's Sample (kind "probe") reaches the Scorer through
// the transport's Sink like any other exchange. Upstreams in half-open are probed more
// often, which is what closes their circuit when no real traffic reaches them.
type Prober struct {
	// Client sends the probes; its transport should be the observed one whose Sink feeds
	// the Scorer. Required.
	Client *http.Client
	// Scorer decides the probe rate by state. Required.
	Scorer *Scorer
	// Upstreams are the base URLs to probe (the names their Samples carry).
	Upstreams []string
	// Path is the path probed below each base URL (default "/"); any HTTP answer below 500
	// counts as alive.
	Path string
	// Interval is the probe period of a healthy or degraded upstream (default 5s);
	// FastInterval that of an upstream with an open or half-open circuit (default 500ms).
	Interval, FastInterval time.Duration
	// Timeout bounds one probe (default 2s).
	Timeout time.Duration
	// Report, when set, also hands each probe's outcome to the Scorer directly, for clients
	// whose transport does not record Samples into it.
	Report bool
	// CloseIdle, when set, is called before each round of probes to drop the client's idle
	// connections, so that every probe dials: its Sample then times (and its failure
	// classifies) the TCP and TLS handshakes, which pooled real traffic rarely exercises.
	// Give the prober a client of its own for this (a second transport with the same Sink).
	CloseIdle func()
}

// Run probes until ctx is done and returns when every probe it started has finished. The
// owner stops it by cancelling ctx.
func (p *Prober) Run(ctx context.Context) error {
	if p.Client == nil || p.Scorer == nil {
		return fmt.Errorf("health prober: Client and Scorer are required")
	}
	interval, fast := p.Interval, p.FastInterval
	if interval <= 0 {
		interval = 5 * time.Second
	}
	if fast <= 0 {
		fast = 500 * time.Millisecond
	}
	if fast > interval {
		fast = interval
	}
	var wg sync.WaitGroup
	defer wg.Wait()
	last := make(map[string]time.Time, len(p.Upstreams))
	var mu sync.Mutex
	inflight := map[string]bool{}
	tick := time.NewTicker(fast)
	defer tick.Stop()
	for {
		now := time.Now()
		closed := false
		for _, up := range p.Upstreams {
			every := interval
			if st := p.Scorer.State(up); st == StateHalfOpen || st == StateUnhealthy {
				every = fast
			}
			mu.Lock()
			busy := inflight[up]
			mu.Unlock()
			if busy || (!last[up].IsZero() && now.Sub(last[up]) < every) {
				continue
			}
			last[up] = now
			if p.CloseIdle != nil && !closed {
				p.CloseIdle()
				closed = true
			}
			mu.Lock()
			inflight[up] = true
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				_ = p.probe(ctx, up) // the outcome reaches the Scorer as a Sample
				mu.Lock()
				delete(inflight, up)
				mu.Unlock()
			}()
		}
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
	}
}

// probe sends one probe to up and returns its error (nil for an answer below 500).
func (p *Prober) probe(ctx context.Context, up string) error {
	path := p.Path
	if path == "" {
		path = "/"
	}
	u := strings.TrimSuffix(up, "/") + "/" + strings.TrimPrefix(path, "/")
	timeout := p.Timeout
	if timeout <= 0 {
		timeout = 2 * time.Second
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	start := time.Now()
	err := func() error {
		req, err := netobs.NewRequest(ctx, http.MethodGet, u, nil, netobs.Labels{Upstream: up, Kind: "probe"})
		if err != nil {
			return err
		}
		resp, err := p.Client.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
		if resp.StatusCode >= 500 {
			return fmt.Errorf("probe answered %d", resp.StatusCode)
		}
		return nil
	}()
	if err != nil && errors.Is(ctx.Err(), context.DeadlineExceeded) {
		// Our own timeout: a probe that timed out is a failure, not a cancellation.
		err = fmt.Errorf("probe timed out after %s: %w", time.Since(start).Round(time.Millisecond), context.DeadlineExceeded)
	}
	result := "ok"
	if err != nil {
		result = "error"
	}
	p.Scorer.metrics.probes.WithLabelValues(up, result).Inc()
	if p.Report {
		smp := netobs.Sample{Upstream: up, Kind: "probe", Method: http.MethodGet, URL: u, Start: start,
			Total: time.Since(start), TTFB: time.Since(start), Status: 200}
		if err != nil {
			smp.Status = 0
			smp.ErrClass = netobs.ClassOf(err)
			if smp.ErrClass == netobs.ClassCanceled && ctx.Err() == nil {
				smp.ErrClass = netobs.ClassOther
			}
			smp.Err = err.Error()
		}
		p.Scorer.Observe(smp)
	}
	if err != nil {
		return fmt.Errorf("probe %s: %w", up, err)
	}
	return nil
}
