package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/cobra"
	"golang.org/x/mod/module"

	"github.com/holoproxy/holoproxy/internal/goproxy"
	"github.com/holoproxy/holoproxy/internal/netobs"
	"github.com/holoproxy/holoproxy/internal/server"
	"github.com/holoproxy/holoproxy/internal/server/dashboard"
	"github.com/holoproxy/holoproxy/internal/store"
)

// serveOptions are the flags of holoproxy serve.
type serveOptions struct {
	listen          string
	cacheDir        string
	upstream        string
	listTTL         time.Duration
	negativeTTL     time.Duration
	logLevel        string
	logFormat       string
	shutdownTimeout time.Duration
	shutdownDelay   time.Duration
	sendTimeout     time.Duration
	httpServer      string
	relayMemory     byteSize
	cacheMaxSize    byteSize
	directMaxSize   byteSize // --direct-max-size, resolved by RunE (a tenth of cacheMaxSize by default)
	clientAuth      string
	gonoproxy       string
	routes          []string
	direct          directOptions   // --direct-jobs, --direct-timeout (serve_direct.go)
	tls             tlsOptions      // --tls-cert, --tls-key (serve_tls.go)
	shared          sharedOptions   // --shared-cache, --s3-endpoint, --s3-region (serve_shared.go)
	net             upstreamFlags   // --dns, --ca-file and the phase timeouts (upstream.go)
	observe         observeOptions  // --dns-min-ttl, --dns-max-ttl (serve_observe.go)
	checks          checksumOptions // --sumdb, --gonosumdb, --goprivate (serve_checksum.go)
	repair          repairOptions   // --hedge*, --prefetch, --probe-*, --dashboard (serve_repair.go)
	debug           debugOptions    // --debug-listen (serve_debug.go)
}

