package sumdbtest

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/holoproxy/holoproxy/internal/lab/modtree"
)

// Start serves a database outside a test's lifetime: records added later are looked up,
// and Close stops it.
func TestStartAndClose(t *testing.T) {
	hc := &http.Client{Timeout: 30 * time.Second}
	db, err := Start("bench.test")
	if err != nil {
		t.Fatal(err)
	}
	m := modtree.Module{Path: "mods.test/a", Version: "v1.0.0"}
	if err := db.Add(m); err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(db.Key, "bench.test+") {
		t.Errorf("Key = %q; want it named bench.test", db.Key)
	}
	resp, err := hc.Get(db.URL + "/lookup/mods.test/a@v1.0.0")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	lines, _ := m.SumLines()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), lines[0]) {
		t.Errorf("lookup: %d %q; want 200 with %q", resp.StatusCode, body, lines[0])
	}
	db.Close()
	if _, err := hc.Get(db.URL + "/latest"); err == nil {
		t.Errorf("database still answers after Close")
	}
}
