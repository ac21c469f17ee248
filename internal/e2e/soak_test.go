package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/mod/module"

	"github.com/holoproxy/holoproxy/internal/checksum/sumdbtest"
	"github.com/holoproxy/holoproxy/internal/lab"
	"github.com/holoproxy/holoproxy/internal/lab/modtree"
)

// TestSoak runs holoproxy serve under mixed, concurrent trouble for a few rounds and then
// checks the invariants of the whole system.
//
// The chain is A|B,C over one module tree: A fails at random (503s, answers that never
// start, bodies cut by a reset or stalled past --body-idle-timeout, .mod and .zip files
// with a byte changed), B is healthy but answers 404 for a third of the modules, C is
// healthy and has everything. By the GOPROXY rules every request for a file the tree has
// must succeed: after A's failure B is asked ('|'), after B's 404 C (','). The checksum
// database knows every public module, so a corrupt file must be refused, never stored.
// A few private modules (exempt from the database) are routed to P|C, where P corrupts
// half of its zips: holoproxy's own checks must refuse those. --cache-max-size is small
// enough that zips are evicted under load and filled again through the faulty chains.
//
// Each round, goCommands go commands, each with an empty module cache, run `go mod
// download all` and `go build` of one app (the fixture graph and the private modules, plus
// modules new to the round, so every round fills), while raw clients ask the same modules'
// list, .info, .mod, .zip and @latest (also by HEAD and Range), paths that do not exist and
// malformed ones. After the first half of the rounds holoproxy gets SIGTERM while raw
// clients make it fill the next round's modules, and starts again on the same cache
// directory (on the other HTTP front).
//
// The invariants: every go command succeeded, with the go.sum the go command writes
// fetching from the origin directly; every raw answer was right; once the clients were
// gone, holoproxy's descriptors and goroutines came back to where they were before the
// load; it exited 0 on each SIGTERM; the cache holds only files equal to the origin's
// (zips by hash) and no temporary file, also right after the SIGTERM under load;
// holoproxy verify finds every file good; its log has no panic, data race, internal error
// or error but the refusals of corrupt files; the faults did happen (the origins' logs and
// holoproxy's /metrics say so). With -race, holoproxy itself runs with the race detector.
// Nothing is timed: the faults are seeded, the waits generous.
func TestSoak(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command on PATH")
	}
	if runtime.GOOS != "linux" {
		t.Skip("counts the server's descriptors in /proc")
	}
	// rounds, the rounds served before the restart, go commands and raw clients a round.
	rounds, firstProcess, goCommands, rawClients := 4, 2, 5, 3
	if raceEnabled {
		// The server is built with the race detector too, several times slower, and the
		// suite's timing-bound lab tests run beside this package on two cores: fewer
		// rounds, the same checks.
		rounds, firstProcess, goCommands = 2, 1, 4
	}
	bin := holoproxyRaceBinary(t)

	// The modules: the fixture graph in every round, and a graph of its own per round.
	common, commonRoots := fixtureModules()
	// Private modules, exempt from the checksum database (GONOSUMDB): holoproxy's own
	// checks are all that stands between P's corrupt zips and its cache.
	private, privateRoots := modtree.Graph("corp.test/priv", 4, 2, 2)
	public := slices.Clone(common)
	common = append(common, private...)
	commonRoots = append(commonRoots, privateRoots...)
	all := slices.Clone(common)
	roundRoots := make([][]module.Version, rounds)
	roundMods := make([][]modtree.Module, rounds)
	for r := range rounds {
		mods, roots := modtree.Graph(fmt.Sprintf("mods.test/round%dg", r), 8, 2, 2)
		all = append(all, mods...)
		roundMods[r] = append(slices.Clone(common), mods...)
		roundRoots[r] = append(slices.Clone(commonRoots), roots...)
	}
	tree := filepath.Join(t.TempDir(), "tree")
	if err := modtree.Write(tree, all); err != nil {
		t.Fatal(err)
	}
	public = append(public, all[len(common):]...)
	db := sumdbtest.New(t, public)

	// B lacks every third module path.
	var paths []string
	for _, m := range all {
		if !slices.Contains(paths, m.Path) {
			paths = append(paths, m.Path)
		}
	}
	notInB := map[string]bool{}
	for i, p := range paths {
		if i%3 == 1 {
			notInB[p] = true
		}
	}
	a := soakOrigin(t, tree, lab.Faults{Seed: 1, ErrorRate: 0.1, ErrorStatus: http.StatusServiceUnavailable,
		HangRate: 0.05, ResetRate: 0.1, StallRate: 0.05, CorruptRate: 0.3})
	b := soakOrigin(t, tree, lab.Faults{NotFound: notInB})
	c := soakOrigin(t, tree, lab.Faults{})
	chain := a.URL() + "|" + b.URL() + "," + c.URL()
	// The private modules are routed to a chain of their own, P|C, where P corrupts half
	// of the zips it serves and nothing else: no checksum database covers them, and a
	// go.mod with a byte changed may still be one the go command reads, but a zip with a
	// byte changed never is.
	pz := soakOrigin(t, tree, lab.Faults{Seed: 2, CorruptRate: 0.5, Match: func(p string) bool { return strings.HasSuffix(p, ".zip") }})
	route := privatePattern + "=" + pz.URL() + "|" + c.URL()
	origins := []*lab.Origin{a, b, c, pz}

	// The go.sum each round's app must end with: what the go command writes fetching from
	// the origin directly. These runs also fill the build cache that the soak's go
	// commands share, so that those compile only the modules.
	gocache := filepath.Join(t.TempDir(), "gocache")
	wantSum := make([]string, rounds)
	var direct sync.WaitGroup
	for r := range rounds {
		if r == 1 {
			direct.Wait() // the first run alone compiles the standard library for the others
		}
		g := soakApp(t, goBin, c.URL(), gocache, all, roundRoots[r])
		direct.Go(func() {
			for _, args := range [][]string{{"mod", "download", "all"}, {"build", "-o", filepath.Join(filepath.Dir(g.app), "app.bin"), "."}} {
				if out, err := goWith(t, g, []string{"GOSUMDB=" + db.GOSUMDB(), "GONOSUMDB=" + privatePattern}, args...); err != nil {
					t.Errorf("round %d straight from the origin: go %s: %v\n%s", r, strings.Join(args, " "), err, out)
					return
				}
			}
			sum, err := os.ReadFile(filepath.Join(g.app, "go.sum"))
			if err != nil {
				t.Error(err)
			}
			wantSum[r] = string(sum)
		})
	}
	direct.Wait()
	if t.Failed() {
		t.FailNow()
	}
	aBefore := len(a.Log())

	cacheDir := t.TempDir()
	args := append([]string{"--cache-dir=" + cacheDir, "--upstream=" + chain,
		"--first-byte-timeout=1s", "--body-idle-timeout=1s", "--list-ttl=1s", "--negative-ttl=1s",
		"--hedge-max=250ms", "--probe-interval=1s", "--cache-max-size=40000", "--route=" + route, "--debug-listen=127.0.0.1:0"}, sumdbArgs(db, privatePattern)...)
	raw := &rawLoad{t: t, hc: &http.Client{Timeout: 2 * time.Minute, Transport: &http.Transport{MaxIdleConnsPerHost: 4}}}
	defer raw.hc.CloseIdleConnections()
	var procs []*proc
	var metrics []map[string]float64
	start := time.Now()

	// Two processes over one cache directory, one on each HTTP front: the first serves the
	// rounds before the restart, the second the rest.
	for pi, front := range []string{"fasthttp", "net/http"} {
		first, end := 0, firstProcess
		if pi == 1 {
			first, end = firstProcess, rounds
		}
		p := startHoloproxyBinary(t, bin, append(slices.Clone(args), "--http-server="+front), nil)
		procs = append(procs, p)
		sp := soakProc{p, debugAddr(t, p)}
		before := baseUsage(t, sp, origins, db)
		t.Logf("holoproxy (pid %d, %s) serving: %d descriptors, %d goroutines", p.cmd.Process.Pid, front, before.fds, before.goroutines)
		for r := first; r < end; r++ {
			roundStart := time.Now()
			soakRound(t, p, raw, goBin, gocache, db, all, roundMods[r], roundRoots[r], wantSum[r], tree, goCommands, rawClients, r)
			t.Logf("round %d: %v", r, time.Since(roundStart).Round(time.Millisecond))
		}
		if t.Failed() {
			t.FailNow()
		}

		// The load is over: with the clients' and the upstreams' idle connections closed,
		// what is left open is what holoproxy holds for nobody.
		raw.hc.CloseIdleConnections()
		waitStart := time.Now()
		after := waitUsage(t, sp, before, origins, db)
		t.Logf("holoproxy (pid %d) %v after the load: %d descriptors, %d goroutines", p.cmd.Process.Pid,
			time.Since(waitStart).Round(time.Millisecond), after.fds, after.goroutines)
		metrics = append(metrics, scrape(t, p.addr))

		if pi == 1 {
			if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
				t.Fatal(err)
			}
			if err := p.wait(t); err != nil {
				t.Errorf("holoproxy (pid %d) exited with %v after SIGTERM; want exit status 0", p.cmd.Process.Pid, err)
			}
			break
		}
		// The restart: SIGTERM while the raw clients ask for the next round's modules, so
		// that fills from the faulty chain are in flight. Every answer that comes must be
		// right (or 503, shutting down); the process must exit 0 and leave the cache
		// directory holding only whole, verified files.
		ctx, cancel := context.WithCancel(context.Background())
		var rawWG sync.WaitGroup
		specs := soakSpecs(t, tree, roundMods[end], end)
		for i := range rawClients {
			rawWG.Go(func() { raw.runShutdown(ctx, p.addr, specs, uint64(1000+i)) })
		}
		if !waitOrigins(origins, 30*time.Second, func(rq lab.Request) bool {
			return strings.HasPrefix(rq.Module, fmt.Sprintf("mods.test/round%dg", end))
		}) {
			t.Errorf("no upstream got a request for round %d's modules within 30s", end)
		}
		if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		if err := p.wait(t); err != nil {
			t.Errorf("holoproxy (pid %d) exited with %v after SIGTERM under load; want exit status 0", p.cmd.Process.Pid, err)
		}
		cancel()
		rawWG.Wait()
		t.Logf("SIGTERM under load: raw requests: %s", raw.summary())
		checkSoakCache(t, cacheDir, tree) // before the next start clears the store's .tmp
		if t.Failed() {
			t.FailNow()
		}
	}
	t.Logf("%d rounds in %v; raw requests: %s", rounds, time.Since(start).Round(time.Millisecond), raw.summary())

	// The cache: only the origin's files (zips by their hash), nothing half-written.
	checkSoakCache(t, cacheDir, tree)
	code, out := runVerify(t, nil, "--cache-dir="+cacheDir, "--sumdb="+db.GOSUMDB(), "--gonosumdb="+privatePattern, "--goprivate=")
	m := regexp.MustCompile(`checked (\d+): ok (\d+), exempt (\d+), failed 0, purged 0, unverified 0 `).FindStringSubmatch(out)
	if code != 0 || m == nil || atoi(m[2])+atoi(m[3]) != atoi(m[1]) || m[2] == "0" || m[3] == "0" {
		t.Errorf("holoproxy verify: exit %d\n%s\nwant exit 0 and every file ok, the private ones exempt", code, out)
	} else {
		t.Logf("holoproxy verify: %s files ok, %s exempt", m[2], m[3])
	}

	// The log: no panic, no race, no internal error, and no error but the refusals of A's
	// corrupt files (the checksum database's mismatches are logged at error level).
	bad := regexp.MustCompile(`(?i)panic|DATA RACE|internal error|level=ERROR`)
	for _, p := range procs {
		for _, l := range strings.Split(p.log.String(), "\n") {
			if bad.MatchString(l) && !strings.Contains(l, `level=ERROR msg="CHECKSUM MISMATCH: refusing to store"`) {
				t.Errorf("holoproxy (pid %d) logged: %s", p.cmd.Process.Pid, l)
			}
		}
	}

	// The faults happened, and holoproxy saw them.
	faults := map[string]int{}
	for _, rq := range a.Log()[aBefore:] {
		faults[rq.Fault]++
	}
	t.Logf("origin A: %v", faults)
	for _, f := range []string{"error", "hang", "reset", "stall", "corrupt"} {
		if faults[f] == 0 {
			t.Errorf("origin A injected no %q fault (%v): the soak did not test it", f, faults)
		}
	}
	var bNotFound, cForB int
	for _, rq := range b.Log() {
		if rq.Fault == "not_found" {
			bNotFound++
		}
	}
	for _, rq := range c.Log() {
		if notInB[rq.Module] && rq.Status == http.StatusOK {
			cForB++
		}
	}
	t.Logf("origin B: %d not-found answers; origin C: %d answers for modules B lacks", bNotFound, cForB)
	if bNotFound == 0 || cForB == 0 {
		t.Errorf("B answered %d not-found, C served %d of B's missing modules: the ',' fall-through was not tested", bNotFound, cForB)
	}
	sum := func(prefix string, labels ...string) (n float64) {
		for _, mm := range metrics {
			for series, v := range mm {
				if !strings.HasPrefix(series, prefix+"{") && series != prefix {
					continue
				}
				ok := true
				for _, l := range labels {
					ok = ok && strings.Contains(series, l)
				}
				if ok {
					n += v
				}
			}
		}
		return n
	}
	var pCorrupt int
	for _, rq := range pz.Log() {
		if rq.Fault == "corrupt" {
			pCorrupt++
		}
	}
	t.Logf("origin P: %d corrupt private zips", pCorrupt)
	if pCorrupt == 0 {
		t.Errorf("origin P corrupted no zip: the private modules' checks were not tested")
	}
	upP := fmt.Sprintf("upstream=%q", pz.URL())
	// CheckZip's refusal, or a file that fails its CRC-32 when read through.
	if pRefused := sum("holoproxy_server_refused_answers_total", upP, `reason="invalid_zip"`); pRefused == 0 {
		t.Errorf("/metrics shows no corrupt zip of P refused")
	}
	upA := fmt.Sprintf("upstream=%q", a.URL())
	if n := sum("holoproxy_upstream_requests_total", upA, `code="503"`); n == 0 {
		t.Errorf("/metrics shows no 503 answer of A")
	}
	for _, class := range []string{"tcp_reset", "timeout"} { // resets; hangs and stalls
		if n := sum("holoproxy_upstream_errors_total", upA, `class="`+class+`"`); n == 0 {
			t.Errorf("/metrics shows no %s error of A", class)
		}
	}
	for _, reason := range []string{"body_truncated", "timeout"} { // resets; stalls
		if n := sum("holoproxy_server_refused_answers_total", upA, `reason="`+reason+`"`); n == 0 {
			t.Errorf("/metrics shows no answer of A refused for %s", reason)
		}
	}
	var corrupt float64
	for _, reason := range []string{"checksum_mismatch", "invalid_zip", "invalid_mod"} {
		corrupt += sum("holoproxy_server_refused_answers_total", upA, `reason="`+reason+`"`)
	}
	if corrupt == 0 {
		t.Errorf("/metrics shows no corrupt answer of A refused")
	}
	evicted := sum("holoproxy_cache_evicted_files_total")
	if evicted == 0 {
		t.Errorf("/metrics shows no zip evicted: --cache-max-size did not bite")
	}
	t.Logf("/metrics: A's errors %v, A's refused answers %v, hedges %v, zips evicted %v",
		sum("holoproxy_upstream_errors_total", upA), sum("holoproxy_server_refused_answers_total", upA),
		sum("holoproxy_hedged_requests_total", `result="fired"`), evicted)
	if n := sum("holoproxy_server_panics_total"); n != 0 {
		t.Errorf("holoproxy_server_panics_total = %v; want 0", n)
	}
	if t.Failed() {
		var lines []string
		for i, mm := range metrics {
			for series, v := range mm {
				if strings.Contains(series, upA) || strings.Contains(series, upP) {
					lines = append(lines, fmt.Sprintf("process %d: %s %v", i, series, v))
				}
			}
		}
		slices.Sort(lines)
		t.Logf("A is %s, P is %s; their /metrics:\n%s", a.URL(), pz.URL(), strings.Join(lines, "\n"))
	}
}

