package checksum

import (
	"archive/zip"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
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
		return "", zipError("hashing zip", err)
	}
	fastInflate(z)
	names := make([]string, 0, len(z.File))
	byName := make(map[string]*zip.File, len(z.File))
	for _, f := range z.File {
		if _, dup := byName[f.Name]; dup {
			// dirhash would hash the last one twice; the go command refuses such zips.
			return "", zipError("hashing zip", fmt.Errorf("duplicate file %q", f.Name))
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
		return "", zipError("hashing zip", err)
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
		return zipError("reading zip", err)
	}
	fastInflate(z)
	seen := make(map[string]bool, len(z.File))
	for _, f := range z.File {
		if seen[f.Name] {
			return zipError("reading zip", fmt.Errorf("duplicate file %q", f.Name))
		}
		seen[f.Name] = true
		rc, err := f.Open()
		if err != nil {
			return zipError("reading zip", fmt.Errorf("%s: %w", f.Name, err))
		}
		_, err = store.Copy(io.Discard, rc) // archive/zip checks the CRC-32 and size at EOF
		rc.Close()
		if err != nil {
			return zipError("reading zip", fmt.Errorf("%s: %w", f.Name, err))
		}
	}
	return nil
}

// ZipError is a zip whose content is wrong: not a zip, a file that does not inflate or
// fails its CRC-32 or size, a file named twice. Its class, for metrics and health, is
// invalid_zip: the upstream that served it served wrong bytes.
type ZipError struct{ Err error }

func (e *ZipError) Error() string { return e.Err.Error() }
func (e *ZipError) Unwrap() error { return e.Err }

// Class returns the error class metrics and health use: invalid_zip.
func (e *ZipError) Class() string { return "invalid_zip" }

// zipError wraps err, met doing what, as a *ZipError, unless it is an error of reading the
// file itself (a *fs.PathError: the local disk, not the zip's content).
func zipError(what string, err error) error {
	err = fmt.Errorf("%s: %w", what, err)
	if errors.As(err, new(*fs.PathError)) {
		return err
	}
	return &ZipError{Err: err}
}

// pooledCopy lets dirhash's io.Copy of a zip entry into its hash use store.Copy's pooled
// buffer instead of allocating 32 KiB per file.
type pooledCopy struct{ io.ReadCloser }

func (p pooledCopy) WriteTo(w io.Writer) (int64, error) { return store.Copy(w, p.ReadCloser) }
