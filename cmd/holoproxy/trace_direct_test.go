package main

import (
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/holoproxy/holoproxy/internal/lab"
)

// traceGit starts a lab git server with git.test/repo v1.0.0, puts what the go command
// needs to reach it (its forward proxy and CA) in the environment, and points TMPDIR at a
// directory it returns, where trace keeps direct's module caches.
func traceGit(t *testing.T) (*lab.GitServer, string) {
	t.Helper()
	if _, err := exec.LookPath("go"); err != nil {
		t.Skipf("no go command: %v", err)
	}
	g := lab.StartGit(t)
	content := "module git.test/repo\n\ngo 1.21\n"
	code := "package repo\n"
	g.Commit(t, "git.test/repo", map[string]*string{"go.mod": &content, "repo.go": &code}, "v1.0.0")
	for _, kv := range g.Env() {
		k, v, _ := strings.Cut(kv, "=")
		t.Setenv(k, v)
	}
	tmp := t.TempDir()
	t.Setenv("TMPDIR", tmp)
	return g, tmp
}

// TestTraceDirect traces a chain whose proxy answers 404 and ends in direct: the module
// comes from the git server through the go command, and every output shows direct with
// its lookup, vcs and go phases.
func TestTraceDirect(t *testing.T) {
	_, tmp := traceGit(t)
	notFound := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "not here", http.StatusNotFound)
	}))
	defer notFound.Close()
	dir := t.TempDir()
	jsonPath, htmlPath := filepath.Join(dir, "t.json"), filepath.Join(dir, "t.html")
	code, out, errOut := runCLI("trace", "--proxy="+notFound.URL+",direct", "--direct-timeout=1m",
		"--json="+jsonPath, "--html="+htmlPath, "git.test/repo@v1.0.0")
	if code != exitOK {
		t.Fatalf("exit %d; want 0\nstderr: %s\nstdout: %s", code, errOut, out)
	}
	if strings.Contains(errOut, "not traced") {
		t.Errorf("stderr says direct is not traced: %s", errOut)
	}
	tr := readTraceJSON(t, jsonPath)
	if len(tr.Runs) != 1 {
		t.Fatalf("%d runs; want the chain alone (direct gets no run of its own)", len(tr.Runs))
	}
	c := traceRun(t, tr, "chain")
	if c.Failed != 0 || c.FallThroughs != 3 {
		t.Errorf("chain: %d failed, %d fall-throughs; want 0 and 3", c.Failed, c.FallThroughs)
	}
	steps := 0
	for _, s := range c.Samples {
		if s.Upstream == "direct" {
			steps += len(s.Steps)
			if s.Total <= 0 || s.Lookup+s.VCS+s.Go+s.Transfer > s.Total {
				t.Errorf("direct %s: phases %s+%s+%s+%s over total %s", s.Kind, s.Lookup, s.VCS, s.Go, s.Transfer, s.Total)
			}
		}
	}
	if steps == 0 {
		t.Errorf("no direct steps in the JSON")
	}
	for _, want := range []string{"direct", "lookup p50/p99", "vcs p50/p99", "slowest step: "} {
		if !strings.Contains(out, want) {
			t.Errorf("terminal report lacks %q:\n%s", want, out)
		}
	}
	html, err := os.ReadFile(htmlPath)
	if err != nil || !strings.Contains(string(html), ">vcs<") || !strings.Contains(string(html), ">direct<") {
		t.Errorf("HTML report: %v; want direct's vcs row", err)
	}
	if ents, _ := os.ReadDir(tmp); len(ents) > 0 {
		t.Errorf("trace left %d entries in TMPDIR (%s...)", len(ents), ents[0].Name())
	}
}

// TestTraceDirectMissingModuleExits1 traces a module the git server lacks through direct
// alone: the request fails with the go command's reason, and trace exits 1.
func TestTraceDirectMissingModuleExits1(t *testing.T) {
	traceGit(t)
	jsonPath := filepath.Join(t.TempDir(), "t.json")
	code, out, errOut := runCLI("trace", "--proxy=direct", "--json="+jsonPath, "git.test/nothere@v1.0.0")
	if code != exitFailure {
		t.Fatalf("exit %d; want 1\nstderr: %s", code, errOut)
	}
	if !strings.Contains(errOut, "1 of 1 requests through the chain failed") || !strings.Contains(out, "direct_not_found") {
		t.Errorf("stderr %q, stdout:\n%s\nwant the failure counted and its class shown", errOut, out)
	}
	s := traceRun(t, readTraceJSON(t, jsonPath), "chain").Samples
	if len(s) != 1 || !strings.Contains(s[0].Err, `unrecognized import path "git.test/nothere"`) {
		t.Errorf("samples %+v; want the .info failing with the go command's reason", s)
	}
}
