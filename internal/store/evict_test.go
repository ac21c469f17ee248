package store

import (
	"bytes"
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"
)

// evictFixture stores, in a new disk store, a .mod and an .info of 100 bytes and a .zip of
// 1000 bytes for each of n versions; version i was last read i hours after the first.
func evictFixture(t *testing.T, n int) (*Disk, []string) {
	t.Helper()
	d, err := OpenDisk(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	base := time.Now().Add(-48 * time.Hour).Truncate(time.Second)
	var zips []string
	for i := range n {
		v := "example.com/m/@v/v1.0." + string(rune('0'+i))
		put(t, d, v+".mod", strings.Repeat("m", 100))
		put(t, d, v+".info", strings.Repeat("i", 100))
		put(t, d, v+".zip", strings.Repeat("z", 1000))
		zips = append(zips, v+".zip")
		for _, ext := range []string{".mod", ".info", ".zip"} {
			// Stored at base, read at base + i hours (the .mod and .info later still).
			read := base.Add(time.Duration(i) * time.Hour)
			if ext != ".zip" {
				read = base.Add(47 * time.Hour)
			}
			if err := os.Chtimes(filepath.Join(d.Root(), filepath.FromSlash(v+ext)), read, base); err != nil {
				t.Fatal(err)
			}
		}
	}
	return d, zips
}

func keysOf(t *testing.T, d *Disk) []string {
	t.Helper()
	var keys []string
	if err := d.Walk(context.Background(), "", func(k string, _ Info) error { keys = append(keys, k); return nil }); err != nil {
		t.Fatal(err)
	}
	return keys
}

func TestEvictorPass(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the order of eviction follows access times, which the store reads on Linux")
	}
	ctx := context.Background()
	var logs bytes.Buffer
	log := slog.New(slog.NewTextHandler(&logs, nil))

	// 6 versions: 6 x 1200 bytes. Under the bound: nothing goes.
	d, zips := evictFixture(t, 6)
	res, err := NewEvictor(d, EvictorConfig{Max: 7200, Logger: log}).Pass(ctx)
	if err != nil || res.Size != 7200 || res.Deleted != 0 {
		t.Fatalf("under the bound: %+v, %v; want size 7200, nothing deleted", res, err)
	}

	// A client is reading the oldest zip when it is evicted: it reads it to the end.
	reader, err := d.Open(ctx, zips[0])
	if err != nil {
		t.Fatal(err)
	}
	defer reader.Body.Close()

	// Bound 5000, low water 4000: the 3 zips read longest ago go (7200 -> 4200 -> ...).
	ev := NewEvictor(d, EvictorConfig{Max: 5000, Low: 4200, Logger: log})
	res, err = ev.Pass(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if res.Deleted != 3 || res.Freed != 3000 || res.Size != 4200 {
		t.Errorf("pass: %+v; want 3 zips, 3000 bytes deleted, 4200 left", res)
	}
	left := keysOf(t, d)
	for i, z := range zips {
		if gone := !slices.Contains(left, z); gone != (i < 3) {
			t.Errorf("%s (read %d h after the first): deleted %v", z, i, gone)
		}
	}
	if n := len(left); n != 6*3-3 {
		t.Errorf("%d entries left, want 15 (every .mod and .info, 3 zips): %v", n, left)
	}
	if size, files, freed := ev.Stats(); size != 4200 || files != 3 || freed != 3000 {
		t.Errorf("Stats = %d, %d, %d", size, files, freed)
	}
	data, err := io.ReadAll(reader.Body)
	if err != nil || len(data) != 1000 {
		t.Errorf("the open zip read %d bytes after eviction, %v; want 1000", len(data), err)
	}

	// Only .mod and .info over the bound: nothing more to delete, and the log says so.
	res, err = NewEvictor(d, EvictorConfig{Max: 1000, Logger: log}).Pass(ctx)
	if err != nil || res.Deleted != 3 || res.Size != 1200 {
		t.Errorf("last pass: %+v, %v; want the 3 last zips deleted and 1200 bytes of .mod and .info left", res, err)
	}
	if !strings.Contains(logs.String(), "still over its maximum size") {
		t.Errorf("no warning that the cache stays over its bound:\n%s", logs.String())
	}
}

// TestEvictorStoredTriggersPass: bytes stored that take the store over the bound start a
// pass without waiting for the interval.
func TestEvictorStoredTriggersPass(t *testing.T) {
	d, _ := evictFixture(t, 4) // 4800 bytes
	ev := NewEvictor(d, EvictorConfig{Max: 5000, Interval: time.Hour, Logger: slog.New(slog.DiscardHandler)})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); ev.Run(ctx) }()
	defer func() { cancel(); <-done }()
	waitFor := func(cond func() bool, what string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("waited 10s for %s", what)
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitFor(func() bool { s, _, _ := ev.Stats(); return s == 4800 }, "the first pass")
	put(t, d, "example.com/m/@v/v1.1.0.zip", strings.Repeat("z", 1000))
	ev.Stored(1000)
	waitFor(func() bool { _, files, _ := ev.Stats(); return files > 0 }, "the pass Stored starts")
	if size, _, _ := ev.Stats(); size > 4500 {
		t.Errorf("size %d after the pass, want at most the low water 4500", size)
	}
}
