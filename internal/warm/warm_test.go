package warm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/mod/module"

	"github.com/holoproxy/holoproxy/internal/checksum"
	"github.com/holoproxy/holoproxy/internal/checksum/sumdbtest"
	"github.com/holoproxy/holoproxy/internal/goproxy"
	"github.com/holoproxy/holoproxy/internal/lab/modtree"
	"github.com/holoproxy/holoproxy/internal/netobs"
	"github.com/holoproxy/holoproxy/internal/server"
	"github.com/holoproxy/holoproxy/internal/store"
)

// fixture is a generated module graph served by an origin, and an app that needs it.
type fixture struct {
	mods  []modtree.Module
	roots []module.Version
	tree  string // the origin's GOPROXY tree
	app   string // the app's directory (go.mod, go.sum, main.go)
	sum   []byte
}

func newFixture(t *testing.T, n int) *fixture {
	t.Helper()
	tmp := t.TempDir()
	mods, roots := modtree.Graph("mods.test/g", n, 3, 3)
	extra := []modtree.Module{
		{Path: "mods.test/Upper/Case", Version: "v1.0.0"},
		{Path: "mods.test/pseudo", Version: "v0.0.0-20240102030405-abcdefabcdef"},
	}
	mods = append(mods, extra...)
	for _, e := range extra {
		roots = append(roots, e.ID())
	}
	f := &fixture{mods: mods, roots: roots, tree: filepath.Join(tmp, "origin"), app: filepath.Join(tmp, "app")}
	if err := modtree.Write(f.tree, mods); err != nil {
		t.Fatal(err)
	}
	var err error
	if f.sum, err = modtree.AppGoSum(mods, roots); err != nil {
		t.Fatal(err)
	}
	if err := modtree.WriteApp(f.app, "app.test/main", mods, roots, f.sum); err != nil {
		t.Fatal(err)
	}
	return f
}

// origin serves dir as a GOPROXY on 127.0.0.1, counting requests. hook, when set, may
// answer a request itself (returning true).
type origin struct {
	*httptest.Server
	requests atomic.Int64
	hook     atomic.Pointer[func(w http.ResponseWriter, r *http.Request) bool]
}

func newOrigin(t *testing.T, dir string) *origin {
	t.Helper()
	o := &origin{}
	fsrv := http.FileServer(http.Dir(dir))
	o.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		o.requests.Add(1)
		if h := o.hook.Load(); h != nil && (*h)(w, r) {
			return
		}
		fsrv.ServeHTTP(w, r)
	}))
	t.Cleanup(o.Close)
	return o
}

