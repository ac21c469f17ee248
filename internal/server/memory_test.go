package server

import (
	"io"
	"net/http"
	"net/http/httptest"
	"runtime"
	"testing"
)

// TestLargeZipNotBuffered: filling and serving a 24 MB zip allocates a small fraction of its
// size, in the whole process (origin, server and client together): the zip streams
// upstream -> disk -> client and is never held in memory.
func TestLargeZipNotBuffered(t *testing.T) {
	if testing.Short() {
		t.Skip("builds a 24 MB module zip")
	}
	const size = 24 << 20
	e := newBigEnv(t, size)
	proxy := httptest.NewServer(e.s)
	defer proxy.Close()

	get := func() int64 {
		resp, err := testHTTPClient.Get(proxy.URL + bigKey)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		n, err := io.Copy(io.Discard, resp.Body)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("GET zip: %d, %v", resp.StatusCode, err)
		}
		return n
	}
	for _, cache := range []string{"miss", "hit"} {
		runtime.GC()
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		n := get()
		runtime.ReadMemStats(&after)
		alloc := after.TotalAlloc - before.TotalAlloc
		t.Logf("%s: %d bytes served, %d bytes allocated", cache, n, alloc)
		if n < size {
			t.Fatalf("%s: served %d bytes; want at least %d", cache, n, size)
		}
		if alloc > size/8 {
			t.Errorf("%s: %d bytes allocated to serve a %d-byte zip; want under %d", cache, alloc, n, size/8)
		}
	}
}
