package server

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/holoproxy/holoproxy/internal/goproxy"
	"github.com/holoproxy/holoproxy/internal/health"
	"github.com/holoproxy/holoproxy/internal/lab/modtree"
	"github.com/holoproxy/holoproxy/internal/server/dashboard"
)

// repairMismatch is the Verify hook's refusal in these tests.
type repairMismatch struct{ path string }

func (e *repairMismatch) Error() string { return "checksum mismatch for " + e.path }
func (e *repairMismatch) Class() string { return ReasonChecksum }

// newRepairEnv starts a server for list with a Repair configured; probing is off (the
// tests' client records no Samples).
func newRepairEnv(t *testing.T, list string, rc RepairConfig, mutate func(*Config)) (*env, *Repair) {
	t.Helper()
	rc.ProbeInterval = -1
	rp, err := NewRepair(rc)
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, list, func(cfg *Config) {
		if mutate != nil {
			mutate(cfg)
		}
		rp.Configure(cfg, cfg.Chain)
	})
	if err := rp.Start(e.s, testHTTPClient); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(rp.Stop)
	return e, rp
}

// TestRepairTamperedUpstream: A serves tampered go.mod files. Verification refuses them, B's
// answer is served and stored, A is charged checksum failures, degraded after the second, and
// moved behind B, so the next requests do not reach it.
func TestRepairTamperedUpstream(t *testing.T) {
	a, b := newOrigin(t), newOrigin(t)
	a.setFault(func(w http.ResponseWriter, r *http.Request) bool {
		if !strings.HasSuffix(r.URL.Path, ".mod") {
			return false
		}
		data, err := os.ReadFile(filepath.Join(a.dir, filepath.FromSlash(strings.TrimPrefix(r.URL.Path, "/"))))
		if err != nil {
			http.NotFound(w, r)
			return true
		}
		w.Write(append(data, "// tampered\n"...))
		return true
	})
	verify := func(_ context.Context, r goproxy.Request, f *os.File) error {
		got, err := os.ReadFile(f.Name())
		if err != nil {
			return err
		}
		want := fixture(t, b, r.Path())
		if !bytes.Equal(got, want) {
			return &repairMismatch{path: r.Path()}
		}
		return nil
	}
	e, rp := newRepairEnv(t, a.URL()+"|"+b.URL(), RepairConfig{NoHedge: true},
		func(cfg *Config) { cfg.Verify = verify })

	paths := []string{"example.com/m/@v/v1.0.0.mod", "example.com/m/@v/v1.1.0.mod", "example.com/other/@v/v1.0.0.mod", "example.com/!upper/@v/v1.0.0.mod"}
	for i, p := range paths {
		w := e.get(t, "/"+p, http.StatusOK)
		if !bytes.Equal(w.Body.Bytes(), fixture(t, b, p)) {
			t.Fatalf("%s: served %q, want B's honest go.mod", p, w.Body.String())
		}
		if got := w.Header().Get(UpstreamHeader); got != b.URL() {
			t.Fatalf("%s served by %q, want B", p, got)
		}
		switch st := rp.Scorer.State(a.URL()); {
		case i == 0 && st != health.StateHealthy:
			t.Fatalf("A is %s after one checksum failure, want still healthy (one bad file is not yet a pattern)", st)
		case i == 1 && st != health.StateDegraded && st != health.StateUnhealthy:
			t.Fatalf("A is %s after two checksum failures, want degraded or worse", st)
		case i >= 2 && a.count(p) != 0:
			t.Fatalf("%s: A asked %d times after it was degraded, want 0 (B first)", p, a.count(p))
		}
	}
	for _, p := range paths {
		f, err := e.store.Open(context.Background(), p)
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		buf.ReadFrom(f.Body)
		f.Body.Close()
		if bytes.Contains(buf.Bytes(), []byte("tampered")) {
			t.Fatalf("%s: a tampered file was stored", p)
		}
	}
	st := rp.Scorer.Statuses()
	if st[0].Upstream != a.URL() || st[0].ChecksumFailures != 2 || st[1].Verified != 4 {
		t.Fatalf("statuses %+v, want A with 2 checksum failures and B with 4 verified files", st)
	}
}

