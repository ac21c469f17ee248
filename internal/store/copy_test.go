package store

import (
	"bytes"
	"errors"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"testing/iotest"
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

// writeSizes records the size of every write.
type writeSizes struct {
	bytes.Buffer
	sizes []int
}

func (w *writeSizes) Write(p []byte) (int, error) {
	w.sizes = append(w.sizes, len(p))
	return w.Buffer.Write(p)
}

func TestCopyToFileWritesWholeChunks(t *testing.T) {
	src := make([]byte, 2*fileChunk+1234)
	for i := range src {
		src[i] = byte(i * 7)
	}
	// A source that hands out a few KiB at a time, like a socket.
	var w writeSizes
	n, err := CopyToFile(&w, iotest.HalfReader(&smallReads{r: bytes.NewReader(src), max: 3000}))
	if err != nil || n != int64(len(src)) || !bytes.Equal(w.Bytes(), src) {
		t.Fatalf("CopyToFile = %d, %v; copied %d bytes (equal: %v), want %d", n, err, w.Len(), bytes.Equal(w.Bytes(), src), len(src))
	}
	if want := []int{fileChunk, fileChunk, 1234}; !slices.Equal(w.sizes, want) {
		t.Fatalf("write sizes %v, want %v", w.sizes, want)
	}

	// A small body, one exactly the size of the first buffer, one just over it: each is
	// written whole, in one write, up to fileChunk.
	for _, size := range []int{100, 32 << 10, 32<<10 + 1, fileChunk} {
		w = writeSizes{}
		n, err := CopyToFile(&w, &smallReads{r: bytes.NewReader(src[:size]), max: 3000})
		if err != nil || n != int64(size) || !bytes.Equal(w.Bytes(), src[:size]) || !slices.Equal(w.sizes, []int{size}) {
			t.Fatalf("CopyToFile of %d bytes = %d, %v, writes %v", size, n, err, w.sizes)
		}
	}

	// A read error after some data: the data is written, the error returned.
	w = writeSizes{}
	boom := errors.New("connection reset")
	for _, size := range []int{5000, 40000} {
		w = writeSizes{}
		n, err = CopyToFile(&w, io.MultiReader(bytes.NewReader(src[:size]), iotest.ErrReader(boom)))
		if !errors.Is(err, boom) || n != int64(size) || !bytes.Equal(w.Bytes(), src[:size]) {
			t.Fatalf("CopyToFile with a source failing after %d bytes = %d, %v (wrote %d bytes); want %d, %v",
				size, n, err, w.Len(), size, boom)
		}
	}

	// A failed write is a *WriteError around the file's own *fs.PathError.
	f, err := os.Create(filepath.Join(t.TempDir(), "f"))
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	if _, err := CopyToFile(f, bytes.NewReader(src)); err == nil {
		t.Fatal("CopyToFile into a closed file succeeded")
	} else if pe, we := (*fs.PathError)(nil), (*WriteError)(nil); !errors.As(err, &pe) || !errors.As(err, &we) {
		t.Fatalf("CopyToFile into a closed file: %v (%T), want a *WriteError around an *fs.PathError", err, err)
	}

	// An empty source writes nothing.
	w = writeSizes{}
	if n, err := CopyToFile(&w, bytes.NewReader(nil)); n != 0 || err != nil || len(w.sizes) != 0 {
		t.Fatalf("CopyToFile of nothing = %d, %v with writes %v", n, err, w.sizes)
	}
}

// smallReads returns at most max bytes per Read.
type smallReads struct {
	r   io.Reader
	max int
}

func (s *smallReads) Read(p []byte) (int, error) {
	if len(p) > s.max {
		p = p[:s.max]
	}
	return s.r.Read(p)
}
