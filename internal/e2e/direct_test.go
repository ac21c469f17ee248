package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/holoproxy/holoproxy/internal/checksum/sumdbtest"
	"github.com/holoproxy/holoproxy/internal/lab"
	"github.com/holoproxy/holoproxy/internal/lab/modtree"
	"github.com/holoproxy/holoproxy/internal/server"
)

func strp(s string) *string { return &s }

// directFixture is a company's setup: a public module on a proxy (the origin), two
// private modules in git (git.test/util, and git.test/lib that requires it and the
// public one), and an app that requires git.test/lib.
type directFixture struct {
	git    *lab.GitServer
	origin *origin
	pub    []modtree.Module
	head   string // git.test/lib's main, one commit after v1.1.0
}

func newDirectFixture(t *testing.T) *directFixture {
	t.Helper()
	g := lab.StartGit(t)
	pub := []modtree.Module{{Path: "mods.test/pub", Version: "v1.0.0"}}
	g.Commit(t, "git.test/util", map[string]*string{
		"go.mod":  strp("module git.test/util\n\ngo 1.21\n"),
		"util.go": strp("package util\n\n// N is a number.\nfunc N() int { return 40 }\n"),
	}, "v0.1.0")
	libGoMod := "module git.test/lib\n\ngo 1.21\n\nrequire (\n\tgit.test/util v0.1.0\n\tmods.test/pub v1.0.0\n)\n"
	g.Commit(t, "git.test/lib", map[string]*string{
		"go.mod": strp(libGoMod),
		"lib.go": strp("package lib\n\nimport (\n\t\"git.test/util\"\n\t\"mods.test/pub\"\n)\n\n// Answer is 42.\nfunc Answer() int { return util.N() + pub.F() + 1 }\n"),
	}, "v1.0.0")
	g.Commit(t, "git.test/lib", map[string]*string{"doc.go": strp("// Package lib answers.\npackage lib\n")}, "v1.1.0")
	head := g.Commit(t, "git.test/lib", map[string]*string{"more.go": strp("package lib\n\n// More is more.\nconst More = 1\n")})
	return &directFixture{git: g, origin: newOrigin(t, pub), pub: pub, head: head}
}

