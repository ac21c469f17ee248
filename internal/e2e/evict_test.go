package e2e

import (
	"bytes"
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/holoproxy/holoproxy/internal/lab/modtree"
)

// TestCacheMaxSize: with --cache-max-size, holoproxy keeps its cache under the bound by
// deleting the zips read longest ago, once the files it stores take it over; .mod files
// stay; an evicted zip asked for again is fetched again and served whole; everything left
// in the cache still verifies against the origin.
func TestCacheMaxSize(t *testing.T) {
	const zipSize, n, max = 64 << 10, 10, 300 << 10 // ten ~64 KiB zips, a bound of ~4.5 of them
	mods := bigModules("mods.test/evict", n, zipSize)
	org := newOrigin(t, mods)
	cache := t.TempDir()
	p := startHoloproxy(t, []string{"--cache-dir=" + cache, "--upstream=" + org.URL, "--cache-max-size=300KiB",
		"--prefetch=0"}, nil)
	base := "http://" + p.addr + "/"
	want := getInOrder(t, base, mods)
	m := waitEvicted(t, p.addr, max)
	var doc struct {
		Store struct {
			MaxBytes  int64 `json:"max_bytes"`
			SizeBytes int64 `json:"size_bytes"`
			Evicted   int64 `json:"evicted"`
		} `json:"store"`
	}
	if _, body, _ := get(t, base+"api/chain"); json.Unmarshal(body, &doc) != nil || doc.Store.MaxBytes != max ||
		doc.Store.Evicted == 0 || doc.Store.SizeBytes > max {
		t.Errorf("/api/chain store = %+v; want the bound %d, evictions and a size under it", doc.Store, max)
	}
	st := verifyStore(t, cache, org)
	var zips, mod int
	for key := range st.keys {
		switch key[len(key)-4:] {
		case ".zip":
			zips++
		case ".mod":
			mod++
		}
	}
	if mod != n || zips == 0 || zips >= n {
		t.Errorf("cache holds %d .mod and %d .zip files; want all %d .mod and some but not all zips", mod, zips, n)
	}
	first := fileKeys(t, mods[0])[2]
	if st.keys[first] {
		t.Errorf("%s, read longest ago, is still in the cache", first)
	}
	last := fileKeys(t, mods[n-1])[2]
	if !st.keys[last] {
		t.Errorf("%s, read last, was evicted", last)
	}

	// The evicted zip is fetched again and served whole.
	before := org.counts()[first]
	code, body, h := get(t, base+first)
	if code != http.StatusOK || !bytes.Equal(body, want[first]) || h.Get("X-Holoproxy-Cache") != "miss" {
		t.Errorf("GET %s after eviction: %d, %d bytes, cache %q; want 200, the zip, a miss", first, code, len(body), h.Get("X-Holoproxy-Cache"))
	}
	if after := org.counts()[first]; after != before+1 {
		t.Errorf("origin saw %d requests for %s after eviction, want 1", after-before, first)
	}
	t.Logf("bound %d: %v bytes left, %v zips (%v bytes) evicted", max, m["holoproxy_cache_size_bytes"],
		m["holoproxy_cache_evicted_files_total"], m["holoproxy_cache_evicted_bytes_total"])
}

// getInOrder GETs every file of mods through the proxy at base, module by module with a
// pause between them (distinct access times, oldest first), and returns the bodies by key.
func getInOrder(t *testing.T, base string, mods []modtree.Module) map[string][]byte {
	t.Helper()
	want := map[string][]byte{}
	for _, m := range mods {
		for _, key := range fileKeys(t, m) {
			code, body, _ := get(t, base+key)
			if code != http.StatusOK {
				t.Fatalf("GET %s = %d", key, code)
			}
			want[key] = body
		}
		time.Sleep(20 * time.Millisecond)
	}
	return want
}

// waitEvicted waits (15 s at most) until the holoproxy at addr has evicted files and its
// cache is under max bytes, and returns its metrics then.
func waitEvicted(t *testing.T, addr string, max float64) map[string]float64 {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		m := scrape(t, addr)
		if m["holoproxy_cache_evicted_files_total"] > 0 && m["holoproxy_cache_size_bytes"] <= max {
			return m
		}
		if time.Now().After(deadline) {
			t.Fatalf("cache not brought under the bound within 15s: size %v, evicted %v",
				m["holoproxy_cache_size_bytes"], m["holoproxy_cache_evicted_files_total"])
		}
		time.Sleep(100 * time.Millisecond)
	}
}
