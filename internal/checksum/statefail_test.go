package checksum

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/holoproxy/holoproxy/internal/checksum/sumdbtest"
	"github.com/holoproxy/holoproxy/internal/lab/modtree"
)

// TestVerifierStateErrorIsLocal: a verifier state file that cannot be read is this
// server's failure, and says so by wrapping its *fs.PathError, which the server turns
// into a local failure whose answer names no file; the sumdb client's own errors (%v)
// would otherwise leave only a message that names the state directory.
func TestVerifierStateErrorIsLocal(t *testing.T) {
	db := sumdbtest.New(t, []modtree.Module{modA})
	dir := t.TempDir()
	// The latest tree's file is a directory: reading it fails (EISDIR), whoever runs this.
	if err := os.MkdirAll(filepath.Join(dir, "config", db.Name, "latest"), 0o755); err != nil {
		t.Fatal(err)
	}
	v := newVerifier(t, db, dir, "")
	err := v.VerifyMod(context.Background(), modA.Path, modA.Version, modA.GoMod())
	if err == nil {
		t.Fatal("verified with an unreadable state")
	}
	var pe *fs.PathError
	if !errors.As(err, &pe) {
		t.Fatalf("err = %v: want it to wrap the state file's *fs.PathError", err)
	}
	for _, not := range []error{ErrNotInDatabase, ErrSumDBUnavailable, ErrChecksumMismatch, ErrSumDBMisbehavior} {
		if errors.Is(err, not) {
			t.Errorf("err = %v: is %v", err, not)
		}
	}
}
