package repairlab

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"flag"
	"fmt"
	"hash/fnv"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/holoproxy/holoproxy/internal/checksum"
	"github.com/holoproxy/holoproxy/internal/goproxy"
	"github.com/holoproxy/holoproxy/internal/health"
	"github.com/holoproxy/holoproxy/internal/lab"
	"github.com/holoproxy/holoproxy/internal/lab/modtree"
	"github.com/holoproxy/holoproxy/internal/netobs"
	"github.com/holoproxy/holoproxy/internal/server"
	"github.com/holoproxy/holoproxy/internal/server/dashboard"
	"github.com/holoproxy/holoproxy/internal/store"
	"golang.org/x/mod/module"
)

var screenshot = flag.String("dashboard.png", "", "write a PNG screenshot of holoproxy's dashboard after TestBlackholedUpstream to this file")

func TestMain(m *testing.M) {
	lab.RegisterHelper("serve", serveHelper)
	lab.Main(m)
}

// serveHelper runs a holoproxy server in a lab host, wired as serve wires it: the observed
// transport feeding the Repair's sink, a probe transport of its own, Repair configuring the
// server, the dashboard mounted beside the proxy. It serves plain HTTP on :80 until SIGINT or
// SIGTERM.
func serveHelper(args []string) int {
	fs := flag.NewFlagSet("serve", flag.ContinueOnError)
	upstream := fs.String("upstream", "", "chain in GOPROXY syntax")
	cache := fs.String("cache", "", "cache directory")
	ca := fs.String("ca", "", "CA file")
	// Zero hedge flags take the package defaults, which are serve's.
	hedgeMin := fs.Duration("hedge-min", 0, "")
	hedgeMax := fs.Duration("hedge-max", 0, "")
	hedgeShare := fs.Float64("hedge-share", 0, "")
	prefetch := fs.Int("prefetch", 4, "")
	gosum := fs.String("gosum", "", "go.sum file to verify .mod and .zip fills against")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	fail := func(err error) int {
		fmt.Fprintln(os.Stderr, "serve helper:", err)
		return 1
	}
	rp, err := server.NewRepair(server.RepairConfig{
		Hedge:         health.HedgeConfig{Min: *hedgeMin, Max: *hedgeMax, Share: *hedgeShare},
		Prefetch:      *prefetch,
		ProbeInterval: time.Second,
		ProbeTimeout:  time.Second,
		Logger:        log,
	})
	if err != nil {
		return fail(err)
	}
	res := &netobs.Resolver{}
	tcfg := netobs.TransportConfig{Resolver: res, CAFile: *ca, ConnectTimeout: time.Second,
		FirstByteTimeout: 3 * time.Second, BodyIdleTimeout: 3 * time.Second, Sink: rp.Sink()}
	t, err := netobs.NewTransport(tcfg)
	if err != nil {
		return fail(err)
	}
	pt, err := netobs.NewTransport(tcfg)
	if err != nil {
		return fail(err)
	}
	hc := &http.Client{Transport: t}
	chain, err := goproxy.ParseChain(*upstream, hc)
	if err != nil {
		return fail(err)
	}
	st, err := store.OpenDisk(*cache)
	if err != nil {
		return fail(err)
	}
	cfg := server.Config{Store: st, Chain: chain, Logger: log}
	if *gosum != "" {
		data, err := os.ReadFile(*gosum)
		if err != nil {
			return fail(err)
		}
		sums, err := checksum.ParseGoSum(data)
		if err != nil {
			return fail(err)
		}
		cfg.Verify = func(_ context.Context, r goproxy.Request, f *os.File) error {
			return verifyAgainst(sums, r, f.Name())
		}
	}
	rp.Configure(&cfg, chain)
	srv, err := server.New(cfg)
	if err != nil {
		return fail(err)
	}
	rp.SetProbeClient(&http.Client{Transport: pt}, pt.CloseIdleConnections)
	if err := rp.Start(srv, hc); err != nil {
		return fail(err)
	}
	mux := server.NewRoutes(srv)
	rp.Mount(mux)
	ln, err := net.Listen("tcp", ":80")
	if err != nil {
		return fail(err)
	}
	hs := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	served := make(chan error, 1)
	go func() { served <- hs.Serve(ln) }()
	select {
	case err := <-served:
		return fail(err)
	case <-ctx.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	hs.Shutdown(sctx)
	srv.Close(sctx)
	rp.Stop()
	return 0
}

// mismatchError is the helper's Verify refusal, classed as the checksum database's is.
type mismatchError struct{ what, got, want string }

func (e *mismatchError) Error() string {
	return fmt.Sprintf("%s: checksum mismatch: got %s, go.sum has %s", e.what, e.got, e.want)
}
func (e *mismatchError) Class() string { return netobs.ClassChecksumMismatch }

// verifyAgainst checks the .mod or .zip in file against sums.
func verifyAgainst(sums *checksum.GoSum, r goproxy.Request, file string) error {
	var got string
	var err error
	switch r.Kind {
	case goproxy.KindMod:
		data, rerr := os.ReadFile(file)
		if rerr != nil {
			return rerr
		}
		got, err = checksum.HashMod(data)
	case goproxy.KindZip:
		got, err = checksum.HashZip(file)
	default:
		return nil
	}
	if err != nil {
		return err
	}
	want, ok := sums.Hash(r.Module, r.Version, r.Kind == goproxy.KindMod)
	if !ok {
		return fmt.Errorf("%s@%s not in go.sum", r.Module, r.Version)
	}
	if got != want {
		return &mismatchError{what: r.String(), got: got, want: want}
	}
	return nil
}

// rig is a lab with a client host, holoproxy (host "hp", the serve helper) and two origins,
// proxy-a and proxy-b, serving the same module tree.
type rig struct {
	l                *lab.Lab
	client, hp       *lab.Host
	hostA, hostB     *lab.Host
	originA, originB *lab.Origin
	mods             []modtree.Module
	roots            []module.Version
	tree             string
	httpc            *http.Client // the test process's client, dialling from the client host
	hpURL            string
	cache            string // holoproxy's cache directory
	stderr           *lockedBuffer
}

// rigOptions shape a rig.
type rigOptions struct {
	modules  int
	handlerA func(files http.Handler) http.Handler // wraps proxy-a's tree, if set
	linkA    lab.Link
	linkB    lab.Link
	args     []string // extra serve helper flags
}

func newRig(t *testing.T, o rigOptions) *rig {
	t.Helper()
	l := lab.New(t, lab.Options{})
	r := &rig{l: l, stderr: &lockedBuffer{}}
	r.client, r.hp = l.MustAddHost(t, "client"), l.MustAddHost(t, "hp")
	r.hostA, r.hostB = l.MustAddHost(t, "proxy-a"), l.MustAddHost(t, "proxy-b")
	if _, err := l.DNS(); err != nil {
		t.Fatal(err)
	}
	mods, roots := modtree.Graph("mods.test/g", o.modules, 3, 3)
	r.mods, r.roots = mods, roots
	r.tree = filepath.Join(t.TempDir(), "tree")
	if err := modtree.Write(r.tree, mods); err != nil {
		t.Fatal(err)
	}
	cfgA := lab.OriginConfig{Tree: r.tree, HTTP2: true}
	if o.handlerA != nil {
		cfgA = lab.OriginConfig{Handler: o.handlerA(http.FileServer(http.Dir(r.tree))), HTTP2: true}
	}
	var err error
	if r.originA, err = r.hostA.ServeOrigin(cfgA); err != nil {
		t.Fatal(err)
	}
	if r.originB, err = r.hostB.ServeOrigin(lab.OriginConfig{Tree: r.tree, HTTP2: true}); err != nil {
		t.Fatal(err)
	}
	if err := r.hostA.SetLink(o.linkA); err != nil {
		t.Fatal(err)
	}
	if err := r.hostB.SetLink(o.linkB); err != nil {
		t.Fatal(err)
	}
	r.httpc = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
		DialContext:       r.client.DialContext,
		TLSClientConfig:   &tls.Config{RootCAs: l.CA().Pool()},
		ForceAttemptHTTP2: true,
	}}

	cache, err := l.TmpfsDir("hp-cache")
	if err != nil {
		t.Fatal(err)
	}
	r.cache = cache
	args := append([]string{"-upstream", r.originA.URL() + "|" + r.originB.URL(), "-cache", cache,
		"-ca", l.CA().CertFile()}, o.args...)
	ctx, cancel := context.WithCancel(context.Background())
	cmd, err := r.hp.HelperCommand(ctx, "serve", args...)
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	cmd.Stderr = r.stderr
	if err := cmd.Start(); err != nil {
		cancel()
		t.Fatal(err)
	}
	t.Cleanup(func() {
		syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("serve helper: %v\n%s", err, r.stderr)
			}
		case <-time.After(15 * time.Second):
			t.Errorf("serve helper did not stop on SIGTERM")
		}
		cancel()
		if t.Failed() {
			t.Logf("serve helper log:\n%s", r.stderr)
		}
	})
	r.hpURL = "http://" + r.hp.DNSName()
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := r.httpc.Get(r.hpURL + "/api/chain")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("holoproxy did not come up: %v\n%s", err, r.stderr)
		}
		time.Sleep(50 * time.Millisecond)
	}
	return r
}

