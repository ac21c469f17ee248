package checksum

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/holoproxy/holoproxy/internal/checksum/sumdbtest"
	"github.com/holoproxy/holoproxy/internal/lab/modtree"
)

var (
	modA    = modtree.Module{Path: "mods.test/a", Version: "v1.0.0"}
	modB    = modtree.Module{Path: "mods.test/b", Version: "v1.2.0", Files: map[string]string{"b.go": "package b\n", "sub/s.go": "package sub\n"}}
	modC    = modtree.Module{Path: "mods.test/c", Version: "v0.1.0"}
	modPriv = modtree.Module{Path: "corp.test/secret", Version: "v1.0.0"}
)

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func newVerifier(t *testing.T, db *sumdbtest.DB, dir, nosumdb string) *Verifier {
	t.Helper()
	v, err := NewVerifier(VerifierConfig{
		DB:      SumDB{Name: db.Name, Key: db.Key},
		NoSumDB: nosumdb,
		Dir:     dir,
		BaseURL: FixedBaseURL(db.URL),
		Logger:  quietLogger(),
	})
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// tamperZip returns m's zip with the content of one file changed.
func tamperZip(t *testing.T, m modtree.Module) []byte {
	t.Helper()
	z, err := m.Zip()
	if err != nil {
		t.Fatal(err)
	}
	bad, err := modtree.TamperZip(z)
	if err != nil {
		t.Fatal(err)
	}
	return bad
}

func writeTemp(t *testing.T, data []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "f")
	if err := os.WriteFile(p, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestVerifier(t *testing.T) {
	db := sumdbtest.New(t, []modtree.Module{modA, modB, modC, modPriv})
	v := newVerifier(t, db, t.TempDir(), "corp.test")
	ctx := context.Background()

	zipOf := func(m modtree.Module) []byte {
		z, err := m.Zip()
		if err != nil {
			t.Fatal(err)
		}
		return z
	}
	tests := []struct {
		name    string
		m       modtree.Module
		isZip   bool
		data    []byte
		wantErr error // nil: verifies
	}{
		{"honest mod", modA, false, modA.GoMod(), nil},
		{"honest zip", modA, true, zipOf(modA), nil},
		{"honest zip with subdir", modB, true, zipOf(modB), nil},
		{"honest mod b", modB, false, modB.GoMod(), nil},
		{"tampered zip", modB, true, tamperZip(t, modB), ErrChecksumMismatch},
		{"changed go.mod", modC, false, append(modC.GoMod(), "\nrequire evil.test/x v1.0.0\n"...), ErrChecksumMismatch},
		{"zip of another module", modC, true, zipOf(modA), ErrChecksumMismatch},
		{"unknown version", modtree.Module{Path: "mods.test/a", Version: "v9.9.9"}, false, modA.GoMod(), ErrNotInDatabase},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var err error
			var got string
			if tt.isZip {
				p := writeTemp(t, tt.data)
				got, _ = HashZip(p)
				err = v.VerifyZip(ctx, tt.m.Path, tt.m.Version, p)
			} else {
				got, _ = HashMod(tt.data)
				err = v.VerifyMod(ctx, tt.m.Path, tt.m.Version, tt.data)
			}
			if tt.wantErr == nil {
				if err != nil {
					t.Fatalf("verify: %v", err)
				}
				return
			}
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("err = %v, want %v", err, tt.wantErr)
			}
			if tt.wantErr != ErrChecksumMismatch {
				return
			}
			var me *MismatchError
			if !errors.As(err, &me) {
				t.Fatalf("err %T is not a *MismatchError", err)
			}
			lines, _ := tt.m.SumLines()
			want := strings.Fields(lines[0])[2]
			if !tt.isZip {
				want = strings.Fields(lines[1])[2]
			}
			if me.Want != want || me.Got != got || me.Want == me.Got {
				t.Fatalf("mismatch want/got = %s/%s, expected %s/%s", me.Want, me.Got, want, got)
			}
			if me.Path != tt.m.Path || me.Version != tt.m.Version || me.GoMod == tt.isZip {
				t.Errorf("mismatch names %s@%s go.mod=%v", me.Path, me.Version, me.GoMod)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error is not one line: %q", err)
			}
			for _, s := range []string{tt.m.Path + "@" + tt.m.Version, want, got} {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not name %s", err, s)
				}
			}
		})
	}
	st := v.Stats()
	if st.Verified != 4 || st.Mismatches != 3 || st.Errors != 1 {
		t.Errorf("stats = %+v, want 4 verified, 3 mismatches, 1 error", st)
	}
}

