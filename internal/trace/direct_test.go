package trace

import (
	"context"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/holoproxy/holoproxy/internal/goproxy"
	"github.com/holoproxy/holoproxy/internal/lab"
	"github.com/holoproxy/holoproxy/internal/netobs"
	"github.com/holoproxy/holoproxy/internal/report"
)

func str(s string) *string { return &s }

// gitOrigin starts a lab git server with git.test/repo (v1.0.0 and v1.1.0) and points
// TMPDIR at a directory of the test's, returned, where trace makes direct's module caches.
func gitOrigin(t *testing.T) (*lab.GitServer, string) {
	t.Helper()
	if _, err := exec.LookPath("go"); err != nil {
		t.Skipf("no go command: %v", err)
	}
	g := lab.StartGit(t)
	g.Commit(t, "git.test/repo", map[string]*string{
		"go.mod":  str("module git.test/repo\n\ngo 1.21\n"),
		"repo.go": str("package repo\n\nconst V = 1\n"),
	}, "v1.0.0")
	g.Commit(t, "git.test/repo", map[string]*string{"repo.go": str("package repo\n\nconst V = 2\n")}, "v1.1.0")
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	return g, tmp
}

// noLeftovers fails t when trace left a module cache in tmp.
func noLeftovers(t *testing.T, tmp string) {
	t.Helper()
	ents, err := os.ReadDir(tmp)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range ents {
		t.Errorf("trace left %s in TMPDIR", e.Name())
	}
}

func directOptions(g *lab.GitServer, proxy string, targets ...Target) Options {
	return Options{
		Proxy: proxy, Targets: targets, Jobs: 2,
		Direct: &DirectOptions{Env: g.Env(), Timeout: time.Minute},
	}
}

func samplesAt(r report.Run, upstream string) []netobs.Sample {
	var out []netobs.Sample
	for _, s := range r.Samples {
		if s.Upstream == upstream {
			out = append(out, s)
		}
	}
	return out
}

func TestTraceDirectAlone(t *testing.T) {
	g, tmp := gitOrigin(t)
	setups, err := PerEntrySetups("direct")
	if err != nil || len(setups) != 1 {
		t.Fatalf("PerEntrySetups(direct) = %v, %v; want the chain alone", setups, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	tr, err := Run(ctx, directOptions(g, "direct", Target{Path: "git.test/repo"}), setups)
	if err != nil {
		t.Fatal(err)
	}
	noLeftovers(t, tmp)
	run := tr.Runs[0]
	if run.Failed != 0 || run.Requests != 4 {
		t.Fatalf("%d of %d requests failed; want list, info, mod, zip all answered", run.Failed, run.Requests)
	}
	ss := samplesAt(run, goproxy.DirectName)
	if len(ss) != 4 {
		t.Fatalf("%d samples under direct; want one per request", len(ss))
	}
	kinds := map[string]netobs.Sample{}
	for _, s := range ss {
		kinds[s.Kind] = s
		if s.Status != 200 || s.ErrClass != "" {
			t.Errorf("%s: status %d %s; want 200", s.Kind, s.Status, s.ErrClass)
		}
		if sum := s.Lookup + s.VCS + s.Go + s.Transfer; sum > s.Total {
			t.Errorf("%s: lookup %s + vcs %s + go %s + transfer %s = %s, more than the request's %s", s.Kind, s.Lookup, s.VCS, s.Go, s.Transfer, sum, s.Total)
		}
		if s.DNS != 0 || s.Connect != 0 || s.TLS != 0 || s.TTFB != 0 {
			t.Errorf("%s: HTTP phases on a direct sample: %+v", s.Kind, s)
		}
		if !strings.HasPrefix(s.URLString(), "direct/git.test/repo/@") {
			t.Errorf("%s: URL %q", s.Kind, s.URLString())
		}
	}
	// The list clones: a go-get lookup and git commands, inside the go command's run.
	list := kinds["list"]
	if list.Lookup <= 0 || list.VCS <= 0 || list.Go <= 0 {
		t.Errorf("list: lookup %s, vcs %s, go %s; want each above zero", list.Lookup, list.VCS, list.Go)
	}
	var cmds []string
	for _, st := range list.Steps {
		cmds = append(cmds, string(st.Phase)+" "+st.Command)
		if st.Offset < 0 || st.Offset+st.Duration > list.Total {
			t.Errorf("list: step %+v outside the request's %s", st, list.Total)
		}
	}
	joined := strings.Join(cmds, "\n")
	for _, want := range []string{"lookup GET https://git.test/repo?go-get=1", "vcs git ls-remote", "go go list -m"} {
		if !strings.Contains(joined, want) {
			t.Errorf("list steps lack %q:\n%s", want, joined)
		}
	}
	// The zip is a run of its own (go mod download), with git again.
	if zip := kinds["zip"]; zip.VCS <= 0 || zip.Bytes == 0 || zip.Transfer <= 0 {
		t.Errorf("zip: vcs %s, %d bytes, transfer %s; want git time and the zip read", zip.VCS, zip.Bytes, zip.Transfer)
	}
	// The report shows direct with its phases.
	sum := report.Summarize(tr)
	var us *report.UpstreamSummary
	for i := range sum.Runs[0].Upstreams {
		if sum.Runs[0].Upstreams[i].Upstream == goproxy.DirectName {
			us = &sum.Runs[0].Upstreams[i]
		}
	}
	if us == nil || us.Exchanges != 4 || us.OK != 4 || us.Lookup.N == 0 || us.VCS.N == 0 || us.Go.N == 0 {
		t.Errorf("summary of direct = %+v; want 4 ok exchanges with lookup, vcs and go figures", us)
	}
}

// notFoundProxy is a plain HTTP proxy that answers 404 for everything, counting requests.
func notFoundProxy(t *testing.T) (*httptest.Server, *atomic.Int64) {
	var hits atomic.Int64
	s := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		http.Error(w, "not found: no such module here", http.StatusNotFound)
	}))
	t.Cleanup(s.Close)
	return s, &hits
}

