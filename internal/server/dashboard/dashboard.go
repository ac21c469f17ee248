// Package dashboard serves holoproxy's live page: per upstream its health score, state and
// transitions, a heatmap of phase latencies over the last minutes, cache counters and the
// slowest recent requests as waterfalls. The page and its assets are embedded; the page
// polls a JSON endpoint, /api/chain, documented in docs/api-chain.md. The package reads
// health, Samples and cache counters through small interfaces and knows nothing of the
// server's internals.
package dashboard

import (
	"embed"
	"encoding/json"
	"io/fs"
	"math"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/holoproxy/holoproxy/internal/goproxy"
	"github.com/holoproxy/holoproxy/internal/health"
	"github.com/holoproxy/holoproxy/internal/netobs"
)

//go:embed assets
var assets embed.FS

// HealthSource reports upstream health; *health.Scorer satisfies it.
type HealthSource interface {
	Statuses() []health.Status
	Transitions() []health.Transition
}

// SampleSource reports recent Samples; *Ring satisfies it.
type SampleSource interface {
	Samples() []netobs.Sample
}

// Config configures a Handler. Zero fields take the documented defaults.
type Config struct {
	// Health and Samples feed the page. Required.
	Health  HealthSource
	Samples SampleSource
	// Cache, when set, reports the cache counters.
	Cache func() CacheStats
	// Hedges, when set, reports the hedging counts.
	Hedges func() health.HedgeStats
	// Prefetch, when set, reports the prefetch counts.
	Prefetch func() PrefetchStats
	// Store, when set, reports the state of the cache's store.
	Store func() StoreStats
	// Direct, when set, reports what the direct entry of the upstream lists did.
	Direct func() DirectStats
	// Chain is the upstream list in GOPROXY syntax, shown in the header.
	Chain string
	// Version names the running program, shown in the footer.
	Version string
	// Routes are the chains of their own that some modules go to (serve --route), shown
	// after Chain.
	Routes []Route
	// Span is the time the heatmap and the slowest requests cover (default 5m), in Columns
	// columns (default 60).
	Span    time.Duration
	Columns int
	// Slowest is the number of slowest requests shown (default 8).
	Slowest int
	// Now tells the time (default time.Now).
	Now func() time.Time
}

// StoreStats are the state of the cache's store the dashboard shows.
type StoreStats struct {
	// Unwritable is set while the store refuses files (disk full, over quota, read-only):
	// misses are relayed from memory and not stored.
	Unwritable bool  `json:"unwritable"`
	Unstored   int64 `json:"unstored"` // answers relayed from memory, not stored, since start
	// With a size bound (--cache-max-size): the bound, the size at the last eviction pass,
	// and the zips evicted since start. Zero without a bound.
	MaxBytes     int64 `json:"max_bytes,omitempty"`
	SizeBytes    int64 `json:"size_bytes,omitempty"`
	Evicted      int64 `json:"evicted,omitempty"`
	EvictedBytes int64 `json:"evicted_bytes,omitempty"`
	// Shared is the shared cache tier (--shared-cache), nil without one.
	Shared *SharedStats `json:"shared,omitempty"`
}

// SharedStats are the state of the shared cache tier the dashboard shows: its bucket, and
// what it did since start with the reads the local disk missed and with the files filled.
type SharedStats struct {
	Bucket string `json:"bucket"` // s3://bucket/prefix
	// Down is set while the bucket is left alone after a failure.
	Down bool `json:"down"`
	// Hits are misses of the disk the bucket answered; Misses, those it did not; Refused,
	// objects ignored (altered, foreign, or failing the checks of a fill); Errors, failed
	// reads.
	Hits    int64 `json:"hits"`
	Misses  int64 `json:"misses"`
	Refused int64 `json:"refused"`
	Errors  int64 `json:"errors"`
	// Uploads are files put in the bucket; UploadErrors, puts that failed.
	Uploads      int64 `json:"uploads"`
	UploadErrors int64 `json:"upload_errors"`
}

