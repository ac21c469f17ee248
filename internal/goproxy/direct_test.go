package goproxy

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
	"unicode/utf8"

	"golang.org/x/mod/module"
	"golang.org/x/mod/sumdb/dirhash"
	modzip "golang.org/x/mod/zip"

	"github.com/holoproxy/holoproxy/internal/lab"
)

func str(s string) *string { return &s }

// directFixture is a lab git server with one module repository, git.test/repo:
// v1.0.0, v1.1.0 and a later untagged commit on main.
type directFixture struct {
	git  *lab.GitServer
	head string // the untagged commit
}

func newDirectFixture(t *testing.T) *directFixture {
	t.Helper()
	if _, err := exec.LookPath("go"); err != nil {
		t.Skipf("no go command: %v", err)
	}
	g := lab.StartGit(t)
	g.Commit(t, "git.test/repo", map[string]*string{
		"go.mod":  str("module git.test/repo\n\ngo 1.21\n"),
		"repo.go": str("package repo\n\nconst V = 1\n"),
	}, "v1.0.0")
	g.Commit(t, "git.test/repo", map[string]*string{
		"repo.go": str("package repo\n\nconst V = 2\n"),
		"LICENSE": str("MIT\n"),
	}, "v1.1.0")
	head := g.Commit(t, "git.test/repo", map[string]*string{"repo.go": str("package repo\n\nconst V = 3\n")})
	return &directFixture{git: g, head: head}
}

func (f *directFixture) direct(t *testing.T, timeout time.Duration) (*Direct, string) {
	t.Helper()
	dir := t.TempDir()
	d, err := NewDirect(context.Background(), DirectConfig{Dir: dir, Env: f.git.Env(), Timeout: timeout})
	if err != nil {
		t.Fatal(err)
	}
	return d, dir
}

func fetchBody(t *testing.T, d *Direct, r Request) ([]byte, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	resp, err := d.Client().Fetch(ctx, r)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.ContentLength != int64(len(b)) {
		t.Errorf("%s: Content-Length %d, body %d bytes", r, resp.ContentLength, len(b))
	}
	return b, nil
}