// TestVerifierExempt: modules under GONOSUMDB/GOPRIVATE patterns are never looked up, even
// when their content would not match.
func TestVerifierExempt(t *testing.T) {
	tests := []struct {
		name, nosumdb, goprivate string
	}{
		{"GONOSUMDB", "corp.test", ""},
		{"GOPRIVATE", "", "*.test/secret,other.test"},
		{"GONOSUMDB wins over GOPRIVATE", "corp.test/secret", "nothing.test"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			db := sumdbtest.New(t, []modtree.Module{modA, modPriv})
			v := newVerifier(t, db, t.TempDir(), NoSumDBPatterns(tt.nosumdb, tt.goprivate))
			ctx := context.Background()
			if !v.Exempt(modPriv.Path) {
				t.Fatalf("%s not exempt", modPriv.Path)
			}
			if err := v.VerifyMod(ctx, modPriv.Path, modPriv.Version, []byte("module corp.test/secret // altered\n")); err != nil {
				t.Fatalf("exempt mod: %v", err)
			}
			if err := v.VerifyZip(ctx, modPriv.Path, modPriv.Version, writeTemp(t, tamperZip(t, modPriv))); err != nil {
				t.Fatalf("exempt zip: %v", err)
			}
			// A public module is still verified, so the database is in use.
			if err := v.VerifyMod(ctx, modA.Path, modA.Version, modA.GoMod()); err != nil {
				t.Fatal(err)
			}
			if n := db.Count("corp.test"); n != 0 {
				t.Errorf("database saw %d requests for the private module: %v", n, db.Requests())
			}
			if db.Count("/lookup/mods.test/a@") != 1 {
				t.Errorf("public lookup not seen: %v", db.Requests())
			}
			if st := v.Stats(); st.Exempt != 2 || st.Verified != 1 {
				t.Errorf("stats = %+v, want 2 exempt, 1 verified", st)
			}
		})
	}
}

func TestVerifierDatabaseDown(t *testing.T) {
	db := sumdbtest.New(t, []modtree.Module{modA})
	v := newVerifier(t, db, t.TempDir(), "")
	db.SetDown(true)
	err := v.VerifyMod(context.Background(), modA.Path, modA.Version, modA.GoMod())
	if !errors.Is(err, ErrSumDBUnavailable) {
		t.Fatalf("err = %v, want ErrSumDBUnavailable", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	db.SetDown(false)
	if err := v.VerifyMod(ctx, modA.Path, modA.Version, modA.GoMod()); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled: err = %v, want context.Canceled", err)
	}
	// The database is back: the failure is not remembered (the sumdb client caches failed
	// lookups, so the Verifier must not keep using the one that failed).
	if err := v.VerifyMod(context.Background(), modA.Path, modA.Version, modA.GoMod()); err != nil {
		t.Fatalf("database back up: %v", err)
	}
	// And a database that goes down after lookups succeeded: the next unknown lookup says so.
	db.SetDown(true)
	if err := v.VerifyMod(context.Background(), "mods.test/other", "v1.0.0", modA.GoMod()); !errors.Is(err, ErrSumDBUnavailable) {
		t.Fatalf("down again: err = %v, want ErrSumDBUnavailable", err)
	}
}

// TestVerifierStatePersists: the tree seen by one Verifier is remembered in its directory,
// so a later Verifier on the same directory detects a database that rewrote its history,
// while one that only grew is accepted.
func TestVerifierStatePersists(t *testing.T) {
	modX := modtree.Module{Path: "mods.test/x", Version: "v1.0.0"}
	evil := modtree.Module{Path: "mods.test/b", Version: "v1.2.0", Files: map[string]string{"b.go": "package b // evil\n"}}
	tests := []struct {
		name     string
		second   func(db *sumdbtest.DB) *sumdbtest.DB
		check    modtree.Module
		wantFork bool
	}{
		{"grown, same history", func(db *sumdbtest.DB) *sumdbtest.DB {
			if err := db.Add(modC); err != nil {
				t.Fatal(err)
			}
			return db
		}, modC, false},
		{"fork: same key, different record, larger tree", func(db *sumdbtest.DB) *sumdbtest.DB {
			return db.Fork(t, []modtree.Module{modA, evil, modPriv, modC})
		}, modC, true},
		{"rollback: same key, smaller tree, rewritten", func(db *sumdbtest.DB) *sumdbtest.DB {
			return db.Fork(t, []modtree.Module{modA, modX})
		}, modX, true},
		// A tree that is a prefix of the one seen is an older view of the same history (a
		// lagging mirror): the go command's client accepts it, and so do we.
		{"older view of the same history", func(db *sumdbtest.DB) *sumdbtest.DB {
			return db.Fork(t, []modtree.Module{modA, modB})
		}, modB, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			dir := t.TempDir()
			db1 := sumdbtest.New(t, []modtree.Module{modA, modB, modPriv})
			v1 := newVerifier(t, db1, dir, "")
			for _, m := range []modtree.Module{modA} {
				if err := v1.VerifyMod(ctx, m.Path, m.Version, m.GoMod()); err != nil {
					t.Fatal(err)
				}
			}
			db2 := tt.second(db1)
			// Control: without the first verifier's state, the second database looks honest,
			// so what detects the fork below is the state kept in dir.
			if err := newVerifier(t, db2, t.TempDir(), "").VerifyMod(ctx, tt.check.Path, tt.check.Version, tt.check.GoMod()); err != nil {
				t.Fatalf("fresh verifier against the second database: %v", err)
			}
			v2 := newVerifier(t, db2, dir, "")
			err := v2.VerifyMod(ctx, tt.check.Path, tt.check.Version, tt.check.GoMod())
			if !tt.wantFork {
				if err != nil {
					t.Fatalf("second verifier: %v", err)
				}
				return
			}
			if !errors.Is(err, ErrSumDBMisbehavior) {
				t.Fatalf("err = %v, want ErrSumDBMisbehavior", err)
			}
			if v2.Misbehavior() == "" || v2.Stats().Security == 0 {
				t.Errorf("misbehavior not recorded: %q %+v", v2.Misbehavior(), v2.Stats())
			}
			// Latched: even an honest file is refused now.
			if err := v2.VerifyMod(ctx, modA.Path, modA.Version, modA.GoMod()); !errors.Is(err, ErrSumDBMisbehavior) {
				t.Errorf("after misbehavior: err = %v, want ErrSumDBMisbehavior", err)
			}
		})
	}
}

