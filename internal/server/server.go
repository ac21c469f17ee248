// Package server is holoproxy's GOPROXY server: it answers the protocol's endpoints from the
// store, fills misses from the upstream chain with one fetch per key, validates (and, with a
// Verify hook, checksum-verifies) every file before it is stored, and exposes its metrics.
package server

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"os"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/holoproxy/holoproxy/internal/goproxy"
	"github.com/holoproxy/holoproxy/internal/store"
)

// Config configures a Server. Zero durations take the documented defaults.
type Config struct {
	// Store keeps verified files. Required.
	Store store.Store
	// Chain is the upstream list in GOPROXY syntax. Required.
	Chain *goproxy.Chain
	// ListTTL is how long a list or @latest answer is served from the store before it is
	// asked again (default 1m). Past it, the stored copy is still served, marked stale, when
	// every upstream fails.
	ListTTL time.Duration
	// NegativeTTL is how long a not-found answer is remembered and answered 404 without
	// asking upstream (default 30s).
	NegativeTTL time.Duration
	// FillTimeout bounds one fill from the chain, whoever waits on it (default 10m).
	FillTimeout time.Duration
	// Verify, when set, checks a filled .mod or .zip (already written to file) against the
	// checksum database before it is stored; an error refuses the answer.
	Verify func(ctx context.Context, r goproxy.Request, file *os.File) error
	// Order, when set, orders interchangeable upstreams (the health scorer's hook).
	Order func([]*goproxy.Client) []*goproxy.Client
	// OnFill, when set, is told the outcome of every attempt at an upstream: nil, or the
	// error that refused it (health charges checksum failures from it).
	OnFill func(upstream string, r goproxy.Request, err error)
	// InstanceID names this server in the hop header of the loop guard (default: random).
	InstanceID string
	// Registerer receives the server's metrics (default: none registered).
	Registerer prometheus.Registerer
	// Logger receives one line per request at info level (default slog.Default()).
	Logger *slog.Logger
}

// HopHeader is the request header holoproxy adds to its upstream requests, naming the
// instances a request has passed; a request that already passed this instance is refused
// with 508 Loop Detected.
const HopHeader = "X-Holoproxy-Hop"

// CacheHeader says how an answer was served: hit, miss, stale or negative.
const CacheHeader = "X-Holoproxy-Cache"

// UpstreamHeader names the upstream that served a miss.
const UpstreamHeader = "X-Holoproxy-Upstream"

// Server serves the GOPROXY protocol. Create it with New.
type Server struct {
	cfg Config
}

// New returns a Server for cfg.
func New(cfg Config) (*Server, error) {
	return nil, errors.New("server: not implemented yet")
}

// ServeHTTP answers GOPROXY requests: GET and HEAD of <module>/@v/list, @v/<version>.info,
// .mod, .zip and <module>/@latest. Anything else is 404 or 400 with a one-line reason.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	http.Error(w, "not implemented", http.StatusNotImplemented)
}

// Close waits for fills in progress to finish or be abandoned (ctx), leaving no temporary
// files behind.
func (s *Server) Close(ctx context.Context) error { return nil }