// goDirect runs the go command straight against the lab origin (GOPROXY=direct, a module
// cache of its own): what a client without holoproxy gets.
func goDirect(t *testing.T, f *directFixture, args ...string) []byte {
	t.Helper()
	cmd := exec.Command("go", args...)
	cmd.Dir = t.TempDir()
	cmd.Env = append(os.Environ(), f.git.Env()...)
	cmd.Env = append(cmd.Env, "GOPROXY=direct", "GOSUMDB=off", "GOFLAGS=-modcacherw", "GOMODCACHE="+t.TempDir(),
		"GOTOOLCHAIN=local", "GOWORK=off", "GO111MODULE=on")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

func TestDirectFetchesEachKindFromGit(t *testing.T) {
	f := newDirectFixture(t)
	d, dir := f.direct(t, 0)

	list, err := fetchBody(t, d, Request{Kind: KindList, Module: "git.test/repo"})
	if err != nil {
		t.Fatal(err)
	}
	if string(list) != "v1.0.0\nv1.1.0\n" {
		t.Errorf("list = %q; want the two tags", list)
	}

	type info struct {
		Version string
		Time    time.Time
		Origin  struct{ VCS, URL, Hash, Ref string }
	}
	var latest info
	b, err := fetchBody(t, d, Request{Kind: KindLatest, Module: "git.test/repo"})
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &latest); err != nil || latest.Version != "v1.1.0" || latest.Time.IsZero() {
		t.Errorf("@latest = %s (%v); want v1.1.0 with its time", b, err)
	}
	if latest.Origin.VCS != "git" || latest.Origin.URL != "https://git.test/repo.git" {
		t.Errorf("@latest origin = %+v; want the git repository", latest.Origin)
	}

	// A branch resolves to the pseudo-version of its head commit, as the go command
	// resolves it.
	var branch info
	b, err = fetchBody(t, d, Request{Kind: KindInfo, Module: "git.test/repo", Version: "main"})
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, &branch); err != nil || !strings.HasPrefix(branch.Version, "v1.1.1-0.") ||
		!strings.HasSuffix(branch.Version, f.head[:12]) {
		t.Errorf("main.info = %s (%v); want the pseudo-version of %s", b, err, f.head[:12])
	}

	mod, err := fetchBody(t, d, Request{Kind: KindMod, Module: "git.test/repo", Version: "v1.0.0"})
	if err != nil {
		t.Fatal(err)
	}
	if string(mod) != "module git.test/repo\n\ngo 1.21\n" {
		t.Errorf(".mod = %q", mod)
	}
	// The run for the .mod left the version's .info too: asked next (as the go command
	// does), it costs no run.
	runs := d.Runs()
	var v100 info
	b, err = fetchBody(t, d, Request{Kind: KindInfo, Module: "git.test/repo", Version: "v1.0.0"})
	if err != nil || json.Unmarshal(b, &v100) != nil || v100.Version != "v1.0.0" {
		t.Errorf("v1.0.0.info after its .mod: %s, %v", b, err)
	}
	if d.Runs() != runs {
		t.Errorf("v1.0.0.info after its .mod started %d runs; want none", d.Runs()-runs)
	}
	// A .mod never costs a zip.
	zips, _ := filepath.Glob(filepath.Join(dir, "modcache", "cache", "download", "git.test", "repo", "@v", "*.zip"))
	if len(zips) != 0 {
		t.Errorf("zips after the .info and .mod requests: %q", zips)
	}

	zipData, err := fetchBody(t, d, Request{Kind: KindZip, Module: "git.test/repo", Version: "v1.1.0"})
	if err != nil {
		t.Fatal(err)
	}
	zf := filepath.Join(t.TempDir(), "m.zip")
	if err := os.WriteFile(zf, zipData, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := modzip.CheckZip(modVersion("git.test/repo", "v1.1.0"), zf); err != nil {
		t.Errorf("zip: %v", err)
	}
	h1, err := dirhash.HashZip(zf, dirhash.Hash1)
	if err != nil {
		t.Fatal(err)
	}
	var want struct{ Sum string }
	if err := json.Unmarshal(goDirect(t, f, "mod", "download", "-json", "git.test/repo@v1.1.0"), &want); err != nil {
		t.Fatal(err)
	}
	if h1 != want.Sum {
		t.Errorf("zip hash %s; the go command straight from git got %s", h1, want.Sum)
	}
	// The zip was read once: neither it nor the tree the go command unpacked is kept.
	left, _ := filepath.Glob(filepath.Join(dir, "modcache", "cache", "download", "git.test", "repo", "@v", "v1.1.0.zip*"))
	if _, err := os.Stat(filepath.Join(dir, "modcache", "git.test", "repo@v1.1.0")); !errors.Is(err, fs.ErrNotExist) || len(left) != 0 {
		t.Errorf("after the zip: unpacked tree %v, zip files %q; want neither", err, left)
	}
}

func TestDirectNotFoundAndFailures(t *testing.T) {
	f := newDirectFixture(t)
	d, _ := f.direct(t, 0)
	for _, r := range []Request{
		{Kind: KindInfo, Module: "git.test/repo", Version: "v9.9.9"},
		{Kind: KindMod, Module: "git.test/repo", Version: "v9.9.9"},
		{Kind: KindZip, Module: "git.test/repo", Version: "v9.9.9"},
		{Kind: KindList, Module: "git.test/nothing"},
		{Kind: KindLatest, Module: "git.test/nothing"},
		{Kind: KindInfo, Module: "git.test/repo/v2", Version: "v2.0.0"},
	} {
		_, err := fetchBody(t, d, r)
		var de *DirectError
		if !errors.Is(err, fs.ErrNotExist) || !errors.As(err, &de) || de.Class() != "direct_not_found" {
			t.Errorf("%s: %v; want a not-found DirectError", r, err)
		}
	}

	// An origin that fails is not a missing module: the client must not fall through.
	f.git.SetDown(true)
	_, err := fetchBody(t, d, Request{Kind: KindInfo, Module: "git.test/repo", Version: "v1.0.0"})
	var de *DirectError
	if err == nil || errors.Is(err, fs.ErrNotExist) || !errors.As(err, &de) || de.Class() != "direct_failed" {
		t.Errorf("origin down: %v; want a failure that is not not-found", err)
	}
	t.Logf("origin down: %v", err)
	if err != nil && !strings.Contains(err.Error(), "503") {
		t.Errorf("origin down: %q does not say what the origin answered", err)
	}
	f.git.SetDown(false)

	// git failing behind a working go-get front: git's message names the clone's
	// directory, which the client is not shown.
	f.git.SetGitDown(true)
	_, err = fetchBody(t, d, Request{Kind: KindInfo, Module: "git.test/repo", Version: "v1.0.0"})
	t.Logf("git down: %v", err)
	if err == nil || errors.Is(err, fs.ErrNotExist) || !strings.Contains(err.Error(), "$GOMODCACHE") || strings.Contains(err.Error(), d.modRoot) {
		t.Errorf("git down: %v; want a failure naming $GOMODCACHE, not the server's directory", err)
	}
	f.git.SetGitDown(false)
	st := d.Stats()
	if st.NotFound != 6 || st.Failed != 2 || st.OK != 0 || !st.LastFailed || !strings.Contains(st.LastError, "503") || st.Jobs != 4 || st.Runs == 0 {
		t.Errorf("Stats = %+v; want 6 not found, 2 failed (the last, its 503 kept), 4 jobs, some runs", st)
	}
	if _, err := fetchBody(t, d, Request{Kind: KindList, Module: "git.test/repo"}); err != nil {
		t.Fatal(err)
	}
	if st := d.Stats(); st.OK != 1 || st.LastFailed {
		t.Errorf("Stats after a success = %+v; want 1 ok and LastFailed cleared", st)
	}
}

