package server

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"runtime/debug"

	"github.com/valyala/fasthttp"

	"github.com/holoproxy/holoproxy/internal/goproxy"
)

// internalError is a panic recovered while answering a request or filling a key: a bug of
// this server, never the upstream's failure (the attempt is not counted against it). The
// request gets 500 with a one-line reason; the stack is in the log.
type internalError struct{ msg string }

func (e *internalError) Error() string { return e.msg }

// recovered logs a panic recovered in where (request, fill, prefetch) with its stack,
// counts it in holoproxy_server_panics_total and returns it as an internalError. A
// production proxy keeps serving its other clients when one request meets a bug: the
// fasthttp front, unlike net/http, would otherwise end the process.
func (s *Server) recovered(where string, v any) *internalError {
	s.metrics.panics.WithLabelValues(where).Inc()
	s.log.LogAttrs(context.Background(), slog.LevelError, "internal error: recovered from a panic",
		slog.String("where", where), slog.String("panic", fmt.Sprint(v)), slog.String("stack", string(debug.Stack())))
	what := fmt.Sprint(v)
	if err, ok := v.(error); ok {
		what = withoutPaths(err) // a panic with a file system error: its file is the log's
	}
	return &internalError{msg: fmt.Sprintf("holoproxy: internal error (%s): %s", where, oneLine(what))}
}

// tryGuarded is try with a panic (in validation, verification, the store) turned into an
// internalError. Hedged attempts run on goroutines of their own, so the guard is here,
// around each attempt, not only around the fill.
func (s *Server) tryGuarded(ctx context.Context, c *goproxy.Client, req goproxy.Request) (f *fetched, err error) {
	defer func() {
		if v := recover(); v != nil {
			f, err = nil, s.recovered("fill", v)
		}
	}()
	return s.try(ctx, c, req)
}

// doFillGuarded is doFill with a panic turned into a 500 answer.
func (s *Server) doFillGuarded(ctx context.Context, req goproxy.Request, hops []string) (res fillResult, pending *os.File) {
	defer func() {
		if v := recover(); v != nil {
			res, pending = fillResult{err: s.recovered("fill", v), status: http.StatusInternalServerError}, nil
		}
	}()
	return s.doFill(ctx, req, hops)
}

// commitGuarded is commit with a panic turned into an error.
func (s *Server) commitGuarded(ctx context.Context, req goproxy.Request, upstream string, tmp *os.File, size int64) (err error) {
	defer func() {
		if v := recover(); v != nil {
			err = s.recovered("fill", v)
		}
	}()
	return s.commit(ctx, req, upstream, tmp, size)
}

// recoverFast answers a request whose handler panicked on the fasthttp front: 500 with a
// one-line reason, the connection closed. Deferred by the handler.
func (s *Server) recoverFast(ctx *fasthttp.RequestCtx) {
	v := recover()
	if v == nil {
		return
	}
	e := s.recovered("request", v)
	ctx.Response.Reset()
	ctx.Response.Header.SetContentType(hdrText[0])
	ctx.SetStatusCode(http.StatusInternalServerError)
	ctx.SetBodyString(e.msg + "\n")
	ctx.SetConnectionClose()
}

// recoverHTTP does the same on the net/http front when nothing was written through lw yet;
// after the headers it aborts the answer (http.ErrAbortHandler: the client sees the
// connection end, never a body that looks whole).
func (s *Server) recoverHTTP(w http.ResponseWriter, lw *logWriter) {
	v := recover()
	if v == nil {
		return
	}
	if v == http.ErrAbortHandler {
		panic(v)
	}
	e := s.recovered("request", v)
	if lw.status != 0 {
		panic(http.ErrAbortHandler)
	}
	h := w.Header()
	for k := range h {
		delete(h, k)
	}
	h.Set("Content-Type", hdrText[0])
	h.Set("Connection", "close")
	w.WriteHeader(http.StatusInternalServerError)
	fmt.Fprintln(w, e.msg)
}
