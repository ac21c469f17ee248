package modtree

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestGraphBuildsWithGoCommand checks the generated tree, go.mod and go.sum against the real
// go command: with -mod=readonly it refuses any go.mod or go.sum that is not exactly right.
func TestGraphBuildsWithGoCommand(t *testing.T) {
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command on PATH")
	}
	tmp := t.TempDir()
	mods, roots := Graph("mods.test/g", 24, 3, 3)
	extra := []Module{
		{Path: "mods.test/Upper/Case", Version: "v1.0.0"},
		{Path: "mods.test/nogomod", Version: "v2.0.0+incompatible", NoGoMod: true},
		{Path: "mods.test/pseudo", Version: "v0.0.0-20240102030405-abcdefabcdef"},
		{Path: "mods.test/two/v2", Version: "v2.1.0"},
	}
	mods = append(mods, extra...)
	for _, e := range extra {
		roots = append(roots, e.ID())
	}
	tree := filepath.Join(tmp, "tree")
	if err := Write(tree, mods); err != nil {
		t.Fatal(err)
	}
	sum, err := AppGoSum(mods, roots)
	if err != nil {
		t.Fatal(err)
	}
	app := filepath.Join(tmp, "app")
	if err := WriteApp(app, "app.test/main", mods, roots, sum); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) string {
		cmd := exec.Command(goBin, args...)
		cmd.Dir = app
		cmd.Env = append(os.Environ(),
			"GOPROXY=file://"+filepath.ToSlash(tree), "GOSUMDB=off", "GOFLAGS=-mod=readonly",
			"GOMODCACHE="+filepath.Join(tmp, "modcache"), "GOTOOLCHAIN=local", "GOWORK=off",
			"GOCACHE="+filepath.Join(tmp, "gocache"))
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("go %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	run("mod", "download", "all")
	run("build", "-o", filepath.Join(tmp, "app.bin"), ".")
	out, err := exec.Command(filepath.Join(tmp, "app.bin")).CombinedOutput()
	if err != nil {
		t.Fatalf("app: %v\n%s", err, out)
	}
	if strings.TrimSpace(string(out)) == "" || strings.TrimSpace(string(out)) == "1" {
		t.Errorf("app printed %q; want a count of reached modules above 1", out)
	}
	// go mod verify re-hashes the downloaded modules against go.sum.
	run("mod", "verify")
	after, err := os.ReadFile(filepath.Join(app, "go.sum"))
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(after, sum) {
		t.Errorf("go.sum changed by the go command:\n%s\nwant\n%s", after, sum)
	}
	// MVS picked the higher of the two versions a fifth module has, and the graph holds the
	// lower one too: the go command had a choice to make.
	selected, graph := BuildList(mods, roots)
	if len(graph) <= len(selected) {
		t.Errorf("graph has %d versions, build list %d: no superseded version in the graph", len(graph), len(selected))
	}
	var sawV11 bool
	for _, m := range selected {
		if m.Version == "v1.1.0" {
			sawV11 = true
		}
	}
	if !sawV11 {
		t.Error("build list selects no v1.1.0: the graph offers MVS no choice")
	}
}
