package e2e

import (
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/holoproxy/holoproxy/internal/checksum/sumdbtest"
	"github.com/holoproxy/holoproxy/internal/lab/modtree"
)

// TestToolchainSwitchThroughHoloproxy: a go.mod asking for a newer Go than the local one
// (its go or toolchain line, with GOTOOLCHAIN=auto, the default) makes the go command
// download that Go as the module golang.org/toolchain through GOPROXY, verify it against
// the checksum database (required for toolchains: GOSUMDB=off refuses them), unpack it and
// run its bin/go. A toolchain zip is laid out as a Go distribution with its go.mod files
// renamed _go.mod, which keeps it a valid module zip. The test's toolchain is a script that
// says what it was asked. Through holoproxy serve the switch must work cold (holoproxy
// verifying the zip before storing it) and, with a fresh module cache, offline: the
// origin closed and the checksum database down, the zip and the database's answers come
// from holoproxy's caches alone.
// testToolchain returns a Go version newer than any and a toolchain module of it for this
// platform, laid out as a Go distribution whose bin/go is a script that says what it was
// asked ("go1.999.1 ran: list -m").
func testToolchain() (goVersion string, m modtree.Module) {
	goVersion = "go1.999.1"
	return goVersion, modtree.Module{Path: "golang.org/toolchain", Version: "v0.0.1-" + goVersion + "." + runtime.GOOS + "-" + runtime.GOARCH,
		NoGoMod: true, Files: map[string]string{
			"bin/go":    "#!/bin/sh\necho \"" + goVersion + " ran: $*\"\n",
			"bin/gofmt": "#!/bin/sh\n",
			"pkg/tool/" + runtime.GOOS + "_" + runtime.GOARCH + "/compile": "#!/bin/sh\n",
			"lib/time/README": "time zone data\n",
			"src/_go.mod":     "module std\n\ngo 1.999\n",
			"VERSION":         goVersion + "\n",
		}}
}

func TestToolchainSwitchThroughHoloproxy(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("the test's toolchain is a shell script")
	}
	goVersion, toolchain := testToolchain()
	version := toolchain.Version
	mods := []modtree.Module{toolchain}
	db := sumdbtest.New(t, mods)
	org := newOrigin(t, mods)
	p := startHoloproxy(t, append([]string{"--cache-dir=" + t.TempDir(), "--upstream=" + org.URL}, sumdbArgs(db, "")...), nil)
	zipPath := "path=/golang.org/toolchain/@v/" + version + ".zip"

	for _, pass := range []struct{ name, cache string }{{"cold", "miss"}, {"warm", "hit"}} {
		if pass.name == "warm" {
			// Offline from here: the origin and the checksum database are gone, and the
			// go command, which checks a toolchain against the database whatever its
			// go.sum says, is answered from holoproxy's caches alone.
			org.Close()
			db.SetDown(true)
		}
		g := newApp(t, "http://"+p.addr, nil, nil)
		goMod := "module app.test/main\n\ngo " + strings.TrimPrefix(goVersion, "go") + "\n"
		if err := os.WriteFile(filepath.Join(g.app, "go.mod"), []byte(goMod), 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := goWith(t, g, []string{"GOTOOLCHAIN=auto", "GOSUMDB=" + db.Key}, "list", "-m")
		if want := goVersion + " ran: list -m"; err != nil || !strings.HasSuffix(strings.TrimSpace(out), want) {
			t.Fatalf("%s: go list -m in a module of %s: %v\n%s\nwant its last line %q", pass.name, goVersion, err, out, want)
		}
		if l := waitLog(p, zipPath, "status=200", "cache="+pass.cache); l == "" {
			t.Fatalf("%s: holoproxy logged no 200 with cache=%s for %s:\n%s", pass.name, pass.cache, zipPath, p.log.String())
		}
	}
	if n := org.counts()["golang.org/toolchain/@v/"+version+".zip"]; n != 1 {
		t.Errorf("origin served the toolchain zip %d times; want 1", n)
	}
	if m := scrape(t, p.addr); m[`holoproxy_checksum_verifications_total{outcome="verified"}`] < 1 {
		t.Errorf("holoproxy verified nothing against the checksum database")
	}
}

// TestWarmToolchainOffline: `holoproxy warm --toolchain --sumdb --gomodcache` fills a module
// cache with the toolchain a go.mod's go line asks for and with the checksum database's
// answers that vouch for it, which the go command reads every time it switches (toolchains
// are never in go.sum). Then the go command switches with nothing but that module cache:
// GOPROXY=off, the origin closed and the database down.
func TestWarmToolchainOffline(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("the test's toolchain is a shell script")
	}
	goVersion, toolchain := testToolchain()
	db := sumdbtest.New(t, []modtree.Module{toolchain})
	org := newOrigin(t, []modtree.Module{toolchain})
	g := newApp(t, "off", nil, nil)
	goMod := "module app.test/main\n\ngo " + strings.TrimPrefix(goVersion, "go") + "\n"
	if err := os.WriteFile(filepath.Join(g.app, "go.mod"), []byte(goMod), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(g.app, "go.sum"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	code, out := runHoloproxy(t, nil, "warm", "--toolchain", "--sumdb", "--gosumdb="+db.GOSUMDB(),
		"--sumdb-dir="+t.TempDir(), "--proxy="+org.URL, "--gomodcache="+g.modcache, "--progress=off", g.app)
	if code != 0 {
		t.Fatalf("warm --toolchain: exit %d\n%s", code, out)
	}
	org.Close()
	db.SetDown(true)
	out, err := goWith(t, g, []string{"GOTOOLCHAIN=auto", "GOSUMDB=" + db.Key}, "list", "-m")
	if want := goVersion + " ran: list -m"; err != nil || !strings.HasSuffix(strings.TrimSpace(out), want) {
		t.Fatalf("offline go list -m in a module of %s after warm: %v\n%s\nwant its last line %q", goVersion, err, out, want)
	}
}
