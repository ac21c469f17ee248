package server

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"syscall"
	"time"

	"github.com/valyala/fasthttp"
	"github.com/valyala/fasthttp/fasthttpadaptor"
)

// The fasthttp front. holoproxy serve answers on fasthttp by default: on a cached .info it
// does about 1.5x the requests per second of net/http on the same machine, and per request
// it spends less CPU in the scheduler and the HTTP layer, which is what a warm `go mod
// download` pays for (docs/benchmarks.md). The answers are those of ServeHTTP: both fronts
// send the reply Server.answer decides, and the server's tests run on both.
//
// Differences from net/http, by design:
//   - a request's context is not cancelled when its client goes away (fasthttp does not
//     watch the connection while a handler runs): a client that leaves while its answer
//     is filled is noticed when the answer is written. The fill is bounded by its own
//     timeouts either way.
//   - a request for several ranges of a stored file gets the whole file (net/http sends a
//     multipart/byteranges body). Conditional requests and single ranges are answered as
//     net/http's ServeContent answers them (fileAnswer).

// ServeFast answers a GOPROXY request on fasthttp, as ServeHTTP does on net/http.
func (s *Server) ServeFast(ctx *fasthttp.RequestCtx) {
	defer s.recoverFast(ctx)
	path, err := FastPath(ctx)
	if err != nil {
		s.fastBadURI(ctx, err)
		return
	}
	s.serveFast(ctx, path)
}

// fastBadURI answers a request URI that does not parse (bad percent-encoding): 400, as
// net/http answers it before any handler.
func (s *Server) fastBadURI(ctx *fasthttp.RequestCtx, err error) {
	start := time.Now()
	rp := errorReply(http.StatusBadRequest, "bad request: "+err.Error())
	status, n := s.writeFastReply(ctx, &rp)
	s.answered(context.Background(), string(ctx.Method()), string(ctx.Request.Header.RequestURI()), &rp, status, n, time.Since(start))
}

func (s *Server) serveFast(ctx *fasthttp.RequestCtx, path string) {
	start := time.Now()
	method := fastMethod(ctx)
	var hops []string
	for _, v := range ctx.Request.Header.PeekAll(HopHeader) {
		hops = append(hops, string(v))
	}
	// Not ctx: a RequestCtx is done when the fasthttp server shuts down, and answers in
	// flight must finish then (Close bounds the fills instead).
	rp := s.answer(context.Background(), method, path, hops)
	// Accounted for when the answer is handed to fasthttp, which writes it after the
	// handler returns: bytes are the answer's size, and the duration ends before a file
	// is sent. So a client that read an answer always finds it counted.
	status, n := s.writeFastReply(ctx, &rp)
	s.answered(context.Background(), method, path, &rp, status, n, time.Since(start))
}

// fastMethod returns the request's method, without an allocation for GET and HEAD.
func fastMethod(ctx *fasthttp.RequestCtx) string {
	switch {
	case ctx.IsGet():
		return http.MethodGet
	case ctx.IsHead():
		return http.MethodHead
	}
	return string(ctx.Method())
}

// FastPath returns the decoded path of a fasthttp request, as net/http's URL.Path: the
// request URI up to any query, percent-decoded. A URI that does not parse is an error.
func FastPath(ctx *fasthttp.RequestCtx) (string, error) {
	uri := ctx.Request.Header.RequestURI()
	p := uri
	if i := bytes.IndexByte(p, '?'); i >= 0 {
		p = p[:i]
	}
	if len(p) > 0 && p[0] == '/' && bytes.IndexByte(p, '%') < 0 {
		return string(p), nil // nothing to decode: the common case, one allocation
	}
	u, err := url.ParseRequestURI(string(uri))
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return "", fmt.Errorf("malformed request URI: %v", err)
	}
	return u.Path, nil
}

