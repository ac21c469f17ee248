package server

import (
	"io"
	"net/http"
	"strings"
)

// Routes is holoproxy's HTTP interface: a few fixed paths (/metrics, /sumdb/, the
// dashboard) go to their handlers, and every other path goes, untouched, to the GOPROXY
// server. Unlike http.ServeMux it never cleans or redirects a path, so a module path with
// ".." or "//" reaches the request parser and is answered 400 with a reason, and the hot
// path of the proxy pays one map lookup.
type Routes struct {
	modules  http.Handler
	exact    map[string]http.Handler
	prefixes []prefixRoute
	auth     *ClientAuth // when set, every path but the probes wants credentials
	// srv, when modules is a *Server, reports panics of the fixed paths' handlers as it
	// reports its own (recovered).
	srv *Server
}

// RequireAuth makes every path but /healthz and /readyz answer 401 unless the request
// carries credentials a admits. Call it before serving.
func (rt *Routes) RequireAuth(a *ClientAuth) { rt.auth = a }

// admit reports whether a request for path with the Authorization header value
// authorization may be served.
func (rt *Routes) admit(path, authorization string) bool {
	return rt.auth == nil || rt.auth.open(path) || rt.auth.Allow(authorization)
}

type prefixRoute struct {
	prefix string
	h      http.Handler
}

// NewRoutes returns Routes sending every path not handled otherwise to modules.
func NewRoutes(modules http.Handler) *Routes {
	srv, _ := modules.(*Server)
	return &Routes{modules: modules, exact: map[string]http.Handler{}, srv: srv}
}

// Handle sends requests for path to h: exactly that path, or every path under it when
// path ends in "/" ("/sumdb/"). Paths are fixed at start; Handle is not safe to call
// while serving.
func (rt *Routes) Handle(path string, h http.Handler) {
	if strings.HasSuffix(path, "/") && path != "/" {
		rt.prefixes = append(rt.prefixes, prefixRoute{path, h})
		return
	}
	rt.exact[path] = h
}

// fixed returns the handler of a fixed path, nil for a path of the GOPROXY server.
func (rt *Routes) fixed(p string) http.Handler {
	if h, ok := rt.exact[p]; ok {
		return h
	}
	for _, pr := range rt.prefixes {
		if strings.HasPrefix(p, pr.prefix) {
			return pr.h
		}
	}
	return nil
}

// ServeHTTP implements http.Handler.
func (rt *Routes) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !rt.admit(r.URL.Path, r.Header.Get("Authorization")) {
		writeUnauthorized(w)
		return
	}
	if h := rt.fixed(r.URL.Path); h != nil {
		if rt.srv == nil {
			h.ServeHTTP(w, r)
			return
		}
		lw := &logWriter{ResponseWriter: w}
		defer rt.srv.recoverHTTP(w, lw)
		h.ServeHTTP(lw, r)
		return
	}
	rt.modules.ServeHTTP(w, r)
}

// writeUnauthorized answers 401 with the challenge and the one-line reason.
func writeUnauthorized(w http.ResponseWriter) {
	h := w.Header()
	h.Set("WWW-Authenticate", `Basic realm="holoproxy", charset="UTF-8"`)
	h.Set("Content-Type", "text/plain; charset=utf-8")
	w.WriteHeader(http.StatusUnauthorized)
	io.WriteString(w, unauthorizedBody)
}