// atoi returns the number s spells, 0 if it spells none.
func atoi(s string) int {
	n, _ := strconv.Atoi(s)
	return n
}

// privatePattern is the GONOSUMDB pattern of the soak's private modules.
const privatePattern = "corp.test"

// soakOrigin serves tree on a loopback port with faults.
func soakOrigin(t *testing.T, tree string, faults lab.Faults) *lab.Origin {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	o, err := lab.ServeOriginOn(ln, lab.OriginConfig{Tree: tree, Faults: faults})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(o.Close)
	return o
}

// soakApp writes an app requiring roots in a temporary directory, for the go command
// through proxy with its own empty module cache and the shared build cache gocache.
func soakApp(t *testing.T, goBin, proxy, gocache string, mods []modtree.Module, roots []module.Version) goRun {
	t.Helper()
	tmp := t.TempDir()
	g := goRun{goBin: goBin, proxy: proxy, app: filepath.Join(tmp, "app"), modcache: filepath.Join(tmp, "modcache"), gocache: gocache}
	if err := modtree.WriteApp(g.app, "app.test/main", mods, roots, nil); err != nil {
		t.Fatal(err)
	}
	return g
}

// soakRound runs one round against p: go commands building the round's app at once, and
// raw clients asking for the round's modules until the go commands are done (one pass at
// least).
func soakRound(t *testing.T, p *proc, raw *rawLoad, goBin, gocache string, db *sumdbtest.DB, all, mods []modtree.Module,
	roots []module.Version, wantSum, tree string, goCommands, rawClients, round int) {
	t.Helper()
	specs := soakSpecs(t, tree, mods, round)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var rawWG sync.WaitGroup
	for i := range rawClients {
		rawWG.Go(func() { raw.run(ctx, p.addr, specs, uint64(round*100+i)) })
	}
	var wg sync.WaitGroup
	for i := range goCommands {
		g := soakApp(t, goBin, "http://"+p.addr, gocache, all, roots)
		wg.Go(func() {
			// The go command verifies too, through holoproxy's /sumdb/.
			env := []string{"GOSUMDB=" + db.Key, "GONOSUMDB=" + privatePattern}
			for _, args := range [][]string{{"mod", "download", "all"}, {"build", "-o", filepath.Join(filepath.Dir(g.app), "app.bin"), "."}} {
				if out, err := goWith(t, g, env, args...); err != nil {
					t.Errorf("round %d, go command %d: go %s: %v\n%s", round, i, strings.Join(args, " "), err, out)
					return
				}
			}
			sum, err := os.ReadFile(filepath.Join(g.app, "go.sum"))
			if err != nil {
				t.Errorf("round %d, go command %d: %v", round, i, err)
				return
			}
			if string(sum) != wantSum {
				t.Errorf("round %d, go command %d: go.sum differs from the origin's:\n%s", round, i, lineDiff(string(sum), wantSum))
			}
		})
	}
	wg.Wait()
	cancel()
	rawWG.Wait()
}