// chain reads holoproxy's /api/chain.
func (r *rig) chain(t *testing.T) dashboard.Chain {
	t.Helper()
	resp, err := r.httpc.Get(r.hpURL + "/api/chain")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var doc dashboard.Chain
	if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil {
		t.Fatal(err)
	}
	return doc
}

func (r *rig) state(t *testing.T, upstream string) health.State {
	t.Helper()
	for _, u := range r.chain(t).Upstreams {
		if u.Name == upstream {
			return u.State
		}
	}
	t.Fatalf("upstream %s not in /api/chain", upstream)
	return ""
}

// fetch GETs url to its end and returns how long it took.
func (r *rig) fetch(t *testing.T, url string) time.Duration {
	t.Helper()
	start := time.Now()
	resp, err := r.httpc.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	buf := make([]byte, 32<<10)
	for {
		if _, err := resp.Body.Read(buf); err != nil {
			break
		}
	}
	if resp.StatusCode != 200 {
		t.Fatalf("GET %s: %d", url, resp.StatusCode)
	}
	return time.Since(start)
}

// lockedBuffer collects a child's stderr.
type lockedBuffer struct {
	mu sync.Mutex
	b  strings.Builder
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.b.String()
}

// TestBlackholedUpstream: proxy-a is blackholed in the middle of `go mod download all`
// through holoproxy. The download completes with no failed module, proxy-a's circuit opens
// within 2 s, and once the link heals it is healthy again by way of half-open.
func TestBlackholedUpstream(t *testing.T) {
	r := newRig(t, rigOptions{modules: 45, linkA: lab.Link{Delay: 5 * time.Millisecond},
		linkB: lab.Link{Delay: 20 * time.Millisecond}})
	app := filepath.Join(t.TempDir(), "app")
	roots := r.roots
	sum, err := modtree.AppGoSum(r.mods, roots)
	if err != nil {
		t.Fatal(err)
	}
	if err := modtree.WriteApp(app, "example.test/app", r.mods, roots, sum); err != nil {
		t.Fatal(err)
	}
	env, err := r.l.GoEnv(r.hpURL)
	if err != nil {
		t.Fatal(err)
	}

	// Blackhole proxy-a once it has answered a share of the download.
	var blackholed atomic.Int64 // UnixNano of the moment, 0 before
	watch, stopWatch := context.WithCancel(context.Background())
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		for watch.Err() == nil {
			if r.originA.Stats().Requests >= 40 {
				if err := r.hostA.SetLink(lab.Link{Delay: 5 * time.Millisecond, Loss: 1}); err != nil {
					t.Error(err)
				}
				blackholed.Store(time.Now().UnixNano())
				return
			}
			time.Sleep(2 * time.Millisecond)
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	cmd := r.client.Command(ctx, "go", "mod", "download", "all")
	cmd.Dir, cmd.Env = app, env
	out, err := cmd.CombinedOutput()
	stopWatch()
	<-watched
	if err != nil {
		t.Fatalf("go mod download all through holoproxy failed: %v\n%s\nholoproxy:\n%s", err, out, r.stderr)
	}
	if blackholed.Load() == 0 {
		t.Fatalf("the download ended before proxy-a was blackholed (%d requests answered)", r.originA.Stats().Requests)
	}
	tBlack := time.Unix(0, blackholed.Load())
	t.Logf("proxy-a answered %d requests, proxy-b %d", r.originA.Stats().Requests, r.originB.Stats().Requests)

	// The circuit opened within 2 s of the blackhole.
	var opened time.Time
	doc := r.chain(t)
	for i := len(doc.Transitions) - 1; i >= 0; i-- { // oldest first
		tr := doc.Transitions[i]
		if tr.Upstream == r.originA.URL() && tr.To == health.StateUnhealthy && tr.At.After(tBlack) {
			opened = tr.At
			t.Logf("proxy-a opened %v after the blackhole: %s", tr.At.Sub(tBlack).Round(time.Millisecond), tr.Reason)
			break
		}
	}
	if opened.IsZero() {
		t.Fatalf("proxy-a's circuit never opened; transitions %+v", doc.Transitions)
	}
	if d := opened.Sub(tBlack); d > 2*time.Second {
		t.Fatalf("proxy-a opened %v after the blackhole, want within 2s", d)
	}

	// Heal: back to healthy through half-open.
	healed := time.Now()
	if err := r.hostA.SetLink(lab.Link{Delay: 5 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(60 * time.Second)
	for r.state(t, r.originA.URL()) != health.StateHealthy {
		if time.Now().After(deadline) {
			t.Fatalf("proxy-a not healthy 60s after healing; transitions %+v", r.chain(t).Transitions)
		}
		time.Sleep(100 * time.Millisecond)
	}
	var path []string
	doc = r.chain(t)
	for i := len(doc.Transitions) - 1; i >= 0; i-- {
		tr := doc.Transitions[i]
		if tr.Upstream == r.originA.URL() && tr.At.After(healed) {
			path = append(path, string(tr.From)+">"+string(tr.To))
		}
	}
	if n := len(path); n == 0 || path[n-1] != "half-open>healthy" {
		t.Fatalf("after healing proxy-a went %v, want to end half-open>healthy", path)
	}
	t.Logf("after healing: %v (%v)", path, time.Since(healed).Round(time.Millisecond))
	if *screenshot != "" {
		dashboardScreenshot(t, r.client, r.hpURL+"/", *screenshot)
	}
}

// dashboardScreenshot loads url in headless Chromium running in host h's namespace (where
// the lab's names resolve) and writes a PNG screenshot of the page to file.
func dashboardScreenshot(t *testing.T, h *lab.Host, url, file string) {
	t.Helper()
	exe, err := exec.LookPath("chromium")
	if err != nil {
		t.Fatalf("-dashboard.png needs chromium: %v", err)
	}
	dir := t.TempDir()
	wrapper := filepath.Join(dir, "chromium-in-"+h.Name())
	script := "#!/bin/sh\nexec ip netns exec " + h.Netns() + " " + exe + " \"$@\"\n"
	if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	profile, err := os.MkdirTemp("", "holoproxy-chromium-")
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		for range 50 {
			if os.RemoveAll(profile) == nil {
				return
			}
			time.Sleep(100 * time.Millisecond)
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	allocCtx, cancelAlloc := chromedp.NewExecAllocator(ctx, chromedp.ExecPath(wrapper), chromedp.Headless,
		chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun, chromedp.NoDefaultBrowserCheck,
		chromedp.Flag("disable-quic", true), chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-sync", true),
		chromedp.Flag("disable-dev-shm-usage", true), chromedp.UserDataDir(profile), chromedp.WindowSize(1440, 1000))
	defer cancelAlloc()
	bctx, cancelBrowser := chromedp.NewContext(allocCtx)
	defer cancelBrowser()
	if err := chromedp.Do(bctx, chromedp.Navigate(url)); err != nil {
		t.Fatalf("dashboard: %v", err)
	}
	if _, err := chromedp.Run(bctx, chromedp.Poll[bool](`document.querySelectorAll('#heatmap .cell.v').length > 0 && document.querySelectorAll('#slowest .wf').length > 0`,
		chromedp.WithPollingTimeout(30*time.Second))); err != nil {
		t.Fatalf("dashboard did not fill: %v", err)
	}
	png, err := chromedp.Run(bctx, chromedp.FullScreenshot(100))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, png, 0o644); err != nil {
		t.Fatal(err)
	}
	t.Logf("wrote %s", file)
}

// TestHedgingKeepsTailLatency: proxy-a answers 20 % of requests 500 ms late. With hedging at
// its default settings, holoproxy's p99 over cold fills stays within 1.5× of proxy-b's own
// p99, with at most 10 % of the measured fills hedged: proxy-a misses its hedge delay on
// more requests than the budget covers, so it is degraded and moved behind proxy-b, and the
// budget only covers the requests before that. Prefetch is off so that every measured
// request is a fill.
func TestHedgingKeepsTailLatency(t *testing.T) {
	var delayed atomic.Int64
	slowA := func(files http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			if strings.HasSuffix(req.URL.Path, "/@v/list") { // see the warm-up below
				http.NotFound(w, req)
				return
			}
			h := fnv.New32a()
			h.Write([]byte(req.URL.Path))
			if h.Sum32()%5 == 0 {
				delayed.Add(1)
				select {
				case <-time.After(500 * time.Millisecond):
				case <-req.Context().Done():
					return
				}
			}
			files.ServeHTTP(w, req)
		})
	}
	r := newRig(t, rigOptions{modules: 80, handlerA: slowA,
		linkA: lab.Link{Delay: 5 * time.Millisecond}, linkB: lab.Link{Delay: 80 * time.Millisecond},
		args: []string{"-prefetch", "0"}})

	var paths []string
	for _, m := range r.mods {
		for _, ext := range []string{"info", "mod"} {
			paths = append(paths, m.Path+"/@v/"+m.Version+"."+ext)
		}
	}
	warm, measured := paths[:10], paths[10:]
	for _, p := range warm { // connections, DNS and TLS sessions: the test's to holoproxy and proxy-b, holoproxy's to proxy-a
		r.fetch(t, r.hpURL+"/"+p)
		r.fetch(t, r.originB.URL()+"/"+p)
	}
	// holoproxy dials proxy-b only when proxy-a fails or is slow, and it hedges only once
	// proxy-a has enough first-byte samples for a delay: the fills above all went to
	// proxy-a. Left cold, holoproxy's connection to proxy-b would be set up (TCP, TLS and
	// the request: three round trips on its 80 ms link) inside the first measured hedge,
	// using up the p99's one sample of slack. proxy-a has no version lists: one list fill,
	// not measured, goes on to proxy-b and warms that connection.
	r.fetch(t, r.hpURL+"/"+r.mods[0].Path+"/@v/list")
	var viaHP, direct []time.Duration
	for _, p := range measured {
		viaHP = append(viaHP, r.fetch(t, r.hpURL+"/"+p))
		direct = append(direct, r.fetch(t, r.originB.URL()+"/"+p))
	}
	p99 := func(ds []time.Duration) time.Duration {
		s := slices.Clone(ds)
		slices.Sort(s)
		i := (99*len(s)+99)/100 - 1
		return s[i]
	}
	hp, b := p99(viaHP), p99(direct)
	doc := r.chain(t)
	t.Logf("%d cold fills; proxy-a delayed %d answers; holoproxy p99 %v, proxy-b p99 %v (%.2f×); hedges %+v",
		len(measured), delayed.Load(), hp.Round(time.Millisecond), b.Round(time.Millisecond), float64(hp)/float64(b), doc.Hedges)
	// Once degraded, proxy-a is asked only when proxy-b is slow: its delays are met before.
	if delayed.Load() < 5 {
		t.Fatalf("only %d of proxy-a's answers were delayed: the test does not test hedging", delayed.Load())
	}
	if doc.Hedges == nil || doc.Hedges.Fired == 0 {
		t.Fatalf("no hedge fired: %+v", doc.Hedges)
	}
	if float64(hp) > 1.5*float64(b) {
		t.Fatalf("holoproxy p99 %v exceeds 1.5× proxy-b's p99 %v", hp, b)
	}
	if doc.Hedges.Fired*10 > int64(len(measured)) {
		t.Fatalf("%d hedges for %d fills: more than 10 %%", doc.Hedges.Fired, len(measured))
	}
	degraded := false
	for _, tr := range doc.Transitions {
		if tr.Upstream == r.originA.URL() && tr.To == health.StateDegraded {
			degraded = true
			t.Logf("proxy-a %s>%s at score %.2f: %s", tr.From, tr.To, tr.Score, tr.Reason)
		}
	}
	if !degraded {
		t.Fatalf("proxy-a was never degraded; transitions %+v", doc.Transitions)
	}
}

// TestTamperedZip: proxy-a serves a tampered zip for every module (valid zips with a file
// added). `go mod download all` through holoproxy (verifying against go.sum) completes;
// proxy-a accumulates checksum failures and is degraded or worse; no tampered zip is stored.
func TestTamperedZip(t *testing.T) {
	var tampered atomic.Int64
	var mods map[string]modtree.Module
	tamper := func(files http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			mod, version, ok := strings.Cut(strings.TrimPrefix(req.URL.Path, "/"), "/@v/")
			if !ok || !strings.HasSuffix(version, ".zip") {
				files.ServeHTTP(w, req)
				return
			}
			m, ok := mods[mod+"@"+strings.TrimSuffix(version, ".zip")]
			if !ok {
				http.NotFound(w, req)
				return
			}
			m.Extra = map[string]string{"evil.go": "package " + m.PackageName() + "\n\nfunc init() { println(\"tampered\") }\n"}
			z, err := m.Zip()
			if err != nil {
				http.Error(w, err.Error(), 500)
				return
			}
			tampered.Add(1)
			w.Write(z)
		})
	}
	gosumFile := filepath.Join(t.TempDir(), "go.sum")
	// The module set is generated by newRig; the tree's go.sum is written before holoproxy
	// starts through the helper flag, so build the same graph here.
	all, _ := modtree.Graph("mods.test/g", 30, 3, 3)
	mods = map[string]modtree.Module{}
	for _, m := range all {
		mods[m.Path+"@"+m.Version] = m
	}
	sum, err := modtree.GoSum(all)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(gosumFile, sum, 0o644); err != nil {
		t.Fatal(err)
	}
	r := newRig(t, rigOptions{modules: 30, handlerA: tamper, linkA: lab.Link{Delay: 5 * time.Millisecond},
		linkB: lab.Link{Delay: 20 * time.Millisecond}, args: []string{"-gosum", gosumFile, "-prefetch", "0"}})
	app := filepath.Join(t.TempDir(), "app")
	appSum, err := modtree.AppGoSum(r.mods, r.roots)
	if err != nil {
		t.Fatal(err)
	}
	if err := modtree.WriteApp(app, "example.test/app", r.mods, r.roots, appSum); err != nil {
		t.Fatal(err)
	}
	env, err := r.l.GoEnv(r.hpURL)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	cmd := r.client.Command(ctx, "go", "mod", "download", "all")
	cmd.Dir, cmd.Env = app, env
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("go mod download all through holoproxy failed: %v\n%s\nholoproxy:\n%s", err, out, r.stderr)
	}
	if tampered.Load() == 0 {
		t.Fatal("proxy-a served no tampered zip: the test tests nothing")
	}
	doc := r.chain(t)
	var a dashboard.Upstream
	for _, u := range doc.Upstreams {
		if u.Name == r.originA.URL() {
			a = u
		}
	}
	t.Logf("proxy-a served %d tampered zips; state %s, score %.2f, checksum failures %v of %v verified; transitions %d",
		tampered.Load(), a.State, a.Score, a.ChecksumFailures, a.Verified, len(doc.Transitions))
	if a.ChecksumFailures < 1 {
		t.Fatalf("proxy-a has no checksum failure in the window: %+v", a)
	}
	if a.State == health.StateHealthy {
		t.Fatalf("proxy-a is healthy after serving tampered zips: %+v", a)
	}
	// Nothing tampered in the cache: every stored zip hashes to its go.sum line.
	sums, err := checksum.ParseGoSum(sum)
	if err != nil {
		t.Fatal(err)
	}
	zips := 0
	err = filepath.WalkDir(r.cache, func(p string, d os.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.HasSuffix(p, ".zip") {
			return err
		}
		rel, _ := filepath.Rel(r.cache, p)
		req, perr := goproxy.ParseRequest(filepath.ToSlash(rel))
		if perr != nil {
			return nil // not a stored answer (a temporary file)
		}
		zips++
		return verifyAgainst(sums, req, p)
	})
	if err != nil {
		t.Fatalf("a stored zip does not match go.sum: %v", err)
	}
	if zips == 0 {
		t.Fatal("no zip stored: the walk of the cache found nothing to check")
	}
	t.Logf("%d stored zips match go.sum", zips)
}
