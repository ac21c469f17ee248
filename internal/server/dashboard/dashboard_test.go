package dashboard

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/holoproxy/holoproxy/internal/health"
	"github.com/holoproxy/holoproxy/internal/netobs"
)

// fakeHealth is a HealthSource the test changes by hand.
type fakeHealth struct {
	mu          sync.Mutex
	statuses    []health.Status
	transitions []health.Transition
}

func (f *fakeHealth) Statuses() []health.Status {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]health.Status(nil), f.statuses...)
}

func (f *fakeHealth) Transitions() []health.Transition {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]health.Transition(nil), f.transitions...)
}

// set moves upstream i to state st, recording the transition.
func (f *fakeHealth) set(i int, st health.State, score float64, at time.Time, why string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := &f.statuses[i]
	f.transitions = append(f.transitions, health.Transition{At: at, Upstream: s.Upstream, From: s.State, To: st, Score: score, Reason: why})
	s.State, s.Score, s.Since = st, score, at
	if st == health.StateUnhealthy {
		s.RetryAt, s.Backoff = at.Add(4*time.Second), 4*time.Second
	} else {
		s.RetryAt, s.Backoff = time.Time{}, 0
	}
}

func status(name string, st health.State, score float64, since time.Time) health.Status {
	return health.Status{Upstream: name, State: st, Score: score, Since: since,
		Components: health.Components{Connect: 1, TTFB: score, Errors: 1, Checksum: 1},
		Weights:    health.Weights{Connect: 0.2, TTFB: 0.25, Errors: 0.4, Checksum: 0.15}}
}

func TestSnapshot(t *testing.T) {
	now := time.Date(2026, 3, 4, 10, 0, 2, 0, time.UTC) // the last column is [10:00:00, 10:00:05)
	fh := &fakeHealth{statuses: []health.Status{status("https://proxy-a.test", health.StateHealthy, 0.95, now.Add(-time.Hour))}}
	ring := NewRing(16)
	// Inside the span: column 59 (the last) and column 0; outside: 6 minutes ago.
	ring.Observe(netobs.Sample{Upstream: "https://proxy-a.test", Kind: "mod", URL: "https://proxy-a.test/m/@v/v1.0.0.mod",
		Start: now.Add(-time.Second), TTFB: 40 * time.Millisecond, Total: 50 * time.Millisecond, Status: 200})
	ring.Observe(netobs.Sample{Upstream: "https://proxy-a.test", Kind: "zip", URL: "https://proxy-a.test/m/@v/v1.0.0.zip",
		Start: now.Add(-4*time.Minute - 55*time.Second), Connect: 3 * time.Millisecond, TTFB: 10 * time.Millisecond,
		Total: 900 * time.Millisecond, Status: 200})
	ring.Observe(netobs.Sample{Upstream: "https://proxy-b.test", Kind: "info", Start: now.Add(-2 * time.Second),
		ErrClass: netobs.ClassTCPTimeout, Connect: 10 * time.Second, Total: 10 * time.Second})
	ring.Observe(netobs.Sample{Upstream: "https://proxy-a.test", Start: now.Add(-6 * time.Minute), TTFB: time.Second, Status: 200})
	ring.Observe(netobs.Sample{Upstream: "https://proxy-a.test", Start: now.Add(-time.Second), ErrClass: netobs.ClassCanceled})
	cc := &CacheCounter{Header: "X-Cache"}
	cc.hits.Store(3)
	cc.misses.Store(1)
	h := New(Config{Health: fh, Samples: ring, Cache: cc.Stats, Chain: "https://proxy-a.test|https://proxy-b.test",
		Now: func() time.Time { return now }})

	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/api/chain", nil))
	if rec.Code != 200 || rec.Header().Get("Content-Type") != "application/json" {
		t.Fatalf("api/chain answered %d %q", rec.Code, rec.Header().Get("Content-Type"))
	}
	var doc Chain
	if err := json.Unmarshal(rec.Body.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	if doc.Cache == nil || doc.Cache.HitRate != 0.75 {
		t.Fatalf("cache %+v, want hit rate 0.75", doc.Cache)
	}
	// Rows: A's five phases and errors, then B (seen only in Samples).
	if len(doc.Heatmap.Rows) != 12 || doc.Heatmap.Rows[0].Upstream != "https://proxy-a.test" || doc.Heatmap.Rows[6].Upstream != "https://proxy-b.test" {
		t.Fatalf("heatmap rows %+v", doc.Heatmap.Rows)
	}
	cell := func(up, phase string, col int) *Cell {
		for _, r := range doc.Heatmap.Rows {
			if r.Upstream == up && r.Phase == phase {
				return r.Cells[col]
			}
		}
		t.Fatalf("no row %s %s", up, phase)
		return nil
	}
	if c := cell("https://proxy-a.test", "ttfb", 59); c == nil || c.P90ms != 40 || c.N != 1 {
		t.Fatalf("A ttfb last column %+v, want 40ms over 1", c)
	}
	if c := cell("https://proxy-a.test", "connect", 0); c == nil || c.P90ms != 3 {
		t.Fatalf("A connect first column %+v, want 3ms", c)
	}
	if c := cell("https://proxy-a.test", "dns", 59); c != nil {
		t.Fatalf("A dns %+v, want empty (no lookup happened)", c)
	}
	if c := cell("https://proxy-b.test", "errors", 59); c == nil || c.Errors != 1 {
		t.Fatalf("B errors %+v, want 1", c)
	}
	n := 0
	for _, r := range doc.Heatmap.Rows {
		for _, c := range r.Cells {
			if c != nil {
				n += c.N
			}
		}
	}
	if n != 5 { // A: ttfb, connect+ttfb; B: connect, error. The old and the cancelled one are out.
		t.Fatalf("%d observations in the heatmap, want 5", n)
	}
	if len(doc.Slowest) != 3 || doc.Slowest[0].Upstream != "https://proxy-b.test" || doc.Slowest[1].Path != "/m/@v/v1.0.0.zip" {
		t.Fatalf("slowest %+v, want B's timeout, then A's zip", doc.Slowest)
	}
}

func TestHandlerRoutes(t *testing.T) {
	h := New(Config{Health: &fakeHealth{}, Samples: NewRing(1)})
	for _, tc := range []struct {
		path, method string
		code         int
		contains     string
	}{
		{"/", "GET", 200, `<script src="assets/app.js"`},
		{"/assets/app.js", "GET", 200, "api/chain"},
		{"/assets/style.css", "GET", 200, "--healthy"},
		{"/api/chain", "GET", 200, `"upstreams"`},
		{"/assets/nope.js", "GET", 404, ""},
		{"/", "POST", 405, ""},
	} {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest(tc.method, tc.path, nil))
		if rec.Code != tc.code || !strings.Contains(rec.Body.String(), tc.contains) {
			t.Errorf("%s %s: %d, body %.80q; want %d containing %q", tc.method, tc.path, rec.Code, rec.Body.String(), tc.code, tc.contains)
		}
	}
	for path, want := range map[string]bool{"/": true, "/api/chain": true, "/assets/app.js": true,
		"/example.com/m/@v/list": false, "/api/chainx": false} {
		if h.Owns(path) != want {
			t.Errorf("Owns(%q) = %v, want %v", path, !want, want)
		}
	}
}

