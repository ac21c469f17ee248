package store

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

// AttachDisk sees what a serving store committed and leaves its fills in progress alone;
// a missing directory is an error, not a new store.
func TestAttachDisk(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	d, err := OpenDisk(dir)
	if err != nil {
		t.Fatal(err)
	}
	put(t, d, "example.com/m/@v/v1.0.0.mod", "module example.com/m\n")
	inProgress, err := d.CreateTemp(ctx)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Discard(inProgress)

	a, err := AttachDisk(dir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(inProgress.Name()); err != nil {
		t.Errorf("AttachDisk removed a fill in progress: %v", err)
	}
	if _, err := a.Stat(ctx, "example.com/m/@v/v1.0.0.mod"); err != nil {
		t.Errorf("attached store does not see a committed key: %v", err)
	}
	if err := a.Delete(ctx, "example.com/m/@v/v1.0.0.mod"); err != nil {
		t.Fatal(err)
	}
	if _, err := d.Stat(ctx, "example.com/m/@v/v1.0.0.mod"); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("after Delete through the attached store: %v; want not found", err)
	}
	missing := filepath.Join(dir, "nope")
	if _, err := AttachDisk(missing); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("AttachDisk(missing) = %v; want fs.ErrNotExist", err)
	}
	if _, err := os.Stat(missing); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("AttachDisk created %s", missing)
	}
}
