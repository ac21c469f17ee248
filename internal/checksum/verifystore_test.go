package checksum

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"strings"
	"testing"

	"github.com/holoproxy/holoproxy/internal/checksum/sumdbtest"
	"github.com/holoproxy/holoproxy/internal/lab/modtree"
	"golang.org/x/mod/module"
)

// fillStore writes the GOPROXY tree of mods into a new dirStore, as fills would.
func fillStore(t *testing.T, mods []modtree.Module) dirStore {
	t.Helper()
	st := newDirStore(t)
	if err := modtree.Write(st.dir, mods); err != nil {
		t.Fatal(err)
	}
	return st
}

func TestVerifyStore(t *testing.T) {
	unknown := modtree.Module{Path: "mods.test/unknown", Version: "v1.0.0"}
	mods := []modtree.Module{modA, modB, modC, modPriv}
	tests := []struct {
		name    string
		corrupt map[string][]byte // store key -> new content
		down    bool
		purge   bool
		want    Report // counts only
		gone    []string
		extra   []modtree.Module // stored but unknown to the database
	}{
		{name: "clean", want: Report{Checked: 8, OK: 6, Exempt: 2}},
		{name: "corrupted, report only",
			corrupt: map[string][]byte{
				"mods.test/b/@v/v1.2.0.zip": tamperZip(t, modB),
				"mods.test/c/@v/v0.1.0.mod": []byte("module mods.test/c\n\nrequire evil.test/x v1.0.0\n"),
			},
			want: Report{Checked: 8, OK: 4, Exempt: 2, Failed: 2}},
		{name: "corrupted, purged",
			corrupt: map[string][]byte{
				"mods.test/b/@v/v1.2.0.zip":      tamperZip(t, modB),
				"mods.test/a/@v/v1.0.0.zip":      []byte("PK truncated"),                        // not even a zip
				"corp.test/secret/@v/v1.0.0.mod": []byte("module corp.test/secret // exempt\n"), // exempt: not a failure
			},
			purge: true,
			want:  Report{Checked: 8, OK: 4, Exempt: 2, Failed: 2, Purged: 2},
			gone:  []string{"mods.test/b/@v/v1.2.0.zip", "mods.test/a/@v/v1.0.0.zip"}},
		{name: "exempt files not whole: failed, purged",
			corrupt: map[string][]byte{
				"corp.test/secret/@v/v1.0.0.zip": corruptZipContent(t, mustZip(t, modPriv)), // CheckZip passes it
				"corp.test/secret/@v/v1.0.0.mod": []byte("module corp.test/other\n"),
			},
			purge: true,
			want:  Report{Checked: 8, OK: 6, Failed: 2, Purged: 2},
			gone:  []string{"corp.test/secret/@v/v1.0.0.zip", "corp.test/secret/@v/v1.0.0.mod"}},
		{name: "database down: unverified, nothing purged", down: true, purge: true,
			want: Report{Checked: 8, Exempt: 2, Unverified: 6}},
		{name: "version unknown to the database: unverified, not purged", purge: true, extra: []modtree.Module{unknown},
			want: Report{Checked: 10, OK: 6, Exempt: 2, Unverified: 2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db := sumdbtest.New(t, mods)
			st := fillStore(t, append(append([]modtree.Module(nil), mods...), tt.extra...))
			for key, data := range tt.corrupt {
				if err := os.WriteFile(st.path(key), data, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			db.SetDown(tt.down)
			v := newVerifier(t, db, t.TempDir(), "corp.test")
			rep, err := VerifyStore(context.Background(), st, v, tt.purge)
			if err != nil {
				t.Fatal(err)
			}
			if rep.String() != tt.want.String() {
				t.Fatalf("report = %s, want %s", rep, tt.want)
			}
			if n := db.Count("corp.test"); n != 0 {
				t.Errorf("the database got %d requests for the exempt module", n)
			}
			if rep.Clean() != (tt.want.Failed == 0 && tt.want.Unverified == 0) {
				t.Errorf("Clean() = %v for %s", rep.Clean(), rep)
			}
			if len(rep.Failures) != rep.Failed {
				t.Errorf("%d failures listed for %d failed", len(rep.Failures), rep.Failed)
			}
			for _, f := range rep.Failures {
				if _, ok := tt.corrupt[f.Key]; !ok {
					t.Errorf("failure of an intact file %s: %s", f.Key, f.Reason)
				}
				if f.Purged != tt.purge {
					t.Errorf("%s purged = %v, want %v", f.Key, f.Purged, tt.purge)
				}
				if strings.HasSuffix(f.Key, "b/@v/v1.2.0.zip") && !strings.Contains(f.Reason, "checksum mismatch") {
					t.Errorf("reason for %s = %q, want a checksum mismatch", f.Key, f.Reason)
				}
			}
			for _, u := range rep.Unverifiable {
				if _, err := st.Stat(context.Background(), u.Key); err != nil {
					t.Errorf("unverified %s was removed: %v", u.Key, err)
				}
			}
			for _, key := range tt.gone {
				if _, err := st.Stat(context.Background(), key); !errors.Is(err, fs.ErrNotExist) {
					t.Errorf("%s still stored after purge (%v)", key, err)
				}
			}
			if tt.purge && len(tt.gone) > 0 {
				// A second pass over the purged store finds nothing wrong.
				db.SetDown(false)
				again, err := VerifyStore(context.Background(), st, v, false)
				if err != nil {
					t.Fatal(err)
				}
				if again.Failed != 0 || again.Checked != tt.want.Checked-len(tt.gone) {
					t.Errorf("after purge: %s, want %d checked and none failed", again, tt.want.Checked-len(tt.gone))
				}
			}
		})
	}
}

func mustZip(t *testing.T, m modtree.Module) []byte {
	t.Helper()
	z, err := m.Zip()
	if err != nil {
		t.Fatal(err)
	}
	return z
}

// FuzzParseVersionKey checks the recognition of the .mod and .zip keys of a store (file
// names read back from a cache directory or a bucket listing, any of which may be foreign):
// what is recognised is the key of a valid module version, which it names back exactly.
func FuzzParseVersionKey(f *testing.F) {
	for _, s := range []string{
		"mods.test/m/@v/v1.0.0.mod", "mods.test/m/@v/v1.0.0.zip", "mods.test/!upper/@v/v1.0.0-!r!c1.zip",
		"mods.test/m/@v/v1.0.0.info", "mods.test/m/@v/list", "mods.test/m/@latest", "sumdb/sum.test/lookup/m@v1.0.0",
		"sumdb/x/@v/v1.0.0.mod", "mods.test/m/@v/master.zip", "mods.test/m/@v/v1.0.zip", "../m/@v/v1.0.0.mod",
		"mods.test/m/@v/@v/v1.0.0.mod", "mods.test/m/v2/@v/v1.0.0.mod", "mods.test/m/@v/v2.0.0+incompatible.mod",
		"mods.test/Upper/@v/v1.0.0.mod", "mods.test/m/@v/.zip", ".tmp/x/@v/v1.0.0.zip",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, key string) {
		path, version, isZip, ok := parseVersionKey(key)
		if !ok {
			return
		}
		if err := module.Check(path, version); err != nil {
			t.Fatalf("parseVersionKey(%q) = %s %s, not a valid module version: %v", key, path, version, err)
		}
		escPath, err1 := module.EscapePath(path)
		escVer, err2 := module.EscapeVersion(version)
		if err1 != nil || err2 != nil {
			t.Fatalf("parseVersionKey(%q) = %s %s, which does not escape: %v %v", key, path, version, err1, err2)
		}
		ext := ".mod"
		if isZip {
			ext = ".zip"
		}
		if back := escPath + "/@v/" + escVer + ext; back != key {
			t.Fatalf("parseVersionKey(%q) = %s %s zip=%v, whose key is %q", key, path, version, isZip, back)
		}
	})
}
