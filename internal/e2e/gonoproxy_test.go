package e2e

import (
	"strings"
	"testing"
)

// TestGoNoProxy: with --gonoproxy, holoproxy never asks its upstreams for the modules it
// names. The go command with GOPROXY=holoproxy,file:///tree gets a 404 for them and takes
// them from the next entry (as it would go direct), builds with the honest go.sum, and the
// origin behind holoproxy never hears of them; with holoproxy alone, the go command fails
// and shows why.
func TestGoNoProxy(t *testing.T) {
	mods, roots := fixtureModules()
	org := newOrigin(t, mods)
	p := startHoloproxy(t, []string{"--cache-dir=" + t.TempDir(), "--upstream=" + org.URL, "--gonoproxy=mods.test/legacy,mods.test/two/*"}, nil)
	if waitLog(p, "never asked of the upstreams", "gonoproxy=mods.test/legacy,mods.test/two/*") == "" {
		t.Errorf("no start line names the --gonoproxy patterns")
	}

	alone := newApp(t, "http://"+p.addr, mods, roots)
	out, err := goWith(t, alone, nil, "mod", "download", "all")
	if err == nil || !strings.Contains(out, "never asks its upstreams for mods.test/legacy") || !strings.Contains(out, "--gonoproxy") {
		t.Errorf("go mod download all through holoproxy alone: %v; want a failure showing the --gonoproxy 404:\n%s", err, out)
	}

	g := newApp(t, "http://"+p.addr+",file://"+org.dir, mods, roots)
	downloadAndBuild(t, g, nil, "through holoproxy, then a file tree", sumLineSet(t, mods))
	for path, n := range org.counts() {
		if strings.HasPrefix(path, "mods.test/legacy/") || strings.HasPrefix(path, "mods.test/two/") {
			t.Errorf("the origin was asked %d times for %s", n, path)
		}
	}
	if c := org.counts(); len(c) == 0 {
		t.Errorf("the origin was asked nothing at all: holoproxy fetched no module")
	}
}
