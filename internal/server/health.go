package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"time"

	"github.com/holoproxy/holoproxy/internal/store"
)

// The probes of a load balancer or an orchestrator: /healthz (liveness) and /readyz
// (readiness). Neither path can be a GOPROXY request (a module path's first element has a
// dot), and neither is logged.

// HealthHandler answers /healthz: 200 "ok" whenever the process answers at all.
func HealthHandler() http.Handler {
	return probe("ok", func(context.Context) error { return nil })
}

// ReadyHandler answers /readyz: 200 "ready" when Ready says so, else 503 with its reason.
func (s *Server) ReadyHandler() http.Handler { return probe("ready", s.Ready) }

// readyTimeout bounds one readiness check (a file created and removed in the store).
const readyTimeout = 5 * time.Second

// Ready reports whether the server takes requests: it is not shutting down, and its store
// accepts a new file (a temporary file is created and removed), or refuses it for lack of
// room (or being read-only) while misses are relayed from memory: a full disk is an alert
// (holoproxy_server_store_unwritable), not a reason to take the last replica out of a
// load balancer. The upstreams play no part: with every upstream down the cache still
// answers what it holds, and their health is in the metrics and on the dashboard.
func (s *Server) Ready(ctx context.Context) error {
	s.mu.Lock()
	closed := s.closed
	s.mu.Unlock()
	if closed || s.draining.Load() {
		return errors.New("shutting down")
	}
	ctx, cancel := context.WithTimeout(ctx, readyTimeout)
	defer cancel()
	f, err := s.cfg.Store.CreateTemp(ctx)
	if err != nil {
		if store.Unwritable(err) && s.relay.budget > 0 {
			s.relay.refused(err)
			return nil
		}
		return fmt.Errorf("the store cannot take a new file: %w", err)
	}
	s.cfg.Store.Discard(f)
	return nil
}

// probe answers GET and HEAD with 200 and the line good when check passes, 503 and the
// reason when it fails; other methods get 405. Answers are never cached.
func probe(good string, check func(context.Context) error) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("Content-Type", "text/plain; charset=utf-8")
		h.Set("Cache-Control", "no-store")
		status, body := http.StatusOK, good+"\n"
		switch {
		case r.Method != http.MethodGet && r.Method != http.MethodHead:
			h.Set("Allow", "GET, HEAD")
			status, body = http.StatusMethodNotAllowed, "method "+r.Method+" not allowed\n"
		default:
			if err := check(r.Context()); err != nil {
				status, body = http.StatusServiceUnavailable, "not ready: "+oneLine(withoutPaths(err))+"\n"
			}
		}
		h.Set("Content-Length", strconv.Itoa(len(body)))
		w.WriteHeader(status)
		if r.Method != http.MethodHead {
			io.WriteString(w, body)
		}
	})
}

// Drain makes Ready fail from now on while every other answer goes on as before: the
// first step of a graceful shutdown behind a load balancer, which then stops sending new
// clients before the listener closes (serve's --shutdown-delay).
func (s *Server) Drain() { s.draining.Store(true) }
