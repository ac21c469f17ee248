package store

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
)

func TestCopy(t *testing.T) {
	src := bytes.Repeat([]byte("0123456789abcdef"), 10000) // several buffers' worth
	f, err := os.Create(filepath.Join(t.TempDir(), "f"))
	if err != nil {
		t.Fatal(err)
	}
	n, err := Copy(f, bytes.NewReader(src))
	if err != nil || n != int64(len(src)) {
		t.Fatalf("Copy = %d, %v; want %d, nil", n, err, len(src))
	}
	got, err := os.ReadFile(f.Name())
	if err != nil || !bytes.Equal(got, src) {
		t.Fatalf("file holds %d bytes (%v), not the %d copied", len(got), err, len(src))
	}
	// A failed write comes back as the file's own error: the server tells a full disk
	// from a broken upstream by it.
	f.Close()
	if _, err := Copy(f, bytes.NewReader(src)); err == nil {
		t.Fatal("Copy into a closed file succeeded")
	} else if pe := (*fs.PathError)(nil); !errors.As(err, &pe) {
		t.Fatalf("Copy into a closed file: %v (%T), want an *fs.PathError", err, err)
	}
}