// graphOrigin serves the module graph mods as a GOPROXY tree and records the paths asked.
func graphOrigin(t *testing.T, mods []modtree.Module) (*httptest.Server, func() []string) {
	t.Helper()
	dir := t.TempDir()
	if err := modtree.Write(dir, mods); err != nil {
		t.Fatal(err)
	}
	o := &origin{dir: dir, hits: map[string]int{}}
	files := http.FileServer(http.Dir(dir))
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		o.mu.Lock()
		o.hits[strings.TrimPrefix(r.URL.Path, "/")]++
		o.mu.Unlock()
		files.ServeHTTP(w, r)
	}))
	t.Cleanup(srv.Close)
	return srv, func() []string {
		o.mu.Lock()
		defer o.mu.Unlock()
		var out []string
		for p := range o.hits {
			out = append(out, p)
		}
		return out
	}
}

// waitPrefetch waits until the prefetcher has nothing queued and nothing in progress.
func waitPrefetch(t *testing.T, rp *Repair) dashboard.PrefetchStats {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	var last dashboard.PrefetchStats
	quiet := 0
	for quiet < 3 {
		time.Sleep(20 * time.Millisecond)
		p := rp.prefetch.Load()
		st := p.stats()
		if st == last && len(p.queue) == 0 && st.Fetched+st.Failed == st.Queued {
			quiet++
		} else {
			quiet = 0
		}
		last = st
		if time.Now().After(deadline) {
			t.Fatalf("prefetch did not settle: %+v", st)
		}
	}
	return last
}

// TestRepairPrefetch: a client's .mod pulls its .info and the .info and .mod of the whole
// graph below it into the store, so the client's next requests are hits; a client's .info
// (a hit here) pulls its .zip.
func TestRepairPrefetch(t *testing.T) {
	mods, roots := modtree.Graph("mods.test/g", 12, 3, 2)
	up, asked := graphOrigin(t, mods)
	e, rp := newRepairEnv(t, up.URL, RepairConfig{NoHedge: true, Prefetch: 2}, nil)

	root := roots[0]
	rootReq := goproxy.Request{Kind: goproxy.KindMod, Module: root.Path, Version: root.Version}
	e.get(t, "/"+rootReq.Path(), http.StatusOK)
	st := waitPrefetch(t, rp)

	// The graph below the root, from the generated go.mod files.
	below := map[string]bool{}
	var walk func(v string)
	byID := map[string]modtree.Module{}
	for _, m := range mods {
		byID[m.Path+"@"+m.Version] = m
	}
	walk = func(id string) {
		for _, r := range byID[id].Require {
			rid := r.Path + "@" + r.Version
			if !below[rid] {
				below[rid] = true
				walk(rid)
			}
		}
	}
	walk(root.Path + "@" + root.Version)
	if len(below) < 2 {
		t.Fatalf("the test graph has only %d modules below the root", len(below))
	}
	for _, p := range asked() {
		if strings.HasSuffix(p, ".zip") {
			t.Errorf("prefetch fetched %s without a client asking its .info", p)
		}
	}
	// Every module below the root: its .info and .mod; and the root's .info, pulled by the
	// client's .mod.
	if st.Queued != int64(2*len(below)+1) || st.Failed != 0 {
		t.Errorf("prefetch stats %+v, want %d queued and none failed", st, 2*len(below)+1)
	}
	for id := range below {
		path, version, _ := strings.Cut(id, "@")
		for _, kind := range []goproxy.Kind{goproxy.KindInfo, goproxy.KindMod} {
			r := goproxy.Request{Kind: kind, Module: path, Version: version}
			w := e.get(t, "/"+r.Path(), http.StatusOK)
			if c := w.Header().Get(CacheHeader); c != CacheHit {
				t.Errorf("%s answered %q, want a hit (prefetched)", r.Path(), c)
			}
		}
	}

	// A client's .info of the root pulls its .zip.
	info := goproxy.Request{Kind: goproxy.KindInfo, Module: root.Path, Version: root.Version}
	e.get(t, "/"+info.Path(), http.StatusOK)
	waitPrefetch(t, rp)
	zip := goproxy.Request{Kind: goproxy.KindZip, Module: root.Path, Version: root.Version}
	if w := e.get(t, "/"+zip.Path(), http.StatusOK); w.Header().Get(CacheHeader) != CacheHit {
		t.Errorf("%s answered %q after its .info, want a hit (prefetched)", zip.Path(), w.Header().Get(CacheHeader))
	}
}

