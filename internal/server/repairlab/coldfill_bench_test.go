package repairlab

import (
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/holoproxy/holoproxy/internal/lab"
)

// The benchmarks of issue 6: a cold `go mod download all` of the ~300-module bench workload
// (bench/mktree) through holoproxy against the go command going straight to the same
// origins, measured in the same run. Set-up of a real deployment: the go command runs in
// host "client" (GOMODCACHE on a tmpfs, by lab.GoEnv), holoproxy (the real binary, `serve`
// with its default flags but --upstream, --cache-dir, --ca-file and --sumdb off) in host
// "hp" next to it (no added delay), the origins are HTTPS (HTTP/2, lab CA) lab hosts far
// away. The emulator delays what a host sends, so the whole round trip is put on the
// origin's link. Every round starts a fresh client module cache and a fresh holoproxy with
// an empty cache; b.N is the number of rounds and the reported figures are medians over them:
//
//	go test -run '^$' -bench LabColdFill -benchtime 5x ./internal/server/repairlab/

var hpBin = flag.String("hp.bin", "", "run this holoproxy binary in the cold-fill benchmarks instead of building ./cmd/holoproxy (to compare with another version)")

var hpLog = flag.String("hp.log", "", "append the log of every holoproxy the cold-fill benchmarks start (at info level: a line per request) to this file")

// coldFillWork builds the holoproxy binary and the bench workload once per benchmark.
type coldFillWork struct {
	bin, tree, app string
}

func newColdFillWork(b *testing.B) coldFillWork {
	work := b.TempDir()
	w := coldFillWork{bin: filepath.Join(work, "holoproxy"), tree: filepath.Join(work, "tree"), app: filepath.Join(work, "app")}
	steps := [][]string{{"run", "../../../bench/mktree", "-n", "300", "-out", work}}
	if *hpBin != "" {
		w.bin = *hpBin
	} else {
		steps = append(steps, []string{"build", "-o", w.bin, "../../../cmd/holoproxy"})
	}
	for _, args := range steps {
		if out, err := exec.Command("go", args...).CombinedOutput(); err != nil {
			b.Fatalf("go %v: %v\n%s", args, err, out)
		}
	}
	return w
}

// downloadAll runs a cold `go mod download all` of the app in client with GOPROXY=goproxy
// and a fresh module cache, and returns its wall time.
func downloadAll(b *testing.B, l *lab.Lab, client *lab.Host, app, goproxy string) time.Duration {
	b.Helper()
	env, err := l.GoEnv(goproxy)
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(b.Context(), 10*time.Minute)
	defer cancel()
	cmd := client.Command(ctx, "go", "mod", "download", "all")
	cmd.Dir, cmd.Env = app, env
	t0 := time.Now()
	if out, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("go mod download all (GOPROXY=%s): %v\n%s", goproxy, err, out)
	}
	return time.Since(t0)
}

// holoproxyRun is one holoproxy serve process in host hp with an empty cache.
type holoproxyRun struct {
	url    string
	cmd    *exec.Cmd
	stderr *lockedBuffer
	cancel context.CancelFunc
	httpc  *http.Client
}

