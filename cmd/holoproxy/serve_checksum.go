package main

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/spf13/pflag"

	"github.com/holoproxy/holoproxy/internal/checksum"
	"github.com/holoproxy/holoproxy/internal/goproxy"
	"github.com/holoproxy/holoproxy/internal/netobs"
	"github.com/holoproxy/holoproxy/internal/store"
)

// sumdbStateDir is where, under the cache directory, the checksum verifier keeps its state
// (the latest signed tree seen, verified lookups and tiles). Its leading dot keeps it out of
// the GOPROXY tree: no module path starts with a dot, and the store's Walk skips it.
const sumdbStateDir = ".sumdb-state"

// checksumOptions are the flags that choose the checksum database and the exempt modules,
// with the meaning the go command gives GOSUMDB, GONOSUMDB and GOPRIVATE.
type checksumOptions struct {
	sumdb     string
	gonosumdb string
	goprivate string
	// set records which of gonosumdb and goprivate were given (flag or twin): an empty
	// value given means "none", not "ask go env".
	set func(name string) bool
}

// addChecksumFlags defines the flags of o on f.
func addChecksumFlags(f *pflag.FlagSet, o *checksumOptions) {
	f.StringVar(&o.sumdb, "sumdb", "", "checksum database every .mod and .zip is verified against before it is stored, in GOSUMDB syntax: name, name+key, either followed by a URL, or off (default: the output of 'go env GOSUMDB' at start)")
	f.StringVar(&o.gonosumdb, "gonosumdb", "", "module path patterns never verified nor looked up, as GONOSUMDB (default: 'go env GONOSUMDB')")
	f.StringVar(&o.goprivate, "goprivate", "", "module path patterns of private modules, as GOPRIVATE: exempt from the checksum database unless --gonosumdb is set (default: 'go env GOPRIVATE')")
	o.set = func(name string) bool { return f.Changed(name) }
}

// checksums is serve's checksum database wiring: the verifier behind Config.Verify, the
// /sumdb/ proxy and their metrics.
type checksums struct {
	verifier *checksum.Verifier
	proxy    *checksum.SumDBProxy
	metrics  *checksum.Metrics
	db       checksum.SumDB
	base     checksum.BaseURLFunc
}

// resolveSumDB returns the checksum database and the exempt patterns of o, asking
// `go env` for the values not given. A database whose key is unknown comes back with Off
// and a Warning (checksum.SumDBOrOff).
func resolveSumDB(ctx context.Context, o checksumOptions) (checksum.SumDB, string, error) {
	value, nosumdb, private := o.sumdb, o.gonosumdb, o.goprivate
	if value == "off" {
		// Nothing is verified nor served: no need to ask the go command anything.
		return checksum.SumDB{Off: true}, "", nil
	}
	var names []string
	if value == "" {
		names = append(names, "GOSUMDB")
	}
	if !o.set("gonosumdb") {
		names = append(names, "GONOSUMDB")
	}
	if !o.set("goprivate") {
		names = append(names, "GOPRIVATE")
	}
	// The keys of databases known by name are read from the Go installation.
	names = append(names, "GOROOT")
	vals, err := goEnv(ctx, names...)
	if err != nil {
		if len(names) > 1 || !strings.Contains(value, "+") {
			return checksum.SumDB{}, "", fmt.Errorf("%w; pass --sumdb (name+key [URL], or off), --gonosumdb and --goprivate instead", err)
		}
		vals = []string{""} // name+key given: no key to look up
	}
	env := map[string]string{}
	for i, n := range names {
		env[n] = vals[i]
	}
	if value == "" {
		value = env["GOSUMDB"]
	}
	if !o.set("gonosumdb") {
		nosumdb = env["GONOSUMDB"]
	}
	if !o.set("goprivate") {
		private = env["GOPRIVATE"]
	}
	db, err := checksum.SumDBOrOff(value, env["GOROOT"])
	if err != nil {
		return checksum.SumDB{}, "", usagef("--sumdb %q: %v", value, err)
	}
	return db, checksum.NoSumDBPatterns(nosumdb, private), nil
}

// newChecksums builds the verifier (its state in stateDir), the /sumdb/ proxy (cached in st)
// and their metrics on reg. The database is reached at its GOSUMDB URL, else through the
// first upstream proxy that serves it, else at https://<name>, always through hc. It logs
// loudly when verification is off.
func newChecksums(db checksum.SumDB, nosumdb, stateDir string, chain *goproxy.Chain, st store.Store,
	hc *http.Client, userAgent string, reg prometheus.Registerer, log *slog.Logger) (*checksums, error) {
	var upstreams []string
	for _, c := range chain.Clients() {
		upstreams = append(upstreams, c.Name())
	}
	base := checksum.ResolveBaseURL(db, upstreams, hc, 0, 0)
	c := &checksums{db: db, base: base}
	v, err := checksum.NewVerifier(checksum.VerifierConfig{
		DB:             db,
		NoSumDB:        nosumdb,
		Dir:            stateDir,
		BaseURL:        base,
		Client:         hc,
		RequestContext: c.labelled,
		Logger:         log,
	})
	if err != nil {
		return nil, err
	}
	p, err := checksum.NewSumDBProxy(checksum.ProxyConfig{
		DB:        db,
		NoSumDB:   nosumdb,
		Store:     st,
		BaseURL:   base,
		Client:    hc,
		UserAgent: userAgent,
		Logger:    log,
	})
	if err != nil {
		return nil, err
	}
	m, err := checksum.NewMetrics(reg, v, p)
	if err != nil {
		return nil, err
	}
	switch {
	case db.Warning != "":
		log.Warn(db.Warning)
	case db.Off:
		log.Warn("checksum verification is off (GOSUMDB=off): modules are cached unverified")
	default:
		log.Info("checksum database", "sumdb", db.String(), "nosumdb", nosumdb)
	}
	c.verifier, c.proxy, c.metrics = v, p, m
	return c, nil
}

// verify is the server's Verify hook: path@version's .mod or .zip in f against the database.
func (c *checksums) verify(ctx context.Context, r goproxy.Request, f *os.File) error {
	return c.verifier.VerifyFile(ctx, r.Module, r.Version, r.Kind == goproxy.KindMod, f) // its requests are labelled by RequestContext
}

// labelled returns ctx with the netobs Labels of requests to the checksum database: its URL
// as the upstream and kind "sumdb", so that their Samples are told apart from the proxies'
// in metrics, health and Server-Timing.
func (c *checksums) labelled(ctx context.Context) context.Context {
	if c.db.Off {
		return ctx
	}
	u, err := c.base(ctx)
	if err != nil {
		return ctx // the fetch will fail the same way and say so
	}
	return netobs.WithLabels(ctx, netobs.Labels{Upstream: u, Kind: "sumdb"})
}

// handler is the /sumdb/ handler: the proxy, its fetches labelled as the verifier's are.
func (c *checksums) handler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c.proxy.ServeHTTP(w, r.WithContext(c.labelled(r.Context())))
	})
}

// fillHooks fans the outcome of every upstream attempt (server.Config.OnFill) out to each
// consumer in order: the checksum failure metric, the health scorer. A checksum failure is
// an error with errors.Is(err, checksum.ErrChecksumMismatch).
type fillHooks []func(upstream string, r goproxy.Request, err error)

// onFill calls every hook.
func (hs fillHooks) onFill(upstream string, r goproxy.Request, err error) {
	for _, h := range hs {
		h(upstream, r, err)
	}
}