// TestRepairMount: the dashboard answers "/", "/api/chain" and its assets; every other path
// reaches the proxy, counted for the dashboard.
func TestRepairMount(t *testing.T) {
	a, b := newOrigin(t), newOrigin(t)
	e, rp := newRepairEnv(t, a.URL()+"|"+b.URL(), RepairConfig{}, nil)
	mux := NewRoutes(e.s)
	rp.Mount(mux)
	get := func(path string) *httptest.ResponseRecorder {
		w := httptest.NewRecorder()
		mux.ServeHTTP(w, httptest.NewRequest(http.MethodGet, path, nil))
		return w
	}
	if w := get("/"); w.Code != 200 || !strings.Contains(w.Body.String(), "holoproxy") {
		t.Fatalf("GET / = %d", w.Code)
	}
	if w := get("/assets/app.js"); w.Code != 200 {
		t.Fatalf("GET /assets/app.js = %d", w.Code)
	}
	for range 2 {
		if w := get("/example.com/m/@v/v1.0.0.info"); w.Code != 200 {
			t.Fatalf("GET .info through the mux = %d %s", w.Code, w.Body)
		}
	}
	var doc dashboard.Chain
	w := get("/api/chain")
	if err := json.Unmarshal(w.Body.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Upstreams) != 2 || doc.Upstreams[0].Name != a.URL() || doc.Chain != a.URL()+"|"+b.URL() {
		t.Fatalf("api/chain upstreams %+v chain %q", doc.Upstreams, doc.Chain)
	}
	if doc.Cache == nil || doc.Cache.Misses != 1 || doc.Cache.Hits != 1 || doc.Cache.BytesServed == 0 || doc.Hedges == nil || doc.Prefetch == nil {
		t.Fatalf("api/chain cache %+v hedges %v prefetch %v", doc.Cache, doc.Hedges, doc.Prefetch)
	}
}

// TestRepairPrefetchThrottled: an upstream that rate-limits a prefetch (429, Retry-After)
// pauses prefetching for that long; the clients' own requests go on meanwhile, and
// prefetching resumes after the pause.
func TestRepairPrefetchThrottled(t *testing.T) {
	o := newOrigin(t)
	var throttle atomic.Bool
	throttle.Store(true)
	o.setFault(func(w http.ResponseWriter, r *http.Request) bool {
		if throttle.Load() && strings.HasSuffix(r.URL.Path, ".zip") {
			w.Header().Set("Retry-After", "2")
			http.Error(w, "slow down", http.StatusTooManyRequests)
			return true
		}
		return false
	})
	e, rp := newRepairEnv(t, o.URL(), RepairConfig{NoHedge: true, Prefetch: 2}, nil)
	throttled := func() float64 { return counterValue(rp.prefetch.Load().metric.WithLabelValues("throttled")) }

	// A client's .info pulls its .mod and .zip; the .zip is refused with 429.
	e.get(t, "/example.com/m/@v/v1.0.0.info", http.StatusOK)
	deadline := time.Now().Add(10 * time.Second)
	for throttled() == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no prefetch was throttled")
		}
		time.Sleep(10 * time.Millisecond)
	}
	paused := time.Now()
	// The next client .info queues prefetches that wait out the pause...
	e.get(t, "/example.com/m/@v/v1.1.0.info", http.StatusOK)
	// ...while the client's own requests are answered at once.
	e.get(t, "/example.com/other/@v/v1.0.0.mod", http.StatusOK)
	time.Sleep(300 * time.Millisecond)
	if n := o.count("example.com/m/@v/v1.1.0.mod") + o.count("example.com/m/@v/v1.1.0.zip"); n != 0 && time.Since(paused) < 2*time.Second {
		t.Errorf("%d prefetches reached the upstream during the pause it asked for", n)
	}
	throttle.Store(false)
	deadline = time.Now().Add(15 * time.Second)
	for o.count("example.com/m/@v/v1.1.0.zip") == 0 {
		if time.Now().After(deadline) {
			t.Fatal("prefetching did not resume after the pause")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if waited := time.Since(paused); waited < 1500*time.Millisecond {
		t.Errorf("prefetching resumed %v after a 429 asking for 2s", waited)
	}
	if !strings.Contains(e.logs.String(), "prefetching paused") {
		t.Errorf("no log line about the pause:\n%s", e.logs)
	}
}
