package server

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/mod/module"

	"github.com/holoproxy/holoproxy/internal/goproxy"
)

func TestListTTL(t *testing.T) {
	for _, path := range []string{"example.com/m/@v/list", "example.com/pseudo/@latest"} {
		t.Run(path, func(t *testing.T) {
			o := newOrigin(t)
			e := newEnv(t, o.URL(), nil)
			steps := []struct {
				advance   time.Duration
				down      bool
				want      int
				wantCache string
				wantHits  int // origin requests so far
			}{
				{want: 200, wantCache: CacheMiss, wantHits: 1},
				{advance: 59 * time.Second, want: 200, wantCache: CacheHit, wantHits: 1},
				{advance: 2 * time.Second, want: 200, wantCache: CacheMiss, wantHits: 2},               // refreshed
				{advance: 30 * time.Second, want: 200, wantCache: CacheHit, wantHits: 2},               // fresh again
				{advance: 31 * time.Second, down: true, want: 200, wantCache: CacheStale, wantHits: 3}, // origin down: stale
				{down: true, want: 200, wantCache: CacheStale, wantHits: 4},                            // still stale, asked again
				{want: 200, wantCache: CacheMiss, wantHits: 5},                                         // origin back
			}
			want := fixture(t, o, path)
			for i, st := range steps {
				e.clock.Advance(st.advance)
				o.setDown(st.down)
				w := e.get(t, "/"+path, st.want)
				if got := w.Header().Get(CacheHeader); got != st.wantCache {
					t.Errorf("step %d: %s = %q; want %q", i, CacheHeader, got, st.wantCache)
				}
				if !bytes.Equal(w.Body.Bytes(), want) {
					t.Errorf("step %d: body %q; want %q", i, w.Body.String(), want)
				}
				if n := o.count(path); n != st.wantHits {
					t.Errorf("step %d: origin asked %d times; want %d", i, n, st.wantHits)
				}
			}
		})
	}
}

// TestListGoneUpstream: without a stored copy a failing origin is a 502; when every upstream
// answers not found, the stored list is not served (the upstreams' answer is).
func TestListFailures(t *testing.T) {
	o := newOrigin(t)
	e := newEnv(t, o.URL(), nil)
	o.setDown(true)
	w := e.get(t, "/example.com/m/@v/list", 502)
	if !strings.Contains(w.Body.String(), o.URL()) || !strings.Contains(w.Body.String(), "503") {
		t.Errorf("502 body %q does not name the upstream and its status", w.Body.String())
	}
	o.setDown(false)
	e.get(t, "/example.com/m/@v/list", 200)
	e.clock.Advance(2 * time.Minute)
	o.setFault(statusFault(404))
	e.get(t, "/example.com/m/@v/list", 404)
}

func TestNegativeCache(t *testing.T) {
	const path = "example.com/missing/@v/v1.0.0.info"
	o := newOrigin(t)
	e := newEnv(t, o.URL(), nil)
	steps := []struct {
		advance   time.Duration
		wantCache string
		wantHits  int
	}{
		{wantCache: CacheMiss, wantHits: 1},
		{wantCache: CacheNegative, wantHits: 1},
		{advance: 29 * time.Second, wantCache: CacheNegative, wantHits: 1},
		{advance: 2 * time.Second, wantCache: CacheMiss, wantHits: 2}, // expired: asked again
		{wantCache: CacheNegative, wantHits: 2},
	}
	var first string
	for i, st := range steps {
		e.clock.Advance(st.advance)
		w := e.get(t, "/"+path, 404)
		assertOneLine(t, w)
		if got := w.Header().Get(CacheHeader); got != st.wantCache {
			t.Errorf("step %d: %s = %q; want %q", i, CacheHeader, got, st.wantCache)
		}
		if n := o.count(path); n != st.wantHits {
			t.Errorf("step %d: origin asked %d times; want %d", i, n, st.wantHits)
		}
		if i == 0 {
			first = w.Body.String()
			if !strings.Contains(first, "not found: example.com/missing@v1.0.0: 404 from "+o.URL()) {
				t.Errorf("404 body %q", first)
			}
		} else if w.Body.String() != first {
			t.Errorf("step %d: body %q; want the first answer %q", i, w.Body.String(), first)
		}
	}
	if keys := e.keys(t); len(keys) != 0 {
		t.Errorf("store holds %v after not-found answers", keys)
	}
}