func TestVerifierOff(t *testing.T) {
	v, err := NewVerifier(VerifierConfig{DB: SumDB{Off: true}})
	if err != nil {
		t.Fatal(err)
	}
	if v.Enabled() {
		t.Error("off verifier reports enabled")
	}
	if err := v.VerifyMod(context.Background(), modA.Path, modA.Version, []byte("anything")); err != nil {
		t.Fatal(err)
	}
	if _, err := NewVerifier(VerifierConfig{DB: SumDB{Name: "sum.test"}}); !errors.Is(err, ErrNoKey) {
		t.Errorf("no key: err = %v, want ErrNoKey", err)
	}
}

// TestVerifierConcurrent: concurrent verifications share the state directory (the latest
// tree is updated by compare-and-swap) and all succeed; run with -race.
func TestVerifierConcurrent(t *testing.T) {
	mods, _ := modtree.Graph("mods.test/c", 24, 1, 0)
	db := sumdbtest.New(t, mods)
	dir := t.TempDir()
	v := newVerifier(t, db, dir, "")
	errs := make(chan error, len(mods))
	for _, m := range mods {
		go func() { errs <- v.VerifyMod(context.Background(), m.Path, m.Version, m.GoMod()) }()
	}
	for range mods {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
	if st := v.Stats(); st.Verified != int64(len(mods)) {
		t.Errorf("verified %d of %d", st.Verified, len(mods))
	}
	latest, err := os.ReadFile(filepath.Join(dir, "config", db.Name, "latest"))
	if err != nil || !bytes.Contains(latest, []byte(fmt.Sprintf("\n%d\n", len(mods)))) {
		t.Errorf("stored latest tree = %q, %v; want size %d", latest, err, len(mods))
	}
}

// TestVerifierRenewsClient: lookups go on across renewals of the shared sumdb client, each
// new client starting from the stored tree.
func TestVerifierRenewsClient(t *testing.T) {
	old := clientLookups
	clientLookups = 3
	t.Cleanup(func() { clientLookups = old })
	mods, _ := modtree.Graph("mods.test/r", 10, 1, 0)
	db := sumdbtest.New(t, mods)
	v := newVerifier(t, db, t.TempDir(), "")
	var clients []*sharedClient
	for round := 0; round < 2; round++ {
		for _, m := range mods {
			if err := v.VerifyMod(context.Background(), m.Path, m.Version, m.GoMod()); err != nil {
				t.Fatalf("round %d: %v", round, err)
			}
			if c := v.client.Load(); len(clients) == 0 || clients[len(clients)-1] != c {
				clients = append(clients, c)
			}
		}
	}
	if want := 2 * len(mods) / 3; len(clients) < want {
		t.Errorf("%d lookups used %d clients, want at least %d (renewed every 3)", 2*len(mods), len(clients), want)
	}
	if st := v.Stats(); st.Verified != int64(2*len(mods)) || st.Errors != 0 {
		t.Errorf("stats %+v, want %d verified", st, 2*len(mods))
	}
}