// waitOrigins waits (at most d) until one of the origins has logged a request that match
// accepts, and reports whether one did. An origin logs a request when it has answered it.
func waitOrigins(origins []*lab.Origin, d time.Duration, match func(lab.Request) bool) bool {
	for deadline := time.Now().Add(d); time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		for _, o := range origins {
			if slices.ContainsFunc(o.Log(), match) {
				return true
			}
		}
	}
	return false
}

// rawSpec is one raw request and what its answer must be.
type rawSpec struct {
	method, path string
	header       http.Header // sent with the request
	check        func(status int, h http.Header, body []byte) error
}

// soakSpecs returns the raw requests of a round: every file of mods (list, .info, .mod,
// .zip, @latest where the tree has one), which must be answered 200 with the origin's
// bytes (a zip with its hash: a byte of a zip outside what the hash covers may differ);
// requests for what no upstream has, answered 404 (or 502 when A failed before B's and C's
// 404, as the go command reports such a walk); malformed requests, answered 4xx.
func soakSpecs(t *testing.T, tree string, mods []modtree.Module, round int) []rawSpec {
	t.Helper()
	var specs []rawSpec
	seen := map[string]bool{}
	exact := func(key string) {
		if seen[key] {
			return
		}
		seen[key] = true
		want, err := os.ReadFile(filepath.Join(tree, filepath.FromSlash(key)))
		if err != nil {
			t.Fatal(err)
		}
		specs = append(specs, rawSpec{"GET", key, nil, func(status int, _ http.Header, body []byte) error {
			if status != http.StatusOK || !bytes.Equal(body, want) {
				return fmt.Errorf("%d %q; want 200 with the origin's %d bytes", status, clip(body), len(want))
			}
			return nil
		}})
		if strings.Contains(key, "/@v/v") {
			// An immutable file also by HEAD (its length, no body) and by a range, which
			// a server may answer whole (holoproxy does from its memory cache).
			specs = append(specs, rawSpec{"HEAD", key, nil, func(status int, h http.Header, body []byte) error {
				if status != http.StatusOK || len(body) != 0 || h.Get("Content-Length") != strconv.Itoa(len(want)) {
					return fmt.Errorf("%d, Content-Length %q, %d bytes of body; want 200, %d, none", status, h.Get("Content-Length"), len(body), len(want))
				}
				return nil
			}})
			specs = append(specs, rawSpec{"GET", key, http.Header{"Range": {"bytes=1-4"}}, func(status int, _ http.Header, body []byte) error {
				if !(status == http.StatusPartialContent && bytes.Equal(body, want[1:5]) || status == http.StatusOK && bytes.Equal(body, want)) {
					return fmt.Errorf("range 1-4: %d %q; want 206 %q or 200 with the whole file", status, clip(body), want[1:5])
				}
				return nil
			}})
		}
	}
	for _, m := range mods {
		keys := fileKeys(t, m)
		exact(keys[0])
		exact(keys[1])
		esc, _, _ := strings.Cut(keys[0], "/@v/")
		exact(esc + "/@v/list")
		if _, err := os.Stat(filepath.Join(tree, filepath.FromSlash(esc), "@latest")); err == nil {
			exact(esc + "/@latest")
		}
		z, err := m.Zip()
		if err != nil {
			t.Fatal(err)
		}
		hash, err := modtree.HashZipBytes(z)
		if err != nil {
			t.Fatal(err)
		}
		specs = append(specs, rawSpec{"GET", keys[2], nil, func(status int, _ http.Header, body []byte) error {
			if status != http.StatusOK {
				return fmt.Errorf("%d %q; want 200", status, clip(body))
			}
			got, err := modtree.HashZipBytes(body)
			if err != nil || got != hash {
				return fmt.Errorf("zip of %d bytes with hash %s (%v); want %s", len(body), got, err, hash)
			}
			return nil
		}})
		// A range of a stored zip: its bytes may differ from the origin's where the hash
		// does not look (a changed file time is a valid zip of the same module), its
		// length may not.
		specs = append(specs, rawSpec{"GET", keys[2], http.Header{"Range": {"bytes=1-4"}}, func(status int, h http.Header, body []byte) error {
			if want := fmt.Sprintf("bytes 1-4/%d", len(z)); status != http.StatusPartialContent || len(body) != 4 || h.Get("Content-Range") != want {
				return fmt.Errorf("range 1-4: %d, Content-Range %q, %d bytes; want 206, %q, 4 bytes", status, h.Get("Content-Range"), len(body), want)
			}
			return nil
		}})
	}
	missing := func(status int, _ http.Header, body []byte) error {
		if status != http.StatusNotFound && status != http.StatusBadGateway || oneLineBody(body) != nil {
			return fmt.Errorf("%d %q; want 404 (or 502) with a one-line reason", status, clip(body))
		}
		return nil
	}
	for _, p := range []string{
		fmt.Sprintf("mods.test/missing%d/@v/list", round), "mods.test/missing/@latest",
		"mods.test/g000/@v/v1.9.9.info", "mods.test/g000/@v/v1.9.9.mod", "mods.test/g000/@v/v1.9.9.zip",
	} {
		specs = append(specs, rawSpec{"GET", p, nil, missing})
	}
	malformed := func(status int, _ http.Header, body []byte) error {
		if status < 400 || status >= 500 || oneLineBody(body) != nil {
			return fmt.Errorf("%d %q; want 4xx with a one-line reason", status, clip(body))
		}
		return nil
	}
	for _, p := range []string{
		"mods.test/Upper/Case/@v/list", // not case-encoded
		"mods.test/g000/@v/v1.0.zip",   // not canonical
		"mods.test/g000/@v/v1.0.0.exe", // no such endpoint
		"mods.test/g000/@v/",
		"mods.test/g000",
		"mods.test/g000/@v/.zip",
		"mods.test/g000/@v/v1.0.0/x.zip",
		"mods.test/../g000/@v/list",
		"mods.test/.tmp/@v/list",
		"mods.test/g000/@v/v1.0.0%00.info",
		"mods.test/" + strings.Repeat("x", 2100) + "/@v/list",
	} {
		specs = append(specs, rawSpec{"GET", p, nil, malformed})
	}
	specs = append(specs, rawSpec{"POST", "mods.test/g000/@v/list", nil, malformed})
	return specs
}