func newServeCmd() *cobra.Command {
	var o serveOptions
	cmd := &cobra.Command{
		Use:   "serve",
		Short: "Run a caching GOPROXY server in front of the upstream chain",
		Long: "serve runs a caching GOPROXY server. Point the go command at it with\n" +
			"GOPROXY=http://<listen address>. The upstream chain, in GOPROXY syntax, is taken\n" +
			"from `go env GOPROXY` at start unless --upstream is given.",
		Args: noArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			if err := checkPositive(cmd, "list-ttl", "negative-ttl", "shutdown-timeout"); err != nil {
				return err
			}
			if err := o.net.check(cmd); err != nil {
				return err
			}
			if err := o.tls.check(); err != nil {
				return err
			}
			if err := o.shared.check(); err != nil {
				return err
			}
			if err := checkPatterns("--gonoproxy", o.gonoproxy); err != nil {
				return err
			}
			if err := o.direct.check(); err != nil {
				return err
			}
			if err := o.debug.check(); err != nil {
				return err
			}
			if !cmd.Flags().Changed("direct-max-size") {
				o.directMaxSize = o.cacheMaxSize / 10
			}
			if o.cacheMaxSize > 0 && o.directMaxSize >= o.cacheMaxSize {
				return usagef("--direct-max-size %s must be below --cache-max-size %s, which bounds the whole cache directory", o.directMaxSize, o.cacheMaxSize)
			}
			var level slog.Level
			if err := level.UnmarshalText([]byte(o.logLevel)); err != nil {
				return usagef("--log-level %q: want debug, info, warn or error", o.logLevel)
			}
			if o.httpServer != "fasthttp" && o.httpServer != "net/http" {
				return usagef("--http-server %q: want fasthttp or net/http", o.httpServer)
			}
			if _, _, err := net.SplitHostPort(o.listen); err != nil {
				return usagef("--listen %q: %v", o.listen, err)
			}
			log, err := newLogger(cmd.ErrOrStderr(), level, o.logFormat)
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), stopSignals...)
			defer stop()
			return runServe(ctx, stop, o, log)
		},
	}
	f := cmd.Flags()
	f.StringVar(&o.listen, "listen", "127.0.0.1:7070", "address to serve on (host:port)")
	f.StringVar(&o.cacheDir, "cache-dir", "", "cache directory (default: holoproxy under the user cache directory, e.g. ~/.cache/holoproxy)")
	f.Var(&o.cacheMaxSize, "cache-max-size", "keep the cache under this size (e.g. 50GiB) by deleting the least recently read .zip files, which are fetched again when asked for; 0 keeps every file forever")
	f.Var(&o.directMaxSize, "direct-max-size", "keep the version control clones of direct (.direct in the cache directory) under this size by deleting those used longest ago, cloned again when needed; default a tenth of --cache-max-size, which then bounds the clones and the stored files together; 0 without --cache-max-size: no bound")
	f.StringVar(&o.upstream, "upstream", "", "upstream chain in GOPROXY syntax (default: the output of 'go env GOPROXY' at start)")
	f.DurationVar(&o.listTTL, "list-ttl", time.Minute, "how long a list or @latest answer is served from the cache before it is asked again")
	f.DurationVar(&o.negativeTTL, "negative-ttl", 30*time.Second, "how long a not-found answer is remembered")
	f.StringArrayVar(&o.routes, "route", nil, "PATTERNS=LIST: fetch the modules matching PATTERNS (GOPRIVATE syntax, e.g. corp.example/*) from LIST (GOPROXY syntax) alone, never from --upstream; repeatable, the first match wins (e.g. a company proxy for the company's modules, so their paths never reach a public proxy; exempt them from the checksum database with --goprivate)")
	f.StringVar(&o.gonoproxy, "gonoproxy", "", "module path patterns never asked of the upstreams, as GONOPROXY (e.g. corp.example/*,*.internal): answered 404 at once unless cached, so private module paths never leave for a public proxy, and the client's fallback (a next proxy, direct) takes over. Not read from go env, whose GONOPROXY defaults to GOPRIVATE: on a proxy those are often the modules an upstream of the chain serves")
	f.StringVar(&o.logLevel, "log-level", "info", "log level: debug, info, warn or error")
	f.StringVar(&o.logFormat, "log-format", "text", "log lines as text (key=value) or json (one object per line, for log pipelines)")
	o.direct.register(f)
	o.shared.register(f)
	o.net.register(f)
	o.tls.register(f)
	o.debug.register(f)
	f.StringVar(&o.clientAuth, "client-auth", "", "admit only clients with HTTP basic credentials found in this file (user:bcrypt-hash lines, as htpasswd -B writes them; read again when it changes); /healthz and /readyz stay open")
	f.DurationVar(&o.shutdownTimeout, "shutdown-timeout", 30*time.Second, "on SIGINT, SIGTERM or SIGHUP, how long answers in flight, then the fills still going, may take to finish")
	f.DurationVar(&o.shutdownDelay, "shutdown-delay", 0, "on SIGINT, SIGTERM or SIGHUP, how long to go on serving with /readyz answering 503 before the listener closes, so that a load balancer stops sending clients first (a second signal ends the wait)")
	f.DurationVar(&o.sendTimeout, "send-timeout", time.Minute, "close a client's connection when it takes no byte of an answer for this long (TCP_USER_TIMEOUT; Linux); 0 turns it off")
	o.relayMemory = server.DefaultRelayMemory
	f.Var(&o.relayMemory, "relay-memory", "while the cache cannot store files (disk full, over quota, read-only), misses are relayed from memory, not stored: the bytes such answers may hold at once (e.g. 128MiB, 1GiB); an answer that does not fit gets 503; 0 turns relaying off")
	f.StringVar(&o.httpServer, "http-server", "fasthttp", "HTTP server library of the listener: fasthttp (faster; several ranges of a file get the whole file) or net/http")
	addObserveFlags(f, &o.observe)
	addChecksumFlags(f, &o.checks)
	addRepairFlags(f, &o.repair)
	return cmd
}

// newLogger returns serve's logger: text or json lines at level on w. In JSON, durations
// are written as in text ("1m0s", "937µs"), not as nanoseconds.
func newLogger(w io.Writer, level slog.Level, format string) (*slog.Logger, error) {
	opts := &slog.HandlerOptions{Level: level}
	switch format {
	case "text":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		opts.ReplaceAttr = func(_ []string, a slog.Attr) slog.Attr {
			if a.Value.Kind() == slog.KindDuration {
				a.Value = slog.StringValue(a.Value.Duration().String())
			}
			return a
		}
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	}
	return nil, usagef("--log-format %q: want text or json", format)
}

