package checksum

import (
	"archive/zip"
	"bytes"
	"fmt"
	"io"
	"os"

	"golang.org/x/mod/sumdb/dirhash"

	"github.com/holoproxy/holoproxy/internal/store"
)

// HashMod returns the h1: hash the go command records (as "<module> <version>/go.mod")
// for a .mod file.
func HashMod(data []byte) (string, error) {
	h, err := dirhash.Hash1([]string{"go.mod"}, func(string) (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(data)), nil
	})
	if err != nil {
		return "", fmt.Errorf("hashing go.mod: %w", err)
	}
	return h, nil
}

// HashZip returns the h1: hash the go command records for a module zip file.
func HashZip(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("hashing zip: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", fmt.Errorf("hashing zip: %w", err)
	}
	return HashZipReader(f, fi.Size())
}

// HashZipReader returns the h1: hash of a module zip of the given size read through r; it
// is HashZip for zips that are not plain files (a store entry, a buffer).
func HashZipReader(r io.ReaderAt, size int64) (string, error) {
	z, err := zip.NewReader(r, size)
	if err != nil {
		return "", fmt.Errorf("hashing zip: %w", err)
	}
	fastInflate(z)
	names := make([]string, 0, len(z.File))
	byName := make(map[string]*zip.File, len(z.File))
	for _, f := range z.File {
		if _, dup := byName[f.Name]; dup {
			// dirhash would hash the last one twice; the go command refuses such zips.
			return "", fmt.Errorf("hashing zip: duplicate file %q", f.Name)
		}
		names = append(names, f.Name)
		byName[f.Name] = f
	}
	h, err := dirhash.Hash1(names, func(name string) (io.ReadCloser, error) {
		rc, err := byName[name].Open()
		if err != nil {
			return nil, err
		}
		return pooledCopy{rc}, nil
	})
	if err != nil {
		return "", fmt.Errorf("hashing zip: %w", err)
	}
	return h, nil
}

// CheckZipData reads a module zip of the given size through r as HashZipReader does,
// every file inflated and checked against its CRC-32 and size, and a file named twice
// refused, without hashing it: the check of a zip no checksum is looked up for (an exempt
// module), which the go command could otherwise not extract.
func CheckZipData(r io.ReaderAt, size int64) error {
	z, err := zip.NewReader(r, size)
	if err != nil {
		return fmt.Errorf("reading zip: %w", err)
	}
	fastInflate(z)
	seen := make(map[string]bool, len(z.File))
	for _, f := range z.File {
		if seen[f.Name] {
			return fmt.Errorf("reading zip: duplicate file %q", f.Name)
		}
		seen[f.Name] = true
		rc, err := f.Open()
		if err != nil {
			return fmt.Errorf("reading zip: %s: %w", f.Name, err)
		}
		_, err = store.Copy(io.Discard, rc) // archive/zip checks the CRC-32 and size at EOF
		rc.Close()
		if err != nil {
			return fmt.Errorf("reading zip: %s: %w", f.Name, err)
		}
	}
	return nil
}

// pooledCopy lets dirhash's io.Copy of a zip entry into its hash use store.Copy's pooled
// buffer instead of allocating 32 KiB per file.
type pooledCopy struct{ io.ReadCloser }

func (p pooledCopy) WriteTo(w io.Writer) (int64, error) { return store.Copy(w, p.ReadCloser) }