// oneLineBody reports an error when body is empty or more than one line.
func oneLineBody(body []byte) error {
	s := strings.TrimSuffix(string(body), "\n")
	if s == "" || strings.Contains(s, "\n") {
		return fmt.Errorf("not one line")
	}
	return nil
}

// clip returns body for an error message, cut short.
func clip(body []byte) string {
	if len(body) > 200 {
		return string(body[:200]) + "..."
	}
	return string(body)
}

// rawLoad is the raw clients' side of a soak: they share one HTTP client and record what
// they asked and every wrong answer.
type rawLoad struct {
	t  *testing.T
	hc *http.Client

	mu       sync.Mutex
	requests int
	byStatus map[int]int
	failures int
}

// run asks for specs in a random order (seeded) against addr until ctx ends, making one
// pass at least.
func (l *rawLoad) run(ctx context.Context, addr string, specs []rawSpec, seed uint64) {
	l.loop(ctx, addr, specs, seed, false)
}

// runShutdown is run against a server that is being shut down: a request it no longer
// takes (the connection refused or closed before an answer) or answers 503 is counted,
// not failed; any other answer must be right. The first pass is not waited for.
func (l *rawLoad) runShutdown(ctx context.Context, addr string, specs []rawSpec, seed uint64) {
	l.loop(ctx, addr, specs, seed, true)
}