func TestTraceChainFallsThroughToDirect(t *testing.T) {
	g, tmp := gitOrigin(t)
	a, hits := notFoundProxy(t)
	list := a.URL + ",direct"
	setups, err := PerEntrySetups(list)
	if err != nil {
		t.Fatal(err)
	}
	// direct has no Run of its own (it would clone every module of a go.mod): one proxy
	// and direct make the chain alone.
	if len(setups) != 1 || setups[0] != (Setup{}) {
		t.Fatalf("setups = %+v; want the chain alone", setups)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	tr, err := Run(ctx, directOptions(g, list, Target{Path: "git.test/repo", Version: "v1.0.0"}), setups)
	if err != nil {
		t.Fatal(err)
	}
	noLeftovers(t, tmp)
	chain := runByName(t, tr, "chain")
	if chain.Failed != 0 || chain.Requests != 3 || chain.FallThroughs != 3 {
		t.Errorf("chain: %d requests, %d failed, %d fall-throughs; want 3, 0, 3 (info, mod, zip from direct)", chain.Requests, chain.Failed, chain.FallThroughs)
	}
	if n := len(samplesAt(chain, a.URL)); n != 3 {
		t.Errorf("chain: %d samples at the proxy; want 3 404s", n)
	}
	if n := len(samplesAt(chain, goproxy.DirectName)); n != 3 {
		t.Errorf("chain: %d samples at direct; want 3", n)
	}
	if hits.Load() != 3 {
		t.Errorf("the proxy got %d requests; want 3", hits.Load())
	}
	if failed, _ := ChainFailures(setups, tr); failed != 0 {
		t.Errorf("ChainFailures = %d; want 0", failed)
	}
	// The report counts the fall-through at the proxy and puts its cost in the shares.
	sum := report.Summarize(tr)
	rs := sum.Runs[0]
	var ft int
	for _, u := range rs.Upstreams {
		if u.Upstream == a.URL {
			ft = u.FallThroughs
		}
	}
	if ft != 3 || rs.FallThroughs != 3 {
		t.Errorf("report: %d fall-throughs at the proxy, %d in the run; want 3 and 3", ft, rs.FallThroughs)
	}
	costs := map[string]bool{}
	for _, sh := range rs.Shares {
		if sh.Upstream == goproxy.DirectName {
			costs[sh.Cost] = true
		}
	}
	if !costs["vcs"] || !costs["go"] {
		t.Errorf("shares at direct: %v; want vcs and go", costs)
	}
}

func TestTraceDirectNotFound(t *testing.T) {
	g, tmp := gitOrigin(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	start := time.Now()
	tr, err := Run(ctx, directOptions(g, "direct",
		Target{Path: "git.test/nothere", Version: "v1.0.0"}, Target{Path: "git.test/repo", Version: "v9.0.0"}), []Setup{{}})
	if err != nil {
		t.Fatal(err)
	}
	if took := time.Since(start); took > time.Minute {
		t.Errorf("took %s; a missing module must fail fast", took)
	}
	noLeftovers(t, tmp)
	run := tr.Runs[0]
	if run.Failed != 2 || run.Requests != 2 {
		t.Fatalf("%d of %d requests failed; want both (each module stops at its .info)", run.Failed, run.Requests)
	}
	want := map[string]string{
		"direct/git.test/nothere/@v/v1.0.0.info": `unrecognized import path "git.test/nothere"`,
		"direct/git.test/repo/@v/v9.0.0.info":    "unknown revision v9.0.0",
	}
	for _, s := range run.Samples {
		reason, ok := want[s.URLString()]
		if !ok {
			t.Errorf("unexpected sample %s", s.URLString())
			continue
		}
		if s.ErrClass != "direct_not_found" || !strings.Contains(s.Err, reason) || s.Status != 0 {
			t.Errorf("%s: %s %q; want direct_not_found with %q", s.URLString(), s.ErrClass, s.Err, reason)
		}
		if s.Lookup <= 0 {
			t.Errorf("%s: no lookup time; the go-get lookup was made", s.URLString())
		}
	}
}

func TestTraceDirectFreshCaches(t *testing.T) {
	g, tmp := gitOrigin(t)
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	opt := directOptions(g, "direct", Target{Path: "git.test/repo", Version: "v1.1.0"})
	opt.Count = 2
	tr, err := Run(ctx, opt, []Setup{{Name: "fresh", Fresh: true}, {Name: "shared"}})
	if err != nil {
		t.Fatal(err)
	}
	noLeftovers(t, tmp)
	clones := func(r report.Run) (n int) {
		for _, s := range r.Samples {
			for _, st := range s.Steps {
				if st.Phase == netobs.PhaseVCS && strings.HasPrefix(st.Command, "git init") {
					n++
				}
			}
		}
		return n
	}
	fresh, shared := runByName(t, tr, "fresh"), runByName(t, tr, "shared")
	if fresh.Failed != 0 || shared.Failed != 0 {
		t.Fatalf("failed: fresh %d, shared %d", fresh.Failed, shared.Failed)
	}
	if c := clones(fresh); c != 2 {
		t.Errorf("fresh: %d clones (git init); want one per pass, each with an empty module cache", c)
	}
	if c := clones(shared); c != 1 {
		t.Errorf("shared: %d clones (git init); want one, the second pass using the first's", c)
	}
}

func TestTraceDirectCancelRemovesCaches(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("reads /proc")
	}
	g, tmp := gitOrigin(t)
	g.SetStall(true) // git hangs once the go command runs it
	t.Cleanup(func() { g.SetStall(false) })
	ctx, cancel := context.WithCancel(context.Background())
	go func() {
		// Cancel once the go command is waiting on git.
		for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
			for _, r := range g.Requests() {
				if strings.Contains(r, "info/refs") {
					cancel()
					return
				}
			}
		}
		cancel()
	}()
	start := time.Now()
	_, err := Run(ctx, directOptions(g, "direct", Target{Path: "git.test/repo", Version: "v1.0.0"}), []Setup{{}})
	if err == nil {
		t.Fatal("Run succeeded; want the cancel's error")
	}
	if took := time.Since(start); took > 30*time.Second {
		t.Errorf("Run returned %s after start; want soon after the cancel", took)
	}
	noLeftovers(t, tmp)
	if left := lab.ProcessesUnder(tmp); len(left) > 0 {
		t.Errorf("processes left under the module cache: %v", left)
	}
	if _, err := os.Stat(filepath.Join(tmp)); err != nil {
		t.Fatal(err)
	}
}
