package main

import (
	"strings"
	"testing"

	"github.com/holoproxy/holoproxy/internal/lab/modtree"
)

// records computes, from a GOPROXY tree on disk, the go.sum lines modtree computes for the
// modules it wrote: one record per module version, zip line first.
func TestRecords(t *testing.T) {
	mods := []modtree.Module{
		{Path: "mods.test/a", Version: "v1.0.0"},
		{Path: "mods.test/Upper", Version: "v1.2.0"},
		{Path: "mods.test/inc", Version: "v2.0.0+incompatible", NoGoMod: true},
	}
	dir := t.TempDir()
	if err := modtree.Write(dir, mods); err != nil {
		t.Fatal(err)
	}
	recs, err := records(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != len(mods) {
		t.Fatalf("%d records; want %d", len(recs), len(mods))
	}
	got := map[string]string{}
	for _, r := range recs {
		got[r.path+"@"+r.version] = strings.Join(r.lines, "\n")
	}
	for _, m := range mods {
		want, err := m.SumLines()
		if err != nil {
			t.Fatal(err)
		}
		if g := got[m.Path+"@"+m.Version]; g != strings.Join(want, "\n") {
			t.Errorf("%s@%s: record\n%s\nwant\n%s", m.Path, m.Version, g, strings.Join(want, "\n"))
		}
	}
}
