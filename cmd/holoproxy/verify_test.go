package main

import (
	"bytes"
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/holoproxy/holoproxy/internal/checksum/sumdbtest"
	"github.com/holoproxy/holoproxy/internal/lab/modtree"
	"github.com/holoproxy/holoproxy/internal/store"
)

// verify over a cache that a test filled: clean (0), a corrupted go.mod found (1) and kept,
// found and purged (1), then clean again (0); usage errors exit 2.
func TestVerifyCommand(t *testing.T) {
	mods := []modtree.Module{{Path: "mods.test/a", Version: "v1.0.0"}, {Path: "mods.test/b", Version: "v1.1.0"}}
	db := sumdbtest.New(t, mods)
	dir := t.TempDir()
	if err := modtree.Write(dir, mods); err != nil {
		t.Fatal(err)
	}
	// A serve's fill in progress must survive a verify beside it.
	disk, err := store.OpenDisk(dir)
	if err != nil {
		t.Fatal(err)
	}
	fill, err := disk.CreateTemp(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	defer disk.Discard(fill)

	run := func(args ...string) (int, string, string) {
		t.Helper()
		var out, errb bytes.Buffer
		args = append([]string{"verify", "--cache-dir=" + dir, "--sumdb=" + db.GOSUMDB(), "--gonosumdb=", "--goprivate="}, args...)
		code := execute(args, func(string) (string, bool) { return "", false }, &out, &errb)
		return code, out.String(), errb.String()
	}
	if code, out, errs := run(); code != exitOK || !strings.Contains(out, "checked 4: ok 4") {
		t.Fatalf("clean cache: exit %d, out %q, err %q; want 0 and 4 files ok", code, out, errs)
	}
	bad := filepath.Join(dir, "mods.test", "b", "@v", "v1.1.0.mod")
	if err := os.WriteFile(bad, []byte("module mods.test/b\n\nrequire evil.test/x v1.0.0\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	code, out, _ := run()
	if code != exitFailure || !strings.Contains(out, "FAIL mods.test/b/@v/v1.1.0.mod: ") || !strings.Contains(out, "failed 1, purged 0") {
		t.Errorf("corrupted go.mod: exit %d, out %q; want 1 naming the file, nothing purged", code, out)
	}
	if _, err := os.Stat(bad); err != nil {
		t.Errorf("without --purge the failed file is gone: %v", err)
	}
	code, out, _ = run("--purge")
	if code != exitFailure || !strings.Contains(out, "(purged)") || !strings.Contains(out, "failed 1, purged 1") {
		t.Errorf("--purge: exit %d, out %q; want 1 with the file purged", code, out)
	}
	if _, err := os.Stat(bad); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("after --purge the failed file is still there: %v", err)
	}
	if code, out, _ := run(); code != exitOK || !strings.Contains(out, "checked 3: ok 3") {
		t.Errorf("after purge: exit %d, out %q; want 0 and 3 files ok", code, out)
	}
	if _, err := os.Stat(fill.Name()); err != nil {
		t.Errorf("verify removed a fill in progress: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, sumdbStateDir)); err != nil {
		t.Errorf("verifier state not kept under the cache directory: %v", err)
	}

	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"sumdb off", []string{"verify", "--cache-dir=" + dir, "--sumdb=off"}, exitUsage, "checksum database is off"},
		{"no key known", []string{"verify", "--cache-dir=" + dir, "--sumdb=nokey.test http://127.0.0.1:1", "--gonosumdb=", "--goprivate="}, exitUsage, "nokey.test+<key>"},
		{"missing cache dir", []string{"verify", "--cache-dir=" + filepath.Join(dir, "nope"), "--sumdb=" + db.GOSUMDB()}, exitFailure, "no such file"},
		{"argument", []string{"verify", "now"}, exitUsage, "no arguments"},
	} {
		var out, errb bytes.Buffer
		if code := execute(tc.args, func(string) (string, bool) { return "", false }, &out, &errb); code != tc.code || !strings.Contains(errb.String(), tc.want) {
			t.Errorf("%s: exit %d, stderr %q; want %d and %q", tc.name, code, errb.String(), tc.code, tc.want)
		}
	}
}
