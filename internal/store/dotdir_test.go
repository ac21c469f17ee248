package store

import (
	"context"
	"os"
	"path/filepath"
	"testing"
)

// Private state kept in a dot directory of the cache directory (the checksum verifier's)
// is never walked as if it were part of the GOPROXY tree.
func TestDiskWalkSkipsDotDirectories(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	d, err := OpenDisk(dir)
	if err != nil {
		t.Fatal(err)
	}
	put(t, d, "example.com/m/@v/v1.0.0.mod", "module example.com/m\n")
	state := filepath.Join(dir, ".sumdb-state", "cache", "lookup")
	if err := os.MkdirAll(state, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(state, "example.com!m@v1.0.0"), []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	var keys []string
	if err := d.Walk(ctx, "", func(k string, _ Info) error { keys = append(keys, k); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(keys) != 1 || keys[0] != "example.com/m/@v/v1.0.0.mod" {
		t.Errorf("Walk = %q; want only the module file, nothing under .sumdb-state", keys)
	}
}
