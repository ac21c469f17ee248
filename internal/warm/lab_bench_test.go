package warm

import (
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/holoproxy/holoproxy/internal/lab"
)

// BenchmarkLabWarmVsGo fetches the ~300-module bench workload (bench/mktree) from an
// HTTPS origin 50 ms of round trip away (25 ms each way, in the lab) twice per iteration:
// with `go mod download all` into a fresh GOMODCACHE, the baseline, and with
// `holoproxy warm --to` into a fresh tree; both on a tmpfs, both from the same client
// host. It reports both wall times and their ratio. Needs root (network namespaces):
//
//	go test -run '^$' -bench LabWarmVsGo -benchtime 1x -count 3 ./internal/warm/
func BenchmarkLabWarmVsGo(b *testing.B) {
	l := lab.New(b, lab.Options{})
	work := b.TempDir()
	bin := filepath.Join(work, "holoproxy")
	for _, args := range [][]string{
		{"build", "-o", bin, "../../cmd/holoproxy"},
		{"run", "../../bench/mktree", "-n", "300", "-out", work},
	} {
		if out, err := exec.Command("go", args...).CombinedOutput(); err != nil {
			b.Fatalf("go %v: %v\n%s", args, err, out)
		}
	}
	client, proxy := l.MustAddHost(b, "client"), l.MustAddHost(b, "proxy")
	if _, err := l.DNS(); err != nil {
		b.Fatal(err)
	}
	origin, err := proxy.ServeOrigin(lab.OriginConfig{Tree: filepath.Join(work, "tree"), HTTP2: true})
	if err != nil {
		b.Fatal(err)
	}
	for _, h := range []*lab.Host{client, proxy} {
		if err := h.SetLink(lab.Link{Delay: 25 * time.Millisecond}); err != nil {
			b.Fatal(err)
		}
	}
	app := filepath.Join(work, "app")
	var goWall, warmWall time.Duration
	for i := 0; i < b.N; i++ {
		env, err := l.GoEnv(origin.URL())
		if err != nil {
			b.Fatal(err)
		}
		cmd := client.Command(b.Context(), "go", "mod", "download", "all")
		cmd.Dir, cmd.Env = app, env
		t0 := time.Now()
		if out, err := cmd.CombinedOutput(); err != nil {
			b.Fatalf("go mod download all: %v\n%s", err, out)
		}
		goWall += time.Since(t0)

		dest, err := l.TmpfsDir("tree")
		if err != nil {
			b.Fatal(err)
		}
		cmd = client.Command(b.Context(), bin, "warm", "--proxy", origin.URL(), "--to", dest, "--progress", "off", app)
		// Command's environment already names the lab CA in SSL_CERT_FILE.
		t0 = time.Now()
		out, err := cmd.CombinedOutput()
		if err != nil {
			b.Fatalf("holoproxy warm: %v\n%s", err, out)
		}
		warmWall += time.Since(t0)
		if i == b.N-1 {
			b.Logf("warm summary:\n%s", out)
		}
	}
	n := float64(b.N)
	b.ReportMetric(goWall.Seconds()/n, "go-s/op")
	b.ReportMetric(warmWall.Seconds()/n, "warm-s/op")
	b.ReportMetric(warmWall.Seconds()/goWall.Seconds(), "warm/go")
}