// runServe serves until ctx is done (a signal), then shuts down: answers in flight, then
// fills, finish or are abandoned within the shutdown timeout, no temporary file or child
// process is left. stop ends ctx's signal handling; runServe handles the stop signals
// itself from then on, a further one ending the shutdown at once.
func runServe(ctx context.Context, stop func(), o serveOptions, log *slog.Logger) error {
	// shutdown is set when a signal starts the shutdown: its deadline (--shutdown-timeout)
	// bounds the answers in flight, then the fills; a second signal ends it at once.
	var shutdown context.Context
	endShutdown := context.CancelFunc(func() {})
	defer func() { endShutdown() }() // deferred first, so run last: after srv.Close
	cacheDir, err := cacheDirOrDefault(o.cacheDir)
	if err != nil {
		return err
	}
	list, err := proxyList(ctx, o.upstream, "upstream")
	if err != nil {
		return err
	}
	obs, err := newObservability(o.observe, o.net, log)
	if err != nil {
		return err
	}
	if p := describeEnvProxy(); p != "" {
		log.Info("upstreams are reached through the forward proxy of the environment (HTTPS_PROXY, HTTP_PROXY, NO_PROXY; never for loopback)", "proxy", p)
	}
	// Upstream health, hedging, prefetch and the dashboard: every Sample feeds its scorer.
	rp, err := newRepair(o.repair, obs, log)
	if err != nil {
		return err
	}
	obs.sinks = append(obs.sinks, rp.Sink())
	routes, err := parseRoutes(o.routes)
	if err != nil {
		return err
	}
	// The credentials of every list's URLs: the routes' company proxies want them most.
	creds, err := upstreamCredentials(ctx, strings.Join(append([]string{list}, routeLists(routes)...), ","),
		func(format string, args ...any) { log.Info(fmt.Sprintf(format, args...)) })
	if err != nil {
		return err
	}
	defer closeCredentials(creds, func(format string, args ...any) { log.Error(fmt.Sprintf(format, args...)) }) // after srv.Close
	hc, closeIdle, err := upstreamClient(o, obs, creds)
	if err != nil {
		return err
	}
	defer closeIdle()
	// The prober's own transport, emptied before each round so that probes dial.
	probe, closeProbe, err := upstreamClient(o, obs, creds)
	if err != nil {
		return err
	}
	defer closeProbe()
	rp.SetProbeClient(probe, closeProbe)
	chain, err := goproxy.ParseChain(list, hc)
	if err != nil {
		return fmt.Errorf("upstream chain %q: %w", goproxy.Redact(list), err)
	}
	goprivate := ""
	if o.checks.set("goprivate") {
		goprivate = o.checks.goprivate
	}
	direct, err := newDirect(ctx, o.direct, append([]string{list}, routeLists(routes)...), filepath.Join(cacheDir, directDir), goprivate, obs.reg, log)
	if err != nil {
		return err
	}
	if direct != nil {
		// Deferred before srv.Close, so run after it: a run whose fills were all
		// abandoned at shutdown is killed with its git before holoproxy exits.
		defer closeDirect(direct, func(format string, args ...any) { log.Error(fmt.Sprintf(format, args...)) })
		if w := directExposure(o.listen, goproxy.ListHasDirect(list), o.clientAuth != ""); w != "" {
			log.Warn(w)
		}
		chain.UseDirect(direct)
	}
	for _, c := range chain.Clients() {
		// Set here, userAgentTransport need not copy every fill's request to add it.
		c.Header.Set("User-Agent", userAgent())
	}
	if err := checkChain(chain, o.upstream != "", log); err != nil {
		return err
	}
	if err := server.CheckNotSelf(o.listen, chain); err != nil {
		return fmt.Errorf("upstream chain %q: %w", chain.String(), err)
	}
	srvRoutes, err := serverRoutes(routes, hc, o.listen, direct, log)
	if err != nil {
		return err
	}

	disk, err := store.OpenDisk(cacheDir)
	if err != nil {
		return err
	}
	defer disk.Close() // after srv.Close: no fill makes a temporary file any more
	if err := disk.NewFileErr(); err != nil {
		// A read-only or full file system: what the cache holds is served, misses are
		// relayed from memory (--relay-memory), and storing is tried again later.
		log.Warn("the cache directory takes no new file: serving what it holds, relaying misses from memory", "err", err)
	}
	var st store.Store = disk
	sh, err := openShared(ctx, o.shared, o.net, disk, obs, log)
	if err != nil {
		return err
	}
	if sh != nil {
		if err := registerShared(obs.reg, sh); err != nil {
			return err
		}
		st = sh
	}
	db, nosumdb, err := resolveSumDB(ctx, o.checks)
	if err != nil {
		return err
	}
	sums, err := newChecksums(db, nosumdb, filepath.Join(cacheDir, sumdbStateDir), chain, disk, hc, userAgent(), obs.reg, log)
	if err != nil {
		return err
	}
	// Every upstream attempt's outcome, in order: checksum failures to their metric (the
	// health scorer and the prefetcher hook in through rp.Configure).
	fills := fillHooks{
		func(upstream string, _ goproxy.Request, err error) { sums.metrics.ObserveFill(upstream, err) },
	}
	cfg := server.Config{
		Store:       st,
		Chain:       chain,
		ListTTL:     o.listTTL,
		NegativeTTL: o.negativeTTL,
		Verify:      sums.verify,
		OnFill:      fills.onFill,
		Registerer:  obs.reg,
		Logger:      log,
		RelayMemory: o.relayMemory.config(),
		Routes:      srvRoutes,
	}
	if direct != nil {
		// direct's fetches as Samples (lookup, vcs, go, transfer) for the metrics, the
		// debug log and the dashboard, never for the health scorer: direct is not scored.
		cfg.DirectSink = netobs.Sinks{obs.metrics, sampleLogger(log), rp.DirectSink()}
	}
	if o.gonoproxy != "" {
		patterns := o.gonoproxy
		cfg.NoProxy = func(path string) bool { return module.MatchPrefixPatterns(patterns, path) }
		cfg.NoProxyReason = "matches --gonoproxy " + patterns + "; set GOPRIVATE (or GONOPROXY) in the client's go env to fetch it directly"
		log.Info("modules matching --gonoproxy are never asked of the upstreams (404 unless cached)", "gonoproxy", patterns)
	}
	storedMax := int64(o.cacheMaxSize)
	if direct != nil && o.directMaxSize > 0 {
		if storedMax > 0 {
			storedMax -= int64(o.directMaxSize) // the clones' share of the directory
		}
		stopPruner, err := runDirectPruner(direct, int64(o.directMaxSize), obs.reg, log)
		if err != nil {
			return err
		}
		defer stopPruner()
	}
	var ev *store.Evictor
	if storedMax > 0 {
		// The local disk only: the shared bucket is bounded by its own lifecycle rules.
		ev = store.NewEvictor(disk, store.EvictorConfig{Max: storedMax, Logger: log})
		if sh != nil {
			sh.OnCopied = ev.Stored
		}
		if err := registerEvictor(obs.reg, ev); err != nil {
			return err
		}
		cfg.OnStored = func(_ string, size int64, err error) {
			switch {
			case err == nil:
				ev.Stored(size)
			case store.Unwritable(err):
				ev.Trigger() // a full disk: make room now
			}
		}
		ectx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); ev.Run(ectx) }()
		defer func() { cancel(); <-done }()
	}
	rp.Configure(&cfg, chain) // Order, Hedge, OnFill, OnRequest, OnAnswer
	srv, err := server.New(cfg)
	if err != nil {
		return err
	}
	if sh != nil {
		sh.Check = srv.CheckStored // before the first request: a bucket is checked as an upstream is
	}
	defer func() {
		// One budget for the shutdown: the fills get what the answers in flight left of
		// it (all of it when serve ends without a signal).
		cctx := shutdown
		if cctx == nil {
			var cancel context.CancelFunc
			cctx, cancel = context.WithTimeout(context.Background(), o.shutdownTimeout)
			defer cancel()
		}
		if err := srv.Close(cctx); err != nil {
			log.Error("closing the server", "err", err)
		}
	}()

	if err := rp.Start(srv, hc); err != nil {
		return err
	}
	defer rp.Stop() // before srv.Close: prefetch workers and the prober end first

	// Fixed paths first; every other path goes untouched to the GOPROXY server (no path
	// cleaning or redirects, unlike http.ServeMux). The dashboard mounts at "/".
	mux := server.NewRoutes(srv)
	if o.repair.dashboard {
		if direct != nil {
			rp.DirectStats = directStats(direct)
		}
		rp.StoreStats = func() dashboard.StoreStats {
			var st dashboard.StoreStats
			st.Unwritable, st.Unstored = srv.StoreState()
			if ev != nil {
				st.MaxBytes = storedMax
				st.SizeBytes, st.Evicted, st.EvictedBytes = ev.Stats()
			}
			if sh != nil {
				s := sh.Stats()
				st.Shared = &dashboard.SharedStats{Bucket: sh.Bucket.String(), Down: s.Down, Hits: s.Hits,
					Misses: s.Misses, Refused: s.Foreign + s.Corrupt + s.Refused, Errors: s.Errors,
					Uploads: s.Uploads, UploadErrors: s.UploadErrors}
			}
			return st
		}
		rp.Mount(mux)
	}
	var auth *server.ClientAuth
	if o.clientAuth != "" {
		if auth, err = server.NewClientAuth(o.clientAuth, log); err != nil {
			return err
		}
		mux.RequireAuth(auth)
		if !o.tls.enabled() {
			log.Warn("--client-auth without --tls-cert: client passwords cross the network in clear text")
		}
	}
	mux.Handle("/metrics", obs.handler())
	mux.Handle("/sumdb/", server.LogRequests(log, sums.handler()))
	mux.Handle("/healthz", server.HealthHandler())
	mux.Handle("/readyz", srv.ReadyHandler())

	var tlsConf *tls.Config
	if o.tls.enabled() {
		if tlsConf, err = o.tls.config(log, obs.reg, o.httpServer == "net/http"); err != nil {
			return err
		}
	}
	ln, err := net.Listen("tcp", o.listen)
	if err != nil {
		return fmt.Errorf("listen: %w", err)
	}
	stopDebug, err := startDebug(o.debug, auth, log)
	if err != nil {
		ln.Close()
		return err
	}
	defer func() {
		dctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		stopDebug(dctx)
	}()
	ln = srv.SendTimeoutListener(ln, o.sendTimeout)
	if tlsConf != nil {
		ln = tls.NewListener(ln, tlsConf) // over the send timeout's connections
	}
	// internal/e2e reads the listen address from this line (msg=serving addr=...).
	log.Info("serving", "addr", ln.Addr().String(), "version", buildVersion(), "go", runtime.Version(), "tls", tlsConf != nil, "cache_dir", disk.Root(), "shared_cache", o.shared.url, "upstream", chain.String(),
		"list_ttl", o.listTTL, "negative_ttl", o.negativeTTL, "http_server", o.httpServer, "send_timeout", o.sendTimeout)
	var hs httpServer
	if o.httpServer == "net/http" {
		hs = &netHTTPServer{&http.Server{
			Handler:           mux,
			ReadHeaderTimeout: readHeaderTimeout,
			IdleTimeout:       idleTimeout,
			ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
		}}
	} else {
		hs = server.NewFastServer(mux.FastHandler(srv), server.FastServerConfig{
			ReadTimeout: readHeaderTimeout, IdleTimeout: idleTimeout, Logger: log})
	}

	served := make(chan error, 1)
	go func() { served <- hs.Serve(ln) }()
	select {
	case err := <-served:
		return fmt.Errorf("serve: %w", err)
	case <-ctx.Done():
	}
	// From here on the signals are holoproxy's until it exits: a later one shortens the
	// shutdown, it does not kill the process halfway (leaving direct's git processes).
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, stopSignals...)
	stop()
	if o.shutdownDelay > 0 {
		srv.Drain()
		log.Info("draining: /readyz answers 503, everything else is served", "delay", o.shutdownDelay)
		if !drainWait(o.shutdownDelay, sig) {
			log.Info("second signal: ending the drain")
		}
	}
	log.Info("shutting down: finishing answers in flight", "timeout", o.shutdownTimeout)
	shutdown, endShutdown = context.WithTimeout(context.Background(), o.shutdownTimeout)
	go func() {
		select {
		case <-sig:
			log.Info("another signal: ending the answers in flight and the fills now")
			endShutdown()
		case <-shutdown.Done():
		}
	}()
	if err := hs.ShutdownWithContext(shutdown); err != nil {
		return fmt.Errorf("shutdown: %w", err)
	}
	if err := <-served; err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("serve: %w", err)
	}
	log.Info("stopped")
	return nil
}