// A hung origin costs the timeout, and the run is killed with the git processes it
// started.
func TestDirectTimeoutKillsTheRun(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("reads /proc")
	}
	f := newDirectFixture(t)
	d, dir := f.direct(t, 3*time.Second)
	f.git.SetStall(true)
	defer f.git.SetStall(false)
	start := time.Now()
	_, err := fetchBody(t, d, Request{Kind: KindMod, Module: "git.test/repo", Version: "v1.0.0"})
	took := time.Since(start)
	var de *DirectError
	if !errors.As(err, &de) || !de.Timeout() || errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("stalled origin: %v; want a timeout", err)
	}
	if took > 20*time.Second {
		t.Errorf("the run took %s to end; timeout 3s", took)
	}
	// Every process of the run worked in dir (the go command in work/, git in the module
	// cache): none may be left.
	deadline := time.Now().Add(5 * time.Second)
	for {
		left := lab.ProcessesUnder(dir)
		if len(left) == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("processes left behind: %q", left)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// Close kills the runs going, even one whose caller still waits (a run shared by callers
// that all gave up is another), with the git processes they started, and returns once
// they are gone: holoproxy calls it before exiting, when the kernel would kill only the
// go command. Fetches after Close fail as canceled.
func TestDirectCloseKillsRuns(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("reads /proc")
	}
	f := newDirectFixture(t)
	d, dir := f.direct(t, time.Minute)
	f.git.SetStall(true)
	defer f.git.SetStall(false)
	errs := make(chan error, 1)
	go func() {
		_, err := d.Client().Fetch(context.Background(), Request{Kind: KindMod, Module: "git.test/repo", Version: "v1.0.0"})
		errs <- err
	}()
	lab.WaitForProcessUnder(t, dir, "git", 20*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := d.Close(ctx); err != nil {
		t.Fatalf("Close: %v", err)
	}
	// Killed with SIGKILL and reaped (the go command) or gone to init (git): no process
	// of the run may still work in dir once Close returned.
	if left := lab.ProcessesUnder(dir); len(left) > 0 {
		t.Errorf("processes left after Close: %q", left)
	}
	select {
	case err := <-errs:
		if DirectResult(err) != "canceled" {
			t.Errorf("the fetch whose run Close killed: %v (%s); want canceled", err, DirectResult(err))
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the fetch whose run Close killed did not return")
	}
	_, err := d.Client().Fetch(context.Background(), Request{Kind: KindList, Module: "git.test/repo"})
	if DirectResult(err) != "canceled" {
		t.Errorf("fetch after Close: %v; want canceled", err)
	}
}

// Runs beyond Jobs wait for a slot; a waiting run gives up with its context.
func TestDirectJobsBound(t *testing.T) {
	f := newDirectFixture(t)
	d, err := NewDirect(context.Background(), DirectConfig{Dir: t.TempDir(), Env: f.git.Env(), Jobs: 1})
	if err != nil {
		t.Fatal(err)
	}
	f.git.SetStall(true)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		d.Client().Fetch(ctx, Request{Kind: KindList, Module: "git.test/repo"})
	}()
	deadline := time.Now().Add(10 * time.Second)
	for d.Running() == 0 && time.Now().Before(deadline) { // the first run takes the only slot
		time.Sleep(10 * time.Millisecond)
	}
	runs := d.Runs()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	start := time.Now()
	_, err = d.Client().Fetch(ctx, Request{Kind: KindLatest, Module: "git.test/repo"}) // another run, not a share of the first
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) < 300*time.Millisecond || d.Runs() != runs {
		t.Errorf("second run with the only slot taken: %v after %s, %d more runs; want it to wait, start nothing and give up",
			err, time.Since(start), d.Runs()-runs)
	}
	f.git.SetStall(false)
	wg.Wait()
}