func TestVersionQuery(t *testing.T) {
	o := newOrigin(t)
	info := fixture(t, o, "example.com/m/@v/v1.1.0.info")
	o.setFault(func(w http.ResponseWriter, r *http.Request) bool {
		switch r.URL.Path {
		case "/example.com/m/@v/master.info":
			w.Write(info)
		case "/example.com/m/@v/v1.info":
			w.Write([]byte(`{"Version":"v1"}`)) // not canonical: refused
		default:
			return false
		}
		return true
	})
	e := newEnv(t, o.URL(), nil)
	for i := 1; i <= 3; i++ {
		w := e.get(t, "/example.com/m/@v/master.info", 200)
		if !bytes.Equal(w.Body.Bytes(), info) {
			t.Errorf("body %q; want %q", w.Body.String(), info)
		}
		if w.Header().Get(CacheHeader) != CacheMiss || w.Header().Get("Content-Type") != "application/json" {
			t.Errorf("headers %v", w.Header())
		}
		if n := o.count("example.com/m/@v/master.info"); n != i {
			t.Errorf("request %d: origin asked %d times; want %d (a query is resolved every time)", i, n, i)
		}
	}
	// Nothing under the query; the canonical .info it resolved to is stored.
	if keys := strings.Join(e.keys(t), " "); keys != "example.com/m/@v/v1.1.0.info" {
		t.Errorf("store holds %q; want only the canonical .info", keys)
	}
	w := e.get(t, "/example.com/m/@v/v1.1.0.info", 200)
	if w.Header().Get(CacheHeader) != CacheHit || o.count("example.com/m/@v/v1.1.0.info") != 0 {
		t.Errorf("canonical .info not served from the store")
	}
	w = e.get(t, "/example.com/m/@v/v1.info", 502)
	if !strings.Contains(w.Body.String(), ReasonInvalidInfo) {
		t.Errorf("502 body %q does not give the reason", w.Body.String())
	}
}

// gate makes the origin hold requests for path until opened, counting arrivals.
type gate struct {
	arrived chan struct{}
	open    chan struct{}
	once    sync.Once
}

func newGate(t *testing.T, o *origin, path string) *gate {
	g := &gate{arrived: make(chan struct{}, 1000), open: make(chan struct{})}
	t.Cleanup(g.release)
	o.setFault(func(w http.ResponseWriter, r *http.Request) bool {
		if r.URL.Path == "/"+path {
			g.arrived <- struct{}{}
			select {
			case <-g.open:
			case <-r.Context().Done():
				return true
			}
		}
		return false
	})
	return g
}

func (g *gate) release() { g.once.Do(func() { close(g.open) }) }

// wait blocks until a request arrived at the gate, failing after a generous bound.
func (g *gate) wait(t *testing.T) {
	t.Helper()
	select {
	case <-g.arrived:
	case <-time.After(30 * time.Second):
		t.Fatal("no request reached the origin")
	}
}

func TestStampede(t *testing.T) {
	const path = "example.com/m/@v/v1.1.0.zip"
	const n = 200
	o := newOrigin(t)
	g := newGate(t, o, path)
	e := newEnv(t, o.URL(), nil)
	want := fixture(t, o, path)

	var started sync.WaitGroup
	started.Add(n)
	bodies := make([][]byte, n)
	codes := make([]int, n)
	var caches sync.Map
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			started.Done()
			w := e.do("GET", "/"+path)
			bodies[i], codes[i] = w.Body.Bytes(), w.Code
			v, _ := caches.LoadOrStore(w.Header().Get(CacheHeader), new(atomic.Int32))
			v.(*atomic.Int32).Add(1)
		}()
	}
	g.wait(t)
	started.Wait()
	g.release()
	wg.Wait()
	for i := range n {
		if codes[i] != 200 || !bytes.Equal(bodies[i], want) {
			t.Fatalf("request %d: %d, %d bytes; want 200 and the fixture's %d bytes", i, codes[i], len(bodies[i]), len(want))
		}
	}
	if got := o.count(path); got != 1 {
		t.Errorf("origin asked %d times for one key; want 1", got)
	}
	caches.Range(func(k, v any) bool {
		if k != CacheMiss && k != CacheHit {
			t.Errorf("%d answers with %s %q", v.(*atomic.Int32).Load(), CacheHeader, k)
		}
		return true
	})
}