// writeFastReply sets rp as ctx's response and returns the status and the body bytes it
// will send. A file is sent after the handler returns, through a fastFile, which closes it.
func (s *Server) writeFastReply(ctx *fasthttp.RequestCtx, rp *reply) (int, int64) {
	if rp.status == 0 { // the client went away while the answer was filled
		rp.done()
		ctx.SetConnectionClose()
		return 0, 0
	}
	h := &ctx.Response.Header
	h.Set(CacheHeader, rp.cache)
	if rp.status != http.StatusOK {
		defer rp.done()
		if rp.allow {
			h.Set("Allow", hdrAllow[0])
		}
		return fastText(ctx, rp.status, rp.msg)
	}
	if rp.upstream != "" {
		h.Set(UpstreamHeader, rp.upstream)
	}
	if rp.immutable {
		h.Set("Cache-Control", hdrImmutable[0])
	}
	if rp.timing != "" {
		h.Set(TimingHeader, rp.timing)
	}
	if rp.file == nil {
		h.SetContentType(contentType(rp.kind)[0])
		ctx.Response.SetBodyRaw(rp.body) // never changed once made
		if ctx.IsHead() {
			return http.StatusOK, 0
		}
		return http.StatusOK, int64(len(rp.body))
	}
	if knownTime(rp.modTime) {
		h.Set("Last-Modified", rp.modTime.UTC().Format(http.TimeFormat))
	}
	part := fileAnswer(&ctx.Request.Header, rp.modTime, rp.size)
	switch part.status {
	case http.StatusOK, http.StatusPartialContent:
	case http.StatusNotModified:
		rp.done()
		ctx.SetStatusCode(part.status)
		return part.status, 0
	default: // 412, 416
		rp.done()
		if part.contentRange != "" {
			h.Set("Content-Range", part.contentRange)
		}
		msg := part.msg
		if msg == "" {
			msg = "precondition failed"
		}
		return fastText(ctx, part.status, msg+"\n")
	}
	h.SetContentType(contentType(rp.kind)[0])
	h.Set("Accept-Ranges", "bytes")
	if part.contentRange != "" {
		h.Set("Content-Range", part.contentRange)
	}
	ctx.SetStatusCode(part.status)
	f := &fastFile{rp: *rp, start: part.start, length: part.length}
	rp.file, rp.release = nil, nil // f owns them now
	if c, ok := ctx.Conn().(syscall.Conn); ok {
		f.conn = c
	}
	// fasthttp closes f without reading it for HEAD, and after sending it otherwise.
	ctx.Response.SetBodyStream(f, int(f.length))
	if ctx.IsHead() {
		return part.status, 0
	}
	return part.status, f.length
}

// fastText sets a one-line text/plain answer with status.
func fastText(ctx *fasthttp.RequestCtx, status int, msg string) (int, int64) {
	h := &ctx.Response.Header
	h.SetContentType(hdrText[0])
	h.Set("X-Content-Type-Options", hdrNosniff[0])
	ctx.SetStatusCode(status)
	ctx.Response.SetBodyString(msg)
	if ctx.IsHead() {
		return status, 0
	}
	return status, int64(len(msg))
}

// fastFile is the body of a file answer on fasthttp. Its WriteTo hands the file itself to
// fasthttp's writer, so that a stored file goes out by sendfile, with the connection
// corked: the headers and the file leave in full packets, as nginx's tcp_nopush does,
// instead of a small packet of headers first. Close closes the file.
type fastFile struct {
	rp            reply
	start, length int64             // the bytes to send: all of them, or a Range's
	part          *io.LimitedReader // a range's reader, once made
	conn          syscall.Conn
}

// SupportsBodyWriteTo tells fasthttp to use WriteTo (fasthttp.BodyWriterTo).
func (f *fastFile) SupportsBodyWriteTo() bool { return true }

func (f *fastFile) WriteTo(w io.Writer) (int64, error) {
	if f.rp.file == nil {
		return 0, os.ErrClosed
	}
	body, err := f.body()
	if err != nil {
		return 0, err
	}
	rf, ok := w.(io.ReaderFrom)
	if !ok {
		return io.Copy(w, body)
	}
	corked := f.cork(true)
	n, err := rf.ReadFrom(body) // an *os.File, seen as one: sendfile
	if corked {
		f.cork(false) // pushes what is held, once the file is handed to the kernel
	}
	return n, err
}

// Read makes fastFile an io.Reader; fasthttp uses WriteTo.
func (f *fastFile) Read(p []byte) (int, error) {
	if f.rp.file == nil {
		return 0, os.ErrClosed
	}
	body, err := f.body()
	if err != nil {
		return 0, err
	}
	return body.Read(p)
}

// body returns the reader of the bytes to send, positioned at their start: the file, or
// for a range an *io.LimitedReader of it (which still goes out by sendfile).
func (f *fastFile) body() (io.Reader, error) {
	if f.part != nil {
		return f.part, nil
	}
	if f.start == 0 && f.length == f.rp.size {
		return f.rp.file, nil
	}
	if _, err := f.rp.file.Seek(f.start, io.SeekStart); err != nil {
		return nil, err
	}
	f.part = &io.LimitedReader{R: f.rp.file, N: f.length}
	return f.part, nil
}