// startHoloproxy starts `holoproxy serve` in hp with a fresh cache in front of upstream, with
// the default flags but those extra, and waits until it answers from client.
func startHoloproxy(b *testing.B, l *lab.Lab, hp, client *lab.Host, bin, upstream string, extra ...string) *holoproxyRun {
	b.Helper()
	cache, err := l.TmpfsDir("hp-cache")
	if err != nil {
		b.Fatal(err)
	}
	level := "warn"
	if *hpLog != "" {
		level = "info"
	}
	args := append([]string{"serve", "--listen", ":80", "--upstream", upstream, "--cache-dir", cache,
		"--ca-file", l.CA().CertFile(), "--sumdb", "off", "--log-level", level}, extra...)
	ctx, cancel := context.WithCancel(context.Background())
	r := &holoproxyRun{url: "http://" + hp.DNSName(), stderr: &lockedBuffer{}, cancel: cancel}
	r.cmd = hp.Command(ctx, bin, args...)
	r.cmd.Stderr = r.stderr
	if *hpLog != "" {
		f, err := os.OpenFile(*hpLog, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
		if err != nil {
			cancel()
			b.Fatal(err)
		}
		b.Cleanup(func() { f.Close() })
		r.cmd.Stderr = f
	}
	if err := r.cmd.Start(); err != nil {
		cancel()
		b.Fatal(err)
	}
	r.httpc = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		DialContext: client.DialContext, TLSClientConfig: &tls.Config{RootCAs: l.CA().Pool()}}}
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := r.httpc.Get(r.url + "/api/chain")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return r
			}
		}
		if time.Now().After(deadline) {
			r.stop(b)
			b.Fatalf("holoproxy did not come up: %v\n%s", err, r.stderr)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// metric returns the sum of the samples of the Prometheus metric name (with labels matching
// every filter, e.g. `result="fetched"`) on holoproxy's /metrics.
func (r *holoproxyRun) metric(b *testing.B, name string, filters ...string) float64 {
	resp, err := r.httpc.Get(r.url + "/metrics")
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	var sb strings.Builder
	buf := make([]byte, 64<<10)
	for {
		n, err := resp.Body.Read(buf)
		sb.Write(buf[:n])
		if err != nil {
			break
		}
	}
	var sum float64
lines:
	for _, line := range strings.Split(sb.String(), "\n") {
		if !strings.HasPrefix(line, name+"{") && !strings.HasPrefix(line, name+" ") {
			continue
		}
		for _, f := range filters {
			if !strings.Contains(line, f) {
				continue lines
			}
		}
		var v float64
		if _, err := fmt.Sscan(line[strings.LastIndexByte(line, ' ')+1:], &v); err == nil {
			sum += v
		}
	}
	return sum
}

// stop ends holoproxy with SIGTERM and waits for it.
func (r *holoproxyRun) stop(b *testing.B) {
	b.Helper()
	defer r.cancel()
	syscall.Kill(-r.cmd.Process.Pid, syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- r.cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			b.Errorf("holoproxy serve: %v\n%s", err, r.stderr)
		}
	case <-time.After(15 * time.Second):
		b.Errorf("holoproxy did not stop on SIGTERM")
	}
}

