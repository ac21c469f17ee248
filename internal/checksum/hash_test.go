package checksum

import (
	"archive/zip"
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/mod/sumdb/dirhash"
)

// TestHashZipMatchesDirhash checks the pooled klauspost inflater against x/mod's own
// dirhash.HashZip (archive/zip with compress/flate): the same h1: for deflated and stored
// files, empty files, and many zips in a row (pooled readers reused); and a zip whose
// content does not match its CRC fails both ways.
func TestHashZipMatchesDirhash(t *testing.T) {
	dir := t.TempDir()
	write := func(name string, files map[string][]byte, method uint16) string {
		var buf bytes.Buffer
		zw := zip.NewWriter(&buf)
		for n, b := range files {
			w, err := zw.CreateHeader(&zip.FileHeader{Name: n, Method: method})
			if err != nil {
				t.Fatal(err)
			}
			if _, err := w.Write(b); err != nil {
				t.Fatal(err)
			}
		}
		if err := zw.Close(); err != nil {
			t.Fatal(err)
		}
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	big := bytes.Repeat([]byte("package p\n\nfunc F() int { return 42 }\n"), 5000)
	files := map[string][]byte{
		"m.test/a@v1.0.0/go.mod":     []byte("module m.test/a\n"),
		"m.test/a@v1.0.0/empty.go":   {},
		"m.test/a@v1.0.0/big.go":     big,
		"m.test/a@v1.0.0/sub/x.go":   []byte("package sub\n"),
		"m.test/a@v1.0.0/LICENSE":    bytes.Repeat([]byte{0, 1, 2, 3, 255}, 999),
		"m.test/a@v1.0.0/sub/y_t.go": big[:12345],
	}
	benchZip, _ := writeBenchZip(t, 300<<10)
	paths := []string{
		write("deflate.zip", files, zip.Deflate),
		write("store.zip", files, zip.Store),
		benchZip,
	}
	for round := 0; round < 3; round++ {
		for _, p := range paths {
			want, err := dirhash.HashZip(p, dirhash.Hash1)
			if err != nil {
				t.Fatal(err)
			}
			got, err := HashZip(p)
			if err != nil {
				t.Fatalf("%s: %v", filepath.Base(p), err)
			}
			if got != want {
				t.Fatalf("%s: HashZip = %s, dirhash.HashZip = %s", filepath.Base(p), got, want)
			}
		}
	}

	// Flip a byte inside the deflated content of big.go: inflating or the CRC check fails.
	b, err := os.ReadFile(paths[0])
	if err != nil {
		t.Fatal(err)
	}
	z, err := zip.NewReader(bytes.NewReader(b), int64(len(b)))
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range z.File {
		if f.Name == "m.test/a@v1.0.0/big.go" {
			off, err := f.DataOffset()
			if err != nil {
				t.Fatal(err)
			}
			b[off+int64(f.CompressedSize64)/2] ^= 0x55
		}
	}
	bad := filepath.Join(dir, "bad.zip")
	if err := os.WriteFile(bad, b, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := dirhash.HashZip(bad, dirhash.Hash1); err == nil {
		t.Fatal("dirhash.HashZip accepted the corrupted zip; the test corrupts the wrong bytes")
	}
	if h, err := HashZip(bad); err == nil {
		t.Fatalf("HashZip of a corrupted zip = %s, want an error", h)
	}
	// And the pool still hashes correctly after a failed inflate.
	for _, p := range paths {
		want, _ := dirhash.HashZip(p, dirhash.Hash1)
		if got, err := HashZip(p); err != nil || got != want {
			t.Fatalf("after a failure: %s: HashZip = %s, %v; want %s", filepath.Base(p), got, err, want)
		}
	}
}

// TestInflaterDoubleClose: closing a file twice must not put its inflater in the pool
// twice (two later files would then share one).
func TestInflaterDoubleClose(t *testing.T) {
	var buf bytes.Buffer
	zw := zip.NewWriter(&buf)
	w, _ := zw.Create("f")
	w.Write(bytes.Repeat([]byte("abc"), 1000))
	zw.Close()
	rc := newInflater(bytes.NewReader(buf.Bytes()[30+1 : buf.Len()]))
	if err := rc.Close(); err != nil {
		t.Fatal(err)
	}
	if err := rc.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if n, err := rc.Read(make([]byte, 1)); err == nil || n != 0 {
		t.Fatalf("Read after Close = %d, %v; want an error", n, err)
	}
	a, b := newInflater(bytes.NewReader(nil)), newInflater(bytes.NewReader(nil))
	if a.(*pooledInflater).inflater == b.(*pooledInflater).inflater {
		t.Fatal("two open readers share one pooled inflater")
	}
}

// BenchmarkHashZipInflate compares HashZip (klauspost/compress/flate, pooled) with x/mod's
// dirhash.HashZip (archive/zip's compress/flate) on the same zip, alternating within each
// iteration; ratio < 1 means HashZip is faster.
//
//	go test -run '^$' -bench HashZipInflate -count 5 ./internal/checksum/
func BenchmarkHashZipInflate(b *testing.B) {
	for _, size := range []int{64 << 10, 1 << 20, 16 << 20} {
		b.Run(byteSize(size), func(b *testing.B) {
			p, _ := writeBenchZip(b, size)
			alternate(b, "dirhash", func() error { _, err := dirhash.HashZip(p, dirhash.Hash1); return err },
				"holoproxy", func() error { _, err := HashZip(p); return err })
		})
	}
}

func byteSize(n int) string {
	if n >= 1<<20 {
		return fmt.Sprintf("zip=%dMB", n>>20)
	}
	return fmt.Sprintf("zip=%dKB", n>>10)
}

// FuzzHashZipReader checks the hash of a module zip read back from a store (a corrupt or
// foreign file in a cache directory, an object of a bucket) against x/mod's own
// dirhash.HashZip, which inflates with compress/flate instead of the pooled klauspost
// inflater: the same hash whenever HashZipReader gives one, and HashZipReader refuses
// only what dirhash refuses, or a zip that names a file twice.
func FuzzHashZipReader(f *testing.F) {
	mk := func(method uint16, files ...string) []byte {
		var buf bytes.Buffer
		zw := zip.NewWriter(&buf)
		for i := 0; i+1 < len(files); i += 2 {
			w, err := zw.CreateHeader(&zip.FileHeader{Name: files[i], Method: method})
			if err != nil {
				f.Fatal(err)
			}
			w.Write([]byte(files[i+1]))
		}
		if err := zw.Close(); err != nil {
			f.Fatal(err)
		}
		return buf.Bytes()
	}
	src := strings.Repeat("package p\n\nfunc F() int { return 42 }\n", 20)
	for _, z := range [][]byte{
		nil, []byte("PK\x05\x06" + strings.Repeat("\x00", 18)),
		mk(zip.Deflate, "m.test/a@v1.0.0/go.mod", "module m.test/a\n", "m.test/a@v1.0.0/a.go", src),
		mk(zip.Store, "m.test/a@v1.0.0/go.mod", "module m.test/a\n", "m.test/a@v1.0.0/empty", ""),
		mk(zip.Deflate, "a", src, "a", "other"),
		mk(zip.Deflate, "a\nb", "x"),
		mk(zip.Deflate, "big", strings.Repeat("\x00\x01\x02", 3000)),
	} {
		f.Add(z)
	}
	// dirhash reads a file: one for the run, rewritten for each input (inputs are
	// tried one at a time in a process).
	p := filepath.Join(f.TempDir(), "m.zip")
	f.Fuzz(func(t *testing.T, data []byte) {
		got, err := HashZipReader(bytes.NewReader(data), int64(len(data)))
		if err := os.WriteFile(p, data, 0o644); err != nil {
			t.Fatal(err)
		}
		want, werr := dirhash.HashZip(p, dirhash.Hash1)
		switch {
		case err == nil && werr != nil:
			t.Fatalf("HashZipReader = %s; dirhash.HashZip fails: %v", got, werr)
		case err == nil && got != want:
			t.Fatalf("HashZipReader = %s; dirhash.HashZip = %s", got, want)
		case err != nil && werr == nil && !strings.Contains(err.Error(), "duplicate file"):
			t.Fatalf("HashZipReader fails: %v; dirhash.HashZip = %s", err, want)
		}
	})
}