// registerEvictor exports ev's figures on reg.
func registerEvictor(reg prometheus.Registerer, ev *store.Evictor) error {
	for _, c := range []prometheus.Collector{
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "holoproxy_cache_size_bytes",
			Help: "Bytes of the cache's files at the last eviction pass (--cache-max-size).",
		}, func() float64 { size, _, _ := ev.Stats(); return float64(size) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "holoproxy_cache_evicted_files_total",
			Help: "Least recently read .zip files deleted to keep the cache under --cache-max-size.",
		}, func() float64 { _, files, _ := ev.Stats(); return float64(files) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "holoproxy_cache_evicted_bytes_total",
			Help: "Bytes of the .zip files deleted to keep the cache under --cache-max-size.",
		}, func() float64 { _, _, bytes := ev.Stats(); return float64(bytes) }),
	} {
		if err := reg.Register(c); err != nil {
			return err
		}
	}
	return nil
}

// drainWait waits d, or less when a signal comes on sig; it reports whether it waited all
// of d.
func drainWait(d time.Duration, sig <-chan os.Signal) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-sig:
		return false
	}
}

// The listener's timeouts: reading a request's headers, and a keep-alive connection's wait
// for its next request.
const (
	readHeaderTimeout = 10 * time.Second
	idleTimeout       = 2 * time.Minute
)