// DirectStats are what the direct entry (fetching from version control origins through
// the go command) did since start, as the dashboard shows it.
type DirectStats struct {
	Jobs    int   `json:"jobs"`    // runs allowed at once (--direct-jobs)
	Running int   `json:"running"` // runs holding a job slot now
	Runs    int64 `json:"runs"`    // times the go command was started
	// Fetches are the files asked of direct, by outcome: OK, NotFound (the module or
	// version is not there), Failed (the origin failed), TimedOut (killed after
	// --direct-timeout).
	OK       int64 `json:"ok"`
	NotFound int64 `json:"not_found"`
	Failed   int64 `json:"failed"`
	TimedOut int64 `json:"timed_out"`
	// LastError is the last failure's message (not a not-found), "" when none;
	// LastFailed is set while the latest fetch is a failure or a timeout.
	LastError  string `json:"last_error,omitempty"`
	LastFailed bool   `json:"last_failed"`
}

// PrefetchStats are the prefetch counters the dashboard shows.
type PrefetchStats struct {
	Queued  int64 `json:"queued"`  // requests queued for prefetch
	Fetched int64 `json:"fetched"` // prefetches that completed
	Dropped int64 `json:"dropped"` // dropped because the queue was full
	Failed  int64 `json:"failed"`
}

// Handler serves the page at "/", its assets under "/assets/" and the data at "/api/chain".
type Handler struct {
	cfg    Config
	static http.Handler
}

// New returns a Handler for cfg.
func New(cfg Config) *Handler {
	if cfg.Span <= 0 {
		cfg.Span = 5 * time.Minute
	}
	if cfg.Columns <= 0 {
		cfg.Columns = 60
	}
	if cfg.Slowest <= 0 {
		cfg.Slowest = 8
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	sub, err := fs.Sub(assets, "assets")
	if err != nil {
		panic(err) // the embedded tree is fixed at build time
	}
	return &Handler{cfg: cfg, static: http.StripPrefix("/assets/", http.FileServerFS(sub))}
}

// Owns reports whether path is one the Handler serves, so that a server can route the rest
// of its paths (GOPROXY requests) elsewhere. None of them is a valid module path.
func (h *Handler) Owns(path string) bool {
	return path == "/" || path == "/api/chain" || strings.HasPrefix(path, "/assets/")
}

// ServeHTTP serves the page, its assets and /api/chain.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "the dashboard answers GET and HEAD only", http.StatusMethodNotAllowed)
		return
	}
	w.Header().Set("X-Content-Type-Options", "nosniff")
	switch {
	case r.URL.Path == "/":
		w.Header().Set("Content-Security-Policy", "default-src 'self'; img-src 'self' data:")
		w.Header().Set("Cache-Control", "no-cache")
		http.ServeFileFS(w, r, assets, "assets/index.html")
	case r.URL.Path == "/api/chain":
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Cache-Control", "no-store")
		enc := json.NewEncoder(w)
		enc.SetIndent("", " ")
		_ = enc.Encode(h.Snapshot())
	case strings.HasPrefix(r.URL.Path, "/assets/"):
		w.Header().Set("Cache-Control", "no-cache")
		h.static.ServeHTTP(w, r)
	default:
		http.NotFound(w, r)
	}
}

// Route is a chain of its own for the modules whose paths match Patterns.
type Route struct {
	Patterns string `json:"patterns"` // GOPRIVATE syntax
	Chain    string `json:"chain"`    // GOPROXY syntax
}

// Chain is the document /api/chain serves (docs/api-chain.md).
type Chain struct {
	Now         time.Time          `json:"now"`
	Version     string             `json:"version,omitempty"`
	Chain       string             `json:"chain"`
	Routes      []Route            `json:"routes,omitempty"`
	Upstreams   []Upstream         `json:"upstreams"`
	Transitions []Transition       `json:"transitions"`
	Heatmap     Heatmap            `json:"heatmap"`
	Cache       *CacheView         `json:"cache,omitempty"`
	Hedges      *health.HedgeStats `json:"hedges,omitempty"`
	Prefetch    *PrefetchStats     `json:"prefetch,omitempty"`
	Store       *StoreStats        `json:"store,omitempty"`
	Direct      *DirectStats       `json:"direct,omitempty"`
	Slowest     []Request          `json:"slowest"`
}

