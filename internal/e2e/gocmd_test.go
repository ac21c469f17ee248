package e2e

import (
	"bytes"
	"context"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/mod/module"

	"github.com/holoproxy/holoproxy/internal/goproxy"
	"github.com/holoproxy/holoproxy/internal/lab/modtree"
	"github.com/holoproxy/holoproxy/internal/netobs"
	"github.com/holoproxy/holoproxy/internal/server"
	"github.com/holoproxy/holoproxy/internal/store"
)

// fixtureModules returns the modules of the go command test: a small graph with an MVS
// choice, and one module for each awkward case of the protocol. roots are what the app
// requires directly.
func fixtureModules() (mods []modtree.Module, roots []module.Version) {
	mods, roots = modtree.Graph("mods.test/g", 10, 3, 2)
	extra := []modtree.Module{
		{Path: "mods.test/Upper/Case", Version: "v1.0.0"},                                      // case-encoded path
		{Path: "mods.test/two/v2", Version: "v2.1.0"},                                          // major version suffix
		{Path: "mods.test/incompat", Version: "v2.0.0+incompatible", NoGoMod: true},            // +incompatible
		{Path: "mods.test/legacy", Version: "v1.0.0", NoGoMod: true},                           // no go.mod at v1
		{Path: "mods.test/pseudo", Version: "v0.0.0-20240102030405-abcdefabcdef"},              // pseudo-version only
		{Path: "mods.test/retract", Version: "v1.0.0"},                                         // retracted versions:
		{Path: "mods.test/retract", Version: "v1.0.1"},                                         // this one is retracted
		{Path: "mods.test/retract", Version: "v1.1.0", GoModExtra: "retract v1.0.1 // broken"}, // by the latest
	}
	mods = append(mods, extra...)
	for _, e := range extra {
		if e.Path == "mods.test/retract" && e.Version != "v1.0.0" {
			continue // the app starts at v1.0.0 so that go get @latest has work to do
		}
		roots = append(roots, e.ID())
	}
	return mods, roots
}

// cacheLog records, per request path, the status and X-Holoproxy-Cache of holoproxy's
// answers.
type cacheLog struct {
	mu  sync.Mutex
	got []cacheEntry
}

type cacheEntry struct {
	path, cache string
	status      int
}

func (l *cacheLog) reset() []cacheEntry {
	l.mu.Lock()
	defer l.mu.Unlock()
	got := l.got
	l.got = nil
	return got
}

