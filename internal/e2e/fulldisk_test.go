package e2e

import (
	"encoding/json"
	"errors"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/holoproxy/holoproxy/internal/checksum/sumdbtest"
)

// tinyFS mounts a tmpfs of size bytes on a new directory for the test and returns it; it is
// unmounted in t.Cleanup. It needs root (Linux): the test is skipped without it, except
// under CI (CI=true), which must run it.
func tinyFS(t *testing.T, size string) string {
	t.Helper()
	why := ""
	switch {
	case runtime.GOOS != "linux":
		why = "needs Linux (tmpfs, memfd_create)"
	case os.Geteuid() != 0:
		why = "needs root to mount a small tmpfs"
	}
	if why != "" {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI=true but this test cannot run: %s", why)
		}
		t.Skip(why)
	}
	dir := t.TempDir()
	if err := unix.Mount("tmpfs", dir, "tmpfs", unix.MS_NOSUID|unix.MS_NODEV, "size="+size+",mode=0755"); err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("mount tmpfs: %v", err)
		}
		t.Skipf("mount tmpfs: %v", err)
	}
	t.Cleanup(func() {
		if err := unix.Unmount(dir, unix.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	return dir
}

// fillUp writes a file into dir until the file system is full and returns its name.
func fillUp(t *testing.T, dir string) string {
	t.Helper()
	name := filepath.Join(dir, "filler")
	f, err := os.Create(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	chunk := make([]byte, 4096)
	for {
		if _, err := f.Write(chunk); err != nil {
			if errors.Is(err, syscall.ENOSPC) {
				return name
			}
			t.Fatal(err)
		}
	}
}

// TestFullCacheDisk runs holoproxy with its cache on a real file system that fills up: the go
// command, verifying through holoproxy against a checksum database, still downloads and
// builds the fixtures, with go.sum lines identical to the honest ones; holoproxy verified
// every file it relayed, stored nothing, left no temporary file and says on /metrics that
// the cache cannot store answers. Once the file system has room again, holoproxy stores
// again without a restart.
func TestFullCacheDisk(t *testing.T) {
	disk := tinyFS(t, "2m")
	cache := filepath.Join(disk, "cache")
	mods, roots := fixtureModules()
	db := sumdbtest.New(t, mods)
	org := newOrigin(t, mods)
	p := startHoloproxy(t, append([]string{"--cache-dir=" + cache, "--upstream=" + org.URL}, sumdbArgs(db, "")...), nil)
	filler := fillUp(t, disk)
	g := newApp(t, "http://"+p.addr, mods, roots)

	env := []string{"GOSUMDB=" + db.Key}
	lines := downloadAndBuild(t, g, env, "with the cache disk full", sumLineSet(t, mods))

	m := scrape(t, p.addr)
	if m["holoproxy_server_store_unwritable"] != 1 {
		t.Errorf("holoproxy_server_store_unwritable = %v, want 1", m["holoproxy_server_store_unwritable"])
	}
	// Every .mod and .zip behind a go.sum line went through holoproxy unstored.
	if n := m["holoproxy_server_unstored_answers_total"]; n < float64(len(lines)) {
		t.Errorf("holoproxy_server_unstored_answers_total = %v, want at least the %d go.sum lines", n, len(lines))
	}
	if v := m[`holoproxy_checksum_verifications_total{outcome="verified"}`]; v < float64(len(lines)) {
		t.Errorf("holoproxy verified %v files with the disk full; want at least the %d of go.sum", v, len(lines))
	}
	for k, v := range m {
		if strings.HasPrefix(k, "holoproxy_server_fill_attempts_total{") && !strings.Contains(k, `outcome="ok"`) &&
			!strings.Contains(k, `outcome="not_found"`) && v > 0 {
			t.Errorf("%s = %v: the full disk was charged to an upstream or failed a fill", k, v)
		}
	}
	// The dashboard's document says so too.
	var doc struct {
		Store *struct {
			Unwritable bool  `json:"unwritable"`
			Unstored   int64 `json:"unstored"`
		} `json:"store"`
	}
	if _, body, _ := get(t, "http://"+p.addr+"/api/chain"); json.Unmarshal(body, &doc) != nil || doc.Store == nil ||
		!doc.Store.Unwritable || doc.Store.Unstored < int64(len(lines)) {
		t.Errorf("/api/chain store = %+v; want unwritable with at least %d unstored answers", doc.Store, len(lines))
	}
	if waitLog(p, "level=ERROR", "the cache cannot store answers", "no space left on device") == "" {
		t.Errorf("holoproxy did not log that the cache cannot store answers")
	}
	// The checksum database's latest tree could not be written either: kept in memory, so
	// verification went on (the go.sum check above) with the fork check intact.
	if waitLog(p, "the latest tree is kept in memory") == "" {
		t.Errorf("holoproxy did not log that it kept the checksum database's tree in memory")
	}
	var stored []string
	filepath.WalkDir(cache, func(path string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && !strings.Contains(path, ".sumdb-state") {
			stored = append(stored, strings.TrimPrefix(path, cache))
		}
		return nil
	})
	for _, s := range stored {
		if strings.HasSuffix(s, ".zip") || strings.Contains(s, "/.tmp/") {
			t.Errorf("%s in the cache of a full disk", s)
		}
	}

	// Room again: holoproxy stores again, without a restart, once its retry interval is over.
	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	zip := "/" + strings.TrimPrefix(treeFile(t, "", mods[0], ".zip"), "/")
	deadline := time.Now().Add(30 * time.Second)
	for {
		code, _, h := get(t, "http://"+p.addr+zip)
		if code != http.StatusOK {
			t.Fatalf("GET %s = %d after the disk got room", zip, code)
		}
		if h.Get("X-Holoproxy-Cache") == "hit" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("GET %s: still not stored 30s after the disk got room", zip)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if m := scrape(t, p.addr); m["holoproxy_server_store_unwritable"] != 0 {
		t.Errorf("holoproxy_server_store_unwritable = %v after the disk took files again, want 0", m["holoproxy_server_store_unwritable"])
	}
	t.Logf("go.sum: %d lines; %d answers relayed unstored; small files the full disk still took: %d",
		len(lines), int(m["holoproxy_server_unstored_answers_total"]), len(stored))
}

// TestReadOnlyCacheDir: a cache directory filled online, then served from a read-only
// file system (an offline tree on read-only media, a read-only volume) with --upstream off:
// holoproxy starts, says the directory takes no new file, is ready, and the go command
// downloads, verifies against the checksum database (whose state it reads from the
// read-only directory) and builds the fixtures with the honest go.sum lines. holoproxy
// used to refuse to start there (it could not make its temporary directory).
func TestReadOnlyCacheDir(t *testing.T) {
	disk := tinyFS(t, "16m")
	cache := filepath.Join(disk, "cache")
	mods, roots := fixtureModules()
	db := sumdbtest.New(t, mods)
	org := newOrigin(t, mods)
	want := sumLineSet(t, mods)
	env := []string{"GOSUMDB=" + db.Key}
	online := startHoloproxy(t, append([]string{"--cache-dir=" + cache, "--upstream=" + org.URL}, sumdbArgs(db, "")...), nil)
	downloadAndBuild(t, newApp(t, "http://"+online.addr, mods, roots), env, "filling the cache", want)
	online.cmd.Process.Signal(syscall.SIGTERM)
	if err := online.wait(t); err != nil {
		t.Fatalf("the filling holoproxy exited with %v\n%s", err, online.log.String())
	}
	if err := unix.Mount("", disk, "", unix.MS_REMOUNT|unix.MS_RDONLY|unix.MS_NOSUID|unix.MS_NODEV, ""); err != nil {
		t.Fatalf("remount read-only: %v", err)
	}
	if err := os.WriteFile(filepath.Join(cache, "probe"), nil, 0o644); !errors.Is(err, syscall.EROFS) {
		t.Fatalf("writing into the remounted cache: %v; want EROFS", err)
	}

	p := startHoloproxy(t, append([]string{"--cache-dir=" + cache, "--upstream=off"}, sumdbArgs(db, "")...), nil)
	if waitLog(p, "level=WARN", "takes no new file", "read-only file system") == "" {
		t.Errorf("holoproxy did not say that the cache directory takes no new file:\n%s", p.log.String())
	}
	if code, body, _ := get(t, "http://"+p.addr+"/readyz"); code != http.StatusOK {
		t.Errorf("/readyz on a read-only cache: %d %q; want 200", code, body)
	}
	before := db.Count("")
	g := newApp(t, "http://"+p.addr, mods, roots)
	downloadAndBuild(t, g, env, "from the read-only cache", want)
	t.Logf("the checksum database got %d requests from the read-only holoproxy and the go command", db.Count("")-before)

	// warm --to cannot fill it: it says so at once instead of failing every file.
	code, out := runHoloproxy(t, nil, "warm", "--proxy="+org.URL, "--to="+cache, "--progress=off", g.app)
	if code != 1 || !strings.Contains(out, "takes no new file") || strings.Count(out, "read-only file system") > 2 {
		t.Errorf("warm --to a read-only tree: exit %d; want 1 with one line saying it takes no new file\n%s", code, out)
	}
}
