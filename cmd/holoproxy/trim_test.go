package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/holoproxy/holoproxy/internal/store"
)

// TestTrim: trim brings a cache directory under --max-size by deleting the zips read
// longest ago; one that only .mod files keep over it exits 1; no --max-size is a usage
// error.
func TestTrim(t *testing.T) {
	dir := t.TempDir()
	d, err := store.OpenDisk(dir)
	if err != nil {
		t.Fatal(err)
	}
	put := func(key string, n int, read time.Time) {
		f, err := d.CreateTemp(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.Write(bytes.Repeat([]byte("x"), n)); err != nil {
			t.Fatal(err)
		}
		if err := d.Commit(context.Background(), key, f); err != nil {
			t.Fatal(err)
		}
		if err := os.Chtimes(filepath.Join(dir, filepath.FromSlash(key)), read, read.Add(-time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
	base := time.Now().Add(-24 * time.Hour)
	for i, v := range []string{"v1.0.0", "v1.1.0", "v1.2.0"} {
		put("example.com/m/@v/"+v+".mod", 100, base)
		put("example.com/m/@v/"+v+".zip", 1000, base.Add(time.Duration(i)*time.Hour))
	}
	run := func(args ...string) (int, string, string) {
		var out, errb bytes.Buffer
		code := execute(append([]string{"trim", "--cache-dir=" + dir}, args...), func(string) (string, bool) { return "", false }, &out, &errb)
		return code, out.String(), errb.String()
	}

	if code, _, errOut := run(); code != exitUsage || !strings.Contains(errOut, "--max-size") {
		t.Errorf("no --max-size: exit %d, %q; want a usage error", code, errOut)
	}
	// 3300 bytes, bound 2500 (low water 2250): the two zips read longest ago go.
	code, out, errOut := run("--max-size=2500")
	if code != exitOK || !strings.Contains(out, "deleted 2 zips") {
		t.Fatalf("trim: exit %d, %q, %q; want 0 and 2 zips deleted", code, out, errOut)
	}
	for v, want := range map[string]bool{"v1.0.0": false, "v1.1.0": false, "v1.2.0": true} {
		_, err := os.Stat(filepath.Join(dir, "example.com", "m", "@v", v+".zip"))
		if (err == nil) != want {
			t.Errorf("%s.zip kept %v, want %v", v, err == nil, want)
		}
	}
	// Only .mod files and one zip over a bound of 200: the zip goes, still over: exit 1.
	if code, _, errOut := run("--max-size=200"); code != exitFailure || !strings.Contains(errOut, "still over") {
		t.Errorf("trim under the .mod files: exit %d, %q; want 1 saying it is still over", code, errOut)
	}
}