// Upstream is one upstream's health as the page shows it.
type Upstream struct {
	Name             string            `json:"name"`
	State            health.State      `json:"state"`
	Since            time.Time         `json:"since"`
	Score            float64           `json:"score"`
	Components       health.Components `json:"components"`
	Weights          health.Weights    `json:"weights"`
	Requests         float64           `json:"requests"`
	Failures         float64           `json:"failures"`
	Verified         float64           `json:"verified"`
	ChecksumFailures float64           `json:"checksum_failures"`
	ErrorsByClass    map[string]int    `json:"errors_by_class,omitempty"`
	TTFBP50ms        float64           `json:"ttfb_p50_ms"`
	TTFBP95ms        float64           `json:"ttfb_p95_ms"`
	RetryAt          *time.Time        `json:"retry_at,omitempty"`
	BackoffMs        float64           `json:"backoff_ms,omitempty"`
}

// Transition is a change of an upstream's state.
type Transition struct {
	At       time.Time    `json:"at"`
	Upstream string       `json:"upstream"`
	From     health.State `json:"from"`
	To       health.State `json:"to"`
	Score    float64      `json:"score"`
	Reason   string       `json:"reason"`
}

// Heatmap is phase latency over time: one row per upstream and phase (and one of errors per
// upstream), one column per time bucket.
type Heatmap struct {
	Start    time.Time `json:"start"`
	BucketMs float64   `json:"bucket_ms"`
	Columns  int       `json:"columns"`
	Rows     []Row     `json:"rows"`
}

// Row is one heatmap row. Phase is a netobs phase name or "errors": for an HTTP upstream
// the rows of netobs.Phases (dns, connect, tls, ttfb, transfer), for direct (fetches by
// the go command) those of netobs.StepPhases (lookup, vcs, go, transfer).
type Row struct {
	Upstream string  `json:"upstream"`
	Phase    string  `json:"phase"`
	Cells    []*Cell `json:"cells"` // null where nothing was observed
}

// Cell is one heatmap cell: the 90th percentile of the phase's durations in the bucket (for
// the errors row, the number of failed exchanges), over N observations.
type Cell struct {
	P90ms  float64 `json:"p90_ms,omitempty"`
	N      int     `json:"n"`
	Errors int     `json:"errors,omitempty"`
}

// CacheView adds the hit rate to the cache counters.
type CacheView struct {
	CacheStats
	HitRate float64 `json:"hit_rate"` // hits (stale included) over hits and misses; 0 without traffic
}

// Request is one recent upstream exchange drawn as a waterfall.
type Request struct {
	Upstream   string    `json:"upstream"`
	Kind       string    `json:"kind"`
	Path       string    `json:"path"`
	Start      time.Time `json:"start"`
	Status     int       `json:"status,omitempty"`
	ErrClass   string    `json:"err_class,omitempty"`
	Reused     bool      `json:"reused"`
	Proto      string    `json:"proto,omitempty"`
	Bytes      int64     `json:"bytes"`
	DNSms      float64   `json:"dns_ms"`
	Connectms  float64   `json:"connect_ms"`
	TLSms      float64   `json:"tls_ms"`
	TTFBms     float64   `json:"ttfb_ms"`
	Transferms float64   `json:"transfer_ms"`
	Totalms    float64   `json:"total_ms"`
	// A fetch through direct has no dns, connect, tls nor ttfb but the phases of the go
	// command's run (netobs.StepPhases), laid out in Spans (the transfer last), and its
	// slowest step: its command and duration.
	Lookupms   float64 `json:"lookup_ms,omitempty"`
	VCSms      float64 `json:"vcs_ms,omitempty"`
	Goms       float64 `json:"go_ms,omitempty"`
	Spans      []Span  `json:"spans,omitempty"`
	SlowStep   string  `json:"slow_step,omitempty"`
	SlowStepms float64 `json:"slow_step_ms,omitempty"`
}

