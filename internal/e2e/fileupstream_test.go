package e2e

import (
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"github.com/holoproxy/holoproxy/internal/lab/modtree"
)

// TestFileUpstream: file:// entries of a GOPROXY list (a tree on this machine, as the go
// command reads them) are upstreams like any other: a tree that lacks a module falls
// through to the next entry after ',', the go command downloads and builds everything
// through holoproxy with the honest go.sum, and the file trees are never probed over HTTP.
func TestFileUpstream(t *testing.T) {
	mods, roots := fixtureModules()
	// The first tree has half the modules; the origin after it has them all.
	half := filepath.Join(t.TempDir(), "half")
	if err := modtree.Write(half, mods[:len(mods)/2]); err != nil {
		t.Fatal(err)
	}
	empty := t.TempDir()
	org := newOrigin(t, mods)
	chain := "file://" + empty + ",file://" + filepath.ToSlash(half) + "," + org.URL
	p := startHoloproxy(t, []string{"--cache-dir=" + t.TempDir(), "--upstream=" + chain, "--probe-interval=50ms"}, nil)

	g := newApp(t, "http://"+p.addr, mods, roots)
	downloadAndBuild(t, g, nil, "through file trees", sumLineSet(t, mods))

	m := scrape(t, p.addr)
	halfURL := "file://" + filepath.ToSlash(half)
	if v := m[`holoproxy_server_fill_attempts_total{outcome="ok",upstream="`+halfURL+`"}`]; v == 0 {
		t.Errorf("no fill from the file tree %s", halfURL)
	}
	if v := m[`holoproxy_server_fill_attempts_total{outcome="ok",upstream="`+org.URL+`"}`]; v == 0 {
		t.Errorf("no fill fell through to the origin")
	}
	for k, v := range m {
		if strings.HasPrefix(k, "holoproxy_upstream_probes_total{") && strings.Contains(k, "file://") && v > 0 {
			t.Errorf("%s = %v: a file tree was probed", k, v)
		}
	}
	if m[`holoproxy_upstream_health_state{state="healthy",upstream="`+halfURL+`"}`] != 1 {
		t.Errorf("the file tree is not healthy on /metrics")
	}
	// A module only the file tree has, asked for directly, names it as the upstream.
	key := strings.TrimPrefix(treeFile(t, "", mods[0], ".info"), "/")
	code, _, h := get(t, "http://"+p.addr+"/"+key)
	if code != http.StatusOK || (h.Get("X-Holoproxy-Cache") == "miss" && h.Get("X-Holoproxy-Upstream") != halfURL) {
		t.Errorf("GET %s: %d, cache %q, upstream %q", key, code, h.Get("X-Holoproxy-Cache"), h.Get("X-Holoproxy-Upstream"))
	}
}
