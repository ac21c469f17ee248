package dashboard

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
)

// TestCounterKeepsReaderFrom checks that the counter wrapped around the proxy passes a
// stored file on as io.ReaderFrom (what lets net/http use sendfile) and still counts it.
func TestCounterKeepsReaderFrom(t *testing.T) {
	f := filepath.Join(t.TempDir(), "v1.0.0.zip")
	if err := os.WriteFile(f, make([]byte, 1<<20), 0o644); err != nil {
		t.Fatal(err)
	}
	var sawReaderFrom bool
	c := &CacheCounter{Header: "X-Holoproxy-Cache"}
	h := c.Wrap(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rf, ok := w.(io.ReaderFrom)
		sawReaderFrom = ok
		if !ok {
			t.Fatal("the counter hides io.ReaderFrom: no sendfile behind it")
		}
		file, err := os.Open(f)
		if err != nil {
			t.Fatal(err)
		}
		defer file.Close()
		w.Header().Set("X-Holoproxy-Cache", "hit")
		if _, err := rf.ReadFrom(file); err != nil {
			t.Fatal(err)
		}
	}))
	srv := httptest.NewServer(h)
	defer srv.Close()
	resp, err := http.Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	n, _ := io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	st := c.Stats()
	if !sawReaderFrom || n != 1<<20 || st.Hits != 1 || st.BytesServed != 1<<20 {
		t.Errorf("ReaderFrom %v, %d bytes received, stats %+v; want a counted hit of %d bytes", sawReaderFrom, n, st, 1<<20)
	}
}

// TestCacheCounterCount: answers reported by the handler itself (server.Config.OnAnswer)
// land in the same figures as wrapped ones.
func TestCacheCounterCount(t *testing.T) {
	c := &CacheCounter{Header: "X-Holoproxy-Cache"}
	for _, a := range []struct {
		state string
		n     int64
	}{{"hit", 10}, {"hit", 5}, {"miss", 100}, {"stale", 1}, {"negative", 0}, {"", 7}} {
		c.Count(a.state, a.n)
	}
	want := CacheStats{Hits: 2, Misses: 1, Stale: 1, Negative: 1, Other: 1, BytesServed: 123}
	if st := c.Stats(); st != want {
		t.Fatalf("Stats() = %+v, want %+v", st, want)
	}
}