// TestWaiterLeaves: a client that goes away does not cancel the fill the others wait on.
func TestWaiterLeaves(t *testing.T) {
	const path = "example.com/m/@v/v1.0.0.zip"
	o := newOrigin(t)
	g := newGate(t, o, path)
	e := newEnv(t, o.URL(), nil)

	ctx, cancel := context.WithCancel(context.Background())
	first := make(chan int)
	go func() {
		r := httptest.NewRequest("GET", "/"+path, nil).WithContext(ctx)
		w := httptest.NewRecorder()
		e.s.ServeHTTP(w, r)
		e.settle()
		first <- w.Code
	}()
	g.wait(t)
	second := make(chan *httptest.ResponseRecorder)
	go func() { second <- e.do("GET", "/"+path) }()
	cancel()
	<-first
	g.release()
	w := <-second
	if w.Code != 200 || !bytes.Equal(w.Body.Bytes(), fixture(t, o, path)) {
		t.Errorf("second request: %d %q; want 200 and the zip", w.Code, w.Body.String())
	}
	if n := o.count(path); n != 1 {
		t.Errorf("origin asked %d times; want 1", n)
	}
	if keys := e.keys(t); len(keys) != 1 {
		t.Errorf("store holds %v; want the zip", keys)
	}
}

func TestClose(t *testing.T) {
	const path = "example.com/m/@v/v1.0.0.zip"
	t.Run("lets fills finish", func(t *testing.T) {
		o := newOrigin(t)
		g := newGate(t, o, path)
		e := newEnv(t, o.URL(), nil)
		got := make(chan int)
		go func() { got <- e.do("GET", "/"+path).Code }()
		g.wait(t)
		closed := make(chan error)
		go func() { closed <- e.s.Close(context.Background()) }()
		g.release()
		if err := <-closed; err != nil {
			t.Errorf("Close = %v", err)
		}
		if code := <-got; code != 200 {
			t.Errorf("request during Close = %d; want 200", code)
		}
		if keys := e.keys(t); len(keys) != 1 {
			t.Errorf("store holds %v; want the zip", keys)
		}
		if w := e.do("GET", "/example.com/m/@v/v1.0.0.mod"); w.Code != http.StatusServiceUnavailable {
			t.Errorf("a miss after Close = %d; want 503", w.Code)
		}
		if w := e.do("GET", "/"+path); w.Code != 200 {
			t.Errorf("a hit after Close = %d; want 200", w.Code)
		}
	})
	t.Run("abandons fills at the deadline", func(t *testing.T) {
		o := newOrigin(t)
		g := newGate(t, o, path)
		e := newEnv(t, o.URL(), nil)
		got := make(chan int)
		go func() { got <- e.do("GET", "/"+path).Code }()
		g.wait(t)
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if err := e.s.Close(ctx); err == nil {
			t.Errorf("Close with an ended context while a fill hangs = nil; want an error")
		}
		if code := <-got; code != http.StatusBadGateway {
			t.Errorf("abandoned request = %d; want 502", code)
		}
		if keys := e.keys(t); len(keys) != 0 {
			t.Errorf("store holds %v after an abandoned fill", keys)
		}
		e.assertNoTemp(t)
	})
}

// TestStaleWhileRefreshHangs: a stale list is served after StaleWait when the refresh hangs,
// and the refresh, once it completes, makes the next answer fresh.
func TestStaleWhileRefreshHangs(t *testing.T) {
	const path = "example.com/m/@v/list"
	o := newOrigin(t)
	e := newEnv(t, o.URL(), func(c *Config) { c.StaleWait = 50 * time.Millisecond })
	e.get(t, "/"+path, 200)
	g := newGate(t, o, path)
	e.clock.Advance(2 * time.Minute)
	w := e.get(t, "/"+path, 200)
	if got := w.Header().Get(CacheHeader); got != CacheStale {
		t.Fatalf("%s = %q while the refresh hangs; want stale", CacheHeader, got)
	}
	g.wait(t)
	g.release()
	// The refresh is still one fill: a request now joins it or finds its result.
	w = e.get(t, "/"+path, 200)
	if got := w.Header().Get(CacheHeader); got != CacheMiss && got != CacheHit {
		t.Errorf("%s = %q after the refresh; want miss or hit", CacheHeader, got)
	}
	if n := o.count(path); n != 2 {
		t.Errorf("origin asked %d times; want 2", n)
	}
}