type statusWriter struct {
	http.ResponseWriter
	status int
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	return w.ResponseWriter.Write(p)
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// inProcessAgent is the User-Agent of startInProcess's upstream requests, told apart from
// the binary's.
const inProcessAgent = "holoproxy-e2e-in-process"

// startInProcess runs server.New over a temporary disk store with upstream as its chain and
// returns its URL; every answer is recorded in the returned cacheLog, and settle waits until
// every answer given is in the store.
func startInProcess(t *testing.T, upstream string) (url string, cl *cacheLog, settle func()) {
	t.Helper()
	disk, err := store.OpenDisk(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	tr, err := netobs.NewTransport(netobs.TransportConfig{})
	if err != nil {
		t.Fatal(err)
	}
	chain, err := goproxy.ParseChain(upstream, tr.Client())
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range chain.Clients() {
		c.Header.Set("User-Agent", inProcessAgent)
	}
	var logs logBuffer
	srv, err := server.New(server.Config{
		Store:  disk,
		Chain:  chain,
		Logger: slog.New(slog.NewTextHandler(&logs, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	cl = &cacheLog{}
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sw := &statusWriter{ResponseWriter: w}
		srv.ServeHTTP(sw, r)
		cl.mu.Lock()
		cl.got = append(cl.got, cacheEntry{path: strings.TrimPrefix(r.URL.Path, "/"), cache: w.Header().Get(server.CacheHeader), status: sw.status})
		cl.mu.Unlock()
	}))
	t.Cleanup(func() {
		hs.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := srv.Close(ctx); err != nil {
			t.Errorf("server Close: %v", err)
		}
		tr.CloseIdleConnections()
		if t.Failed() {
			t.Logf("holoproxy log:\n%s", logs.String())
		}
	})
	settle = func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := srv.Settle(ctx); err != nil {
			t.Fatal(err)
		}
	}
	return hs.URL, cl, settle
}

// goRun is one run of the go command scenario against one GOPROXY.
type goRun struct {
	goBin    string
	proxy    string
	app      string // the main module's directory
	modcache string
	gocache  string
}

// env returns the go command's environment: only the chosen proxy, no checksum database,
// no private patterns, this run's module cache.
func (g goRun) env() []string {
	tmp := filepath.Dir(g.modcache)
	return append(os.Environ(),
		"GOPROXY="+g.proxy, "GOSUMDB=off", "GOFLAGS=-mod=mod -modcacherw", "GOTOOLCHAIN=local",
		"GONOSUMDB=", "GOPRIVATE=", "GONOPROXY=", "GOINSECURE=", "GOWORK=off", "GOENV=off",
		"GOMODCACHE="+g.modcache, "GOCACHE="+g.gocache, "GOPATH="+filepath.Join(tmp, "gopath"),
		"CGO_ENABLED=0")
}

// run runs the go command in the app directory and returns its stdout and stderr with the
// run's temporary paths replaced by $GOMODCACHE and $APP.
func (g goRun) run(t *testing.T, args ...string) (stdout, stderr string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, g.goBin, args...)
	cmd.Dir = g.app
	cmd.Env = g.env()
	cmd.WaitDelay = 10 * time.Second
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		t.Fatalf("GOPROXY=%s go %s: %v\n%s%s", g.proxy, strings.Join(args, " "), err, out.String(), errb.String())
	}
	return g.normalize(out.String()), g.normalize(errb.String())
}

// runFail runs the go command like run but requires it to fail, and returns the first line
// of its stderr (later lines quote the proxy's own error text, which may differ).
func (g goRun) runFail(t *testing.T, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, g.goBin, args...)
	cmd.Dir = g.app
	cmd.Env = g.env()
	cmd.WaitDelay = 10 * time.Second
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("GOPROXY=%s go %s succeeded; want a failure\n%s", g.proxy, strings.Join(args, " "), out)
	}
	first, _, _ := strings.Cut(g.normalize(string(out)), "\n")
	return first
}

func (g goRun) normalize(s string) string {
	r := strings.NewReplacer(g.modcache, "$GOMODCACHE", g.app, "$APP", g.proxy, "$GOPROXY")
	return r.Replace(s)
}

// outcome is everything a run of the scenario produced that must not depend on the proxy.
type outcome struct {
	download, versions, versionsHidden, get, missing, build string
	goMod, goSum                                            string
}

// scenario runs the go command through proxy in a fresh app and module cache: download,
// list versions (with and without retracted ones), get @latest, fail to get a module that
// does not exist, build and run.
func scenario(t *testing.T, goBin, proxy string, mods []modtree.Module, roots []module.Version, gocache string) outcome {
	t.Helper()
	tmp := t.TempDir()
	g := goRun{goBin: goBin, proxy: proxy, app: filepath.Join(tmp, "app"), modcache: filepath.Join(tmp, "modcache"), gocache: gocache}
	if err := modtree.WriteApp(g.app, "app.test/main", mods, roots, nil); err != nil {
		t.Fatal(err)
	}
	var o outcome
	o.download, _ = g.run(t, "mod", "download", "-json")
	listArgs := []string{"list", "-m", "-versions", "-retracted"}
	for _, r := range roots {
		listArgs = append(listArgs, r.Path)
	}
	o.versions, _ = g.run(t, listArgs...)
	o.versionsHidden, _ = g.run(t, "list", "-m", "-versions", "mods.test/retract")
	_, o.get = g.run(t, "get", "mods.test/retract@latest")
	o.missing = g.runFail(t, "get", "mods.test/missing@latest")
	bin := filepath.Join(tmp, "app.bin")
	g.run(t, "build", "-o", bin, ".")
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, bin).CombinedOutput()
	if err != nil {
		t.Fatalf("app: %v\n%s", err, out)
	}
	o.build = string(out)
	for name, dst := range map[string]*string{"go.mod": &o.goMod, "go.sum": &o.goSum} {
		b, err := os.ReadFile(filepath.Join(g.app, name))
		if err != nil {
			t.Fatal(err)
		}
		*dst = string(b)
	}
	return o
}

