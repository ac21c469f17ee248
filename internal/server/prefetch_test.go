package server

import (
	"context"
	"fmt"
	"io/fs"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/holoproxy/holoproxy/internal/goproxy"
)

// prefetchGraph is a fake module graph: the go.mod of each module@version.
var prefetchGraph = map[string]string{
	"example.com/main@v1.0.0": "module example.com/main\nrequire (\n\texample.com/a v1.0.0\n\texample.com/b v1.1.0\n)\n",
	"example.com/a@v1.0.0":    "module example.com/a\nrequire (\n\texample.com/b v1.1.0\n\texample.com/c v1.0.0\n)\n",
	"example.com/b@v1.1.0":    "module example.com/b\n",
	"example.com/c@v1.0.0":    "module example.com/c\nrequire example.com/main v1.0.0\n", // a cycle
}

// prefetchRig drives a prefetcher whose fetch stands in for the server's fill: it records
// what was fetched and tells the prefetcher, as the server's fill does.
type prefetchRig struct {
	p       *prefetcher
	mu      sync.Mutex
	fetched []string
	stored  map[string]bool
	block   chan struct{} // when non-nil, fetch waits on it or on ctx
}

// userFill stands for a client's request filled from an upstream: stored, and the
// prefetcher told.
func (rig *prefetchRig) userFill(r goproxy.Request) {
	rig.mu.Lock()
	rig.stored[r.Path()] = true
	rig.mu.Unlock()
	rig.p.filled(r)
}

func newPrefetchRig(t *testing.T, workers int) *prefetchRig {
	rig := &prefetchRig{stored: map[string]bool{}}
	fetch := func(ctx context.Context, r goproxy.Request) error {
		if rig.block != nil {
			select {
			case <-rig.block:
			case <-ctx.Done():
				return ctx.Err()
			}
		}
		rig.mu.Lock()
		if rig.stored[r.Path()] { // a store hit: no upstream attempt, no OnFill
			rig.mu.Unlock()
			return nil
		}
		rig.stored[r.Path()] = true
		rig.fetched = append(rig.fetched, string(r.Kind)+" "+r.Module+"@"+r.Version)
		rig.mu.Unlock()
		if _, ok := prefetchGraph[r.Module+"@"+r.Version]; !ok {
			return fmt.Errorf("%s: %w", r, fs.ErrNotExist)
		}
		rig.p.filled(r)
		return nil
	}
	// read fills r as the server's readAnswer does, then returns its go.mod.
	read := func(ctx context.Context, r goproxy.Request) ([]byte, error) {
		if err := fetch(ctx, r); err != nil {
			return nil, err
		}
		mod, ok := prefetchGraph[r.Module+"@"+r.Version]
		if !ok {
			return nil, fs.ErrNotExist
		}
		return []byte(mod), nil
	}
	p, err := newPrefetcher(context.Background(), workers, nil, nil, fetch, read)
	if err != nil {
		t.Fatal(err)
	}
	rig.p = p
	t.Cleanup(p.close)
	return rig
}

