package dashboard

import (
	"io"
	"net/http"
	"sync/atomic"
)

// CacheStats are the cache counters the dashboard shows.
type CacheStats struct {
	Hits        int64 `json:"hits"`     // answered from the store
	Misses      int64 `json:"misses"`   // filled from an upstream
	Stale       int64 `json:"stale"`    // stale copies served because every upstream failed
	Negative    int64 `json:"negative"` // remembered not-found answers
	Other       int64 `json:"other"`    // answers without a cache state (errors, bad requests)
	BytesServed int64 `json:"bytes_served"`
}

// CacheCounter counts a GOPROXY handler's answers by cache state (hit, miss, stale,
// negative) and the bytes written: told by the handler itself through Count (holoproxy's
// server does), or read from the response header of a handler wrapped with Wrap. Stats
// feeds Config.Cache.
type CacheCounter struct {
	// Header is the response header that carries the cache state (the server's CacheHeader).
	Header string

	hits, misses, stale, negative, other, bytes atomic.Int64
}

// Wrap returns next with its answers counted.
func (c *CacheCounter) Wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		cw := &countingWriter{ResponseWriter: w, c: c}
		next.ServeHTTP(cw, r)
		if !cw.counted {
			cw.count()
		}
	})
}

// Count counts one answer in cache state state with bytes of body: for a handler that
// reports its answers itself (server.Config.OnAnswer) instead of being wrapped.
func (c *CacheCounter) Count(state string, bytes int64) {
	c.state(state).Add(1)
	c.bytes.Add(bytes)
}

func (c *CacheCounter) state(state string) *atomic.Int64 {
	switch state {
	case "hit":
		return &c.hits
	case "miss":
		return &c.misses
	case "stale":
		return &c.stale
	case "negative":
		return &c.negative
	}
	return &c.other
}

// Stats returns the counts so far.
func (c *CacheCounter) Stats() CacheStats {
	return CacheStats{Hits: c.hits.Load(), Misses: c.misses.Load(), Stale: c.stale.Load(),
		Negative: c.negative.Load(), Other: c.other.Load(), BytesServed: c.bytes.Load()}
}

// countingWriter counts one answer: its cache state when the header is written, its bytes
// as they are written.
type countingWriter struct {
	http.ResponseWriter
	c       *CacheCounter
	counted bool
}

func (w *countingWriter) count() {
	w.counted = true
	w.c.state(w.Header().Get(w.c.Header)).Add(1)
}

func (w *countingWriter) WriteHeader(code int) {
	if !w.counted {
		w.count()
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *countingWriter) Write(p []byte) (int, error) {
	if !w.counted {
		w.count()
	}
	n, err := w.ResponseWriter.Write(p)
	w.c.bytes.Add(int64(n))
	return n, err
}

// ReadFrom hands the copy to the underlying writer, so that a stored file is still served
// with sendfile through the counter (without it every zip went through a 32 KiB buffer).
func (w *countingWriter) ReadFrom(r io.Reader) (int64, error) {
	if !w.counted {
		w.count()
	}
	var n int64
	var err error
	if rf, ok := w.ResponseWriter.(io.ReaderFrom); ok {
		n, err = rf.ReadFrom(r)
	} else {
		n, err = io.Copy(struct{ io.Writer }{w.ResponseWriter}, r)
	}
	w.c.bytes.Add(n)
	return n, err
}

// Unwrap gives http.ResponseController the underlying writer (flushing, deadlines).
func (w *countingWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }
