package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/holoproxy/holoproxy/internal/lab/modtree"
	"github.com/holoproxy/holoproxy/internal/report"
)

// runTrace runs `holoproxy trace args...` in dir with env and returns stdout, stderr and
// the exit code.
func runTrace(t *testing.T, dir string, env []string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, holoproxyBinary(t), append([]string{"trace"}, args...)...)
	cmd.Dir, cmd.Env = dir, env
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	cmd.WaitDelay = 10 * time.Second
	err := cmd.Run()
	code = 0
	if err != nil {
		ee, ok := err.(*exec.ExitError)
		if !ok {
			t.Fatalf("holoproxy trace: %v", err)
		}
		code = ee.ExitCode()
	}
	return out.String(), errb.String(), code
}

// TestTraceRecordsGoCommand records the real go command's `go mod download all` through a
// chain of two proxies: the first (with credentials the go command never sees) lacks part
// of the graph and answers 404, the second has everything. The recorded run counts every
// request the go command made, each of the first proxy's 404s as a fall-through, one
// exchange per request, and the command's exit; the command's module cache is removed.
func TestTraceRecordsGoCommand(t *testing.T) {
	mods, roots := fixtureModules()
	var some []modtree.Module
	for _, m := range mods {
		if !strings.HasPrefix(m.Path, "mods.test/g00") {
			some = append(some, m)
		}
	}
	a, b := newOrigin(t, some), newOrigin(t, mods)
	a.requireAuth("ci", "s3cret-a")
	g := newApp(t, "off", mods, roots)
	tmp := t.TempDir()
	env := append(g.env(), "TMPDIR="+tmp)
	list := strings.Replace(a.URL, "http://", "http://ci:s3cret-a@", 1) + "," + b.URL
	jsonFile := filepath.Join(t.TempDir(), "trace.json")

	stdout, stderr, code := runTrace(t, g.app, env, "--proxy="+list, "--json="+jsonFile, "--", "go", "mod", "download", "all")
	if code != 0 {
		t.Fatalf("exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	if !strings.Contains(stdout, "go mod download all (recorded)") || !strings.Contains(stdout, "command exit") {
		t.Errorf("report lacks the recorded command:\n%s", stdout)
	}
	data, err := os.ReadFile(jsonFile)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(data), "s3cret") || strings.Contains(stdout, "s3cret") {
		t.Errorf("the report shows the first proxy's credentials")
	}
	tr, err := report.ReadJSON(strings.NewReader(string(data)))
	if err != nil {
		t.Fatal(err)
	}
	if len(tr.Runs) != 1 || tr.Runs[0].Command == nil {
		t.Fatalf("want one recorded run, got %+v", tr.Runs)
	}
	r := tr.Runs[0]
	if r.Command.ExitCode != 0 || strings.Join(r.Command.Args, " ") != "go mod download all" {
		t.Errorf("command %+v, want go mod download all with exit 0", r.Command)
	}

	sum := func(m map[string]int) (n int) {
		for _, v := range m {
			n += v
		}
		return n
	}
	ac, bc := a.counts(), b.counts()
	notFound := 0
	for p := range ac {
		if strings.HasPrefix(p, "mods.test/g00") {
			notFound += ac[p]
		}
	}
	if notFound == 0 || sum(bc) < notFound {
		t.Fatalf("want 404s at the first proxy answered by the second: first %v, second %v", ac, bc)
	}
	if r.Requests != sum(ac)+sum(bc) || len(r.Samples) != r.Requests {
		t.Errorf("recorded %d requests and %d exchanges; the origins saw %d + %d", r.Requests, len(r.Samples), sum(ac), sum(bc))
	}
	if r.FallThroughs != notFound || r.Failed != 0 {
		t.Errorf("fall-throughs %d, failed %d; want %d and 0", r.FallThroughs, r.Failed, notFound)
	}
	perUpstream := map[string]int{}
	for _, s := range r.Samples {
		perUpstream[s.Upstream]++
		if strings.Contains(s.URL, "127.0.0.1") && !strings.HasPrefix(s.URL, a.URL) && !strings.HasPrefix(s.URL, b.URL) {
			t.Errorf("sample URL %s is neither upstream's", s.URL)
		}
	}
	if perUpstream[a.URL] != sum(ac) || perUpstream[b.URL] != sum(bc) {
		t.Errorf("exchanges by upstream %v; origins saw %d and %d", perUpstream, sum(ac), sum(bc))
	}
	if r.Wall <= 0 {
		t.Errorf("wall time %v", r.Wall)
	}
	left, _ := filepath.Glob(filepath.Join(tmp, "holoproxy-trace-modcache-*"))
	if len(left) != 0 {
		t.Errorf("the command's module cache is left behind: %v", left)
	}
}

// A command that fails is recorded and reported; trace exits 1 naming the failure. Flags
// that shape trace's own workload are usage errors with a command.
func TestTraceRecordFailures(t *testing.T) {
	mods, roots := fixtureModules()
	org := newOrigin(t, mods)
	g := newApp(t, "off", mods, roots)
	env := g.env()
	stdout, stderr, code := runTrace(t, g.app, env, "--proxy="+org.URL, "--", "go", "mod", "download", "mods.test/nosuch@v1.0.0")
	if code != 1 || !strings.Contains(stdout, "command exit") || !strings.Contains(stderr, "exit status 1") {
		t.Errorf("failing command: exit %d\nstdout:\n%s\nstderr:\n%s", code, stdout, stderr)
	}
	if !strings.Contains(stderr, "mods.test/nosuch") {
		t.Errorf("the command's own output is not on stderr:\n%s", stderr)
	}
	if _, stderr, code := runTrace(t, g.app, env, "--proxy="+org.URL, "--", "no-such-command-holoproxy"); code != 1 || !strings.Contains(stderr, "no-such-command-holoproxy") {
		t.Errorf("missing command: exit %d, stderr %q", code, stderr)
	}
	for _, args := range [][]string{
		{"--jobs=3", "--", "go", "version"},
		{"--count=2", "--", "go", "version"},
		{"--compare=transports", "--", "go", "version"},
		{"mods.test/g000", "--", "go", "version"},
		{"--"},
		{"--gomodcache=" + t.TempDir()},
	} {
		if _, stderr, code := runTrace(t, g.app, env, append([]string{"--proxy=" + org.URL}, args...)...); code != 2 || strings.Count(strings.TrimSpace(stderr), "\n") != 0 {
			t.Errorf("trace %v: exit %d, stderr %q; want a one-line usage error (2)", args, code, stderr)
		}
	}
}