func median(ds []time.Duration) time.Duration {
	s := slices.Clone(ds)
	slices.Sort(s)
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

func secs(ds []time.Duration) string {
	var parts []string
	for _, d := range ds {
		parts = append(parts, fmt.Sprintf("%.2f", d.Seconds()))
	}
	return strings.Join(parts, " ")
}

// BenchmarkLabColdFill: one HTTPS origin 50 ms of round trip away. Per round, the go
// command straight to the origin (the baseline), then through a fresh holoproxy next to it.
// Target of issue 6: hp/go ≤ 0.5.
func BenchmarkLabColdFill(b *testing.B) {
	l := lab.New(b, lab.Options{})
	w := newColdFillWork(b)
	client, hp, far := l.MustAddHost(b, "client"), l.MustAddHost(b, "hp"), l.MustAddHost(b, "origin")
	if _, err := l.DNS(); err != nil {
		b.Fatal(err)
	}
	origin, err := far.ServeOrigin(lab.OriginConfig{Tree: w.tree, HTTP2: true})
	if err != nil {
		b.Fatal(err)
	}
	if err := far.SetLink(lab.Link{Delay: 50 * time.Millisecond}); err != nil {
		b.Fatal(err)
	}
	var direct, via []time.Duration
	for i := 0; i < b.N; i++ {
		direct = append(direct, downloadAll(b, l, client, w.app, origin.URL()))
		hpr := startHoloproxy(b, l, hp, client, w.bin, origin.URL())
		via = append(via, downloadAll(b, l, client, w.app, hpr.url))
		// On stdout, not b.Logf: the testing package keeps only the first lines of a
		// benchmark's log, and the rounds of every b.N are worth keeping.
		fmt.Printf("coldfill N=%d round %d: direct %.2fs, via holoproxy %.2fs; prefetch fetched %.0f dropped %.0f\n",
			b.N, i+1, direct[i].Seconds(), via[i].Seconds(),
			hpr.metric(b, "holoproxy_prefetch_total", `result="fetched"`), hpr.metric(b, "holoproxy_prefetch_total", `result="dropped"`))
		hpr.stop(b)
	}
	b.Logf("direct: %s s; via holoproxy: %s s", secs(direct), secs(via))
	b.Logf("lab:\n%s", l.Summary())
	md, mv := median(direct), median(via)
	b.ReportMetric(md.Seconds(), "direct-s")
	b.ReportMetric(mv.Seconds(), "hp-s")
	b.ReportMetric(mv.Seconds()/md.Seconds(), "hp/direct")
}

// BenchmarkLabSeedChain: the seed chain of issue 6. proxy-a answers 404 for half of the
// modules, proxy-b serves everything; both 40 ms away each way (80 ms of round trip), and
// every DNS answer comes 50 ms late. Per round: the go command with GOPROXY=A,B, with
// GOPROXY=B, and through a fresh holoproxy whose upstream is A,B. Targets: hp/AB ≤ 0.5 and
// hp/B ≤ 1.1.
func BenchmarkLabSeedChain(b *testing.B) {
	l := lab.New(b, lab.Options{})
	w := newColdFillWork(b)
	client, hp := l.MustAddHost(b, "client"), l.MustAddHost(b, "hp")
	hostA, hostB := l.MustAddHost(b, "proxy-a"), l.MustAddHost(b, "proxy-b")
	dns, err := l.DNS()
	if err != nil {
		b.Fatal(err)
	}
	dns.SetDelay("", 50*time.Millisecond)
	// proxy-a lacks every other module of the graph (bench.test/m000, m002, ...: the paths are
	// modtree.Graph's).
	notFound := map[string]bool{}
	for i := 0; i < 300; i += 2 {
		notFound[fmt.Sprintf("bench.test/m%03d", i)] = true
	}
	originA, err := hostA.ServeOrigin(lab.OriginConfig{Tree: w.tree, HTTP2: true, Faults: lab.Faults{NotFound: notFound}})
	if err != nil {
		b.Fatal(err)
	}
	originB, err := hostB.ServeOrigin(lab.OriginConfig{Tree: w.tree, HTTP2: true})
	if err != nil {
		b.Fatal(err)
	}
	for _, h := range []*lab.Host{hostA, hostB} {
		if err := h.SetLink(lab.Link{Delay: 80 * time.Millisecond}); err != nil {
			b.Fatal(err)
		}
	}
	ab := originA.URL() + "," + originB.URL()
	var dAB, dB, via []time.Duration
	var a404 int
	for i := 0; i < b.N; i++ {
		before := originA.Stats().ByStatus[404]
		dAB = append(dAB, downloadAll(b, l, client, w.app, ab))
		a404 = originA.Stats().ByStatus[404] - before
		dB = append(dB, downloadAll(b, l, client, w.app, originB.URL()))
		hpr := startHoloproxy(b, l, hp, client, w.bin, ab)
		via = append(via, downloadAll(b, l, client, w.app, hpr.url))
		fmt.Printf("seedchain N=%d round %d: go→A,B %.2fs (A answered %d 404s), go→B %.2fs, go→holoproxy(A,B) %.2fs; prefetch fetched %.0f dropped %.0f\n",
			b.N, i+1, dAB[i].Seconds(), a404, dB[i].Seconds(), via[i].Seconds(),
			hpr.metric(b, "holoproxy_prefetch_total", `result="fetched"`), hpr.metric(b, "holoproxy_prefetch_total", `result="dropped"`))
		hpr.stop(b)
	}
	if a404 == 0 {
		b.Fatal("proxy-a answered no 404: the chain does not fall through")
	}
	b.Logf("go→A,B: %s s; go→B: %s s; via holoproxy: %s s", secs(dAB), secs(dB), secs(via))
	b.Logf("lab:\n%s", l.Summary())
	mab, mb, mv := median(dAB), median(dB), median(via)
	b.ReportMetric(mab.Seconds(), "AB-s")
	b.ReportMetric(mb.Seconds(), "B-s")
	b.ReportMetric(mv.Seconds(), "hp-s")
	b.ReportMetric(mv.Seconds()/mab.Seconds(), "hp/AB")
	b.ReportMetric(mv.Seconds()/mb.Seconds(), "hp/B")
}