func (l *rawLoad) loop(ctx context.Context, addr string, specs []rawSpec, seed uint64, shutdown bool) {
	rng := rand.New(rand.NewPCG(seed, 42))
	order := make([]int, len(specs))
	for i := range order {
		order[i] = i
	}
	for pass := 0; pass == 0 || ctx.Err() == nil; pass++ {
		rng.Shuffle(len(order), func(i, j int) { order[i], order[j] = order[j], order[i] })
		for _, i := range order {
			if (pass > 0 || shutdown) && ctx.Err() != nil {
				return
			}
			l.do(addr, specs[i], shutdown)
		}
	}
}

func (l *rawLoad) do(addr string, s rawSpec, shutdown bool) {
	// Every wait is bounded by the client's timeout, not by ctx: a request under way when
	// the round ends is answered and checked.
	req, err := http.NewRequest(s.method, "http://"+addr+"/"+s.path, nil)
	if err != nil {
		l.fail(s, err)
		return
	}
	for k, v := range s.header {
		req.Header[k] = v
	}
	resp, err := l.hc.Do(req)
	if err != nil {
		if shutdown {
			l.count(-1)
			time.Sleep(5 * time.Millisecond) // the server is gone: no need to spin
			return
		}
		l.fail(s, err)
		return
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		l.fail(s, fmt.Errorf("%d, reading the body: %w", resp.StatusCode, err))
		return
	}
	l.count(resp.StatusCode)
	if shutdown && resp.StatusCode == http.StatusServiceUnavailable {
		return
	}
	if err := s.check(resp.StatusCode, resp.Header, body); err != nil {
		l.fail(s, err)
	}
}

