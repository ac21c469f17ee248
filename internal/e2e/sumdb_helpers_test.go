package e2e

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/mod/module"

	"github.com/holoproxy/holoproxy/internal/lab/modtree"
)

// e2eClient is the HTTP client of the checksum tests: every wait bounded.
var e2eClient = &http.Client{Timeout: time.Minute}

// newApp writes an app requiring roots (build list from mods, no go.sum, so the go command
// asks the checksum database for every module) and returns its go command runner.
func newApp(t testing.TB, proxy string, mods []modtree.Module, roots []module.Version) goRun {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command on PATH")
	}
	tmp := t.TempDir()
	g := goRun{goBin: goBin, proxy: proxy, app: filepath.Join(tmp, "app"),
		modcache: filepath.Join(tmp, "modcache"), gocache: filepath.Join(tmp, "gocache")}
	if err := modtree.WriteApp(g.app, "app.test/main", mods, roots, nil); err != nil {
		t.Fatal(err)
	}
	return g
}

// goWith runs the go command of g with extra environment (which wins over g.env's, GOSUMDB
// included) and returns its combined output and error.
func goWith(t testing.TB, g goRun, extra []string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, g.goBin, args...)
	cmd.Dir = g.app
	cmd.Env = append(g.env(), extra...)
	cmd.WaitDelay = 10 * time.Second
	out, err := cmd.CombinedOutput()
	return g.normalize(string(out)), err
}

// downloadAndBuild runs `go mod download all` and `go build` in g's app with extra
// environment, failing the test (naming when, e.g. "with the cache disk full") if either
// fails, and returns the lines of the go.sum it wrote, each checked against want.
func downloadAndBuild(t *testing.T, g goRun, extra []string, when string, want map[string]bool) []string {
	t.Helper()
	if out, err := goWith(t, g, extra, "mod", "download", "all"); err != nil {
		t.Fatalf("go mod download all %s: %v\n%s", when, err, out)
	}
	if out, err := goWith(t, g, extra, "build", "-o", filepath.Join(t.TempDir(), "app.bin"), "."); err != nil {
		t.Fatalf("go build %s: %v\n%s", when, err, out)
	}
	return checkGoSum(t, g, want)
}

// get GETs url and returns the status, the body and the header.
func get(t testing.TB, url string) (int, []byte, http.Header) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := e2eClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	return resp.StatusCode, body, resp.Header
}

// scrape returns the samples of holoproxy's /metrics by series, as the text format writes
// them: `name{label="value",...}` (labels in name order) or `name`.
func scrape(t *testing.T, addr string) map[string]float64 {
	t.Helper()
	status, body, _ := get(t, "http://"+addr+"/metrics")
	if status != http.StatusOK {
		t.Fatalf("/metrics answered %d: %s", status, body)
	}
	out := map[string]float64{}
	sc := bufio.NewScanner(bytes.NewReader(body))
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			t.Fatalf("/metrics line %q: %v", line, err)
		}
		out[line[:i]] = v
	}
	return out
}

// families returns the metric names that have at least one sample in m.
func families(m map[string]float64) map[string]bool {
	out := map[string]bool{}
	for series := range m {
		name, _, _ := strings.Cut(series, "{")
		out[name] = true
	}
	return out
}

// tamperZipFile rewrites the module zip at name with the content of one file (not go.mod)
// changed: the same module@version, other bytes.
func tamperZipFile(t *testing.T, name string) {
	t.Helper()
	data, err := os.ReadFile(name)
	if err != nil {
		t.Fatal(err)
	}
	bad, err := modtree.TamperZip(data)
	if err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	if err := os.WriteFile(name, bad, 0o644); err != nil {
		t.Fatal(err)
	}
}

// treeFile returns the path in a GOPROXY tree at dir of m's file with extension ext
// (".mod", ".zip", ".info").
func treeFile(t *testing.T, dir string, m modtree.Module, ext string) string {
	t.Helper()
	p, err := module.EscapePath(m.Path)
	if err != nil {
		t.Fatal(err)
	}
	v, err := module.EscapeVersion(m.Version)
	if err != nil {
		t.Fatal(err)
	}
	return filepath.Join(dir, filepath.FromSlash(p), "@v", v+ext)
}

// sumLineSet returns every go.sum line modtree computes for mods.
func sumLineSet(t *testing.T, mods []modtree.Module) map[string]bool {
	t.Helper()
	set := map[string]bool{}
	for _, m := range mods {
		lines, err := m.SumLines()
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range lines {
			set[l] = true
		}
	}
	return set
}

// checkGoSum requires the app's go.sum to be non-empty and every line of it to be one of
// want, the honest hashes; it returns the lines.
func checkGoSum(t *testing.T, g goRun, want map[string]bool) []string {
	t.Helper()
	data, err := os.ReadFile(filepath.Join(g.app, "go.sum"))
	if err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(string(data)), "\n")
	if len(lines) == 0 || lines[0] == "" {
		t.Fatalf("go.sum is empty")
	}
	for _, l := range lines {
		if !want[l] {
			t.Errorf("go.sum line %q is not an honest hash", l)
		}
	}
	return lines
}

// waitLog waits until the log of p holds a line containing every one of subs and returns
// that line, or "" after a generous bound: holoproxy writes some lines after the answer they
// describe has left, and the test reads its stderr through a pipe.
func waitLog(p *proc, subs ...string) string {
	deadline := time.Now().Add(15 * time.Second)
	for {
		for _, l := range strings.Split(p.log.String(), "\n") {
			ok := true
			for _, s := range subs {
				if !strings.Contains(l, s) {
					ok = false
					break
				}
			}
			if ok {
				return l
			}
		}
		if time.Now().After(deadline) {
			return ""
		}
		time.Sleep(10 * time.Millisecond)
	}
}
