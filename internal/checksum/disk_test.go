package checksum

import (
	"context"
	"errors"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"

	"github.com/holoproxy/holoproxy/internal/checksum/sumdbtest"
	"github.com/holoproxy/holoproxy/internal/lab/modtree"
	"github.com/holoproxy/holoproxy/internal/store"
)

// TestWithDiskStore runs VerifyStore and the SumDBProxy over the real disk store, whose tree
// holds both the GOPROXY files and the proxy's sumdb/ cache.
func TestWithDiskStore(t *testing.T) {
	ctx := context.Background()
	mods := []modtree.Module{modA, modB}
	db := sumdbtest.New(t, mods)
	cacheDir := t.TempDir()
	st, err := store.OpenDisk(cacheDir)
	if err != nil {
		t.Fatal(err)
	}
	if err := modtree.Write(cacheDir, mods); err != nil {
		t.Fatal(err)
	}
	p, err := NewSumDBProxy(ProxyConfig{DB: SumDB{Name: db.Name, Key: db.Key}, Store: st, BaseURL: FixedBaseURL(db.URL), Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []string{"miss", "hit"} {
		rec := httptest.NewRecorder()
		p.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/sumdb/sum.test/lookup/mods.test/a@v1.0.0", nil))
		if rec.Code != 200 || rec.Header().Get(CacheHeader) != want {
			t.Fatalf("lookup %d: %d %s=%q, want 200 %s", i, rec.Code, CacheHeader, rec.Header().Get(CacheHeader), want)
		}
	}
	zipKey := "mods.test/b/@v/v1.2.0.zip"
	if err := os.WriteFile(filepath.Join(cacheDir, filepath.FromSlash(zipKey)), tamperZip(t, modB), 0o644); err != nil {
		t.Fatal(err)
	}
	v := newVerifier(t, db, filepath.Join(cacheDir, ".sumdb-state"), "")
	rep, err := VerifyStore(ctx, st, v, true)
	if err != nil {
		t.Fatal(err)
	}
	if rep.String() != (Report{Checked: 4, OK: 3, Failed: 1, Purged: 1}).String() {
		t.Fatalf("report = %s", rep)
	}
	if _, err := st.Stat(ctx, zipKey); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("tampered zip still stored: %v", err)
	}
}