// count records an answer's status; -1 for a request the server did not take.
func (l *rawLoad) count(status int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.requests++
	if l.byStatus == nil {
		l.byStatus = map[int]int{}
	}
	l.byStatus[status]++
}

// fail reports a wrong answer; past the twentieth only the count grows.
func (l *rawLoad) fail(s rawSpec, err error) {
	l.mu.Lock()
	l.failures++
	n := l.failures
	l.mu.Unlock()
	if n <= 20 {
		l.t.Errorf("raw %s /%s: %v", s.method, clip([]byte(s.path)), err)
	} else {
		l.t.Fail()
	}
}

func (l *rawLoad) summary() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return fmt.Sprintf("%d asked, by status %v (-1: not taken, shutting down), %d wrong", l.requests, l.byStatus, l.failures)
}

// soakProc is a holoproxy of the soak, with the address of its --debug-listen.
type soakProc struct {
	*proc
	debug string
}

// usage is what a holoproxy process holds: open descriptors and goroutines.
type usage struct {
	fds, goroutines int
	profile         string // the goroutine profile counted (debug=1)
}

// soakUsage counts p's open descriptors (/proc) and goroutines: those of its goroutine
// profile (its --debug-listen, asked on a connection of its own that is closed after),
// but for what the fasthttp front keeps by design (its idle workers, for 10 s after their
// last request, and the goroutine that updates its Date header, started by the first
// request) and the read and write loops of the upstream transport's connections, which
// the health probes open every second (each connection is a descriptor too: the
// descriptors count them).
func soakUsage(t *testing.T, p soakProc) usage {
	t.Helper()
	hc := &http.Client{Timeout: time.Minute, Transport: &http.Transport{DisableKeepAlives: true}}
	resp, err := hc.Get("http://" + p.debug + "/debug/pprof/goroutine?debug=1")
	if err != nil {
		t.Fatal(err)
	}
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("goroutine profile: %d %v\n%s", resp.StatusCode, err, body)
	}
	var u usage
	u.profile = string(body)
	m := regexp.MustCompile(`(?m)^goroutine profile: total (\d+)$`).FindStringSubmatch(u.profile)
	if m == nil {
		t.Fatalf("goroutine profile without a total:\n%s", clip(body))
	}
	u.goroutines = atoi(m[1])
	// Groups of goroutines: "N @ pc..." then "#\tpc\tfunc+off\tfile:line" lines.
	for _, group := range strings.Split(u.profile, "\n\n") {
		n, _, ok := strings.Cut(group, " @ ")
		switch {
		case !ok:
		case strings.Contains(group, "fasthttp.(*workerPool).workerFunc") && !strings.Contains(group, "serveConn"),
			strings.Contains(group, "fasthttp.updateServerDate"),
			strings.Contains(group, "net/http.(*persistConn).readLoop"), strings.Contains(group, "net/http.(*persistConn).writeLoop"):
			u.goroutines -= atoi(strings.TrimSpace(n))
		}
	}
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", p.cmd.Process.Pid))
	if err != nil {
		t.Fatal(err)
	}
	u.fds = len(fds)
	return u
}

