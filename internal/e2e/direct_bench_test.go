package e2e

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/holoproxy/holoproxy/internal/lab"
)

// BenchmarkDirectDownload measures `go mod download all` of an app whose 30 modules live
// only in git (git.test/mNN, each requiring the one before it and the one at half its
// number), with a fresh client module cache each time, three ways alternated in every
// iteration: the go command alone with GOPROXY=direct (the baseline), through a cold
// holoproxy whose upstream is direct (a new cache directory each iteration: it runs the
// go command against git itself, prefetching the graph), and through the same holoproxy
// once warm (git is not asked at all). Reported: seconds of each and the two ratios
// against the baseline.
//
//	go test -run '^$' -bench DirectDownload -benchtime 5x ./internal/e2e/
//
// DIRECT_BENCH_FLAGS adds serve flags (--prefetch=0, --direct-jobs=8); DIRECT_BENCH_LOG
// names a file for holoproxy's request log of the last iteration.
func BenchmarkDirectDownload(b *testing.B) {
	const n = 30
	g := lab.StartGit(b)
	for i := range n {
		name := fmt.Sprintf("m%02d", i)
		var req, imports, calls strings.Builder
		for _, j := range slices.Compact([]int{i - 1, i / 2}) {
			if j < 0 || j == i {
				continue
			}
			fmt.Fprintf(&req, "require git.test/m%02d v1.0.0\n", j)
			fmt.Fprintf(&imports, "import m%02d \"git.test/m%02d\"\n", j, j)
			fmt.Fprintf(&calls, " + m%02d.F()", j)
		}
		goMod := fmt.Sprintf("module git.test/%s\n\ngo 1.21\n\n%s", name, req.String())
		src := fmt.Sprintf("package %s\n\n%s\n// F counts.\nfunc F() int { return 1%s }\n", name, imports.String(), calls.String())
		g.Commit(b, "git.test/"+name, map[string]*string{"go.mod": &goMod, name + ".go": &src}, "v1.0.0")
	}
	env := append(g.Env(), "GOPRIVATE=git.test")

	download := func(proxy string, extra []string) time.Duration {
		app := newApp(b, proxy, nil, nil)
		// A tidy go.mod: every module the build needs is listed (graph pruning), so
		// that go mod download all fetches all of them, zips included.
		top := fmt.Sprintf("git.test/m%02d", n-1)
		var reqs strings.Builder
		for i := range n {
			fmt.Fprintf(&reqs, "require git.test/m%02d v1.0.0\n", i)
		}
		files := map[string]string{
			"go.mod":  "module app.test/main\n\ngo 1.21\n\n" + reqs.String(),
			"main.go": "package main\n\nimport m \"" + top + "\"\n\nfunc main() { println(m.F()) }\n",
		}
		for name, content := range files {
			if err := os.WriteFile(filepath.Join(app.app, name), []byte(content), 0o644); err != nil {
				b.Fatal(err)
			}
		}
		start := time.Now()
		if out, err := goWith(b, app, extra, "mod", "download", "all"); err != nil {
			b.Fatalf("go mod download all via %s: %v\n%s", proxy, err, out)
		}
		return time.Since(start)
	}

	var direct, cold, warm time.Duration
	for b.Loop() {
		direct += download("direct", env)
		args := []string{"--cache-dir=" + b.TempDir(), "--upstream=direct", "--goprivate=git.test"}
		args = append(args, strings.Fields(os.Getenv("DIRECT_BENCH_FLAGS"))...) // e.g. --prefetch=0
		p := startHoloproxy(b, args, g.Env())
		cold += download("http://"+p.addr, nil)
		warm += download("http://"+p.addr, nil)
		if f := os.Getenv("DIRECT_BENCH_LOG"); f != "" { // holoproxy's request log and metrics, to see where the time went
			_, metrics, _ := get(b, "http://"+p.addr+"/metrics")
			os.WriteFile(f, []byte(p.log.String()+"\n"+string(metrics)), 0o644)
		}
		p.kill(b)
	}
	it := float64(b.N)
	b.ReportMetric(direct.Seconds()/it, "direct-s")
	b.ReportMetric(cold.Seconds()/it, "cold-s")
	b.ReportMetric(warm.Seconds()/it, "warm-s")
	b.ReportMetric(cold.Seconds()/direct.Seconds(), "cold/direct")
	b.ReportMetric(warm.Seconds()/direct.Seconds(), "warm/direct")
}
