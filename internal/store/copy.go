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