// TestSettle checks that Settle returns at once when nothing is committing, gives up with
// ctx while a commit runs, and returns once it ended. (TestPushFillsProxy and the go
// command's cold-then-warm run in internal/e2e read the store after Settle.)
func TestSettle(t *testing.T) {
	o := newOrigin(t)
	e := newEnv(t, o.URL(), nil)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := e.s.Settle(ctx); err != nil {
		t.Fatalf("Settle with nothing committing: %v", err)
	}
	e.s.commits.add(1) // a commit that does not end before ctx does
	short, stop := context.WithTimeout(ctx, 10*time.Millisecond)
	defer stop()
	if err := e.s.Settle(short); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Settle with a commit running past ctx: %v; want the deadline", err)
	}
	e.s.commits.add(-1)
	if err := e.s.Settle(ctx); err != nil {
		t.Errorf("Settle after the commit ended: %v", err)
	}
}

// A module that NoProxy names is never asked of the chain: every kind of request for it is
// a 404 that says why, unless the store already holds the answer; other modules are
// fetched as always.
func TestNoProxy(t *testing.T) {
	o := newOrigin(t)
	e := newEnv(t, o.URL(), func(c *Config) {
		c.NoProxy = func(p string) bool { return module.MatchPrefixPatterns("example.com/m", p) }
		c.NoProxyReason = "matches --gonoproxy example.com/m"
	})
	// Stored before the pattern applied (say, by an earlier configuration): still served.
	tmp, err := e.store.CreateTemp(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	mod := fixture(t, o, "example.com/m/@v/v1.0.0.mod")
	tmp.Write(mod)
	if err := e.store.Commit(context.Background(), "example.com/m/@v/v1.0.0.mod", tmp); err != nil {
		t.Fatal(err)
	}
	if w := e.get(t, "/example.com/m/@v/v1.0.0.mod", 200); !bytes.Equal(w.Body.Bytes(), mod) {
		t.Errorf("a stored .mod of a GONOPROXY module was not served")
	}
	for _, p := range []string{"/example.com/m/@v/list", "/example.com/m/@latest", "/example.com/m/@v/v1.1.0.info",
		"/example.com/m/@v/v1.1.0.mod", "/example.com/m/@v/v1.1.0.zip", "/example.com/m/@v/master.info"} {
		w := e.get(t, p, 404)
		assertOneLine(t, w)
		if !strings.Contains(w.Body.String(), "never asks its upstreams for example.com/m") || !strings.Contains(w.Body.String(), "--gonoproxy example.com/m") {
			t.Errorf("GET %s: body %q does not say why", p, w.Body.String())
		}
	}
	if n := o.total(); n != 0 {
		t.Errorf("origin asked %d times for a GONOPROXY module", n)
	}
	// Other modules are fetched as always.
	e.get(t, "/example.com/other/@v/v1.0.0.info", 200)
	if n := o.count("example.com/other/@v/v1.0.0.info"); n != 1 {
		t.Errorf("origin asked %d times for a module outside the pattern, want 1", n)
	}
}

// A Route sends the modules it matches to its own chain alone; the rest go to Chain, and
// NoProxy wins over a route.
func TestRouteModulesToTheirChain(t *testing.T) {
	public, private := newOrigin(t), newOrigin(t)
	privChain, err := goproxy.ParseChain(private.URL(), testHTTPClient)
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, public.URL(), func(c *Config) {
		c.Routes = []Route{{Patterns: "example.com/other,example.com/nomod", Chain: privChain}}
		c.NoProxy = func(p string) bool { return p == "example.com/nomod" }
		c.NoProxyReason = "matches --gonoproxy example.com/nomod"
	})
	for _, p := range []string{"example.com/other/@v/list", "example.com/other/@v/v1.0.0.info",
		"example.com/other/@v/v1.0.0.mod", "example.com/other/@v/v1.0.0.zip"} {
		w := e.get(t, "/"+p, 200)
		if !strings.Contains(w.Header().Get(UpstreamHeader), private.URL()) {
			t.Errorf("GET %s: served by %q, want the route's upstream %s", p, w.Header().Get(UpstreamHeader), private.URL())
		}
	}
	e.get(t, "/example.com/m/@v/v1.0.0.mod", 200)
	e.get(t, "/example.com/nomod/@v/v1.0.0.info", 404)
	public.mu.Lock()
	defer public.mu.Unlock()
	for path, n := range public.hits {
		if strings.HasPrefix(path, "example.com/other/") || strings.HasPrefix(path, "example.com/nomod/") {
			t.Errorf("the public upstream was asked %d times for %s", n, path)
		}
	}
	if public.hits["example.com/m/@v/v1.0.0.mod"] != 1 || private.total() != 4 {
		t.Errorf("public asked %d times for example.com/m, private %d times in all; want 1 and 4",
			public.hits["example.com/m/@v/v1.0.0.mod"], private.total())
	}
}