// The slack allowed over the usage before the load: the health probes (every second) may
// have opened a connection to each of the four upstreams since their idle connections
// were last dropped (a descriptor each), and one may be under way (its goroutine).
const (
	fdSlack        = 4
	goroutineSlack = 2
)

// dropIdle closes the idle connections the upstreams (origins and checksum database) hold
// with p, and waits a moment for p to see them closed.
func dropIdle(origins []*lab.Origin, db *sumdbtest.DB) {
	for _, o := range origins {
		o.DropIdle()
	}
	db.DropIdle()
	time.Sleep(200 * time.Millisecond)
}

// baseUsage returns p's usage once it has settled after its start: the least of a few
// samples, each taken as waitUsage takes its own.
func baseUsage(t *testing.T, p soakProc, origins []*lab.Origin, db *sumdbtest.DB) usage {
	t.Helper()
	var base usage
	for i := range 5 {
		dropIdle(origins, db)
		u := soakUsage(t, p)
		if i == 0 || u.fds < base.fds {
			base.fds = u.fds
		}
		if i == 0 || u.goroutines < base.goroutines {
			base.goroutines, base.profile = u.goroutines, u.profile
		}
	}
	return base
}

// waitUsage waits (a minute at most) until p's usage is back within the slack of before,
// closing the upstreams' idle connections meanwhile, and returns it; it fails the test if
// it never is.
func waitUsage(t *testing.T, p soakProc, before usage, origins []*lab.Origin, db *sumdbtest.DB) usage {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		dropIdle(origins, db)
		u := soakUsage(t, p)
		if u.fds <= before.fds+fdSlack && u.goroutines <= before.goroutines+goroutineSlack {
			return u
		}
		if time.Now().After(deadline) {
			fds, _ := exec.Command("ls", "-l", fmt.Sprintf("/proc/%d/fd", p.cmd.Process.Pid)).CombinedOutput()
			t.Errorf("holoproxy (pid %d) holds %d descriptors and %d goroutines a minute after the load; before it %d and %d\n%s\nbefore:\n%s\nafter:\n%s",
				p.cmd.Process.Pid, u.fds, u.goroutines, before.fds, before.goroutines, fds, before.profile, u.profile)
			return u
		}
	}
}

// checkSoakCache requires every file of the cache directory to be the origin tree's file
// of the same path (a zip: the same hash), the checksum database's state and answers
// aside, and the store's temporary directory to be empty.
func checkSoakCache(t *testing.T, dir, tree string) {
	t.Helper()
	st := compareCache(t, dir, func(key string) ([]byte, error) {
		return os.ReadFile(filepath.Join(tree, filepath.FromSlash(key)))
	})
	for _, key := range st.tmp {
		t.Errorf("cache: temporary file %s left", key)
	}
	zips := 0
	for key := range st.keys {
		if strings.HasSuffix(key, ".zip") {
			zips++
		}
	}
	t.Logf("cache: %d files (%d of them zips), each equal to the origin's", len(st.keys), zips)
	if len(st.keys) == 0 {
		t.Errorf("cache: no file stored")
	}
}