// app writes a main module requiring git.test/lib v1.0.0 and returns a go command run
// for it through proxy (which has no way to reach git.test: only holoproxy does).
func (f *directFixture) app(t *testing.T, proxy string) goRun {
	t.Helper()
	g := newApp(t, proxy, nil, nil)
	files := map[string]string{
		"go.mod":  "module app.test/main\n\ngo 1.21\n\nrequire git.test/lib v1.0.0\n",
		"main.go": "package main\n\nimport (\n\t\"fmt\"\n\n\t\"git.test/lib\"\n)\n\nfunc main() { fmt.Println(lib.Answer()) }\n",
	}
	if err := os.RemoveAll(g.app); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(g.app, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(g.app, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return g
}

// lastLine returns the last line of the go command's combined output (before it: its
// "go: downloading" lines).
func lastLine(out string) string {
	out = strings.TrimSpace(out)
	return out[strings.LastIndexByte(out, '\n')+1:]
}

// goSumLines returns the app's go.sum lines, sorted.
func goSumLines(t *testing.T, g goRun) []string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(g.app, "go.sum"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	slices.Sort(lines)
	return lines
}

// TestDirectWithGoCommand: with `--upstream ORIGIN,direct`, the modules the proxy lacks
// are fetched from git by holoproxy (the clients have no way to git.test); the go command
// downloads, lists, gets and builds through it with the go.sum it gets straight from git;
// once cached, the files are served with git down; a module that is nowhere is a 404 the
// client reports; git failing is a 502 naming direct and what git answered.
func TestDirectWithGoCommand(t *testing.T) {
	f := newDirectFixture(t)
	p := startHoloproxy(t, []string{"--cache-dir=" + t.TempDir(), "--upstream=" + f.origin.URL + ",direct",
		"--goprivate=git.test", "--prefetch=0"}, f.git.Env())
	if !strings.Contains(p.log.String(), "direct: modules are fetched from their version control origins") {
		t.Errorf("the start log does not say that direct is on:\n%s", p.log.String())
	}
	proxy := "http://" + p.addr

	// What the go command gets straight from git, and from the public proxy for the rest.
	ref := f.app(t, f.origin.URL+",direct")
	if out, err := goWith(t, ref, append(f.git.Env(), "GOPRIVATE=git.test"), "mod", "download", "all"); err != nil {
		t.Fatalf("go mod download all straight from git: %v\n%s", err, out)
	}
	want := goSumLines(t, ref)

	g := f.app(t, proxy)
	if out, err := goWith(t, g, nil, "mod", "download", "all"); err != nil {
		t.Fatalf("go mod download all through holoproxy: %v\n%s", err, out)
	}
	out, err := goWith(t, g, nil, "run", ".")
	if err != nil || lastLine(out) != "42" {
		t.Fatalf("go run through holoproxy: %v\n%s", err, out)
	}
	if got := goSumLines(t, g); !slices.Equal(got, want) {
		t.Errorf("go.sum through holoproxy:\n%s\nstraight from git:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	if hits := f.origin.counts(); hits["mods.test/pub/@v/v1.0.0.zip"] == 0 || hits["git.test/lib/@v/v1.0.0.mod"] == 0 {
		t.Errorf("origin hits %v: want the public zip from it, and git.test asked of it first", hits)
	}

	out, err = goWith(t, g, nil, "list", "-m", "-versions", "git.test/lib")
	if err != nil || lastLine(out) != "git.test/lib v1.0.0 v1.1.0" {
		t.Errorf("go list -m -versions: %v\n%s", err, out)
	}
	if out, err := goWith(t, g, nil, "get", "git.test/lib@latest"); err != nil {
		t.Fatalf("go get @latest: %v\n%s", err, out)
	}
	if out, err := goWith(t, g, nil, "list", "-m", "git.test/lib"); err != nil || lastLine(out) != "git.test/lib v1.1.0" {
		t.Errorf("after go get @latest: %v\n%s", err, out)
	}
	// A branch: resolved by git, never stored under the query.
	if out, err := goWith(t, g, nil, "get", "git.test/lib@main"); err != nil {
		t.Fatalf("go get @main: %v\n%s", err, out)
	}
	out, err = goWith(t, g, nil, "list", "-m", "git.test/lib")
	if err != nil || !strings.HasPrefix(lastLine(out), "git.test/lib v1.1.1-0.") || !strings.HasSuffix(lastLine(out), f.head[:12]) {
		t.Errorf("after go get @main: %v\n%s; want the pseudo-version of %s", err, out, f.head[:12])
	}

	// A file nobody asked for yet is a miss that names direct.
	status, _, h := get(t, proxy+"/git.test/util/@v/v0.1.0.zip")
	if status != http.StatusOK || h.Get(server.CacheHeader) != "hit" {
		// go mod download all fetched it: a hit.
		t.Errorf("util zip: %d %s; want a hit", status, h.Get(server.CacheHeader))
	}
	status, _, h = get(t, proxy+"/git.test/lib/@v/v1.1.0.zip")
	if status != http.StatusOK || (h.Get(server.CacheHeader) == "miss" && h.Get(server.UpstreamHeader) != "direct") {
		t.Errorf("lib v1.1.0 zip: %d cache=%s upstream=%s; want 200 from direct", status, h.Get(server.CacheHeader), h.Get(server.UpstreamHeader))
	}
	status, body, h := get(t, proxy+"/git.test/util/@latest")
	if status != http.StatusOK || h.Get(server.CacheHeader) != "miss" || h.Get(server.UpstreamHeader) != "direct" ||
		!strings.Contains(string(body), `"Version":"v0.1.0"`) {
		t.Errorf("util @latest: %d cache=%s upstream=%s %s; want v0.1.0, a miss from direct", status,
			h.Get(server.CacheHeader), h.Get(server.UpstreamHeader), body)
	}

	_, metrics, _ := get(t, proxy+"/metrics")
	for _, want := range []string{
		`holoproxy_direct_run_duration_seconds_count{kind="zip",result="ok"}`,
		`holoproxy_direct_run_duration_seconds_count{kind="mod",result="ok"}`,
		`holoproxy_direct_jobs_running 0`,
		`holoproxy_direct_go_runs_total `,
		`holoproxy_server_fill_attempts_total{outcome="ok",upstream="direct"}`,
	} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}

	var doc struct {
		Direct *struct {
			Jobs int   `json:"jobs"`
			Runs int64 `json:"runs"`
			OK   int64 `json:"ok"`
		} `json:"direct"`
	}
	_, chainDoc, _ := get(t, proxy+"/api/chain")
	if err := json.Unmarshal(chainDoc, &doc); err != nil || doc.Direct == nil || doc.Direct.Jobs != 4 || doc.Direct.Runs == 0 || doc.Direct.OK == 0 {
		t.Errorf("/api/chain direct = %s (%v); want the runs and fetches", chainDoc, err)
	}

	// git down: what is cached still builds, for a client with an empty module cache.
	f.git.SetDown(true)
	g2 := f.app(t, proxy)
	if out, err := goWith(t, g2, nil, "mod", "download", "all"); err != nil {
		t.Fatalf("go mod download all with git down: %v\n%s", err, out)
	}
	if out, err := goWith(t, g2, nil, "build", "-o", filepath.Join(t.TempDir(), "app"), "."); err != nil {
		t.Fatalf("go build with git down: %v\n%s", err, out)
	}
	// ... and what is not is a 502 that names direct and what the origin answered.
	status, body, _ = get(t, proxy+"/git.test/util/@v/v0.2.0.info")
	if status != http.StatusBadGateway || !strings.Contains(string(body), "direct") || !strings.Contains(string(body), "503") {
		t.Errorf("uncached version with git down: %d %q; want 502 naming direct and the 503", status, body)
	}
	f.git.SetDown(false)

	// A module that is nowhere: 404, and the go command says so.
	msg := g.runFail(t, "get", "git.test/nothing@v1.0.0")
	if !strings.Contains(msg, "git.test/nothing") {
		t.Errorf("go get of a missing module: %q", msg)
	}
	status, body, _ = get(t, proxy+"/git.test/nothing/@v/v1.0.0.info")
	if status != http.StatusNotFound || !strings.Contains(string(body), "direct") {
		t.Errorf("missing module: %d %q; want 404 with direct's reason", status, body)
	}
}

// TestDirectWithPrefetch: prefetch on (the default) and direct's job slots scarce. With
// one job, no prefetch may run the go command: each is dropped, none fails, no client
// request waits behind one or inherits its skip, and the download is what git gives. With
// the default four jobs, prefetches do use direct's spare slots.
func TestDirectWithPrefetch(t *testing.T) {
	f := newDirectFixture(t)
	ref := f.app(t, f.origin.URL+",direct")
	if out, err := goWith(t, ref, append(f.git.Env(), "GOPRIVATE=git.test"), "mod", "download", "all"); err != nil {
		t.Fatalf("go mod download all straight from git: %v\n%s", err, out)
	}
	want := goSumLines(t, ref)
	for _, jobs := range []string{"1", "4"} {
		p := startHoloproxy(t, []string{"--cache-dir=" + t.TempDir(), "--upstream=" + f.origin.URL + ",direct",
			"--goprivate=git.test", "--direct-jobs=" + jobs}, f.git.Env())
		proxy := "http://" + p.addr
		// A client's .info queues the prefetch of its .mod and .zip (from git: the
		// origin does not have it). Once the prefetches are done, the zip is a hit if a
		// prefetch could run the go command.
		if status, _, _ := get(t, proxy+"/git.test/util/@v/v0.1.0.info"); status != http.StatusOK {
			t.Fatalf("jobs %s: util .info: %d", jobs, status)
		}
		deadline := time.Now().Add(time.Minute)
		for {
			m := scrape(t, p.addr)
			q := m[`holoproxy_prefetch_total{result="queued"}`]
			if q > 0 && q == m[`holoproxy_prefetch_total{result="fetched"}`]+m[`holoproxy_prefetch_total{result="dropped"}`]+m[`holoproxy_prefetch_total{result="failed"}`] {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("jobs %s: prefetches not done after a minute: %v", jobs, m)
			}
			time.Sleep(20 * time.Millisecond)
		}
		_, _, h := get(t, proxy+"/git.test/util/@v/v0.1.0.zip")
		if wantCache := map[string]string{"1": "miss", "4": "hit"}[jobs]; h.Get(server.CacheHeader) != wantCache {
			t.Errorf("jobs %s: util zip after the prefetches: %s; want %s", jobs, h.Get(server.CacheHeader), wantCache)
		}

		g := f.app(t, proxy)
		if out, err := goWith(t, g, nil, "mod", "download", "all"); err != nil {
			t.Fatalf("jobs %s: go mod download all: %v\n%s", jobs, err, out)
		}
		if out, err := goWith(t, g, nil, "run", "."); err != nil || lastLine(out) != "42" {
			t.Fatalf("jobs %s: go run: %v\n%s", jobs, err, out)
		}
		if got := goSumLines(t, g); !slices.Equal(got, want) {
			t.Errorf("jobs %s: go.sum through holoproxy:\n%s\nstraight from git:\n%s", jobs, strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
		m := scrape(t, p.addr)
		dropped, failed := m[`holoproxy_prefetch_total{result="dropped"}`], m[`holoproxy_prefetch_total{result="failed"}`]
		directFailed := m[`holoproxy_direct_run_duration_seconds_count{kind="zip",result="failed"}`] +
			m[`holoproxy_direct_run_duration_seconds_count{kind="mod",result="failed"}`] +
			m[`holoproxy_direct_run_duration_seconds_count{kind="info",result="failed"}`]
		if failed != 0 || directFailed != 0 || strings.Contains(p.log.String(), "upstream failed") {
			t.Errorf("jobs %s: prefetches failed %v, direct fetches failed %v; log:\n%s", jobs, failed, directFailed, p.log.String())
		}
		if jobs == "1" && dropped == 0 {
			t.Errorf("jobs 1: no prefetch dropped: did one run the go command in the only slot?")
		}
	}
}

// TestDirectClientPromotesPrefetch: a client asking for what a prefetch is filling shares
// the fill and lifts it to the clients' share of direct's jobs: with one job, where a
// prefetch alone would be skipped, the fill runs the go command for the client, once.
func TestDirectClientPromotesPrefetch(t *testing.T) {
	f := newDirectFixture(t)
	const zip = "/git.test/util/@v/v0.1.0.zip"
	zipAsked := make(chan struct{}, 8)
	var zipFront atomic.Int64
	// The proxy in front of direct knows nothing of git.test and is slow to say so for the
	// zip, which holds the prefetch's fill there while the client comes.
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == zip {
			zipFront.Add(1)
			zipAsked <- struct{}{}
			time.Sleep(time.Second)
		}
		http.NotFound(w, r)
	}))
	t.Cleanup(front.Close)
	p := startHoloproxy(t, []string{"--cache-dir=" + t.TempDir(), "--upstream=" + front.URL + ",direct",
		"--goprivate=git.test", "--direct-jobs=1"}, f.git.Env())
	proxy := "http://" + p.addr
	if status, _, _ := get(t, proxy+"/git.test/util/@v/v0.1.0.info"); status != http.StatusOK {
		t.Fatalf("util .info: %d", status)
	}
	select {
	case <-zipAsked: // the prefetch of the zip is at the front proxy
	case <-time.After(time.Minute):
		t.Fatal("no prefetch of the zip reached the front proxy")
	}
	status, body, h := get(t, proxy+zip)
	if status != http.StatusOK || h.Get(server.UpstreamHeader) != "direct" {
		t.Fatalf("client's zip during its prefetch: %d from %q: %.200s", status, h.Get(server.UpstreamHeader), body)
	}
	// Skipped and filled again, the zip would have been asked of the front proxy twice.
	// (The .mod's prefetch may be skipped: it can come while the .info's run still holds
	// the only job.)
	if n := zipFront.Load(); n != 1 {
		t.Errorf("zip asked of the front proxy %d times; want one fill, promoted, not skipped and filled again", n)
	}
}

// TestDirectMaxSize: --direct-max-size bounds the clones direct keeps: over it, they go
// (the pass at start finds them), and a module whose clone went is fetched again.
func TestDirectMaxSize(t *testing.T) {
	f := newDirectFixture(t)
	cache := t.TempDir()
	args := []string{"--cache-dir=" + cache, "--upstream=" + f.origin.URL + ",direct", "--goprivate=git.test", "--prefetch=0"}
	p := startHoloproxy(t, args, f.git.Env())
	if out, err := goWith(t, f.app(t, "http://"+p.addr), nil, "mod", "download", "all"); err != nil {
		t.Fatalf("go mod download all: %v\n%s", err, out)
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	if err := p.wait(t); err != nil {
		t.Fatal(err)
	}
	clones := func() []string {
		m, _ := filepath.Glob(filepath.Join(cache, ".direct", "modcache", "cache", "vcs", "*.info"))
		return m
	}
	if n := len(clones()); n != 2 {
		t.Fatalf("%d clones after the download; want git.test/lib's and git.test/util's", n)
	}

	p = startHoloproxy(t, append(args, "--direct-max-size=1KiB"), f.git.Env())
	m := scrape(t, p.addr)
	for deadline := time.Now().Add(30 * time.Second); m["holoproxy_direct_clones_removed_total"] < 2 && time.Now().Before(deadline); {
		time.Sleep(20 * time.Millisecond) // the pass at start runs beside the server
		m = scrape(t, p.addr)
	}
	if len(clones()) != 0 || m["holoproxy_direct_clones_removed_total"] != 2 || m["holoproxy_direct_cache_size_bytes"] > 1024 {
		t.Errorf("with --direct-max-size=1KiB: clones %v, removed %v, size %v; want both gone at start", clones(),
			m["holoproxy_direct_clones_removed_total"], m["holoproxy_direct_cache_size_bytes"])
	}
	if !strings.Contains(p.log.String(), "clones removed to stay under --direct-max-size") || !strings.Contains(p.log.String(), "git.test/lib") {
		t.Errorf("no log line naming the removed clones:\n%s", p.log.String())
	}
	// The cached files are still served; a version not cached is cloned again.
	status, body, h := get(t, "http://"+p.addr+"/git.test/lib/@v/v1.1.0.info")
	if status != http.StatusOK || h.Get(server.UpstreamHeader) != "direct" || !strings.Contains(string(body), "v1.1.0") {
		t.Errorf("lib v1.1.0 after its clone went: %d from %q %s", status, h.Get(server.UpstreamHeader), body)
	}

	// --direct-max-size is a share of --cache-max-size, never all of it.
	code, out := runHoloproxy(t, nil, "serve", "--cache-dir="+t.TempDir(), "--cache-max-size=1GiB", "--direct-max-size=1GiB")
	if code != 2 || !strings.Contains(out, "--direct-max-size") || !strings.Contains(out, "below --cache-max-size") {
		t.Errorf("--direct-max-size equal to --cache-max-size: exit %d\n%s", code, out)
	}
}

// TestDirectRoute: --route sends the private modules to direct alone, the rest to the
// proxy; the proxy never hears of the private paths.
func TestDirectRoute(t *testing.T) {
	f := newDirectFixture(t)
	p := startHoloproxy(t, []string{"--cache-dir=" + t.TempDir(), "--upstream=" + f.origin.URL,
		"--route=git.test/*=direct", "--goprivate=git.test"}, f.git.Env())
	g := f.app(t, "http://"+p.addr)
	if out, err := goWith(t, g, nil, "run", "."); err != nil || lastLine(out) != "42" {
		t.Fatalf("go run through holoproxy: %v\n%s", err, out)
	}
	for path, n := range f.origin.counts() {
		if strings.HasPrefix(path, "git.test/") {
			t.Errorf("the proxy was asked %d times for %s, routed to direct", n, path)
		}
	}
}

// TestDirectOff: with --direct-jobs 0 the chain ends at direct, as before direct was
// supported: a module the proxy lacks is a 404, and git is never asked.
func TestDirectOff(t *testing.T) {
	f := newDirectFixture(t)
	p := startHoloproxy(t, []string{"--cache-dir=" + t.TempDir(), "--upstream=" + f.origin.URL + ",direct",
		"--direct-jobs=0"}, f.git.Env())
	status, body, _ := get(t, "http://"+p.addr+"/git.test/lib/@v/v1.0.0.info")
	if status != http.StatusNotFound {
		t.Errorf("with direct off: %d %q; want 404", status, body)
	}
	if n := len(f.git.Requests()); n != 0 {
		t.Errorf("git was asked %d times with direct off: %q", n, f.git.Requests())
	}
}

// TestWarmFromDirect: holoproxy warm with `--proxy ORIGIN,direct` fetches the private
// modules from git (checked against go.sum like the rest) into a GOPROXY tree, from which
// the go command then builds offline with the same go.sum; with direct off the private
// modules fail and the exit status says so.
func TestWarmFromDirect(t *testing.T) {
	f := newDirectFixture(t)
	// The project as committed: tidy, with its go.sum, made straight from git.
	ref := f.app(t, f.origin.URL+",direct")
	if out, err := goWith(t, ref, append(f.git.Env(), "GOPRIVATE=git.test"), "mod", "tidy"); err != nil {
		t.Fatalf("go mod tidy straight from git: %v\n%s", err, out)
	}
	want := goSumLines(t, ref)
	cache := t.TempDir()
	env := append(f.git.Env(), "XDG_CACHE_HOME="+cache, "GOPRIVATE=git.test", "GOFLAGS=", "GOWORK=off")

	tree := filepath.Join(t.TempDir(), "tree")
	if code, out := runHoloproxy(t, env, "warm", "--proxy="+f.origin.URL+",direct", "--direct-jobs=0",
		"--to="+tree, "--progress=off", ref.app); code == 0 || !strings.Contains(out, "git.test/lib") {
		t.Errorf("warm with direct off: exit %d; want a failure naming the private module\n%s", code, out)
	}
	if code, out := runHoloproxy(t, env, "warm", "--proxy="+f.origin.URL+",direct", "--to="+tree,
		"--progress=off", ref.app); code != 0 {
		t.Fatalf("warm from direct: exit %d\n%s", code, out)
	}
	// The clones stay for the next run, unless --direct-max-size says otherwise.
	clones := func() []string {
		m, _ := filepath.Glob(filepath.Join(cache, "holoproxy", "direct", "modcache", "cache", "vcs", "*.info"))
		return m
	}
	if n := len(clones()); n != 2 {
		t.Fatalf("%d clones kept after warm; want git.test/lib's and git.test/util's", n)
	}
	tree2 := filepath.Join(t.TempDir(), "tree")
	code, out := runHoloproxy(t, env, "warm", "--proxy="+f.origin.URL+",direct", "--to="+tree2,
		"--progress=off", "--direct-max-size=1KiB", ref.app)
	if code != 0 || len(clones()) != 0 || !strings.Contains(out, "2 clones removed") || !strings.Contains(out, "git.test/util") {
		t.Fatalf("warm --direct-max-size=1KiB: exit %d, clones %v\n%s", code, clones(), out)
	}

	f.git.SetDown(true)
	g := f.app(t, "file://"+tree)
	for _, name := range []string{"go.mod", "go.sum"} { // as the reference run left them
		data, err := os.ReadFile(filepath.Join(ref.app, name))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(g.app, name), data, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	out, err := goWith(t, g, []string{"GOFLAGS=-mod=readonly"}, "run", ".")
	if err != nil || lastLine(out) != "42" {
		t.Fatalf("go run offline from the warmed tree: %v\n%s", err, out)
	}
	if got := goSumLines(t, g); !slices.Equal(got, want) {
		t.Errorf("go.sum changed building from the warmed tree:\n%s", strings.Join(got, "\n"))
	}
}

// TestDirectPrivateModulesAndTheChecksumDatabase: a private module fetched from git is
// looked up in the checksum database like any other unless exempt, and the database does
// not know it: refused, with an answer that says how to exempt it; exempt, it is served.
func TestDirectPrivateModulesAndTheChecksumDatabase(t *testing.T) {
	f := newDirectFixture(t)
	db := sumdbtest.New(t, f.pub)
	args := func(goprivate string) []string {
		return []string{"--cache-dir=" + t.TempDir(), "--upstream=" + f.origin.URL + ",direct",
			"--sumdb=" + db.GOSUMDB(), "--gonosumdb=", "--goprivate=" + goprivate}
	}
	p := startHoloproxy(t, args(""), f.git.Env())
	status, body, _ := get(t, "http://"+p.addr+"/git.test/lib/@v/v1.0.0.mod")
	if status != http.StatusBadGateway || !strings.Contains(string(body), "GOPRIVATE") {
		t.Errorf("private module, not exempt: %d %q; want 502 saying how to exempt it", status, body)
	}
	p2 := startHoloproxy(t, args("git.test"), f.git.Env())
	if status, body, _ := get(t, "http://"+p2.addr+"/git.test/lib/@v/v1.0.0.mod"); status != http.StatusOK {
		t.Errorf("private module, exempt: %d %q; want 200", status, body)
	}
	if status, body, _ := get(t, "http://"+p2.addr+"/mods.test/pub/@v/v1.0.0.mod"); status != http.StatusOK {
		t.Errorf("public module, verified: %d %q; want 200", status, body)
	}
	if n := db.Count("git.test"); n == 0 {
		t.Error("the database was never asked about the private module without --goprivate: the test proves nothing")
	}
}

// TestDirectPrivateRepositoryWithNetrc: a git host that wants credentials gets them from
// the netrc file of holoproxy's user (the go command's go-get lookup and git both read
// it), and the token appears nowhere; without them the module is a 404 that says why, so
// that a client with credentials of its own may still fetch it directly.
func TestDirectPrivateRepositoryWithNetrc(t *testing.T) {
	f := newDirectFixture(t)
	f.git.RequireAuth("ci-bot", "git-token-123")
	home := t.TempDir()
	if err := os.WriteFile(filepath.Join(home, ".netrc"), []byte("machine git.test login ci-bot password git-token-123\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	args := []string{"--upstream=" + f.origin.URL + ",direct", "--goprivate=git.test"}
	env := append(f.git.Env(), "HOME="+home, "NETRC=", "XDG_CONFIG_HOME="+home, "GIT_CONFIG_NOSYSTEM=1")
	p := startHoloproxy(t, append(args, "--cache-dir="+t.TempDir()), env)
	g := f.app(t, "http://"+p.addr)
	if out, err := goWith(t, g, nil, "run", "."); err != nil || lastLine(out) != "42" {
		t.Fatalf("go run through holoproxy with a netrc for git: %v\n%s", err, out)
	}
	_, metrics, _ := get(t, "http://"+p.addr+"/metrics")
	for what, text := range map[string]string{"log": p.log.String(), "/metrics": string(metrics)} {
		if strings.Contains(text, "git-token-123") {
			t.Errorf("the git token appears in the %s", what)
		}
	}

	noCreds := t.TempDir()
	env = append(f.git.Env(), "HOME="+noCreds, "NETRC=", "XDG_CONFIG_HOME="+noCreds, "GIT_CONFIG_NOSYSTEM=1")
	p2 := startHoloproxy(t, append(args, "--cache-dir="+t.TempDir()), env)
	status, body, _ := get(t, "http://"+p2.addr+"/git.test/lib/@v/v1.0.0.info")
	if status != http.StatusNotFound || !strings.Contains(string(body), "direct") {
		t.Errorf("without credentials: %d %q; want a 404 from direct saying why", status, body)
	}
	t.Logf("without credentials: %s", body)
}

// TestDirectShutdownLeavesNoProcess: SIGTERM while a go command (and its git) hangs on a
// stalled repository ends holoproxy within its shutdown timeout, with none of those
// processes left behind; with a long shutdown timeout, a second SIGTERM ends it at once,
// the same way.
func TestDirectShutdownLeavesNoProcess(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("reads /proc")
	}
	for _, tt := range []struct {
		name    string
		timeout string
		signals int
	}{
		{"the shutdown timeout ends the hung fill", "2s", 1},
		{"a second signal ends the hung fill", "5m", 2},
	} {
		t.Run(tt.name, func(t *testing.T) {
			f := newDirectFixture(t)
			cache := t.TempDir()
			p := startHoloproxy(t, []string{"--cache-dir=" + cache, "--upstream=direct", "--goprivate=git.test",
				"--shutdown-timeout=" + tt.timeout}, f.git.Env())
			f.git.SetStall(true)
			defer f.git.SetStall(false)
			go func() {
				ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
				defer cancel()
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+p.addr+"/git.test/lib/@v/v1.0.0.mod", nil)
				if resp, err := http.DefaultClient.Do(req); err == nil {
					resp.Body.Close()
				}
			}()
			direct := filepath.Join(cache, ".direct")
			lab.WaitForProcessUnder(t, direct, "git", 20*time.Second)
			// The hung fill cannot finish: holoproxy abandons it (and says so with exit
			// status 1), killing the run.
			start := time.Now()
			p.cmd.Process.Signal(syscall.SIGTERM)
			if tt.signals > 1 {
				if waitLog(p, "shutting down") == "" {
					t.Fatalf("no shutdown after SIGTERM:\n%s", p.log.String())
				}
				p.cmd.Process.Signal(syscall.SIGTERM)
			}
			p.wait(t)
			if took := time.Since(start); took > 15*time.Second {
				t.Errorf("holoproxy took %s to exit after %d SIGTERM with --shutdown-timeout %s", took, tt.signals, tt.timeout)
			}
			if !strings.Contains(p.log.String(), "fills abandoned at shutdown") {
				t.Errorf("the log does not say that the hung fill was abandoned:\n%s", p.log.String())
			}
			if tt.signals > 1 && !strings.Contains(p.log.String(), "another signal") {
				t.Errorf("the log does not say that the second signal ended the shutdown:\n%s", p.log.String())
			}
			lab.WaitNoProcessUnder(t, direct, 5*time.Second)
		})
	}
}

// TestWarmInterruptedLeavesNoProcess: SIGINT while warm's go command (and its git) hangs
// on a stalled repository ends warm with none of those processes left behind.
func TestWarmInterruptedLeavesNoProcess(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("reads /proc")
	}
	f := newDirectFixture(t)
	ref := f.app(t, f.origin.URL+",direct")
	if out, err := goWith(t, ref, append(f.git.Env(), "GOPRIVATE=git.test"), "mod", "tidy"); err != nil {
		t.Fatalf("go mod tidy straight from git: %v\n%s", err, out)
	}
	cache := t.TempDir()
	f.git.SetStall(true)
	defer f.git.SetStall(false)
	var out bytes.Buffer
	cmd := exec.Command(holoproxyBinary(t), "warm", "--proxy="+f.origin.URL+",direct", "--to="+t.TempDir(),
		"--progress=off", ref.app)
	cmd.Env = append(os.Environ(), append(f.git.Env(), "XDG_CACHE_HOME="+cache, "GOPRIVATE=git.test", "GOFLAGS=", "GOWORK=off")...)
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	direct := filepath.Join(cache, "holoproxy", "direct")
	t.Cleanup(func() { cmd.Process.Kill() })
	lab.WaitForProcessUnder(t, direct, "git", 20*time.Second)
	cmd.Process.Signal(os.Interrupt)
	select {
	case err := <-exited:
		if err == nil {
			t.Errorf("warm interrupted while a module hung: exit 0; want a failure")
		}
	case <-time.After(20 * time.Second):
		cmd.Process.Kill()
		t.Fatalf("warm did not exit within 20 s of SIGINT\n%s", out.String())
	}
	lab.WaitNoProcessUnder(t, direct, 5*time.Second)
}

// TestDirectPhasesLive: after fetches through direct, /metrics has direct's lookup, vcs,
// go and transfer phases under upstream="direct", and /api/chain has direct's heatmap
// rows and waterfalls with lookup and vcs time; direct is in no health output.
func TestDirectPhasesLive(t *testing.T) {
	f := newDirectFixture(t)
	p := startHoloproxy(t, []string{"--cache-dir=" + t.TempDir(), "--upstream=" + f.origin.URL + ",direct",
		"--goprivate=git.test", "--prefetch=0"}, f.git.Env())
	proxy := "http://" + p.addr
	for _, path := range []string{"/git.test/lib/@v/list", "/git.test/lib/@v/v1.0.0.info", "/git.test/lib/@v/v1.0.0.zip"} {
		if status, body, h := get(t, proxy+path); status != http.StatusOK || h.Get(server.UpstreamHeader) != "direct" {
			t.Fatalf("%s: %d from %q: %s", path, status, h.Get(server.UpstreamHeader), body)
		}
	}

	m := scrape(t, p.addr)
	for _, phase := range []string{"lookup", "vcs", "go", "transfer"} {
		key := `holoproxy_upstream_phase_seconds_count{phase="` + phase + `",upstream="direct"}`
		if m[key] <= 0 {
			t.Errorf("/metrics: %s = %v; want direct's %s phase observed", key, m[key], phase)
		}
	}
	for _, phase := range []string{"dns", "connect", "tls", "ttfb"} {
		key := `holoproxy_upstream_phase_seconds_count{phase="` + phase + `",upstream="direct"}`
		if _, ok := m[key]; ok {
			t.Errorf("/metrics has %s: direct has no %s phase", key, phase)
		}
	}

	var doc struct {
		Upstreams []struct {
			Name string `json:"name"`
		} `json:"upstreams"`
		Heatmap struct {
			Rows []struct {
				Upstream string `json:"upstream"`
				Phase    string `json:"phase"`
				Cells    []*struct {
					P90ms float64 `json:"p90_ms"`
					N     int     `json:"n"`
				} `json:"cells"`
			} `json:"rows"`
		} `json:"heatmap"`
		Slowest []struct {
			Upstream string  `json:"upstream"`
			Lookupms float64 `json:"lookup_ms"`
			VCSms    float64 `json:"vcs_ms"`
			Goms     float64 `json:"go_ms"`
			Spans    []struct {
				Phase string `json:"phase"`
			} `json:"spans"`
		} `json:"slowest"`
	}
	_, chainDoc, _ := get(t, proxy+"/api/chain")
	if err := json.Unmarshal(chainDoc, &doc); err != nil {
		t.Fatalf("/api/chain: %v\n%s", err, chainDoc)
	}
	for _, u := range doc.Upstreams {
		if u.Name == "direct" {
			t.Errorf("direct among the scored upstreams of /api/chain")
		}
	}
	var rows []string
	for _, r := range doc.Heatmap.Rows {
		if r.Upstream != "direct" {
			continue
		}
		rows = append(rows, r.Phase)
		if r.Phase == "lookup" || r.Phase == "vcs" {
			seen := false
			for _, c := range r.Cells {
				seen = seen || (c != nil && c.N > 0 && c.P90ms > 0)
			}
			if !seen {
				t.Errorf("direct's %s row has no cell above 0", r.Phase)
			}
		}
	}
	if strings.Join(rows, ",") != "lookup,vcs,go,transfer,errors" {
		t.Errorf("direct's heatmap rows %v; want lookup,vcs,go,transfer,errors", rows)
	}
	found := false
	for _, r := range doc.Slowest {
		if r.Upstream == "direct" && r.Lookupms > 0 && r.VCSms > 0 && r.Goms > 0 && len(r.Spans) > 0 {
			found = true
		}
	}
	if !found {
		t.Errorf("no waterfall of direct with lookup, vcs and go time in /api/chain:\n%s", chainDoc)
	}
}
