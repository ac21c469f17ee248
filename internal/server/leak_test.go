package server

import (
	"context"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"unicode/utf8"

	"github.com/holoproxy/holoproxy/internal/store"
)

// TestLocalFailureNamesNoPath: a store that refuses a fill's file (full, read-only) is
// named in the 503 a client gets, and in /readyz, by what failed and why, never by the
// cache's file names.
func TestLocalFailureNamesNoPath(t *testing.T) {
	const tmpPath = "/cache/.tmp/1234/fill-5678"
	rofs := &fs.PathError{Op: "open", Path: tmpPath, Err: syscall.EROFS}
	for _, tc := range []struct {
		name      string
		createErr error // nil: the temporary file is /dev/full
		memory    int64
		want      string
	}{
		{"read-only, relaying off", rofs, -1, "open: read-only file system"},
		{"full, relaying off", nil, -1, "write: no space left on device"},
		{"full, too large for the relay memory", nil, 64 << 10, "write: no space left on device"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e, _, _ := newFullEnv(t, 256<<10, func(c *Config) {
				c.Store.(*fullDisk).createErr = tc.createErr
				c.RelayMemory = tc.memory
			})
			w := e.get(t, bigKey, http.StatusServiceUnavailable)
			assertOneLine(t, w)
			bodies := []string{w.Body.String()}
			if tc.createErr != nil {
				rw := httptest.NewRecorder()
				e.s.ReadyHandler().ServeHTTP(rw, httptest.NewRequestWithContext(context.Background(), http.MethodGet, "/readyz", nil))
				if rw.Code != http.StatusServiceUnavailable {
					t.Errorf("/readyz = %d %q; want 503", rw.Code, rw.Body.String())
				}
				bodies = append(bodies, rw.Body.String())
			}
			for _, body := range bodies {
				if strings.Contains(body, tmpPath) || strings.Contains(body, "/dev/full") || strings.Contains(body, e.store.Root()) {
					t.Errorf("answer %q names the store's file", body)
				}
				if !strings.Contains(body, tc.want) {
					t.Errorf("answer %q: want it to say %q", body, tc.want)
				}
			}
		})
	}
}

// brokenDisk is a store whose entries, once opened, can be neither read nor rewound: a
// disk that fails under the cache.
type brokenDisk struct {
	store.Store
	root string
}

func (d *brokenDisk) Open(ctx context.Context, key string) (store.Entry, error) {
	e, err := d.Store.Open(ctx, key)
	if err != nil {
		return e, err
	}
	e.Body.Close()
	name := filepath.Join(d.root, filepath.FromSlash(key))
	return store.Entry{Body: brokenBody{name}, Info: e.Info}, nil
}

type brokenBody struct{ name string }

func (b brokenBody) Read([]byte) (int, error) {
	return 0, &fs.PathError{Op: "read", Path: b.name, Err: syscall.EIO}
}

func (b brokenBody) Seek(int64, int) (int64, error) {
	return 0, &fs.PathError{Op: "seek", Path: b.name, Err: syscall.EIO}
}

func (brokenBody) Close() error { return nil }

// TestStoredAnswerUnreadableNamesNoPath: a stored answer that cannot be read is a 500
// whose body names the request, not the cache's file.
func TestStoredAnswerUnreadableNamesNoPath(t *testing.T) {
	o := newOrigin(t)
	e := newEnv(t, o.URL(), func(c *Config) { c.Store = &brokenDisk{c.Store, c.Store.(*store.Disk).Root()} })
	const mod = "/example.com/m/@v/v1.0.0.mod"
	tmp, err := e.store.CreateTemp(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	tmp.WriteString("module example.com/m\n")
	if err := e.store.Commit(context.Background(), strings.TrimPrefix(mod, "/"), tmp); err != nil {
		t.Fatal(err)
	}
	w := e.get(t, mod, http.StatusInternalServerError)
	assertOneLine(t, w)
	if body := w.Body.String(); strings.Contains(body, e.store.Root()) || !strings.Contains(body, "example.com/m") {
		t.Errorf("500 body %q: want the request named and not the cache's file", body)
	}
	if !strings.Contains(e.logs.String(), e.store.Root()) {
		t.Errorf("the log does not say which file failed:\n%s", e.logs)
	}
}

// TestErrorBodyValidUTF8: bytes a client sent that are not UTF-8 (a header value may hold
// any byte above 0x7f) and that an error's reason quotes back are replaced in the body,
// which is text/plain; charset=utf-8.
func TestErrorBodyValidUTF8(t *testing.T) {
	o := newOrigin(t)
	e := newEnv(t, o.URL(), nil)
	for _, tc := range []struct {
		name string
		hops string
		want int
	}{
		{"loop", "caf\xe9, test-instance", http.StatusLoopDetected},
		{"too many hops", strings.Repeat("caf\xe9, ", 40), http.StatusLoopDetected},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := httptest.NewRequest(http.MethodGet, "/example.com/m/@v/list", nil)
			r.Header.Set(HopHeader, tc.hops)
			w := e.serve(r)
			if w.Code != tc.want {
				t.Fatalf("GET with %s %q = %d %q; want %d", HopHeader, tc.hops, w.Code, w.Body.String(), tc.want)
			}
			assertOneLine(t, w)
			if body := w.Body.String(); !utf8.ValidString(body) || !strings.Contains(body, "caf\uFFFD") {
				t.Errorf("body %q: want valid UTF-8, the byte replaced", body)
			}
		})
	}
}