// settle waits until every queued prefetch has been fetched or failed and the queue is empty.
func (rig *prefetchRig) settle(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		st := rig.p.stats()
		if len(rig.p.queue) == 0 && st.Fetched+st.Failed == st.Queued {
			// Workers may still be expanding a .mod: wait for two quiet checks in a row.
			time.Sleep(20 * time.Millisecond)
			if st2 := rig.p.stats(); st2 == st && len(rig.p.queue) == 0 {
				return
			}
			continue
		}
		if time.Now().After(deadline) {
			t.Fatalf("prefetch did not settle: %+v, queue %d", st, len(rig.p.queue))
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func (rig *prefetchRig) got() string {
	rig.mu.Lock()
	defer rig.mu.Unlock()
	s := slices.Clone(rig.fetched)
	slices.Sort(s)
	return strings.Join(s, ", ")
}

func TestPrefetchFollowsTheGraph(t *testing.T) {
	rig := newPrefetchRig(t, 2)
	// The client's .mod of the main module was filled.
	rig.userFill(goproxy.Request{Kind: goproxy.KindMod, Module: "example.com/main", Version: "v1.0.0"})
	rig.settle(t)
	// Every module of the graph: .info and .mod once each; no .zip (nobody asked an .info);
	// the main module comes back through the cycle: its .info is fetched, its .mod is a
	// store hit.
	want := "info example.com/a@v1.0.0, info example.com/b@v1.1.0, info example.com/c@v1.0.0, info example.com/main@v1.0.0, " +
		"mod example.com/a@v1.0.0, mod example.com/b@v1.1.0, mod example.com/c@v1.0.0"
	if got := rig.got(); got != want {
		t.Fatalf("prefetched\n %s\nwant\n %s", got, want)
	}
	if st := rig.p.stats(); st.Queued != 8 || st.Fetched != 8 || st.Dropped != 0 || st.Failed != 0 {
		t.Fatalf("stats %+v", st)
	}
}

func TestPrefetchAfterInfo(t *testing.T) {
	rig := newPrefetchRig(t, 1)
	// A client's .info, in the cache already (a hit: no fill) or not, pulls .mod and .zip.
	rig.stored["example.com/b/@v/v1.1.0.info"] = true
	rig.p.requested(goproxy.Request{Kind: goproxy.KindInfo, Module: "example.com/b", Version: "v1.1.0"})
	rig.settle(t)
	if got, want := rig.got(), "mod example.com/b@v1.1.0, zip example.com/b@v1.1.0"; got != want {
		t.Fatalf("prefetched %s, want %s", got, want)
	}
	// A client's .zip pulls nothing; the fill of an .info (a prefetch's) neither.
	rig.p.requested(goproxy.Request{Kind: goproxy.KindZip, Module: "example.com/c", Version: "v1.0.0"})
	rig.userFill(goproxy.Request{Kind: goproxy.KindInfo, Module: "example.com/c", Version: "v1.0.0"})
	rig.settle(t)
	if got := rig.got(); strings.Contains(got, "example.com/c") {
		t.Fatalf("prefetched after a .zip or an .info fill: %s", got)
	}
	// A client's .mod pulls its .info.
	rig.p.requested(goproxy.Request{Kind: goproxy.KindMod, Module: "example.com/a", Version: "v1.0.0"})
	rig.settle(t)
	if got := rig.got(); !strings.Contains(got, "info example.com/a@v1.0.0") || strings.Contains(got, "zip example.com/a@v1.0.0") {
		t.Fatalf("after a client's .mod prefetched %s, want its .info and no .zip", got)
	}
	// A version query is never prefetched from.
	rig.p.requested(goproxy.Request{Kind: goproxy.KindInfo, Module: "example.com/c", Version: "master"})
	rig.settle(t)
	if got := rig.got(); strings.Contains(got, "example.com/c") {
		t.Fatalf("prefetched after a version query: %s", got)
	}
}

func TestPrefetchBoundedAndClosed(t *testing.T) {
	rig := newPrefetchRig(t, 1)
	rig.block = make(chan struct{}) // the worker stalls on its first fetch
	for i := range 200 {
		rig.p.enqueue(goproxy.Request{Kind: goproxy.KindInfo, Module: "example.com/m", Version: fmt.Sprintf("v1.0.%d", i)})
	}
	st := rig.p.stats()
	// One in the worker's hands at most, 64 in the queue, the rest dropped.
	if st.Queued < 64 || st.Queued > 65 || st.Dropped != 200-st.Queued {
		t.Fatalf("stats %+v, want 64 or 65 queued and the rest dropped", st)
	}
	done := make(chan struct{})
	go func() {
		rig.p.close() // cancels the stalled fetch and waits for the worker
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		t.Fatal("close did not stop the workers")
	}
	if got := rig.got(); got != "" {
		t.Fatalf("fetched %s after close", got)
	}
}

func TestPrefetchOff(t *testing.T) {
	p, err := newPrefetcher(context.Background(), 0, nil, nil, nil, nil)
	if err != nil || p != nil {
		t.Fatalf("newPrefetcher(0) = %v, %v; want nil, nil", p, err)
	}
	p.filled(goproxy.Request{Kind: goproxy.KindMod, Module: "example.com/a", Version: "v1.0.0"}) // no panic
	p.close()
	if st := p.stats(); st.Queued != 0 {
		t.Fatalf("stats of a nil prefetcher %+v", st)
	}
}

// A prefetch task that panics (a bug met on one module) counts as failed and is reported;
// the worker goes on with the next tasks: with one worker, the rest of the graph is still
// prefetched.
func TestPrefetchSurvivesAPanic(t *testing.T) {
	var panics []any
	var mu sync.Mutex
	fetched := map[string]bool{}
	fetch := func(ctx context.Context, r goproxy.Request) error {
		if r.Module == "example.com/a" && r.Kind == goproxy.KindInfo {
			panic("a bug met on example.com/a")
		}
		mu.Lock()
		fetched[string(r.Kind)+" "+r.Module] = true
		mu.Unlock()
		return nil
	}
	p, err := newPrefetcher(context.Background(), 1, nil, nil, fetch, func(context.Context, goproxy.Request) ([]byte, error) {
		return nil, fs.ErrNotExist
	})
	if err != nil {
		t.Fatal(err)
	}
	defer p.close()
	p.onPanic = func(v any) {
		mu.Lock()
		panics = append(panics, v)
		mu.Unlock()
	}
	for _, m := range []string{"example.com/a", "example.com/b", "example.com/c"} {
		p.requested(goproxy.Request{Kind: goproxy.KindMod, Module: m, Version: "v1.0.0"}) // queues its .info
	}
	deadline := time.Now().Add(20 * time.Second)
	for st := p.stats(); st.Fetched+st.Failed < 3; st = p.stats() {
		if time.Now().After(deadline) {
			t.Fatalf("the worker stopped after the panic: %+v", st)
		}
		time.Sleep(5 * time.Millisecond)
	}
	mu.Lock()
	defer mu.Unlock()
	if st := p.stats(); st.Failed != 1 || st.Fetched != 2 || len(panics) != 1 || !fetched["info example.com/b"] || !fetched["info example.com/c"] {
		t.Errorf("stats %+v, panics %v, fetched %v; want the panic reported, a and b and c each tried once", st, panics, fetched)
	}
}