// httpServer is the listener's server: fasthttp's, or net/http's through netHTTPServer.
type httpServer interface {
	Serve(net.Listener) error
	ShutdownWithContext(context.Context) error
}

// netHTTPServer is an http.Server as an httpServer.
type netHTTPServer struct{ *http.Server }

// ShutdownWithContext lets answers in flight finish until ctx ends, then closes every
// connection.
func (s *netHTTPServer) ShutdownWithContext(ctx context.Context) error {
	if err := s.Shutdown(ctx); err != nil {
		s.Close()
		return err
	}
	return nil
}

// upstreamClient returns the HTTP client every upstream request goes through (proxies and
// the checksum database), honouring the timeout flags, resolving through obs's resolver,
// trusting --ca-file and handing every Sample to obs's sinks, and a function releasing its
// idle connections. It is the one place the upstream transport is chosen.
func upstreamClient(o serveOptions, obs *observability, creds *goproxy.Credentials) (*http.Client, func(), error) {
	cfg := o.net.transportConfig()
	cfg.Resolver, cfg.Sink = obs.resolver, obs.sinks
	t, err := netobs.NewTransport(cfg)
	if err != nil {
		return nil, nil, fmt.Errorf("upstream transport: %w", err)
	}
	obs.metrics.WatchConnWaits(t)
	return &http.Client{Transport: creds.RoundTripper(userAgentTransport{rt: t, ua: userAgent()})}, t.CloseIdleConnections, nil
}

