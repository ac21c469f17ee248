package server

import (
	"context"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"strings"
	"syscall"
	"testing"
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
