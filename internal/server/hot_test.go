package server

import (
	"context"
	"io/fs"
	"net/http"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/holoproxy/holoproxy/internal/store"
)

// countingStore counts Open calls by key kind.
type countingStore struct {
	store.Store
	opens atomic.Int64
}

func (c *countingStore) Open(ctx context.Context, key string) (store.Entry, error) {
	c.opens.Add(1)
	return c.Store.Open(ctx, key)
}

func TestHotCache(t *testing.T) {
	for _, tt := range []struct {
		name       string
		hotEntries int
		path       string
		wantHot    bool
	}{
		{"mod kept in memory", 0, "/example.com/m/@v/v1.0.0.mod", true},
		{"info kept in memory", 0, "/example.com/m/@v/v1.0.0.info", true},
		{"zip read from the store", 0, "/example.com/m/@v/v1.0.0.zip", false},
		{"list read from the store", 0, "/example.com/m/@v/list", false},
		{"disabled", -1, "/example.com/m/@v/v1.0.0.mod", false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			o := newOrigin(t)
			var cs *countingStore
			e := newEnv(t, o.URL(), func(c *Config) {
				cs = &countingStore{Store: c.Store}
				c.Store = cs
				c.HotEntries = tt.hotEntries
			})
			want := fixture(t, o, strings.TrimPrefix(tt.path, "/"))
			e.get(t, tt.path, http.StatusOK) // miss: fill, then served from the store
			e.get(t, tt.path, http.StatusOK) // hit from the store (and into memory if hot)
			before := cs.opens.Load()
			for i := 0; i < 5; i++ {
				w := e.get(t, tt.path, http.StatusOK)
				if w.Body.String() != string(want) || w.Header().Get(CacheHeader) != CacheHit {
					t.Fatalf("GET %s = %q (%s); want the fixture, hit", tt.path, w.Body.String(), w.Header().Get(CacheHeader))
				}
				if cl := w.Header().Get("Content-Length"); cl != "" && cl != strconv.Itoa(len(want)) {
					t.Fatalf("Content-Length %s; want %d", cl, len(want))
				}
			}
			h := e.do(http.MethodHead, tt.path)
			if h.Code != http.StatusOK || h.Body.Len() != 0 || h.Header().Get("Content-Length") != strconv.Itoa(len(want)) {
				t.Errorf("HEAD %s = %d, body %d bytes, Content-Length %q; want 200, empty, %d", tt.path, h.Code, h.Body.Len(), h.Header().Get("Content-Length"), len(want))
			}
			opens := cs.opens.Load() - before
			if tt.wantHot && opens != 0 {
				t.Errorf("%d store opens for 6 hits; want none: small immutable answers come from memory", opens)
			}
			if !tt.wantHot && opens < 6 {
				t.Errorf("%d store opens for 6 hits; want one each", opens)
			}
			if o.count(strings.TrimPrefix(tt.path, "/")) != 1 {
				t.Errorf("origin asked %d times; want once", o.count(strings.TrimPrefix(tt.path, "/")))
			}
		})
	}
}

// evictingStore plays the race between a fill and eviction (--cache-max-size): the first
// look finds nothing (another fill is storing the zip), the fill then finds it stored,
// and it is deleted before the answer opens it.
type evictingStore struct {
	store.Store
	key   string
	opens atomic.Int64
}

func (s *evictingStore) Open(ctx context.Context, key string) (store.Entry, error) {
	if key == s.key {
		switch s.opens.Add(1) {
		case 1:
			return store.Entry{}, fs.ErrNotExist
		case 2:
			if err := s.Store.Delete(ctx, key); err != nil {
				return store.Entry{}, err
			}
		}
	}
	return s.Store.Open(ctx, key)
}

// TestEvictedBeforeOpenFillsAgain: a stored answer evicted between the fill's look and
// the answer's open is filled again, never a 500.
func TestEvictedBeforeOpenFillsAgain(t *testing.T) {
	const path = "/example.com/m/@v/v1.0.0.zip"
	o := newOrigin(t)
	var es *evictingStore
	e := newEnv(t, o.URL(), func(c *Config) {
		es = &evictingStore{Store: c.Store}
		c.Store = es
	})
	want := fixture(t, o, strings.TrimPrefix(path, "/"))
	e.get(t, path, http.StatusOK) // stored (its opens are of no key es watches yet)
	e.settle()
	es.key = strings.TrimPrefix(path, "/")
	before := o.count(es.key)
	w := e.get(t, path, http.StatusOK)
	if w.Body.String() != string(want) || w.Header().Get(CacheHeader) != CacheMiss {
		t.Errorf("GET %s after the stored zip was evicted before it was opened: %q (%s); want the fixture, miss",
			path, w.Body.String(), w.Header().Get(CacheHeader))
	}
	if n := es.opens.Load(); n < 3 {
		t.Errorf("%d opens of the key; the race was not played", n)
	}
	if n := o.count(es.key) - before; n != 1 {
		t.Errorf("%d origin requests for the evicted zip; want 1", n)
	}
}