// A cache directory inside a Go module (a checkout's ./cache) still works: the runs then
// work from the root, outside the module, which would otherwise answer for them.
func TestNewDirectInsideAModule(t *testing.T) {
	f := newDirectFixture(t)
	mod := t.TempDir()
	gomod := "module git.test/other\n\ngo 1.21\n\nexclude git.test/repo v1.1.0\n"
	if err := os.WriteFile(filepath.Join(mod, "go.mod"), []byte(gomod), 0o644); err != nil {
		t.Fatal(err)
	}
	d, err := NewDirect(context.Background(), DirectConfig{Dir: filepath.Join(mod, "cache", "direct"), Env: f.git.Env()})
	if err != nil {
		t.Fatal(err)
	}
	// Inside the module, its exclude would hide v1.1.0 from @latest.
	b, err := fetchBody(t, d, Request{Kind: KindLatest, Module: "git.test/repo"})
	if err != nil || !strings.Contains(string(b), `"Version":"v1.1.0"`) {
		t.Errorf("@latest from a Direct whose directory is inside a module: %s, %v; want v1.1.0", b, err)
	}
	if _, err := NewDirect(context.Background(), DirectConfig{Dir: t.TempDir(), Go: "/nonexistent/go"}); err == nil {
		t.Error("NewDirect with a missing go command: no error")
	}
}

func TestDirectClassify(t *testing.T) {
	for _, tc := range []struct {
		msg      string
		notFound bool
	}{
		{"git.test/repo@v9.9.9: invalid version: unknown revision v9.9.9", true},
		{"git.test/nope@latest: unrecognized import path \"git.test/nope\": reading https://git.test/nope?go-get=1: 404 Not Found", true},
		{"x.test/m@v1.0.0: unrecognized import path \"x.test/m\": https fetch: Get \"https://x.test/m?go-get=1\": dial tcp: lookup x.test: no such host", true},
		{"git.test/m@v1.0.0: invalid version: git ls-remote -q https://git.test/m.git: exit status 128:\n\tfatal: repository 'https://git.test/m.git/' not found", true},
		{"git.test/m@v1.0.0: invalid version: git ls-remote: exit status 128: fatal: could not read Username for 'https://git.test': terminal prompts disabled", true},
		{"git.test/m@latest: unrecognized import path \"git.test/m\": https fetch: Get \"https://git.test/m?go-get=1\": dial tcp 10.0.0.1:443: connect: connection refused", false},
		{"git.test/m@v1.0.0: invalid version: git fetch: exit status 128: fatal: unable to access 'https://git.test/m.git/': The requested URL returned error: 503", false},
		{"git.test/m@v1.0.0: reading https://git.test/m?go-get=1: tls: failed to verify certificate: x509: certificate signed by unknown authority", false},
		{"go: something nobody expected", false},
	} {
		if got := classify(tc.msg); got.NotFound != tc.notFound {
			t.Errorf("classify(%q).NotFound = %v; want %v", tc.msg, got.NotFound, tc.notFound)
		}
	}
}

func modVersion(path, version string) module.Version {
	return module.Version{Path: path, Version: version}
}