func TestRing(t *testing.T) {
	r := NewRing(3)
	for i := range 5 {
		r.Observe(netobs.Sample{Bytes: int64(i)})
	}
	got := r.Samples()
	if len(got) != 3 || got[0].Bytes != 2 || got[2].Bytes != 4 {
		t.Fatalf("ring kept %+v, want the last three oldest first", got)
	}
}

func TestCacheCounter(t *testing.T) {
	c := &CacheCounter{Header: "X-Cache"}
	h := c.Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/hit":
			w.Header().Set("X-Cache", "hit")
			w.Write([]byte("12345"))
		case "/miss":
			w.Header().Set("X-Cache", "miss")
			w.WriteHeader(200)
			w.Write([]byte("123"))
		case "/neg":
			w.Header().Set("X-Cache", "negative")
			http.NotFound(w, r)
		default:
			w.WriteHeader(400)
		}
	}))
	for _, p := range []string{"/hit", "/hit", "/miss", "/neg", "/bad"} {
		h.ServeHTTP(httptest.NewRecorder(), httptest.NewRequest("GET", p, nil))
	}
	st := c.Stats()
	if st.Hits != 2 || st.Misses != 1 || st.Negative != 1 || st.Other != 1 || st.BytesServed < 13 {
		t.Fatalf("stats %+v", st)
	}
}

// directSample is a fetch through direct at start: a go run of 300 ms with a go-get
// lookup of 40 ms and a git fetch of 150 ms inside it, then 5 ms reading the file.
func directSample(start time.Time, kind string) netobs.Sample {
	ms := func(n int) time.Duration { return time.Duration(n) * time.Millisecond }
	s := netobs.Sample{Upstream: "direct", Kind: kind, URL: "direct/git.test/repo/@v/v1.0.0." + kind, Start: start,
		Status: 200, Bytes: 120, Transfer: ms(5), Total: ms(310), Steps: []netobs.Step{
			{Phase: netobs.PhaseLookup, Command: "GET https://git.test/repo?go-get=1", Offset: ms(10), Duration: ms(40), Result: "200 OK"},
			{Phase: netobs.PhaseVCS, Command: "git fetch -f origin refs/tags/v1.0.0", Offset: ms(60), Duration: ms(150)},
			{Phase: netobs.PhaseGo, Command: "go list -m -json git.test/repo@v1.0.0", Offset: ms(5), Duration: ms(300)},
		}}
	s.SetStepPhases()
	return s
}