// newChain returns a chain over list whose exchanges are recorded in samples.
func newChain(t *testing.T, list string, samples netobs.Sink) *goproxy.Chain {
	t.Helper()
	tr, err := netobs.NewTransport(netobs.TransportConfig{Sink: samples})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tr.CloseIdleConnections)
	c, err := goproxy.ParseChain(list, tr.Client())
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// goCmd runs the real go command in dir with a hermetic environment plus env.
func goCmd(t *testing.T, dir string, env []string, args ...string) (string, error) {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command on PATH")
	}
	tmp := t.TempDir()
	cmd := exec.Command(goBin, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(),
		"GOSUMDB=off", "GOTOOLCHAIN=local", "GOWORK=off", "GOFLAGS=-mod=mod", "GOENV=off",
		"GOPATH="+filepath.Join(tmp, "gopath"), "GOCACHE="+filepath.Join(tmp, "gocache"),
		"GOMODCACHE="+filepath.Join(tmp, "modcache"), "GOPROXY=off", "GONOSUMDB=", "GOPRIVATE=")
	cmd.Env = append(cmd.Env, env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func TestLoadPlan(t *testing.T) {
	dir := t.TempDir()
	write := func(name, data string) {
		t.Helper()
		p := filepath.Join(dir, name)
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	const h1 = "h1:AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="
	const h2 = "h1:BBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBBB="
	write("a/go.mod", "module a.test/a\n\ngo 1.22\n\ntoolchain go1.22.3\n")
	write("a/go.sum", "x.test/m v1.0.0 "+h1+"\nx.test/m v1.0.0/go.mod "+h2+"\nx.test/old v0.1.0/go.mod "+h1+"\n")
	write("b/go.mod", "module a.test/b\n\ngo 1.22\n")
	write("b/go.sum", "x.test/m v1.0.0/go.mod "+h2+"\nx.test/n v2.0.0+incompatible/go.mod "+h1+"\n")
	write("go.work", "go 1.22\n\nuse (\n\t./a\n\t./b\n)\n")
	write("go.work.sum", "x.test/w v1.2.3 "+h2+"\nx.test/w v1.2.3/go.mod "+h1+"\n")
	write("c/go.mod", "module a.test/c\n")
	write("c/go.sum", "x.test/m v1.0.0 "+h2+"\n")

	tests := []struct {
		name    string
		args    []string
		opt     LoadOptions
		want    []string // module@version zip? in order
		wantErr error
	}{
		{"go.mod", []string{filepath.Join(dir, "a", "go.mod")}, LoadOptions{},
			[]string{"x.test/m@v1.0.0 zip", "x.test/old@v0.1.0 mod"}, nil},
		{"dir with go.work", []string{dir}, LoadOptions{},
			[]string{"x.test/m@v1.0.0 zip", "x.test/n@v2.0.0+incompatible mod", "x.test/old@v0.1.0 mod", "x.test/w@v1.2.3 zip"}, nil},
		{"toolchain", []string{filepath.Join(dir, "a")}, LoadOptions{Toolchain: true, GOOS: "linux", GOARCH: "arm64"},
			[]string{"golang.org/toolchain@v0.0.1-go1.22.3.linux-arm64 zip", "x.test/m@v1.0.0 zip", "x.test/old@v0.1.0 mod"}, nil},
		// In a workspace, go.work's lines choose the toolchain ("go 1.22": go1.22.0), not
		// module a's toolchain line.
		{"toolchain of a workspace", []string{dir}, LoadOptions{Toolchain: true, GOOS: "linux", GOARCH: "arm64"},
			[]string{"golang.org/toolchain@v0.0.1-go1.22.0.linux-arm64 zip", "x.test/m@v1.0.0 zip", "x.test/n@v2.0.0+incompatible mod", "x.test/old@v0.1.0 mod", "x.test/w@v1.2.3 zip"}, nil},
		{"conflicting hashes", []string{filepath.Join(dir, "a"), filepath.Join(dir, "c")}, LoadOptions{}, nil, nil},
		{"missing", []string{filepath.Join(dir, "nope")}, LoadOptions{}, nil, ErrUsage},
		{"not a project file", []string{filepath.Join(dir, "a", "go.sum")}, LoadOptions{}, nil, ErrUsage},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := Load(tt.args, tt.opt)
			if tt.want == nil {
				if err == nil {
					t.Fatalf("Load succeeded with %d items; want an error", len(p.Items))
				}
				if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
					t.Fatalf("error %v; want %v", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, it := range p.Items {
				kind := "mod"
				if it.Zip {
					kind = "zip"
				}
				got = append(got, it.String()+" "+kind)
			}
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Errorf("plan:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tt.want, "\n"))
			}
		})
	}
	p, err := Load([]string{dir}, LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, it := range p.Items {
		if it.Mod.Path == "x.test/m" && (it.ZipHash != h1 || it.ModHash != h2) {
			t.Errorf("x.test/m hashes %s %s; want %s %s", it.ZipHash, it.ModHash, h1, h2)
		}
	}
	if got := p.Files(); got != 2*2+2*3 {
		t.Errorf("Files() = %d; want 10", got)
	}
}

// TestWarmBuildsOffline warms a fixture app into a GOPROXY tree and into a GOMODCACHE in
// one run, then builds the app with the real go command from each with no network.
func TestWarmBuildsOffline(t *testing.T) {
	f := newFixture(t, 20)
	o := newOrigin(t, f.tree)
	ctx := context.Background()
	plan, err := Load([]string{f.app}, LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	out := t.TempDir()
	treeDir, cacheDir := filepath.Join(out, "tree"), filepath.Join(out, "modcache")
	tree, err := NewTreeDest(treeDir, false)
	if err != nil {
		t.Fatal(err)
	}
	cache, err := NewModCacheDest(cacheDir, false)
	if err != nil {
		t.Fatal(err)
	}
	dests := []Dest{tree, cache}

	missing, err := Check(ctx, plan, dests, 4)
	if err != nil {
		t.Fatal(err)
	}
	if want := 2 * plan.Files(); len(missing) != want {
		t.Errorf("Check before warm: %d missing; want %d (every file, both destinations)", len(missing), want)
	}

	var samples Samples
	res, err := Run(ctx, plan, Config{Chain: newChain(t, o.URL, &samples), Dests: dests, Jobs: 8})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Failures) > 0 {
		t.Fatalf("failures: %v", res.Failures)
	}
	if res.Fetched != plan.Files() || res.Present != 0 {
		t.Errorf("fetched %d, present %d; want %d fetched once for both destinations", res.Fetched, res.Present, plan.Files())
	}
	if n := int(o.requests.Load()); n != plan.Files() {
		t.Errorf("origin got %d requests; want %d (one per file)", n, plan.Files())
	}
	if len(samples.All()) != plan.Files() {
		t.Errorf("%d samples; want %d", len(samples.All()), plan.Files())
	}
	if missing, err := Check(ctx, plan, dests, 4); err != nil || len(missing) != 0 {
		t.Errorf("Check after warm: %d missing (%v), err %v; want none", len(missing), missing, err)
	}
	// The GOMODCACHE holds the .ziphash files the go command trusts its zips by.
	for _, it := range plan.Items {
		if !it.Zip {
			continue
		}
		esc, _ := module.EscapePath(it.Mod.Path)
		b, err := os.ReadFile(filepath.Join(cacheDir, "cache", "download", esc, "@v", it.Mod.Version+".ziphash"))
		if err != nil || string(b) != it.ZipHash {
			t.Errorf("%s .ziphash = %q, %v; want %s", it, b, err, it.ZipHash)
		}
	}
	o.Close() // no network from here on

	// From the tree, with an empty module cache.
	if out, err := goCmd(t, f.app, []string{"GOPROXY=file://" + filepath.ToSlash(treeDir)}, "build", "-o", filepath.Join(t.TempDir(), "app"), "."); err != nil {
		t.Fatalf("go build from the tree: %v\n%s", err, out)
	}
	// The version lists answer queries offline: a v1.1.0 exists for every fifth module.
	var multi string
	for _, m := range f.mods {
		if m.Version == "v1.1.0" {
			multi = m.Path
			break
		}
	}
	lout, err := goCmd(t, f.app, []string{"GOPROXY=file://" + filepath.ToSlash(treeDir)}, "list", "-m", "-versions", multi)
	if err != nil {
		t.Fatalf("go list -m -versions from the tree: %v\n%s", err, lout)
	}
	if got := strings.Fields(lout); len(got) < 2 || got[0] != multi {
		t.Errorf("go list -m -versions %s = %q; want the versions warmed", multi, lout)
	} else {
		for _, v := range got[1:] {
			if !strings.HasPrefix(v, "v1.") {
				t.Errorf("listed version %q", v)
			}
		}
	}
	// From the module cache with the network off.
	if out, err := goCmd(t, f.app, []string{"GOPROXY=off", "GOMODCACHE=" + cacheDir}, "build", "-o", filepath.Join(t.TempDir(), "app"), "."); err != nil {
		t.Fatalf("go build from the module cache with GOPROXY=off: %v\n%s", err, out)
	}
	if out, err := goCmd(t, f.app, []string{"GOPROXY=off", "GOMODCACHE=" + cacheDir}, "mod", "verify"); err != nil {
		t.Fatalf("go mod verify on the warmed cache: %v\n%s", err, out)
	}
}

// TestTamperedZipFails serves one zip that is not the one go.sum records: warm fails for
// that module version, naming it, the upstream and both hashes, and writes none of its
// files, while every other module is warmed.
func TestTamperedZipFails(t *testing.T) {
	f := newFixture(t, 8)
	o := newOrigin(t, f.tree)
	ctx := context.Background()
	plan, err := Load([]string{f.app}, LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var victim Item
	for _, it := range plan.Items {
		if it.Zip {
			victim = it
			break
		}
	}
	// Replace the victim's zip with another module's zip (a valid zip, the wrong content).
	var other []byte
	for _, m := range f.mods {
		if m.ID() != victim.Mod {
			if other, err = m.Zip(); err != nil {
				t.Fatal(err)
			}
			break
		}
	}
	zipPath := "/" + (goproxy.Request{Kind: goproxy.KindZip, Module: victim.Mod.Path, Version: victim.Mod.Version}).Path()
	hook := func(w http.ResponseWriter, r *http.Request) bool {
		if r.URL.Path != zipPath {
			return false
		}
		w.Write(other)
		return true
	}
	o.hook.Store(&hook)
	gotHash, err := modtree.HashZipBytes(other)
	if err != nil {
		t.Fatal(err)
	}

	treeDir := t.TempDir()
	tree, err := NewTreeDest(treeDir, false)
	if err != nil {
		t.Fatal(err)
	}
	res, err := Run(ctx, plan, Config{Chain: newChain(t, o.URL, nil), Dests: []Dest{tree}, Jobs: 4})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Failures) != 1 || res.Failures[0].Item.Mod != victim.Mod {
		t.Fatalf("failures %v; want exactly %s", res.Failures, victim)
	}
	ferr := res.Failures[0].Err
	var mm *MismatchError
	if !errors.As(ferr, &mm) || !errors.Is(ferr, checksum.ErrChecksumMismatch) {
		t.Fatalf("failure %v is not a checksum mismatch", ferr)
	}
	msg := ferr.Error()
	for _, want := range []string{victim.String(), o.URL, victim.ZipHash, gotHash} {
		if !strings.Contains(msg, want) {
			t.Errorf("failure %q does not name %q", msg, want)
		}
	}
	for _, file := range victim.files() {
		if _, err := os.Stat(filepath.Join(treeDir, filepath.FromSlash(file.Key()))); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s written for the tampered module (stat: %v)", file.Key(), err)
		}
	}
	missing, err := Check(ctx, plan, []Dest{tree}, 4)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range missing {
		if m.File.Req.Module != victim.Mod.Path || m.File.Req.Version != victim.Mod.Version {
			t.Errorf("%s missing; only the tampered module's files should be", m.File)
		}
	}
	if len(missing) != len(victim.files()) {
		t.Errorf("%d files missing; want the tampered module's %d", len(missing), len(victim.files()))
	}
}

// TestSumDBMismatchFails warms with the checksum database check on: a module version whose
// go.sum hash matches the origin but not the database's record fails, named with the
// database as the authority; every other module is verified by the database and stored.
func TestSumDBMismatchFails(t *testing.T) {
	f := newFixture(t, 6)
	o := newOrigin(t, f.tree)
	plan, err := Load([]string{f.app}, LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	var victim modtree.Module
	var others []modtree.Module
	for _, m := range f.mods {
		if victim.Path == "" && m.ID() == plan.Items[0].Mod {
			victim = m
			continue
		}
		others = append(others, m)
	}
	db := sumdbtest.New(t, others)
	const fake = "h1:ZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZZ="
	if err := db.AddRecord(victim.Path, victim.Version,
		victim.Path+" "+victim.Version+" "+fake, victim.Path+" "+victim.Version+"/go.mod "+fake); err != nil {
		t.Fatal(err)
	}
	v, err := checksum.NewVerifier(checksum.VerifierConfig{
		DB:      checksum.SumDB{Name: db.Name, Key: db.Key, URL: db.URL},
		Dir:     t.TempDir(),
		BaseURL: checksum.FixedBaseURL(db.URL),
	})
	if err != nil {
		t.Fatal(err)
	}
	tree, err := NewTreeDest(t.TempDir(), false)
	if err != nil {
		t.Fatal(err)
	}
	res, err := Run(context.Background(), plan, Config{Chain: newChain(t, o.URL, nil), Dests: []Dest{tree}, Verifier: v})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.Failures) != 1 || res.Failures[0].Item.Mod != victim.ID() {
		t.Fatalf("failures %v; want exactly %s", res.Failures, victim.ID())
	}
	var mm *MismatchError
	if !errors.As(res.Failures[0].Err, &mm) || mm.Against != "checksum database" || mm.Want != fake {
		t.Errorf("failure %v; want a mismatch against the checksum database's %s", res.Failures[0].Err, fake)
	}
	if st := v.Stats(); st.Verified == 0 || st.Mismatches == 0 {
		t.Errorf("verifier stats %+v; want verified files and a mismatch", st)
	}
	missing, err := Check(context.Background(), plan, []Dest{tree}, 4)
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range missing {
		if m.File.Req.Module != victim.Path {
			t.Errorf("%s missing; only %s should be", m.File, victim.ID())
		}
	}
}

// TestPushFillsProxy warms a running holoproxy server (its handler over a disk store, in
// front of the origin): afterwards the server's store holds every file of the plan,
// verified, and a second push is answered from that cache without asking the origin.
func TestPushFillsProxy(t *testing.T) {
	f := newFixture(t, 8)
	o := newOrigin(t, f.tree)
	plan, err := Load([]string{f.app}, LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cacheDir := t.TempDir()
	disk, err := store.OpenDisk(cacheDir)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := server.New(server.Config{Store: disk, Chain: newChain(t, o.URL, nil), Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { srv.Close(context.Background()) })
	proxy := httptest.NewServer(srv)
	t.Cleanup(proxy.Close)

	// The chain is the origin, but a push-only run never needs it: the proxy fetches.
	push := &PushDest{URL: proxy.URL, Client: proxy.Client()}
	for round := 1; round <= 2; round++ {
		res, err := Run(context.Background(), plan, Config{Chain: newChain(t, o.URL, nil), Dests: []Dest{push}, Jobs: 4})
		if err != nil {
			t.Fatal(err)
		}
		if len(res.Failures) > 0 {
			t.Fatalf("round %d: failures %v", round, res.Failures)
		}
		if n := int(o.requests.Load()); n != plan.Files() {
			t.Errorf("round %d: origin asked %d times; want %d (once per file, by the proxy)", round, n, plan.Files())
		}
	}
	// The server answers a fill from its verified temporary file and commits it (fsync,
	// rename) right after, so the last answers of a push may still be committing.
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := srv.Settle(ctx); err != nil {
		t.Fatal(err)
	}
	held, err := NewTreeDest(cacheDir, true)
	if err != nil {
		t.Fatal(err)
	}
	missing, err := Check(context.Background(), plan, []Dest{held}, 4)
	if err != nil || len(missing) != 0 {
		t.Errorf("proxy cache after push: %d missing %v (err %v)", len(missing), missing, err)
	}
}

// TestProgressLines checks the plain progress report: its last line counts every module
// and file of the plan and the bytes fetched; the bar form redraws in place.
func TestProgressLines(t *testing.T) {
	f := newFixture(t, 4)
	o := newOrigin(t, f.tree)
	plan, err := Load([]string{f.app}, LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, bar := range []bool{false, true} {
		var buf bytes.Buffer
		tree, err := NewTreeDest(t.TempDir(), false)
		if err != nil {
			t.Fatal(err)
		}
		p := NewProgress(&buf, bar, time.Millisecond)
		res, err := Run(context.Background(), plan, Config{Chain: newChain(t, o.URL, nil), Dests: []Dest{tree}, Progress: p})
		if err != nil || len(res.Failures) > 0 {
			t.Fatal(err, res.Failures)
		}
		out := buf.String()
		last := out[strings.LastIndex(strings.TrimSuffix(out, "\n"), "\n")+1:]
		if bar {
			last = out[strings.LastIndex(out, "\r")+1:]
			if !strings.Contains(last, "100%") || !strings.HasSuffix(out, "\n") {
				t.Errorf("bar: final draw %q; want 100%% and a newline", last)
			}
		}
		for _, want := range []string{
			fmt.Sprintf("%d/%d files", plan.Files(), plan.Files()),
			fmt.Sprintf("%d/%d modules", len(plan.Items), len(plan.Items)),
			FormatBytes(res.Bytes) + ",",
		} {
			if !strings.Contains(last, want) {
				t.Errorf("bar=%v: last progress line %q; want it to contain %q", bar, last, want)
			}
		}
	}
}

// TestFallThroughAndSummary warms through "A,B" where A knows no module: every file falls
// through to B (the ',' rule), and the summary shows both upstreams with their requests.
func TestFallThroughAndSummary(t *testing.T) {
	f := newFixture(t, 4)
	empty := newOrigin(t, t.TempDir())
	full := newOrigin(t, f.tree)
	plan, err := Load([]string{f.app}, LoadOptions{})
	if err != nil {
		t.Fatal(err)
	}
	tree, err := NewTreeDest(t.TempDir(), false)
	if err != nil {
		t.Fatal(err)
	}
	var samples Samples
	res, err := Run(context.Background(), plan, Config{Chain: newChain(t, empty.URL+","+full.URL, &samples), Dests: []Dest{tree}})
	if err != nil || len(res.Failures) > 0 {
		t.Fatal(err, res.Failures)
	}
	if a, b := empty.requests.Load(), full.requests.Load(); a != int64(plan.Files()) || b != int64(plan.Files()) {
		t.Errorf("requests: %d to A, %d to B; want %d each", a, b, plan.Files())
	}
	var buf bytes.Buffer
	WriteSummary(&buf, res, samples.All())
	out := buf.String()
	for _, want := range []string{
		fmt.Sprintf("%d modules (%d files): %d fetched", len(plan.Items), plan.Files(), plan.Files()),
		fmt.Sprintf("%s  %8d   0  %6d", empty.URL, plan.Files(), plan.Files()),
		fmt.Sprintf("%s  %8d  %d", full.URL, plan.Files(), plan.Files()),
	} {
		if !strings.Contains(out, want) {
			t.Errorf("summary lacks %q:\n%s", want, out)
		}
	}
}

// TestToolchainFromLines: with LoadOptions.Toolchain, a go.mod brings the toolchain the go
// command switches to when its own Go is older than the module asks (GOTOOLCHAIN=auto):
// the toolchain line, or the go line's release when that is newer (a language version
// asks for its first release), and nothing for a Go before 1.21, which is never
// downloaded.
func TestToolchainFromLines(t *testing.T) {
	for _, tc := range []struct{ lines, want string }{
		{"go 1.22.3\n", "go1.22.3"},
		{"go 1.23\n", "go1.23.0"},
		{"go 1.23rc1\n", "go1.23rc1"},
		{"go 1.21.0\n\ntoolchain go1.22.3\n", "go1.22.3"},
		{"go 1.22\n\ntoolchain go1.22.3\n", "go1.22.3"},
		{"go 1.24.1\n\ntoolchain go1.22.3\n", "go1.24.1"},
		{"go 1.22.0\n\ntoolchain default\n", "go1.22.0"},
		{"go 1.20\n", ""},
		{"go 1.16\n", ""},
		{"", ""},
	} {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, "go.mod"), []byte("module a.test/a\n\n"+tc.lines), 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "go.sum"), nil, 0o644); err != nil {
			t.Fatal(err)
		}
		p, err := Load([]string{dir}, LoadOptions{Toolchain: true, GOOS: "linux", GOARCH: "amd64"})
		if err != nil {
			t.Fatalf("%q: %v", tc.lines, err)
		}
		var got []string
		for _, it := range p.Items {
			got = append(got, it.String())
		}
		want := []string{}
		if tc.want != "" {
			want = []string{ToolchainModule + "@v0.0.1-" + tc.want + ".linux-amd64"}
		}
		if strings.Join(got, " ") != strings.Join(want, " ") {
			t.Errorf("go.mod with %q: plan %q; want %q", tc.lines, got, want)
		}
	}
}
