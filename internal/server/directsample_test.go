package server

import (
	"context"
	"encoding/json"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/holoproxy/holoproxy/internal/goproxy"
	"github.com/holoproxy/holoproxy/internal/health"
	"github.com/holoproxy/holoproxy/internal/netobs"
	"github.com/holoproxy/holoproxy/internal/report"
)

// fakeGo is a go command for Direct that fetches nothing: `go list -m ... -versions`
// prints -x lines (a go-get lookup, a git command) as the real one does, waits, and
// lists two versions, or, for a module whose path has "broken", fails as git does
// against an origin that answers 503.
const fakeGo = `#!/bin/sh
if [ "$1" = env ]; then echo /dev/null; echo go1.26-fake; exit 0; fi
for a in "$@"; do mod="$a"; done
echo "# get https://$mod?go-get=1" >&2
sleep 0.05
echo "# get https://$mod?go-get=1: 200 OK (0.050s)" >&2
echo "cd $GOMODCACHE/cache/vcs/x; git ls-remote -q origin" >&2
sleep 0.1
echo "0.100s # cd $GOMODCACHE/cache/vcs/x; git ls-remote -q origin" >&2
case "$mod" in
*broken*) echo "go: $mod: git ls-remote -q origin: exit status 128:" >&2
  echo "	fatal: unable to access 'https://$mod/': The requested URL returned error: 503" >&2; exit 1;;
esac
printf '{"Path":"%s","Versions":["v1.0.0","v1.1.0"]}\n' "$mod"
`

// TestDirectSamples: a fill through direct records a Sample with the go command's steps
// (lookup, vcs, go) in the DirectSink, which serve wires to the metrics and the
// dashboard; direct's slow fetches and failures leave the proxies' health as it was,
// and direct is in no health output.
func TestDirectSamples(t *testing.T) {
	if _, err := os.Stat("/bin/sh"); err != nil {
		t.Skipf("no /bin/sh for the fake go command: %v", err)
	}
	goBin := filepath.Join(t.TempDir(), "go")
	if err := os.WriteFile(goBin, []byte(fakeGo), 0o755); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	d, err := goproxy.NewDirect(ctx, goproxy.DirectConfig{Go: goBin, Dir: t.TempDir(), Jobs: 2, Timeout: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close(context.Background()) })
	a := newOrigin(t) // knows no git.test module: every fill falls through to direct
	var got report.Collector
	var rp *Repair
	e, rp := newRepairEnv(t, a.URL()+",direct", RepairConfig{NoHedge: true}, func(cfg *Config) {
		cfg.Chain.UseDirect(d)
		cfg.DirectSink = netobs.SinkFunc(func(s netobs.Sample) {
			got.Observe(s)
			rp.DirectSink().Observe(s)
		})
	})
	before := rp.Scorer.Statuses()

	e.get(t, "/git.test/repo/@v/list", http.StatusOK)
	e.get(t, "/git.test/broken/@v/list", http.StatusBadGateway)

	samples := got.Samples()
	if len(samples) != 2 {
		t.Fatalf("%d Samples of direct; want 2: %+v", len(samples), samples)
	}
	for _, s := range samples {
		ok := strings.Contains(s.URL, "git.test/repo/")
		if s.Upstream != goproxy.DirectName || s.Kind != "list" || s.Lookup <= 0 || s.VCS <= 0 || s.Go <= 0 ||
			s.DNS != 0 || s.Connect != 0 || s.TTFB != 0 || s.Total < s.Lookup+s.VCS+s.Go+s.Transfer {
			t.Errorf("Sample %+v; want direct's, with lookup, vcs and go within its total", s)
		}
		switch {
		case ok && (s.Status != 200 || s.ErrClass != "" || s.Bytes != int64(len("v1.0.0\nv1.1.0\n"))):
			t.Errorf("the fetched list's Sample: status %d class %q bytes %d", s.Status, s.ErrClass, s.Bytes)
		case !ok && (s.Status != 0 || s.ErrClass != "direct_failed"):
			t.Errorf("the broken module's Sample: status %d class %q; want direct_failed", s.Status, s.ErrClass)
		}
	}

	after := rp.Scorer.Statuses()
	if len(after) != 1 || len(before) != 1 || after[0].Upstream != a.URL() {
		t.Fatalf("health statuses %+v; want the proxy alone, never direct", after)
	}
	if b, a := before[0], after[0]; a.State != health.StateHealthy || a.State != b.State || a.Score != b.Score ||
		a.Requests != b.Requests || a.Failures != b.Failures {
		t.Errorf("the proxy's health moved with direct's fetches: before %+v, after %+v", b, a)
	}
	doc := rp.Dashboard().Snapshot() // what /api/chain serves

	for _, u := range doc.Upstreams {
		if u.Name == goproxy.DirectName {
			t.Errorf("direct among the dashboard's scored upstreams: %+v", u)
		}
	}
	var rows []string
	for _, r := range doc.Heatmap.Rows {
		if r.Upstream == goproxy.DirectName {
			rows = append(rows, r.Phase)
		}
	}
	if strings.Join(rows, ",") != "lookup,vcs,go,transfer,errors" {
		t.Errorf("direct's heatmap rows %v; want lookup,vcs,go,transfer,errors", rows)
	}
	js, err := json.Marshal(doc.Slowest)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(js), `"slow_step":"git ls-remote -q origin"`) {
		t.Errorf("slowest %s; want direct's with its git command", js)
	}
}
