package store

import (
	"io"
	"sync"
)

// copyBufs holds the 32 KiB buffers of Copy. io.Copy allocates one per call whenever
// neither side short-cuts the copy (a response body into a temporary file, a zip entry into
// a hash): a profile of `holoproxy warm` showed those allocations, and their clearing and
// collection, at several per cent of its CPU.
var copyBufs = sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}

// Copy is io.Copy through a pooled buffer. It does not use dst's io.ReaderFrom or src's
// io.WriterTo: callers use it where those would only copy through a buffer of their own.
func Copy(dst io.Writer, src io.Reader) (int64, error) {
	bp := copyBufs.Get().(*[]byte)
	defer copyBufs.Put(bp)
	return io.CopyBuffer(onlyWriter{dst}, onlyReader{src}, *bp)
}

type onlyWriter struct{ io.Writer }
type onlyReader struct{ io.Reader }

// fileChunk is the size of CopyToFile's writes.
const fileChunk = 256 << 10

// fileBufs holds the buffers of CopyToFile for bodies longer than a Copy buffer.
var fileBufs = sync.Pool{New: func() any { b := make([]byte, fileChunk); return &b }}

// CopyToFile copies src into dst in writes of 256 KiB (the last one shorter): it reads until
// its buffer is full before each write, however little each read returns. On file systems
// with large folios (ext4 since Linux 6.16, xfs) the size of a write decides the size of the
// page-cache folios that hold it, and a stored file goes out by sendfile, which walks the
// page cache folio by folio: a zip written in the 4-32 KiB pieces a socket hands out sat in
// 1-4 page folios and went out 5-10 % slower than the same bytes written in large writes
// (docs/benchmarks.md, fifth session). A body that fits in 32 KiB (every .mod and .info,
// most fills) is read into a Copy buffer and written once: only longer ones hold a 256 KiB
// buffer. A failed write comes back as a *WriteError (wrapping dst's error), a failed read
// as src's error, after what was read before it is written: a source that is a file too
// (a file:// upstream) fails with an *fs.PathError of its own, not to be taken for dst's.
func CopyToFile(dst io.Writer, src io.Reader) (int64, error) {
	sp := copyBufs.Get().(*[]byte)
	n, rerr := io.ReadFull(src, *sp)
	if rerr != nil { // all of it (or all there is before an error) fits in the small buffer
		defer copyBufs.Put(sp)
		return writeChunk(dst, (*sp)[:n], 0, rerr)
	}
	bp := fileBufs.Get().(*[]byte)
	defer fileBufs.Put(bp)
	buf := *bp
	have := copy(buf, (*sp)[:n])
	copyBufs.Put(sp)
	var written int64
	for {
		n, rerr := io.ReadFull(src, buf[have:])
		var err error
		if written, err = writeChunk(dst, buf[:have+n], written, rerr); err != nil || rerr != nil {
			return written, err
		}
		have = 0
	}
}

// WriteError is CopyToFile's failure to write to its destination (a full disk, a
// read-only one), as opposed to a failure to read its source.
type WriteError struct{ Err error }

func (e *WriteError) Error() string { return e.Err.Error() }
func (e *WriteError) Unwrap() error { return e.Err }

// writeChunk writes p to dst after written bytes, and returns the new count and the error
// that ends the copy: the write's, else the read's (rerr) unless it is the end of src.
func writeChunk(dst io.Writer, p []byte, written int64, rerr error) (int64, error) {
	if len(p) > 0 {
		w, err := dst.Write(p)
		written += int64(w)
		if err != nil {
			return written, &WriteError{Err: err}
		}
	}
	if rerr == io.EOF || rerr == io.ErrUnexpectedEOF {
		return written, nil
	}
	return written, rerr
}
