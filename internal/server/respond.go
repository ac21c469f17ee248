package server

import (
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"net/http"
	"os"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/holoproxy/holoproxy/internal/goproxy"
)

// Header values shared by every answer: net/http only reads them, so one slice each
// saves an allocation per header per request.
var (
	hdrJSON      = []string{"application/json"}
	hdrZip       = []string{"application/zip"}
	hdrText      = []string{"text/plain; charset=utf-8"}
	hdrImmutable = []string{"public, max-age=31536000, immutable"}
	hdrAllow     = []string{"GET, HEAD"}
	hdrNosniff   = []string{"nosniff"}
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

// reply is the answer to one request, decided by Server.answer and sent by writeReply
// (net/http) or writeFastReply (fasthttp).
type reply struct {
	status int          // 0: nothing to send (the client went away)
	msg    string       // the one-line reason of an error status
	allow  bool         // 405: send Allow
	kind   goproxy.Kind // endpoint; empty for a request that did not parse
	// immutable answers get a long Cache-Control.
	immutable bool
	cache     string // CacheHeader value
	upstream  string // the upstream that served a miss
	timing    string // TimingHeader value of the exchange that filled the answer

	// A 200 answer is body (with length, its Content-Length made once, for hot answers) or
	// file, size bytes, which the sender closes and then calls release.
	body    []byte
	length  []string
	file    io.ReadSeekCloser
	size    int64
	modTime time.Time
	release func()
}

// errorReply is an error answer: status with msg as one line of text/plain.
func errorReply(status int, msg string) reply {
	return reply{status: status, msg: oneLine(msg) + "\n", cache: CacheMiss}
}

// hotReply answers with an in-memory answer.
func hotReply(h hotAnswer, cache, upstream string) reply {
	return reply{status: http.StatusOK, kind: h.req.Kind, immutable: true, cache: cache, upstream: upstream,
		body: h.body, length: h.length}
}

// logKind is the kind label of metrics and logs: "invalid" for a request that did not parse.
func (rp *reply) logKind() string {
	if rp.kind == "" {
		return "invalid"
	}
	return string(rp.kind)
}

// done closes the reply's file and releases what it held.
func (rp *reply) done() {
	if rp.file != nil {
		rp.file.Close()
		rp.file = nil
	}
	if rp.release != nil {
		rp.release()
		rp.release = nil
	}
}

// writeReply sends rp on net/http. A file goes through http.ServeContent (conditional and
// range requests; sendfile for the disk store).
func writeReply(w http.ResponseWriter, r *http.Request, rp *reply) {
	defer rp.done()
	if rp.status == 0 { // the client went away while the answer was filled
		return
	}
	h := w.Header()
	if rp.status != http.StatusOK {
		h[CacheHeader] = cacheValue(rp.cache)
		if rp.allow {
			h["Allow"] = hdrAllow
		}
		h["Content-Type"] = hdrText
		h["X-Content-Type-Options"] = hdrNosniff
		w.WriteHeader(rp.status)
		io.WriteString(w, rp.msg)
		return
	}
	h["Content-Type"] = contentType(rp.kind)
	h[CacheHeader] = cacheValue(rp.cache)
	if rp.upstream != "" {
		h[UpstreamHeader] = []string{rp.upstream}
	}
	if rp.immutable {
		h["Cache-Control"] = hdrImmutable
	}
	if rp.timing != "" {
		h[TimingHeader] = []string{rp.timing}
	}
	if rp.file != nil {
		if v := r.Header["Range"]; len(v) == 1 && strings.Contains(v[0], "-") {
			if fixed, ok := noEmptySuffix(v[0], rp.size); ok {
				r.Header["Range"] = []string{fixed}
			}
		}
		http.ServeContent(w, r, "", rp.modTime, rp.file)
		return
	}
	// In-memory answers are a few hundred bytes and the go command sends no conditional or
	// range requests: no ServeContent needed.
	if rp.length != nil {
		h["Content-Length"] = rp.length // shared, never changed: Set would replace it
	} else {
		h["Content-Length"] = []string{strconv.Itoa(len(rp.body))}
	}
	w.WriteHeader(http.StatusOK)
	if r.Method != http.MethodHead {
		w.Write(rp.body)
	}
}

// noEmptySuffix rewrites a Range header's suffix ranges that select no byte ("-0", or any
// suffix of an empty file) as a range starting at the end ("<size>-"), and reports whether
// it changed anything. http.ServeContent answers "bytes=-0" with a 206 of no byte and a
// Content-Range whose end is before its start ("bytes 10-9/10"); RFC 9110 section 14.1.3
// makes such a range unsatisfiable. Rewritten, ServeContent drops it as it drops any range
// past the end: a 416 with "bytes */<size>" when none is left, as the fasthttp front
// answers (fileAnswer), and the whole of an empty file.
func noEmptySuffix(spec string, size int64) (string, bool) {
	set, ok := strings.CutPrefix(spec, "bytes=")
	if !ok {
		return "", false
	}
	parts := strings.Split(set, ",")
	changed := false
	for i, part := range parts {
		n, ok := strings.CutPrefix(strings.TrimLeft(part, " \t"), "-")
		if !ok {
			continue
		}
		n = strings.TrimRight(n, " \t")
		if v, err := strconv.ParseInt(n, 10, 64); err == nil && n[0] != '-' && (v == 0 || size == 0) {
			parts[i] = strconv.FormatInt(size, 10) + "-"
			changed = true
		}
	}
	return "bytes=" + strings.Join(parts, ","), changed
}

// cacheValue returns the shared header value of a cache state.
func cacheValue(cache string) []string {
	if v, ok := hdrCache[cache]; ok {
		return v
	}
	return []string{cache}
}

// oneLine folds a message onto one line of valid UTF-8 (bytes that are not become
// U+FFFD), for error bodies and logs.
func oneLine(s string) string {
	s = strings.TrimSpace(s)
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	if !strings.ContainsAny(s, "\r\n") {
		return s
	}
	return strings.Join(strings.Fields(strings.NewReplacer("\r\n", "; ", "\n", "; ", "\r", "; ").Replace(s)), " ")
}

// withoutPaths returns err's message for a client: the file names of any *fs.PathError
// or *os.LinkError in it (the cache's files, temporary ones) left out, their operation and
// cause kept ("open /cache/.tmp/f: read-only file system" reads "open: read-only file
// system"). The log gets err itself.
func withoutPaths(err error) string {
	msg := err.Error()
	for e := err; e != nil; e = errors.Unwrap(e) {
		switch pe := e.(type) {
		case *fs.PathError:
			msg = strings.ReplaceAll(msg, pe.Error(), pe.Op+": "+pe.Err.Error())
		case *os.LinkError:
			msg = strings.ReplaceAll(msg, pe.Error(), pe.Op+": "+pe.Err.Error())
		}
	}
	return msg
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
