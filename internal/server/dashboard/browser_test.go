package dashboard

import (
	"context"
	"flag"
	"math"
	"math/rand/v2"
	"net/http/httptest"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/holoproxy/holoproxy/internal/health"
	"github.com/holoproxy/holoproxy/internal/netobs"
	"github.com/holoproxy/holoproxy/internal/report/headless"
)

var screenshot = flag.String("dashboard.png", "", "write a PNG screenshot of the dashboard in the browser test to this file")

// chromium returns the browser to drive, or skips the test (fails it under CI=true).
func chromium(t *testing.T) string {
	t.Helper()
	p, err := headless.Find()
	if err == nil {
		return p
	}
	if os.Getenv("CI") == "true" {
		t.Fatalf("%v; CI must run the dashboard browser test", err)
	}
	t.Skipf("%v: skipping the dashboard browser test", err)
	return ""
}

const (
	proxyA = "https://proxy-a.test"
	proxyB = "https://proxy-b.test"
	proxyC = "https://proxy-c.test"
)

// seedTraffic fills ring with five minutes of plausible traffic ending at now: A near and
// fast but blackholed for 40 s three minutes ago, B slower with 20 % of answers 500 ms late,
// C a distant fallback asked rarely. It returns how many Samples it added.
func seedTraffic(ring *Ring, now time.Time) int {
	rng := rand.New(rand.NewPCG(1, 2))
	lognormal := func(median time.Duration, sigma float64) time.Duration {
		return time.Duration(float64(median) * math.Exp(rng.NormFloat64()*sigma))
	}
	kinds := []string{"info", "mod", "mod", "zip", "list"}
	mods := []string{"golang.org/x/text", "github.com/spf13/cobra", "github.com/miekg/dns", "golang.org/x/sync",
		"github.com/prometheus/client_golang", "gopkg.in/yaml.v3", "github.com/google/go-cmp"}
	n := 0
	add := func(up string, at time.Time, ttfb time.Duration, fresh bool, errClass string) {
		kind := kinds[rng.IntN(len(kinds))]
		mod := mods[rng.IntN(len(mods))]
		s := netobs.Sample{Upstream: up, Kind: kind, Method: "GET", Start: at, TTFB: ttfb, Status: 200, Reused: !fresh, Proto: "HTTP/2.0"}
		s.URL = up + "/" + mod + "/@v/v1." + string(rune('0'+rng.IntN(9))) + ".0." + kind
		if kind == "list" {
			s.URL = up + "/" + mod + "/@v/list"
		}
		if fresh {
			s.DNS = lognormal(2*time.Millisecond, 0.5)
			s.Connect = lognormal(ttfb/3+time.Millisecond, 0.3)
			s.TLS = lognormal(ttfb/2+2*time.Millisecond, 0.3)
		}
		if kind == "zip" {
			s.Transfer = lognormal(120*time.Millisecond, 0.8)
			s.Bytes = int64(rng.IntN(4<<20) + 50<<10)
		} else {
			s.Transfer = lognormal(300*time.Microsecond, 0.5)
			s.Bytes = int64(rng.IntN(3000) + 100)
		}
		if errClass != "" {
			s.Status, s.TTFB, s.Transfer, s.Bytes = 0, 0, 0, 0
			s.ErrClass = errClass
			s.Connect, s.TLS = 2*time.Second, 0 // the connect timeout of the transport
		}
		s.Total = s.DNS + s.Connect + s.TLS + s.TTFB + s.Transfer
		ring.Observe(s)
		n++
	}
	start := now.Add(-5 * time.Minute)
	for t := start; t.Before(now); t = t.Add(time.Duration(300+rng.IntN(400)) * time.Millisecond) {
		ago := now.Sub(t)
		incident := ago < 3*time.Minute && ago > 2*time.Minute+20*time.Second
		if incident {
			if rng.IntN(3) == 0 {
				add(proxyA, t, 0, true, netobs.ClassTCPTimeout)
			}
			d := lognormal(60*time.Millisecond, 0.3)
			if rng.IntN(5) == 0 {
				d += 500 * time.Millisecond
			}
			add(proxyB, t, d, rng.IntN(10) == 0, "")
			continue
		}
		add(proxyA, t, lognormal(18*time.Millisecond, 0.4), rng.IntN(25) == 0, "")
		if rng.IntN(3) == 0 {
			d := lognormal(60*time.Millisecond, 0.3)
			if rng.IntN(5) == 0 {
				d += 500 * time.Millisecond
			}
			add(proxyB, t, d, rng.IntN(10) == 0, "")
		}
		if rng.IntN(12) == 0 {
			add(proxyC, t, lognormal(160*time.Millisecond, 0.3), rng.IntN(4) == 0, "")
		}
	}
	return n
}

// seedDirect adds fetches through direct over the last two minutes before now: go runs of
// about two seconds, with a go-get lookup and git commands inside them, and a failure.
// It returns how many Samples it added.
func seedDirect(ring *Ring, now time.Time) int {
	ms := func(n int) time.Duration { return time.Duration(n) * time.Millisecond }
	n := 0
	for i := range 12 {
		s := netobs.Sample{Upstream: "direct", Kind: []string{"info", "mod", "zip"}[i%3], Start: now.Add(-time.Duration(120-10*i) * time.Second),
			URL: "direct/git.corp.test/lib/@v/v1." + string(rune('0'+i%10)) + ".0.info", Status: 200, Bytes: 2048,
			Transfer: ms(4), Total: ms(2300 + 50*i), Steps: []netobs.Step{
				{Phase: netobs.PhaseGo, Command: "go list -m -json git.corp.test/lib@v1.0.0", Offset: ms(10), Duration: ms(2250 + 50*i)},
				{Phase: netobs.PhaseLookup, Command: "GET https://git.corp.test/lib?go-get=1", Offset: ms(120), Duration: ms(180)},
				{Phase: netobs.PhaseVCS, Command: "git ls-remote -q origin", Offset: ms(320), Duration: ms(400)},
				{Phase: netobs.PhaseVCS, Command: "git fetch -f origin refs/tags/v1.0.0", Offset: ms(740), Duration: ms(1200 + 40*i)},
			}}
		if i == 11 {
			s.Status, s.Transfer, s.Bytes = 0, 0, 0
			s.ErrClass, s.Err = "direct_failed", "direct: unable to access 'https://git.corp.test/lib/': 503"
		}
		s.SetStepPhases()
		ring.Observe(s)
		n++
	}
	return n
}