// A module path with upper-case letters: the go command keeps its files under the
// case-encoded path, where Direct finds what a run left.
func TestDirectCaseEncodedPath(t *testing.T) {
	f := newDirectFixture(t)
	f.git.Commit(t, "git.test/CamelCase", map[string]*string{
		"go.mod": str("module git.test/CamelCase\n\ngo 1.21\n"),
		"c.go":   str("package camelcase\n"),
	}, "v0.2.0")
	d, dir := f.direct(t, 0)
	mod, err := fetchBody(t, d, Request{Kind: KindMod, Module: "git.test/CamelCase", Version: "v0.2.0"})
	if err != nil || string(mod) != "module git.test/CamelCase\n\ngo 1.21\n" {
		t.Fatalf(".mod: %q, %v", mod, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "modcache", "cache", "download", "git.test", "!camel!case", "@v", "v0.2.0.info")); err != nil {
		t.Fatalf("the run left no case-encoded .info: %v", err)
	}
	runs := d.Runs()
	if _, err := fetchBody(t, d, Request{Kind: KindInfo, Module: "git.test/CamelCase", Version: "v0.2.0"}); err != nil {
		t.Fatal(err)
	}
	if _, err := fetchBody(t, d, Request{Kind: KindZip, Module: "git.test/CamelCase", Version: "v0.2.0"}); err != nil {
		t.Fatal(err)
	}
	if got := d.Runs() - runs; got != 1 {
		t.Errorf(".info and .zip after the .mod started %d runs; want 1 (the zip's)", got)
	}
}

// A version's .info and .mod asked at once (the go command and the prefetcher do) are one
// run of the go command, not two.
func TestDirectMergesTheSameRun(t *testing.T) {
	f := newDirectFixture(t)
	d, _ := f.direct(t, 0)
	f.git.SetStall(true)
	runs := d.Runs()
	var wg sync.WaitGroup
	errs := make([]error, 2)
	for i, kind := range []Kind{KindMod, KindInfo} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, errs[i] = fetchBody(t, d, Request{Kind: kind, Module: "git.test/repo", Version: "v1.1.0"})
		}()
		if i == 0 {
			deadline := time.Now().Add(10 * time.Second)
			for d.Running() == 0 && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
		}
	}
	time.Sleep(300 * time.Millisecond) // the second is waiting by now, on a run or on the first's
	running := d.Running()
	f.git.SetStall(false)
	wg.Wait()
	if errs[0] != nil || errs[1] != nil {
		t.Fatalf("fetches: %v, %v", errs[0], errs[1])
	}
	if got := d.Runs() - runs; got != 1 || running != 1 {
		t.Errorf("the .mod and .info of one version asked at once: %d runs (%d at once); want 1", got, running)
	}
}

