package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/pprof"
	"strconv"
	"time"

	"github.com/spf13/pflag"

	"github.com/holoproxy/holoproxy/internal/server"
)

// debugOptions is serve's --debug-listen: Go's runtime profiles on a listener of their own.
type debugOptions struct {
	listen string
}

// debugMaxSeconds bounds a CPU profile or execution trace asked of the debug listener.
const debugMaxSeconds = 300

func (o *debugOptions) register(f *pflag.FlagSet) {
	f.StringVar(&o.listen, "debug-listen", "", "serve Go's runtime profiles (net/http/pprof: CPU, heap, allocations, goroutines, execution trace) at /debug/pprof/ on this address (host:port), for go tool pprof and go tool trace on the running server; behind --client-auth when it is set; off when empty")
}

func (o *debugOptions) check() error {
	if o.listen == "" {
		return nil
	}
	if _, _, err := net.SplitHostPort(o.listen); err != nil {
		return usagef("--debug-listen %q: %v", o.listen, err)
	}
	return nil
}

// debugHandler serves net/http/pprof's profiles, without /debug/pprof/cmdline: serve's
// command line may hold upstream credentials (user info in --upstream URLs).
func debugHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index) // the index, and heap, goroutine, allocs, ... by name
	mux.HandleFunc("/debug/pprof/profile", boundSeconds(pprof.Profile))
	mux.HandleFunc("/debug/pprof/trace", boundSeconds(pprof.Trace))
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/cmdline", func(w http.ResponseWriter, r *http.Request) {
		notServed(w, "the command line is not served: it may hold upstream credentials")
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		notServed(w, "this listener serves Go's runtime profiles under /debug/pprof/ only")
	})
	return mux
}

// boundSeconds refuses, with a one-line 400, a ?seconds= above debugMaxSeconds: net/http/pprof
// extends the connection's write deadline by whatever is asked.
func boundSeconds(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if v := r.FormValue("seconds"); v != "" {
			if sec, err := strconv.ParseFloat(v, 64); err == nil && sec > debugMaxSeconds {
				w.Header().Set("Content-Type", "text/plain; charset=utf-8")
				w.Header().Set("X-Content-Type-Options", "nosniff")
				w.WriteHeader(http.StatusBadRequest)
				fmt.Fprintf(w, "seconds=%s: at most %d\n", strconv.FormatFloat(sec, 'f', -1, 64), debugMaxSeconds)
				return
			}
		}
		h(w, r)
	}
}

func notServed(w http.ResponseWriter, reason string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusNotFound)
	io.WriteString(w, reason+"\n")
}

// startDebug listens on o.listen and serves debugHandler there (behind auth when it is
// set) until the returned shutdown is called. It does nothing when o.listen is empty.
func startDebug(o debugOptions, auth *server.ClientAuth, log *slog.Logger) (shutdown func(context.Context), err error) {
	if o.listen == "" {
		return func(context.Context) {}, nil
	}
	ln, err := net.Listen("tcp", o.listen)
	if err != nil {
		return nil, errors.New("--debug-listen: " + err.Error())
	}
	h := debugHandler()
	if auth != nil {
		h = auth.Wrap(h)
	} else if !loopbackListen(o.listen) {
		log.Warn("--debug-listen beyond loopback without --client-auth: anyone who reaches it can profile this server and read its goroutines' stacks; bind it to 127.0.0.1 or set --client-auth", "addr", o.listen)
	}
	hs := &http.Server{
		Handler:           h,
		ReadHeaderTimeout: readHeaderTimeout,
		IdleTimeout:       idleTimeout,
		// net/http/pprof adds a profile's or trace's seconds to this.
		WriteTimeout: 30 * time.Second,
		ErrorLog:     slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	// internal/e2e reads the address from this line (msg="debug listener" addr=...).
	log.Info("debug listener", "addr", ln.Addr().String(), "paths", "/debug/pprof/")
	go func() {
		if err := hs.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("debug listener stopped", "err", err)
		}
	}()
	return func(ctx context.Context) {
		// A profile in progress is cut: nothing of the cache depends on it.
		if err := hs.Shutdown(ctx); err != nil {
			hs.Close()
		}
	}, nil
}