// Span is one phase of a direct fetch placed on its time line, in milliseconds from its
// start.
type Span struct {
	Phase  string  `json:"phase"`
	Fromms float64 `json:"from_ms"`
	Toms   float64 `json:"to_ms"`
}

// stepped reports whether s was answered by a child process (direct): it has Steps or
// their phases.
func stepped(s *netobs.Sample) bool {
	return len(s.Steps) > 0 || s.Lookup > 0 || s.VCS > 0 || s.Go > 0
}

// directRequest adds to r what a fetch through direct has: its step phases, their spans
// and its slowest step other than the run itself.
func directRequest(r *Request, s *netobs.Sample) {
	r.Lookupms, r.VCSms, r.Goms = ms(s.Lookup), ms(s.VCS), ms(s.Go)
	for _, sp := range netobs.StepSpans(s.Steps) {
		r.Spans = append(r.Spans, Span{Phase: string(sp.Phase), Fromms: ms(sp.From), Toms: ms(sp.To)})
	}
	if s.Transfer > 0 {
		from := max(0, s.Total-s.Transfer)
		r.Spans = append(r.Spans, Span{Phase: string(netobs.PhaseTransfer), Fromms: ms(from), Toms: ms(from + s.Transfer)})
	}
	var slow *netobs.Step
	for i := range s.Steps {
		st := &s.Steps[i]
		if st.Phase != netobs.PhaseGo && (slow == nil || st.Duration > slow.Duration) {
			slow = st
		}
	}
	if slow != nil {
		r.SlowStep, r.SlowStepms = slow.Command, ms(slow.Duration)
	}
}

// phaseOrder lists every phase a Sample may have: an HTTP exchange's, then a child
// process's.
var phaseOrder = append(slices.Clone(netobs.Phases), netobs.PhaseLookup, netobs.PhaseVCS, netobs.PhaseGo)

func ms(d time.Duration) float64 { return math.Round(float64(d)/1e4) / 100 }

// Snapshot builds the /api/chain document.
func (h *Handler) Snapshot() Chain {
	now := h.cfg.Now()
	doc := Chain{Now: now, Version: h.cfg.Version, Chain: h.cfg.Chain, Routes: h.cfg.Routes, Transitions: []Transition{}, Slowest: []Request{}}
	order := map[string]int{}
	for _, st := range h.cfg.Health.Statuses() {
		u := Upstream{Name: st.Upstream, State: st.State, Since: st.Since, Score: round3(st.Score),
			Components: st.Components, Weights: st.Weights, Requests: st.Requests, Failures: st.Failures,
			Verified: st.Verified, ChecksumFailures: st.ChecksumFailures, ErrorsByClass: st.ErrorsByClass,
			TTFBP50ms: ms(st.TTFBP50), TTFBP95ms: ms(st.TTFBP95)}
		if !st.RetryAt.IsZero() {
			t := st.RetryAt
			u.RetryAt, u.BackoffMs = &t, ms(st.Backoff)
		}
		order[st.Upstream] = len(doc.Upstreams)
		doc.Upstreams = append(doc.Upstreams, u)
	}
	trs := h.cfg.Health.Transitions()
	for i := len(trs) - 1; i >= 0 && len(doc.Transitions) < 50; i-- {
		t := trs[i]
		doc.Transitions = append(doc.Transitions, Transition{At: t.At, Upstream: t.Upstream, From: t.From, To: t.To,
			Score: round3(t.Score), Reason: t.Reason})
	}
	if h.cfg.Cache != nil {
		cs := h.cfg.Cache()
		v := &CacheView{CacheStats: cs}
		if n := cs.Hits + cs.Stale + cs.Misses; n > 0 {
			v.HitRate = round3(float64(cs.Hits+cs.Stale) / float64(n))
		}
		doc.Cache = v
	}
	if h.cfg.Hedges != nil {
		hs := h.cfg.Hedges()
		doc.Hedges = &hs
	}
	if h.cfg.Prefetch != nil {
		ps := h.cfg.Prefetch()
		doc.Prefetch = &ps
	}
	if h.cfg.Direct != nil {
		ds := h.cfg.Direct()
		doc.Direct = &ds
	}
	if h.cfg.Store != nil {
		ss := h.cfg.Store()
		doc.Store = &ss
	}
	h.heatmap(&doc, now, order)
	return doc
}