// TestDashboardInBrowser loads the page in headless Chromium: no console errors, heatmap
// cells after traffic, and a state change shown without a reload.
func TestDashboardInBrowser(t *testing.T) {
	exe := chromium(t)
	now := time.Now()
	fh := &fakeHealth{statuses: []health.Status{
		status(proxyA, health.StateHealthy, 0.97, now.Add(-2*time.Minute)),
		status(proxyB, health.StateHealthy, 0.86, now.Add(-time.Hour)),
		status(proxyC, health.StateHealthy, 0.91, now.Add(-time.Hour)),
	}}
	fh.statuses[0].TTFBP50, fh.statuses[0].TTFBP95 = 18*time.Millisecond, 41*time.Millisecond
	fh.statuses[0].Requests, fh.statuses[0].Failures = 61, 0
	fh.statuses[1].TTFBP50, fh.statuses[1].TTFBP95 = 62*time.Millisecond, 580*time.Millisecond
	fh.statuses[1].Requests, fh.statuses[1].Failures = 23, 0.5
	fh.statuses[1].Components.TTFB = 0.6
	fh.statuses[2].TTFBP50, fh.statuses[2].TTFBP95 = 160*time.Millisecond, 260*time.Millisecond
	fh.statuses[2].Requests = 3
	incident := now.Add(-3 * time.Minute)
	fh.set(0, health.StateDegraded, 0.7, incident.Add(800*time.Millisecond), "score below 0.8 (tcp_timeout)")
	fh.set(0, health.StateUnhealthy, 0.41, incident.Add(1900*time.Millisecond), "3 failures in a row, last tcp_timeout")
	fh.set(0, health.StateHalfOpen, 0.41, incident.Add(2900*time.Millisecond), "backoff of 1s elapsed")
	fh.set(0, health.StateUnhealthy, 0.4, incident.Add(3100*time.Millisecond), "failure in half-open: tcp_timeout")
	fh.set(0, health.StateHalfOpen, 0.4, incident.Add(40*time.Second), "backoff of 32s elapsed")
	fh.set(0, health.StateHealthy, 0.97, incident.Add(41*time.Second), "3 successes in half-open")
	fh.mu.Lock()
	fh.statuses[0].Since = incident.Add(41 * time.Second)
	fh.mu.Unlock()

	ring := NewRing(0)
	cc := &CacheCounter{Header: "X-Holoproxy-Cache"}
	var hedges health.HedgeStats
	var storeMu sync.Mutex
	store := StoreStats{MaxBytes: 50 << 30, SizeBytes: 31 << 30, Evicted: 12, EvictedBytes: 1 << 30}
	direct := DirectStats{Jobs: 4}
	h := New(Config{Health: fh, Samples: ring, Cache: cc.Stats, Chain: proxyA + "|" + proxyB + "," + proxyC, Version: "v1.2.3 go1.26.8",
		Routes: []Route{{Patterns: "corp.test/*", Chain: "https://goproxy.corp.test"}},
		Hedges: func() health.HedgeStats { return hedges },
		Store:  func() StoreStats { storeMu.Lock(); defer storeMu.Unlock(); return store },
		Direct: func() DirectStats { storeMu.Lock(); defer storeMu.Unlock(); return direct }})
	srv := httptest.NewServer(h)
	defer srv.Close()

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	page, err := headless.Open(ctx, srv.URL, headless.Options{ExecPath: exe, Width: 1440, Height: 1200})
	if err != nil {
		t.Fatal(err)
	}
	defer page.Close()
	bctx := page.Context()
	poll := func(what, expr string) {
		t.Helper()
		if _, err := chromedp.Run(bctx, chromedp.Poll[bool](expr, chromedp.WithPollingInterval(50*time.Millisecond),
			chromedp.WithPollingTimeout(30*time.Second))); err != nil {
			t.Fatalf("%s: %v", what, err)
		}
	}
	poll("the version in the footer", `document.querySelector('footer').textContent.includes('holoproxy v1.2.3 go1.26.8 from')`)
	poll("three upstream cards", `document.querySelectorAll('#upstreams .card').length === 3`)
	poll("the route in the header", `(() => { const c = document.getElementById('chain').textContent; return c.includes('corp.test/* →') && c.includes('goproxy.corp.test'); })()`)
	// Mark the page: a reload would lose the mark.
	if err := chromedp.Do(bctx, chromedp.Evaluate[chromedp.Void](`window.__holoproxyMark = 42`)); err != nil {
		t.Fatal(err)
	}
	cells, err := chromedp.Run(bctx, chromedp.Evaluate[int](`document.querySelectorAll('#heatmap .cell.v').length`))
	if err != nil || cells != 0 {
		t.Fatalf("%d heatmap cells before traffic (%v), want 0", cells, err)
	}

	n := seedTraffic(ring, time.Now())
	cc.hits.Store(1843)
	cc.misses.Store(212)
	cc.negative.Store(97)
	cc.bytes.Store(1_362_000_000)
	hedges = health.HedgeStats{Attempts: 412, Fired: 31, Capped: 4}
	t.Logf("fed %d Samples", n)
	poll("heatmap cells after traffic", `document.querySelectorAll('#heatmap .cell.v').length > 100`)
	poll("waterfalls after traffic", `document.querySelectorAll('#slowest .wf').length === 8`)

	// direct's rows are the go command's phases, not an HTTP exchange's.
	t.Logf("fed %d Samples of direct", seedDirect(ring, time.Now()))
	poll("direct's heatmap rows with their phases",
		`(() => { const labs = [...document.querySelectorAll('#heatmap .lab[data-upstream="direct"]')].map((l) => l.textContent).join(','); return labs === 'lookup,vcs,go,transfer,errors'; })()`)
	poll("direct's heatmap cells",
		`['lookup', 'vcs', 'go', 'transfer', 'errors'].every((p) => document.querySelectorAll('#heatmap .cell.v[data-upstream="direct"][data-phase="' + p + '"]').length > 0) && document.querySelectorAll('#heatmap .cell[data-upstream="direct"][data-phase="dns"]').length === 0`)
	poll("a tooltip that says what direct's vcs phase is",
		`(() => { const c = document.querySelector('#heatmap .cell.v[data-upstream="direct"][data-phase="vcs"]'); return !!c && c.title.includes('vcs') && c.title.includes('git fetch'); })()`)
	poll("direct's waterfalls with their phases and slowest step",
		`(() => { const ws = [...document.querySelectorAll('#slowest .wf.direct')]; return ws.length > 0 && ws.some((w) => ['lookup', 'vcs', 'go', 'transfer'].every((p) => w.querySelector('.seg.' + p))) && ws.every((w) => !w.querySelector('.seg.dns') && w.querySelector('.what').title.includes('slowest step: git fetch')) && ws.some((w) => w.querySelector('.seg.failed')); })()`)
	poll("the phase legend with direct's phases",
		`['lookup', 'vcs', 'go'].every((p) => document.getElementById('phase-legend').textContent.includes(p))`)

	fh.set(1, health.StateUnhealthy, 0.38, time.Now(), "3 failures in a row, last tcp_timeout")
	poll("B shown unhealthy without a reload",
		`(() => { const s = document.querySelector('[data-upstream="`+proxyB+`"] .state'); return !!s && s.textContent === 'unhealthy'; })()`)
	poll("the cache disk tile with its size bound",
		`(() => { const t = document.getElementById('store-tile'); return !!t && t.textContent.includes('31.0 GiB of 50.0 GiB') && t.textContent.includes('12 zips evicted') && !t.classList.contains('alert'); })()`)
	storeMu.Lock()
	store.Shared = &SharedStats{Bucket: "s3://gomods/team/", Hits: 900, Misses: 100, Uploads: 120, Refused: 2}
	storeMu.Unlock()
	poll("the shared cache tile",
		`(() => { const t = document.getElementById('shared-tile'); return !!t && t.textContent.includes('900 hits') && t.textContent.includes('90% of 1000 disk misses') && t.textContent.includes('s3://gomods/team/') && t.textContent.includes('2 refused') && !t.classList.contains('alert'); })()`)
	storeMu.Lock()
	store.Shared = &SharedStats{Bucket: "s3://gomods/team/", Down: true, Hits: 900, Misses: 100, Errors: 3}
	store.Unwritable, store.Unstored = true, 7
	storeMu.Unlock()
	poll("the shared cache tile alerting without a reload",
		`(() => { const t = document.getElementById('shared-tile'); return !!t && t.classList.contains('alert') && t.textContent.includes('paused') && t.textContent.includes('3 errors'); })()`)
	poll("the cache disk tile alerting without a reload",
		`(() => { const t = document.getElementById('store-tile'); return !!t && t.classList.contains('alert') && t.textContent.includes('refuses files') && t.textContent.includes('7 answers relayed'); })()`)
	poll("the direct tile before any fetch",
		`(() => { const t = document.getElementById('direct-tile'); return !!t && t.textContent.includes('no fetch yet') && t.textContent.includes('0 / 4 running') && !t.classList.contains('alert'); })()`)
	storeMu.Lock()
	direct = DirectStats{Jobs: 4, Running: 4, Runs: 57, OK: 40, NotFound: 9, Failed: 1, LastFailed: true,
		LastError: "direct: git.test/m@v1.0.0: unable to access: 503"}
	storeMu.Unlock()
	poll("the direct tile alerting after a failure",
		`(() => { const t = document.getElementById('direct-tile'); return !!t && t.classList.contains('alert') && t.textContent.includes('40 / 50 fetched') && t.textContent.includes('57 go runs') && t.textContent.includes('4 / 4 running') && t.textContent.includes('1 failed') && t.title.includes('503'); })()`)
	storeMu.Lock()
	direct.OK, direct.LastFailed = 41, false
	storeMu.Unlock()
	poll("the direct tile clearing after a success",
		`(() => { const t = document.getElementById('direct-tile'); return !!t && !t.classList.contains('alert') && t.textContent.includes('41 / 51 fetched'); })()`)
	// With every card, tile and row filled, nothing makes the page scroll sideways.
	poll("the page fitting its 1440-pixel window", `document.documentElement.scrollWidth <= window.innerWidth`)
	mark, err := chromedp.Run(bctx, chromedp.Evaluate[int](`window.__holoproxyMark || 0`))
	if err != nil || mark != 42 {
		t.Fatalf("page mark %d (%v): the page was reloaded", mark, err)
	}

	if *screenshot != "" {
		png, err := chromedp.Run(bctx, chromedp.FullScreenshot(100))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(*screenshot, png, 0o644); err != nil {
			t.Fatal(err)
		}
	}

	problems, err := page.ConsoleErrors()
	if err != nil {
		t.Fatal(err)
	}
	if len(problems) > 0 {
		t.Fatalf("console errors:\n%v", problems)
	}
}