// TestSnapshotDirect: direct's heatmap rows are its step phases (lookup, vcs, go,
// transfer and errors, none of dns, connect, tls, ttfb), its waterfall carries the
// phases, their spans and the slowest step, and the HTTP upstreams' rows and fields stay.
func TestSnapshotDirect(t *testing.T) {
	now := time.Date(2026, 3, 4, 10, 0, 2, 0, time.UTC)
	fh := &fakeHealth{statuses: []health.Status{status("https://proxy-a.test", health.StateHealthy, 0.95, now.Add(-time.Hour))}}
	ring := NewRing(16)
	ring.Observe(netobs.Sample{Upstream: "https://proxy-a.test", Kind: "mod", URL: "https://proxy-a.test/m/@v/v1.0.0.mod",
		Start: now.Add(-time.Second), TTFB: 40 * time.Millisecond, Total: 50 * time.Millisecond, Status: 200})
	ring.Observe(directSample(now.Add(-time.Second), "mod"))
	// Answered from a file an earlier run left: a transfer alone, still direct's.
	ring.Observe(netobs.Sample{Upstream: "direct", Kind: "info", Start: now.Add(-time.Second), Status: 200,
		Transfer: time.Millisecond, Total: time.Millisecond})
	ring.Observe(netobs.Sample{Upstream: "direct", Kind: "zip", Start: now.Add(-time.Second), ErrClass: "direct_not_found",
		Total: 80 * time.Millisecond, Steps: []netobs.Step{{Phase: netobs.PhaseGo, Duration: 80 * time.Millisecond}}, Go: 80 * time.Millisecond})
	h := New(Config{Health: fh, Samples: ring, Now: func() time.Time { return now }})

	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/api/chain", nil))
	var doc Chain
	if err := json.Unmarshal(rec.Body.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range doc.Heatmap.Rows {
		got = append(got, r.Upstream+" "+r.Phase)
	}
	want := []string{
		"https://proxy-a.test dns", "https://proxy-a.test connect", "https://proxy-a.test tls", "https://proxy-a.test ttfb",
		"https://proxy-a.test transfer", "https://proxy-a.test errors",
		"direct lookup", "direct vcs", "direct go", "direct transfer", "direct errors",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("heatmap rows\n%s\nwant\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	cell := func(phase string) *Cell {
		for _, r := range doc.Heatmap.Rows {
			if r.Upstream == "direct" && r.Phase == phase {
				return r.Cells[59]
			}
		}
		return nil
	}
	for phase, want := range map[string]Cell{
		"lookup": {P90ms: 40, N: 1}, "vcs": {P90ms: 150, N: 1}, "go": {P90ms: 110, N: 2}, "transfer": {P90ms: 5, N: 2},
		"errors": {N: 1, Errors: 1},
	} {
		if c := cell(phase); c == nil || *c != want {
			t.Errorf("direct %s: %+v; want %+v", phase, c, want)
		}
	}
	for _, u := range doc.Upstreams {
		if u.Name == "direct" {
			t.Errorf("direct among the scored upstreams: %+v", u)
		}
	}
	var slow *Request
	for i := range doc.Slowest {
		if doc.Slowest[i].Upstream == "direct" && doc.Slowest[i].Kind == "mod" {
			slow = &doc.Slowest[i]
		}
	}
	if slow == nil {
		t.Fatalf("no direct .mod among the slowest %+v", doc.Slowest)
	}
	if slow.Lookupms != 40 || slow.VCSms != 150 || slow.Goms != 110 || slow.Transferms != 5 || slow.Totalms != 310 ||
		slow.DNSms != 0 || slow.TTFBms != 0 || slow.Path != "/git.test/repo/@v/v1.0.0.mod" {
		t.Errorf("direct waterfall %+v", slow)
	}
	if slow.SlowStep != "git fetch -f origin refs/tags/v1.0.0" || slow.SlowStepms != 150 {
		t.Errorf("slowest step %q %v; want the git fetch, 150 ms", slow.SlowStep, slow.SlowStepms)
	}
	wantSpans := []Span{{"go", 5, 10}, {"lookup", 10, 50}, {"go", 50, 60}, {"vcs", 60, 210}, {"go", 210, 305}, {"transfer", 305, 310}}
	if len(slow.Spans) != len(wantSpans) {
		t.Fatalf("spans %+v; want %+v", slow.Spans, wantSpans)
	}
	for i := range wantSpans {
		if slow.Spans[i] != wantSpans[i] {
			t.Errorf("span %d: %+v; want %+v", i, slow.Spans[i], wantSpans[i])
		}
	}
	// The old fields stay, and HTTP exchanges get none of the new ones.
	var raw struct {
		Slowest []map[string]any `json:"slowest"`
	}
	if err := json.Unmarshal(rec.Body.Bytes(), &raw); err != nil {
		t.Fatal(err)
	}
	for _, r := range raw.Slowest {
		for _, k := range []string{"dns_ms", "connect_ms", "tls_ms", "ttfb_ms", "transfer_ms", "total_ms", "upstream", "kind", "path"} {
			if _, ok := r[k]; !ok {
				t.Errorf("%v lacks %s", r, k)
			}
		}
		if _, ok := r["spans"]; ok != (r["upstream"] == "direct") {
			t.Errorf("%v: spans for an HTTP exchange, or none for direct", r)
		}
	}
}
