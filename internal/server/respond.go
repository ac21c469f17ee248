package server

import (
	"io"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/holoproxy/holoproxy/internal/goproxy"
)

// Header values shared by every answer: net/http only reads them, so one slice each
// saves an allocation per header per request.
var (
	hdrJSON      = []string{"application/json"}
	hdrZip       = []string{"application/zip"}
	hdrText      = []string{"text/plain; charset=utf-8"}
	hdrImmutable = []string{"public, max-age=31536000, immutable"}
	hdrCache     = map[string][]string{}
)

func init() {
	for _, c := range []string{CacheHit, CacheMiss, CacheStale, CacheNegative} {
		hdrCache[c] = []string{c}
	}
}

// contentType returns the Content-Type of an answer of kind k.
func contentType(k goproxy.Kind) []string {
	switch k {
	case goproxy.KindInfo, goproxy.KindLatest:
		return hdrJSON
	case goproxy.KindZip:
		return hdrZip
	}
	return hdrText
}

// setAnswerHeaders sets the headers of a successful answer.
func setAnswerHeaders(w http.ResponseWriter, req goproxy.Request, cache, upstream string) {
	setHeaders(w, req.Kind, cache, upstream, req.Immutable())
}

// setHeaders is setAnswerHeaders for a caller that knows whether the answer is immutable
// (deciding it parses the version three times; an in-memory answer always is).
func setHeaders(w http.ResponseWriter, kind goproxy.Kind, cache, upstream string, immutable bool) {
	h := w.Header()
	h["Content-Type"] = contentType(kind)
	if v, ok := hdrCache[cache]; ok {
		h[CacheHeader] = v
	} else {
		h.Set(CacheHeader, cache)
	}
	if upstream != "" {
		h.Set(UpstreamHeader, upstream)
	}
	if immutable {
		h["Cache-Control"] = hdrImmutable
	}
}

// writeError answers status with msg as one line of text/plain, as the go command shows it
// after "server response:".
func writeError(w http.ResponseWriter, status int, msg string) {
	h := w.Header()
	h.Set("Content-Type", "text/plain; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Del("Content-Length")
	w.WriteHeader(status)
	io.WriteString(w, oneLine(msg)+"\n")
}

// oneLine folds a message onto one line, for error bodies and logs.
func oneLine(s string) string {
	s = strings.TrimSpace(s)
	if !strings.ContainsAny(s, "\r\n") {
		return s
	}
	return strings.Join(strings.Fields(strings.NewReplacer("\r\n", "; ", "\n", "; ", "\r", "; ").Replace(s)), " ")
}

// moduleAt names the module (and version) of req: "example.com/m@v1.2.3".
func moduleAt(req goproxy.Request) string {
	switch {
	case req.Version != "":
		return req.Module + "@" + req.Version
	case req.Kind == goproxy.KindLatest:
		return req.Module + "@latest"
	}
	return req.Module
}

// describe names req with its endpoint for messages: "example.com/m@v1.2.3 .zip".
func describe(req goproxy.Request) string {
	switch req.Kind {
	case goproxy.KindList:
		return req.Module + " version list"
	case goproxy.KindLatest:
		return req.Module + "@latest"
	}
	return moduleAt(req) + " ." + string(req.Kind)
}

// LogRequests logs one line per request h answers, at info level and in the GOPROXY
// server's own format, for the handlers mounted beside it (/sumdb/).
func LogRequests(log *slog.Logger, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		start := time.Now()
		lw := &logWriter{ResponseWriter: w}
		h.ServeHTTP(lw, r)
		log.LogAttrs(r.Context(), slog.LevelInfo, "request",
			slog.String("method", r.Method),
			slog.String("path", r.URL.Path),
			slog.Int("status", lw.statusCode()),
			slog.String("cache", w.Header().Get(CacheHeader)),
			slog.Int64("bytes", lw.bytes),
			slog.Duration("duration", time.Since(start)),
		)
	})
}

// logWriter records the status and body bytes of an answer. It keeps io.ReaderFrom so that
// serving a stored file still uses sendfile.
type logWriter struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (w *logWriter) WriteHeader(status int) {
	if w.status == 0 {
		w.status = status
	}
	w.ResponseWriter.WriteHeader(status)
}

func (w *logWriter) Write(p []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(p)
	w.bytes += int64(n)
	return n, err
}

// ReadFrom hands the copy to the underlying writer (sendfile for an *os.File).
func (w *logWriter) ReadFrom(r io.Reader) (int64, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	if rf, ok := w.ResponseWriter.(io.ReaderFrom); ok {
		n, err := rf.ReadFrom(r)
		w.bytes += n
		return n, err
	}
	n, err := io.Copy(struct{ io.Writer }{w.ResponseWriter}, r)
	w.bytes += n
	return n, err
}

// Unwrap lets http.ResponseController reach the underlying writer.
func (w *logWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// statusCode returns the status sent, 200 when only a body was written, 0 when nothing was.
func (w *logWriter) statusCode() int { return w.status }