// TestGoCommandThroughHoloproxy drives the real go command through an in-process holoproxy
// and straight at the origin, and requires the same outcome: downloads, version lists with
// retractions, go get @latest, a build, and byte-identical go.mod and go.sum. A second run
// with a fresh module cache must be served from holoproxy's cache alone. A last run goes
// through the built holoproxy serve binary.
func TestGoCommandThroughHoloproxy(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command on PATH")
	}
	mods, roots := fixtureModules()
	org := newOrigin(t, mods)
	gocache := filepath.Join(t.TempDir(), "gocache")
	want := scenario(t, goBin, org.URL, mods, roots, gocache)
	checkBaseline(t, want, mods)

	holo, cl, settle := startInProcess(t, org.URL)

	cold := scenario(t, goBin, holo, mods, roots, gocache)
	compareOutcome(t, "cold holoproxy", cold, want)
	var misses int
	for _, e := range cl.reset() {
		if e.cache == "miss" {
			misses++
		}
	}
	t.Logf("cold run: %d answers were misses", misses)
	if misses == 0 {
		t.Errorf("cold run: no answer had %s: miss", server.CacheHeader)
	}

	// The last answers of the cold run may still be committing: a request that joins such
	// a fill is answered from it (a miss), not from the store.
	settle()
	before := org.counts()
	warm := scenario(t, goBin, holo, mods, roots, gocache)
	compareOutcome(t, "warm holoproxy", warm, want)
	after := org.counts()
	var immutable int
	for _, e := range cl.reset() {
		if !isImmutable(e.path) || e.status != http.StatusOK {
			continue
		}
		immutable++
		if e.cache != "hit" {
			t.Errorf("warm run: %s answered %s: %q; want hit", e.path, server.CacheHeader, e.cache)
		}
	}
	t.Logf("warm run: %d .info/.mod/.zip answers, all checked for hit", immutable)
	if immutable < len(roots) {
		t.Errorf("warm run: only %d .info/.mod/.zip answers; want at least %d", immutable, len(roots))
	}
	for p, n := range after {
		if isImmutable(p) && n != before[p] {
			t.Errorf("warm run: origin got %d new requests for immutable %s", n-before[p], p)
		}
	}

	// The same through the built binary: holoproxy serve's own wiring (flags, transport,
	// mux) in front of the go command. Its upstream requests say who they are.
	bin := startHoloproxy(t, []string{"--cache-dir=" + t.TempDir(), "--upstream=" + org.URL}, nil)
	org.userAgents()
	viaBinary := scenario(t, goBin, "http://"+bin.addr, mods, roots, gocache)
	compareOutcome(t, "holoproxy serve binary", viaBinary, want)
	ours := 0
	for ua, n := range org.userAgents() {
		switch {
		case strings.HasPrefix(ua, "holoproxy/"):
			ours += n
		case ua != inProcessAgent: // the in-process server's prefetch may still be busy
			t.Errorf("holoproxy serve binary: %d upstream requests with User-Agent %q; want holoproxy/…", n, ua)
		}
	}
	if ours == 0 {
		t.Error("holoproxy serve binary: the origin got no request with holoproxy's User-Agent")
	}
}

// isImmutable reports whether a request path names a .info, .mod or .zip.
func isImmutable(p string) bool {
	return strings.Contains(p, "/@v/") &&
		(strings.HasSuffix(p, ".info") || strings.HasSuffix(p, ".mod") || strings.HasSuffix(p, ".zip"))
}

// checkBaseline makes sure the direct run did what the fixture intends, so that comparing
// against it means something: every go.sum line is one modtree computed, retracted versions
// are listed only with -retracted, and go get moved to the latest version.
func checkBaseline(t *testing.T, o outcome, mods []modtree.Module) {
	t.Helper()
	valid := map[string]bool{}
	for _, m := range mods {
		lines, err := m.SumLines()
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range lines {
			valid[l] = true
		}
	}
	lines := strings.Split(strings.TrimSpace(o.goSum), "\n")
	var modLines int
	for _, l := range lines {
		if !valid[l] {
			t.Errorf("baseline go.sum line %q is not one modtree computed", l)
		}
		if strings.Contains(l, "/go.mod ") {
			modLines++
		}
	}
	if modLines <= len(lines)-modLines {
		t.Errorf("baseline go.sum has no go.mod line of an unselected version: MVS made no choice\n%s", o.goSum)
	}
	for _, want := range []string{
		"mods.test/Upper/Case v1.0.0 h1:", "mods.test/two/v2 v2.1.0 h1:",
		"mods.test/incompat v2.0.0+incompatible h1:", "mods.test/legacy v1.0.0 h1:",
		"mods.test/pseudo v0.0.0-20240102030405-abcdefabcdef h1:", "mods.test/retract v1.1.0 h1:",
	} {
		if !strings.Contains(o.goSum, want) {
			t.Errorf("baseline go.sum lacks %q:\n%s", want, o.goSum)
		}
	}
	if !strings.Contains(o.versions, "mods.test/retract v1.0.0 v1.0.1 v1.1.0") {
		t.Errorf("baseline -retracted list lacks the retracted version:\n%s", o.versions)
	}
	if strings.TrimSpace(o.versionsHidden) != "mods.test/retract v1.0.0 v1.1.0" {
		t.Errorf("baseline list without -retracted = %q; want v1.0.1 hidden", o.versionsHidden)
	}
	if !strings.Contains(o.get, "mods.test/retract v1.0.0 => v1.1.0") {
		t.Errorf("baseline go get @latest said %q; want an upgrade to v1.1.0", o.get)
	}
	if !strings.Contains(o.missing, "404 Not Found") {
		t.Errorf("baseline go get of a missing module said %q; want a 404 Not Found", o.missing)
	}
	if n := strings.TrimSpace(o.build); n == "" || n == "1" {
		t.Errorf("baseline app printed %q; want a count of reached modules above 1", o.build)
	}
}

// compareOutcome reports every part of got that differs from want.
func compareOutcome(t *testing.T, name string, got, want outcome) {
	t.Helper()
	for _, f := range []struct {
		what      string
		got, want string
	}{
		{"go mod download -json", got.download, want.download},
		{"go list -m -versions -retracted", got.versions, want.versions},
		{"go list -m -versions", got.versionsHidden, want.versionsHidden},
		{"go get @latest", got.get, want.get},
		{"go get of a missing module", got.missing, want.missing},
		{"app output", got.build, want.build},
		{"go.mod", got.goMod, want.goMod},
		{"go.sum", got.goSum, want.goSum},
	} {
		if f.got != f.want {
			t.Errorf("%s: %s differs from the direct run:\n%s", name, f.what, lineDiff(f.got, f.want))
		}
	}
}

// lineDiff lists the lines only in got (+) and only in want (-).
func lineDiff(got, want string) string {
	in := func(s string) map[string]int {
		m := map[string]int{}
		for _, l := range strings.Split(s, "\n") {
			m[l]++
		}
		return m
	}
	g, w := in(got), in(want)
	var out []string
	for l, n := range g {
		if w[l] < n {
			out = append(out, "+ "+l)
		}
	}
	for l, n := range w {
		if g[l] < n {
			out = append(out, "- "+l)
		}
	}
	sort.Strings(out)
	if len(out) == 0 {
		return "(same lines, different order)"
	}
	return strings.Join(out, "\n")
}