// cork sets TCP_CORK on the connection; it reports whether it could.
func (f *fastFile) cork(on bool) bool {
	if f.conn == nil || f.length < corkMinSize {
		return false
	}
	rc, err := f.conn.SyscallConn()
	if err != nil {
		return false
	}
	v := 0
	if on {
		v = 1
	}
	var serr error
	if err := rc.Control(func(fd uintptr) { serr = setCork(int(fd), v) }); err != nil || serr != nil {
		return false
	}
	return true
}

// corkMinSize is the smallest file answer sent corked: below it fasthttp copies the file
// into its write buffer behind the headers anyway.
const corkMinSize = 8 << 10

// Close closes the file and releases the fill that gave it; a second call does nothing.
func (f *fastFile) Close() error {
	f.rp.done()
	return nil
}

// FastHandler returns the fasthttp handler of a Routes: the fixed paths go to their
// net/http handlers through fasthttpadaptor, every other path to s.ServeFast.
func (rt *Routes) FastHandler(s *Server) fasthttp.RequestHandler {
	adapted := fasthttpadaptor.NewFastHTTPHandler(rt)
	return func(ctx *fasthttp.RequestCtx) {
		defer s.recoverFast(ctx)
		path, err := FastPath(ctx)
		if err != nil {
			s.fastBadURI(ctx, err)
			return
		}
		if rt.auth != nil && !rt.admit(path, string(ctx.Request.Header.Peek("Authorization"))) {
			ctx.Response.Header.Set("WWW-Authenticate", `Basic realm="holoproxy", charset="UTF-8"`)
			ctx.Response.Header.SetContentType(hdrText[0])
			ctx.SetStatusCode(http.StatusUnauthorized)
			ctx.SetBodyString(unauthorizedBody)
			return
		}
		if rt.fixed(path) != nil {
			adapted(ctx)
			return
		}
		s.serveFast(ctx, path)
	}
}

// FastServerConfig is what NewFastServer needs beyond the handler.
type FastServerConfig struct {
	// ReadTimeout bounds reading one request (its headers); IdleTimeout bounds a
	// keep-alive connection's wait for its next request.
	ReadTimeout, IdleTimeout time.Duration
	// Logger receives the fasthttp server's own errors at warn level.
	Logger *slog.Logger
}

// MaxRequestHeaderBytes bounds a request's line and headers on the fasthttp front. A
// GOPROXY path is at most goproxy.MaxPathLen (2048) bytes.
const MaxRequestHeaderBytes = 8 << 10

// NewFastServer returns a fasthttp server for h with holoproxy's settings: no Server
// header, requests of at most MaxRequestHeaderBytes without a body of note, idle
// connections closed at shutdown, and errors of the HTTP layer (a request that does not
// parse, one too large) answered with a one-line reason.
func NewFastServer(h fasthttp.RequestHandler, cfg FastServerConfig) *fasthttp.Server {
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	return &fasthttp.Server{
		Handler:               h,
		ReadTimeout:           cfg.ReadTimeout,
		IdleTimeout:           cfg.IdleTimeout,
		ReadBufferSize:        MaxRequestHeaderBytes,
		MaxRequestBodySize:    64 << 10,
		NoDefaultServerHeader: true,
		NoDefaultContentType:  true,
		CloseOnShutdown:       true,
		Logger:                fastLogger{log},
		ErrorHandler: func(ctx *fasthttp.RequestCtx, err error) {
			status, msg := http.StatusBadRequest, "bad request: "+err.Error()
			var big *fasthttp.ErrSmallBuffer
			if errors.As(err, &big) {
				status, msg = http.StatusRequestHeaderFieldsTooLarge, fmt.Sprintf("request line and headers longer than %d bytes", MaxRequestHeaderBytes)
			}
			ctx.Response.Header.SetContentType(hdrText[0])
			ctx.SetStatusCode(status)
			ctx.SetBodyString(oneLine(msg) + "\n")
			ctx.SetConnectionClose()
		},
	}
}

// fastLogger hands fasthttp's log lines to slog.
type fastLogger struct{ log *slog.Logger }

func (l fastLogger) Printf(format string, args ...any) {
	l.log.Warn("http server", "err", fmt.Sprintf(format, args...))
}