// git gives up on a repository that stalls (nothing received for StallTimeout) well
// before the run's timeout: a failure, not a timeout, and not a missing module.
func TestDirectGitStallTimeout(t *testing.T) {
	f := newDirectFixture(t)
	d, err := NewDirect(context.Background(), DirectConfig{Dir: t.TempDir(), Env: f.git.Env(), StallTimeout: 2 * time.Second,
		Timeout: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	f.git.SetStall(true)
	defer f.git.SetStall(false)
	start := time.Now()
	_, err = fetchBody(t, d, Request{Kind: KindMod, Module: "git.test/repo", Version: "v1.0.0"})
	took := time.Since(start)
	var de *DirectError
	if !errors.As(err, &de) || de.Class() != "direct_failed" || took > 15*time.Second {
		t.Errorf("stalled repository, 2s stall timeout: %v after %s; want a failure within seconds", err, took)
	}
	t.Logf("%s: %v", took, err)
}

// Background fetches (prefetches) hold at most half the job slots: with those taken they
// wait, not counted as fetches, while a client's fetch still gets a slot; promoted while
// waiting, a background fetch goes on as a client's.
func TestDirectBackgroundShare(t *testing.T) {
	f := newDirectFixture(t)
	d, err := NewDirect(context.Background(), DirectConfig{Dir: t.TempDir(), Env: f.git.Env(), Jobs: 2})
	if err != nil {
		t.Fatal(err)
	}
	bgCtx := func(parent context.Context) context.Context { return WithBackground(parent, &Background{}) }
	f.git.SetStall(true)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { // a background run that holds the one background slot
		defer wg.Done()
		ctx, cancel := context.WithTimeout(bgCtx(context.Background()), 5*time.Second)
		defer cancel()
		d.Client().Fetch(ctx, Request{Kind: KindList, Module: "git.test/repo"})
	}()
	deadline := time.Now().Add(10 * time.Second)
	for d.Running() == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if d.Running() != 1 {
		t.Fatalf("%d runs going; want the background one", d.Running())
	}
	runs, before := d.Runs(), d.Stats()
	ctx, cancel := context.WithTimeout(bgCtx(context.Background()), 300*time.Millisecond)
	defer cancel()
	_, err = d.Client().Fetch(ctx, Request{Kind: KindLatest, Module: "git.test/repo"})
	if !errors.Is(err, context.DeadlineExceeded) || d.Runs() != runs {
		t.Errorf("second background fetch: %v, %d more runs; want it to wait for the background slot, start nothing and give up", err, d.Runs()-runs)
	}
	if after := d.Stats(); after.OK != before.OK || after.Failed != before.Failed || after.NotFound != before.NotFound || after.TimedOut != before.TimedOut {
		t.Errorf("an abandoned background fetch was counted: %+v -> %+v", before, after)
	}
	// A background fetch waiting for the background slot, promoted, takes the free slot.
	b := &Background{}
	promotedDone := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(WithBackground(context.Background(), b), 600*time.Millisecond)
		defer cancel()
		_, err := d.Client().Fetch(ctx, Request{Kind: KindInfo, Module: "git.test/repo", Version: "v1.0.0"})
		promotedDone <- err
	}()
	time.Sleep(100 * time.Millisecond)
	if d.Runs() != runs {
		t.Errorf("a background fetch started a run with the background slot taken")
	}
	b.Promote()
	if err := <-promotedDone; !errors.Is(err, context.DeadlineExceeded) || d.Runs() != runs+1 {
		t.Errorf("promoted background fetch: %v, %d more runs; want one run (cut by its deadline on the stalled origin)", err, d.Runs()-runs)
	}
	f.git.SetStall(false)
	wg.Wait()

	// One job: background fetches never run; promoted, one does.
	d1, err := NewDirect(context.Background(), DirectConfig{Dir: t.TempDir(), Env: f.git.Env(), Jobs: 1})
	if err != nil {
		t.Fatal(err)
	}
	r0 := d1.Runs() // NewDirect's go env
	if _, err := d1.Client().Fetch(bgCtx(context.Background()), Request{Kind: KindList, Module: "git.test/repo"}); !errors.Is(err, ErrDirectBusy) || d1.Runs() != r0 {
		t.Errorf("background fetch with one job: %v, %d runs; want ErrDirectBusy, none", err, d1.Runs()-r0)
	}
	b1 := &Background{}
	b1.Promote()
	pctx, pcancel := context.WithTimeout(WithBackground(context.Background(), b1), 2*time.Minute)
	defer pcancel()
	resp, err := d1.Client().Fetch(pctx, Request{Kind: KindList, Module: "git.test/repo"})
	if err != nil {
		t.Fatalf("promoted background fetch: %v", err)
	}
	list, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || string(list) != "v1.0.0\nv1.1.0\n" || d1.Runs() != r0+1 {
		t.Errorf("promoted background fetch: %q, %v, %d runs; want the list from one run", list, err, d1.Runs()-r0)
	}
}

// Prune keeps the runs' directory under a size by removing the clones used longest ago;
// what goes is fetched again when asked for.
func TestDirectPrune(t *testing.T) {
	f := newDirectFixture(t)
	f.git.Commit(t, "git.test/other", map[string]*string{"go.mod": str("module git.test/other\n\ngo 1.21\n")}, "v0.1.0")
	d, _ := f.direct(t, time.Minute)
	ctx := context.Background()
	for _, r := range []Request{
		{Kind: KindZip, Module: "git.test/repo", Version: "v1.0.0"},
		{Kind: KindZip, Module: "git.test/other", Version: "v0.1.0"},
	} {
		if _, err := fetchBody(t, d, r); err != nil {
			t.Fatalf("%s: %v", r, err)
		}
	}
	size, err := d.Size(ctx)
	if err != nil || size == 0 {
		t.Fatalf("Size = %d, %v", size, err)
	}
	if res, err := d.Prune(ctx, size, size); err != nil || res.Clones != 0 || res.After != size {
		t.Fatalf("Prune at its size: %+v, %v; want nothing removed", res, err)
	}
	// git.test/repo's clone was used longest ago.
	infos, _ := filepath.Glob(filepath.Join(d.modRoot, "cache", "vcs", "*.info"))
	if len(infos) != 2 {
		t.Fatalf("clones' .info files: %v; want two", infos)
	}
	old := time.Now().Add(-time.Hour)
	for _, p := range infos {
		if key, _ := os.ReadFile(p); strings.Contains(string(key), "git.test/repo") {
			os.Chtimes(p, old, old)
		}
	}
	res, err := d.Prune(ctx, size-1, size-1)
	if err != nil || res.Clones != 1 || len(res.Removed) != 1 || !strings.Contains(res.Removed[0], "git.test/repo") || res.After >= size || res.Bytes == 0 {
		t.Fatalf("Prune one byte under: %+v, %v; want git.test/repo's clone removed", res, err)
	}
	if left, _ := filepath.Glob(filepath.Join(d.modRoot, "cache", "vcs", "*.info")); len(left) != 1 {
		t.Errorf("clones left: %v; want git.test/other's", left)
	}
	// What went is fetched again.
	if body, err := fetchBody(t, d, Request{Kind: KindList, Module: "git.test/repo"}); err != nil || string(body) != "v1.0.0\nv1.1.0\n" {
		t.Errorf("list after its clone went: %q, %v", body, err)
	}
	// Nothing allowed: every clone, and the files runs left, go.
	res, err = d.Prune(ctx, 0, 0)
	if err != nil || res.Clones != 2 {
		t.Fatalf("Prune to nothing: %+v, %v; want both clones removed", res, err)
	}
	if _, err := os.Stat(d.cacheFile("git.test/other", "v0.1.0", "mod")); !os.IsNotExist(err) {
		t.Errorf("the .mod a run left is still there after Prune to nothing: %v", err)
	}
	if body, err := fetchBody(t, d, Request{Kind: KindMod, Module: "git.test/other", Version: "v0.1.0"}); err != nil || !strings.HasPrefix(string(body), "module git.test/other") {
		t.Errorf(".mod after everything went: %q, %v", body, err)
	}
}

// FuzzDirectModuleOutput checks the reading of what a run of `go list -m -json` or `go mod
// download -json` printed (its JSON carries the messages of git and of the origins): a
// module with a path, or a failure whose message, which clients are shown, is one valid
// UTF-8 line that does not name the runs' module cache.
func FuzzDirectModuleOutput(f *testing.F) {
	const modRoot = "/srv/direct/modcache"
	long := strings.Repeat("é", 300)
	for _, s := range []string{
		`{"Path":"mods.test/m","Version":"v1.0.0","GoMod":"/srv/direct/modcache/cache/download/mods.test/m/@v/v1.0.0.mod"}`,
		`{"Path":"mods.test/m","Versions":["v1.0.0","v1.1.0"]}`, `{"Path":"mods.test/m","Error":{"Err":"unknown revision v9"}}`,
		`{"Path":"mods.test/m","Error":"git ls-remote failed:\n\tfatal: ` + modRoot + `/cache/vcs/1: not found"}`,
		`{"Path":"mods.test/m","Error":"` + long + `"}`, `{"Path":"mods.test/m","Error":"x` + long + `"}`,
		`{"Path":"mods.test/m","Error":{"Err":""}}`, `{"Error":null}`,
		`{"Path":"mods.test/m","Error":[1,2]}`, `{}`, `  `, `not json`, `{"Path":"m"}{"Path":"n"}`, `{"Path":"\ud800"}`,
	} {
		f.Add([]byte(s), false)
	}
	f.Add([]byte(`{"Path":"mods.test/m","Error":"exit status 1"}`), true)
	d := &Direct{root: "/srv/direct", modRoot: modRoot, hide: hideReplacer("/srv/direct", modRoot)}
	args := []string{"list", "-m", "-e", "-json", "mods.test/m@v1.0.0"}
	f.Fuzz(func(t *testing.T, out []byte, failed bool) {
		var runErr error
		if failed {
			runErr = &DirectError{Msg: "go list failed: exit status 1"}
		}
		m, err := d.moduleOf(out, runErr, args)
		if err == nil {
			if m == nil || m.Path == "" {
				t.Fatalf("moduleOf(%q) = %+v without a path", out, m)
			}
			return
		}
		var de *DirectError
		if !errors.As(err, &de) {
			t.Fatalf("moduleOf(%q): %T %v; want a *DirectError", out, err, err)
		}
		if msg := err.Error(); strings.ContainsAny(msg, "\r\n") || !utf8.ValidString(msg) || strings.Contains(msg, modRoot) {
			t.Fatalf("moduleOf(%q): message %q; want one valid UTF-8 line without %s", out, msg, modRoot)
		}
	})
}