// userAgent is the User-Agent of holoproxy's upstream requests.
func userAgent() string { return "holoproxy/" + buildVersion() }

// checkChain logs the entries of chain that holoproxy does not fetch from and refuses a
// chain with no proxy to fetch from before its end, except a chain of "off" alone given
// explicitly (offline: holoproxy serves its cache and answers every miss 404), which
// from `go env GOPROXY` is more likely a leftover than a wish.
func checkChain(chain *goproxy.Chain, explicit bool, log *slog.Logger) error {
	for i, e := range chain.Entries {
		if e.Client != nil {
			continue
		}
		if e.Direct {
			log.Warn("direct in the upstream chain is off (--direct-jobs 0): the chain ends there", "chain", chain.String())
		}
		if i == 0 {
			if e.Off && explicit {
				log.Info("offline (--upstream off): only the cache is served; every miss is answered 404")
				return nil
			}
			return fmt.Errorf("upstream chain %q has no proxy before %q: pass --upstream with a proxy URL (or --upstream off to serve the cache alone)", chain.String(), e.Name())
		}
		return nil
	}
	return nil
}

// cacheDirOrDefault returns dir, or holoproxy under the user cache directory.
func cacheDirOrDefault(dir string) (string, error) {
	if dir != "" {
		return dir, nil
	}
	base, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("no default cache directory (%w): pass --cache-dir", err)
	}
	return filepath.Join(base, "holoproxy"), nil
}

// attachCache attaches to the cache directory dir (the default when empty) of a serve that
// may be running: attach, not open, so that its fills in progress are left alone.
func attachCache(dir string) (*store.Disk, string, error) {
	cacheDir, err := cacheDirOrDefault(dir)
	if err != nil {
		return nil, "", err
	}
	st, err := store.AttachDisk(cacheDir)
	if err != nil {
		return nil, "", fmt.Errorf("cache directory: %w", err)
	}
	return st, cacheDir, nil
}

// checkPatterns refuses a list of module path patterns (GOPRIVATE syntax: comma-separated
// path.Match globs matching a path prefix) with a malformed glob, which
// module.MatchPrefixPatterns would silently never match.
func checkPatterns(flag, list string) error {
	for _, p := range strings.Split(list, ",") {
		if _, err := path.Match(p, ""); err != nil {
			return usagef("%s %q: pattern %q: %v", flag, list, p, err)
		}
	}
	return nil
}