func round3(f float64) float64 { return math.Round(f*1000) / 1000 }

// heatmap fills the heatmap and the slowest requests from the Samples within the span.
func (h *Handler) heatmap(doc *Chain, now time.Time, order map[string]int) {
	cols := h.cfg.Columns
	bucket := h.cfg.Span / time.Duration(cols)
	end := now.Truncate(bucket).Add(bucket)
	start := end.Add(-time.Duration(cols) * bucket)
	doc.Heatmap = Heatmap{Start: start, BucketMs: ms(bucket), Columns: cols, Rows: []Row{}}

	type key struct {
		up    string
		phase string
		col   int
	}
	durs := map[key][]time.Duration{}
	errs := map[key]int{}
	var recent []netobs.Sample
	upstreams := slices.Clone(doc.Upstreams)
	// The phases of each upstream's rows: direct's (and those of any upstream answered by
	// a child process) are the go command's steps.
	phases := map[string][]netobs.Phase{goproxy.DirectName: netobs.StepPhases}
	for _, s := range h.cfg.Samples.Samples() {
		if s.Upstream == "" || s.Start.Before(start) || !s.Start.Before(end) || s.ErrClass == netobs.ClassCanceled {
			continue
		}
		if _, ok := order[s.Upstream]; !ok {
			order[s.Upstream] = len(upstreams)
			upstreams = append(upstreams, Upstream{Name: s.Upstream})
		}
		if stepped(&s) {
			phases[s.Upstream] = netobs.StepPhases
		}
		col := int(s.Start.Sub(start) / bucket)
		for _, p := range phaseOrder {
			if d := s.PhaseDuration(p); d > 0 {
				k := key{s.Upstream, string(p), col}
				durs[k] = append(durs[k], d)
			}
		}
		if s.ErrClass != "" || s.Status >= 500 {
			errs[key{s.Upstream, "errors", col}]++
		}
		recent = append(recent, s)
	}
	for _, u := range upstreams {
		ps, ok := phases[u.Name]
		if !ok {
			ps = netobs.Phases
		}
		for _, p := range append(slices.Clone(ps), "errors") {
			row := Row{Upstream: u.Name, Phase: string(p), Cells: make([]*Cell, cols)}
			for c := range cols {
				k := key{u.Name, string(p), c}
				if p == "errors" {
					if n := errs[k]; n > 0 {
						row.Cells[c] = &Cell{N: n, Errors: n}
					}
					continue
				}
				if ds := durs[k]; len(ds) > 0 {
					slices.Sort(ds)
					i := int(math.Ceil(0.9*float64(len(ds)))) - 1
					row.Cells[c] = &Cell{P90ms: ms(ds[max(i, 0)]), N: len(ds)}
				}
			}
			doc.Heatmap.Rows = append(doc.Heatmap.Rows, row)
		}
	}
	slices.SortFunc(recent, func(a, b netobs.Sample) int {
		switch {
		case a.Total > b.Total:
			return -1
		case a.Total < b.Total:
			return 1
		}
		return b.Start.Compare(a.Start)
	})
	for _, s := range recent[:min(len(recent), h.cfg.Slowest)] {
		path := strings.TrimPrefix(s.URLString(), s.Upstream)
		r := Request{Upstream: s.Upstream, Kind: s.Kind, Path: path, Start: s.Start,
			Status: s.Status, ErrClass: s.ErrClass, Reused: s.Reused, Proto: s.Proto, Bytes: s.Bytes,
			DNSms: ms(s.DNS), Connectms: ms(s.Connect), TLSms: ms(s.TLS), TTFBms: ms(s.TTFB),
			Transferms: ms(s.Transfer), Totalms: ms(s.Total)}
		if stepped(&s) || s.Upstream == goproxy.DirectName {
			directRequest(&r, &s)
		}
		doc.Slowest = append(doc.Slowest, r)
	}
}
