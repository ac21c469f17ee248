package trace

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	rtrace "runtime/trace"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/mod/semver"
	"golang.org/x/sync/errgroup"

	"github.com/holoproxy/holoproxy/internal/goproxy"
	"github.com/holoproxy/holoproxy/internal/netobs"
	"github.com/holoproxy/holoproxy/internal/report"
)

// Setup says how one Run carries its upstream requests.
type Setup struct {
	// Name labels the Run; empty means a name derived from the other fields.
	Name string
	// DNS is the resolver backend (the --dns forms); empty means "system".
	DNS string
	// Fresh gives every repetition and every chain entry a transport of its own with no TLS
	// session cache, no DNS cache and no cap on connections per host: how a series of
	// short-lived go processes behaves.
	// Otherwise one shared transport and DNS cache serve the whole Run, as in `serve`.
	Fresh bool
	// Only, when set, runs against that single proxy of the list instead of the chain.
	Only string
}

func (s Setup) name() string {
	if s.Name != "" {
		return s.Name
	}
	var parts []string
	if s.Only != "" {
		parts = append(parts, s.Only+" alone")
	} else {
		parts = append(parts, "chain")
	}
	if s.Fresh {
		parts = append(parts, "fresh transports")
	}
	if s.DNS != "" {
		parts = append(parts, "dns="+s.DNS)
	}
	return strings.Join(parts, ", ")
}

// Options configure a trace.
type Options struct {
	// Proxy is the list in GOPROXY syntax. User info in its URLs is never shown (the
	// report's title has it redacted); Credentials sends it.
	Proxy string
	// Credentials, when set, go with the requests they are for (goproxy.ListCredentials
	// and the netrc file).
	Credentials *goproxy.Credentials
	// Targets is the workload.
	Targets []Target
	// Jobs is how many modules are fetched at once; the go command uses GOMAXPROCS.
	Jobs int
	// Count repeats the workload; zero means once.
	Count int
	// Transport is the base configuration of every transport (timeouts, CA file, TLS).
	// Its Resolver and Sink are set per Run. Its CAFile is trusted by the DNS-over-TLS and
	// DNS-over-HTTPS backends too.
	Transport netobs.TransportConfig
	// Progress, when set, is told how many requests of the planned total are done. Calls
	// come from the workers one at a time, with done rising by one each.
	Progress func(done, total int)
	// Direct, when set, traces the chain's "direct" entry: requests that reach it are
	// fetched by the go command from version control origins (goproxy.Direct), each timed
	// with its go-get lookups and version control commands. When nil, a walk ends at
	// direct untraced.
	Direct *DirectOptions
}

// PerEntrySetups returns the default Runs of a trace: each proxy of the list alone, then
// the chain as a whole. A "direct" entry gets no Run of its own: behind the go command's
// default list (a public proxy, then direct) it would clone every module's repository
// from its origin; the chain's requests reach it where the proxies answer 404, and
// `--proxy direct` traces it alone.
func PerEntrySetups(proxy string) ([]Setup, error) {
	c, err := goproxy.ParseChain(proxy, http.DefaultClient)
	if err != nil {
		return nil, err
	}
	var entries []string
	for _, e := range c.Entries {
		switch {
		case e.Client != nil:
			entries = append(entries, e.Client.Name())
		}
	}
	var out []Setup
	if len(entries) > 1 {
		for _, name := range entries {
			out = append(out, Setup{Only: name})
		}
	}
	return append(out, Setup{}), nil
}

// Run runs the workload once per Setup, one after the other, and returns the Runs.
// A Run's failed requests are counted in it, not returned as an error; the error is for a
// trace that could not run at all (bad list, bad DNS backend, cancelled).
func Run(ctx context.Context, opt Options, setups []Setup) (report.Trace, error) {
	if opt.Jobs <= 0 {
		opt.Jobs = 2
	}
	if opt.Count <= 0 {
		opt.Count = 1
	}
	t := report.Trace{Title: "GOPROXY=" + goproxy.Redact(opt.Proxy)}
	if opt.Transport.CAFile != "" {
		conf, err := withCAFile(opt.Transport.TLSConfig, opt.Transport.CAFile)
		if err != nil {
			return t, err
		}
		opt.Transport.TLSConfig, opt.Transport.CAFile = conf, ""
	}
	total := len(setups) * opt.Count * plannedRequests(opt.Targets)
	var progressMu sync.Mutex // serializes Progress: callers need not lock
	var done int
	progress := func() {
		progressMu.Lock()
		defer progressMu.Unlock()
		done++
		if opt.Progress != nil {
			opt.Progress(done, total)
		}
	}
	for _, s := range setups {
		r, err := runOne(ctx, opt, s, progress)
		if err != nil {
			return t, fmt.Errorf("%s: %w", s.name(), err)
		}
		t.Runs = append(t.Runs, r)
	}
	if opt.Progress != nil {
		// The plan is an estimate (a failing module stops early): end the bar at done.
		progressMu.Lock()
		opt.Progress(done, done)
		progressMu.Unlock()
	}
	return t, nil
}

// withCAFile returns a copy of base (nil means the defaults) that trusts the PEM
// certificates of file besides its roots (the system roots when it has none), so that the
// DNS backends trust them as the upstream transport does.
func withCAFile(base *tls.Config, file string) (*tls.Config, error) {
	conf := &tls.Config{}
	if base != nil {
		conf = base.Clone()
	}
	pool, err := netobs.AddCAFile(conf.RootCAs, file)
	if err != nil {
		return nil, err
	}
	conf.RootCAs = pool
	return conf, nil
}

// plannedRequests estimates the requests of one pass: list and @latest for latest targets
// are counted as two, which is what a list with versions costs.
func plannedRequests(ts []Target) int {
	n := 0
	for _, t := range ts {
		switch {
		case t.ModOnly:
			n++
		case t.Version == "":
			n += 4
		default:
			n += 3
		}
	}
	return n
}

// collector gathers one Run's Samples and DNS queries.
type collector struct {
	mu      sync.Mutex
	samples []netobs.Sample
	dns     []report.DNSQuery
}

func (c *collector) Observe(s netobs.Sample) {
	c.mu.Lock()
	c.samples = append(c.samples, s)
	c.mu.Unlock()
}

func (c *collector) ObserveDNS(q netobs.DNSQuery) {
	c.mu.Lock()
	c.dns = append(c.dns, report.DNSQuery{
		Backend: q.Backend, Name: q.Name, Type: q.Type, Rcode: q.Rcode, Latency: q.Latency,
		Cached: q.Cache == netobs.CacheHit || q.Cache == netobs.CacheCoalesced,
	})
	c.mu.Unlock()
}

// noSessionCache is a TLS session cache that forgets everything: no resumption, as in a
// client whose process is new.
type noSessionCache struct{}

func (noSessionCache) Get(string) (*tls.ClientSessionState, bool) { return nil, false }
func (noSessionCache) Put(string, *tls.ClientSessionState)        {}

// newTransport builds a transport for a Run: its own resolver on the Setup's backend, with
// or without caches.
// httpClient returns tr's client with opt's credentials added to its requests.
func (opt Options) httpClient(tr *netobs.Transport) *http.Client {
	c := tr.Client()
	if opt.Credentials.Empty() {
		return c
	}
	cp := *c
	cp.Transport = opt.Credentials.RoundTripper(c.Transport)
	return &cp
}

func newTransport(opt Options, s Setup, col *collector) (*netobs.Transport, error) {
	spec := s.DNS
	if spec == "" {
		spec = "system"
	}
	var tlsConf *tls.Config
	if opt.Transport.TLSConfig != nil {
		tlsConf = opt.Transport.TLSConfig.Clone()
	}
	backend, err := netobs.ParseBackend(spec, netobs.BackendOptions{TLSConfig: tlsConf})
	if err != nil {
		return nil, err
	}
	res := &netobs.Resolver{Backend: backend, Observer: col}
	cfg := opt.Transport
	if s.Fresh {
		res.MinTTL, res.MaxTTL, res.NegativeTTL, res.StaleFor = time.Nanosecond, time.Nanosecond, time.Nanosecond, -1
		if tlsConf == nil {
			tlsConf = &tls.Config{}
		}
		tlsConf.ClientSessionCache = noSessionCache{}
		cfg.TLSConfig = tlsConf
		cfg.MaxConnsPerHost = 0 // the go command's client has no cap on connections
	}
	cfg.Resolver = res
	cfg.Sink = col
	return netobs.NewTransport(cfg)
}

// chainFor builds the chain a pass of s uses. With fresh transports every proxy gets a
// transport of its own; transports are returned so the caller can close their idle
// connections.
func chainFor(opt Options, s Setup, col *collector, shared *netobs.Transport, direct *goproxy.Direct) (*goproxy.Chain, []*netobs.Transport, error) {
	list := opt.Proxy
	if s.Only != "" {
		list = s.Only
	}
	var hc *http.Client
	if shared != nil {
		hc = opt.httpClient(shared)
	}
	c, err := goproxy.ParseChain(list, hc)
	if err != nil {
		return nil, nil, err
	}
	if direct != nil {
		c.UseDirect(direct)
	}
	if !s.Fresh {
		return c, nil, nil
	}
	var ts []*netobs.Transport
	for i, e := range c.Entries {
		if e.Client == nil || e.Direct {
			continue
		}
		tr, err := newTransport(opt, s, col)
		if err != nil {
			return nil, nil, err
		}
		ts = append(ts, tr)
		cl, err := goproxy.NewClient(e.Client.Name(), opt.httpClient(tr))
		if err != nil {
			return nil, nil, err
		}
		c.Entries[i].Client = cl
	}
	return c, ts, nil
}

func runOne(ctx context.Context, opt Options, s Setup, progress func()) (_ report.Run, err error) {
	col := &collector{}
	var shared *netobs.Transport
	if !s.Fresh {
		tr, err := newTransport(opt, s, col)
		if err != nil {
			return report.Run{}, err
		}
		defer tr.CloseIdleConnections()
		shared = tr
	}
	// The module caches of direct, made before the clock starts: one for the Run, or one
	// per pass with fresh transports (a new go process with an empty GOMODCACHE).
	directs, err := newDirects(ctx, opt, s)
	defer func() {
		err = errors.Join(err, directs.close())
	}()
	if err != nil {
		return report.Run{}, err
	}
	var requests, failed, fallThroughs atomic.Int64
	start := time.Now()
	for i := 0; i < opt.Count; i++ {
		direct := directs.forPass(i)
		chain, owned, err := chainFor(opt, s, col, shared, direct)
		if err != nil {
			return report.Run{}, err
		}
		p := &pass{ctx: ctx, chain: chain, col: col, progress: progress, requests: &requests, failed: &failed, fallThroughs: &fallThroughs}
		g, gctx := errgroup.WithContext(ctx)
		g.SetLimit(opt.Jobs)
		for _, tg := range opt.Targets {
			g.Go(func() error {
				p.target(gctx, tg)
				return nil
			})
		}
		g.Wait()
		for _, tr := range owned {
			tr.CloseIdleConnections()
		}
		if err := ctx.Err(); err != nil {
			return report.Run{}, err
		}
		if s.Fresh {
			if err := directs.closePass(i); err != nil {
				return report.Run{}, err
			}
		}
	}
	wall := time.Since(start)
	col.mu.Lock()
	defer col.mu.Unlock()
	return report.Run{
		Name: s.name(), Samples: col.samples, Wall: wall, DNSQueries: col.dns,
		Requests: int(requests.Load()), Failed: int(failed.Load()), FallThroughs: int(fallThroughs.Load()),
	}, nil
}

// pass is one pass of the workload over a chain.
type pass struct {
	ctx                            context.Context
	chain                          *goproxy.Chain
	col                            *collector
	progress                       func()
	requests, failed, fallThroughs *atomic.Int64
}

// target fetches one module as the go command would: for a latest query the list (and
// @latest when the list is empty), then .info, .mod and .zip of the version, in order.
func (p *pass) target(ctx context.Context, t Target) {
	version := t.Version
	if version == "" {
		body, err := p.get(ctx, goproxy.Request{Kind: goproxy.KindList, Module: t.Path})
		if err != nil {
			return
		}
		version = latestFromList(body)
		if version == "" {
			body, err := p.get(ctx, goproxy.Request{Kind: goproxy.KindLatest, Module: t.Path})
			if err != nil {
				return
			}
			var info struct{ Version string }
			if json.Unmarshal(body, &info) != nil || info.Version == "" {
				return
			}
			version = info.Version
		}
	}
	kinds := []goproxy.Kind{goproxy.KindInfo, goproxy.KindMod, goproxy.KindZip}
	if t.ModOnly {
		kinds = []goproxy.Kind{goproxy.KindMod}
	}
	if !(goproxy.Request{Kind: goproxy.KindInfo, Module: t.Path, Version: version}).Canonical() {
		// A query (v1, a branch): its .info names the canonical version to fetch.
		body, err := p.get(ctx, goproxy.Request{Kind: goproxy.KindInfo, Module: t.Path, Version: version})
		if err != nil {
			return
		}
		var info struct{ Version string }
		if json.Unmarshal(body, &info) != nil || info.Version == "" {
			return
		}
		version, kinds = info.Version, kinds[1:]
		if t.ModOnly {
			kinds = []goproxy.Kind{goproxy.KindMod}
		}
	}
	for _, k := range kinds {
		if _, err := p.get(ctx, goproxy.Request{Kind: k, Module: t.Path, Version: version}); err != nil {
			return // the go command stops at the first failure of a module
		}
	}
}

// latestFromList picks what `go get m@latest` picks from a list: the highest release, else
// the highest pre-release.
func latestFromList(body []byte) string {
	var best, bestPre string
	for _, v := range strings.Fields(string(body)) {
		if !semver.IsValid(v) {
			continue
		}
		if semver.Prerelease(v) == "" {
			if best == "" || semver.Compare(v, best) > 0 {
				best = v
			}
		} else if bestPre == "" || semver.Compare(v, bestPre) > 0 {
			bestPre = v
		}
	}
	if best != "" {
		return best
	}
	return bestPre
}

// get makes one request of the workload through the chain, reading the answer to its end.
// Only list and @latest bodies are kept (the caller needs them).
func (p *pass) get(ctx context.Context, r goproxy.Request) ([]byte, error) {
	defer p.progress()
	p.requests.Add(1)
	ctx, task := rtrace.NewTask(ctx, "GET "+string(r.Kind))
	defer task.End()
	rtrace.Log(ctx, "request", r.String())
	var body []byte
	prevNotFound := false
	err := p.chain.Walk(ctx, nil, func(ctx context.Context, c *goproxy.Client) error {
		if prevNotFound {
			p.fallThroughs.Add(1)
		}
		var err error
		if c.Direct() {
			body, err = p.fetchDirect(ctx, c, r)
		} else {
			body, err = p.fetch(ctx, c, r)
		}
		prevNotFound = errors.Is(err, fs.ErrNotExist)
		return err
	})
	if err != nil {
		p.failed.Add(1)
		rtrace.Log(ctx, "error", err.Error())
		return nil, err
	}
	return body, nil
}

// fetch GETs r from the proxy c (its Sample is recorded by the transport) and reads the
// answer to its end, keeping the body of list and @latest.
func (p *pass) fetch(ctx context.Context, c *goproxy.Client, r goproxy.Request) ([]byte, error) {
	var resp *http.Response
	var err error
	rtrace.WithRegion(ctx, "roundtrip", func() { resp, err = c.Fetch(ctx, r) })
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	region := rtrace.StartRegion(ctx, "transfer")
	defer region.End()
	body, _, err := readAnswer(resp.Body, r)
	return body, err
}

// readAnswer reads an answer to r to its end (at most one byte over r's limit) and
// returns the body of list, @latest and queries, and how many bytes it read.
func readAnswer(rd io.Reader, r goproxy.Request) ([]byte, int64, error) {
	lr := io.LimitReader(rd, r.MaxSize()+1)
	if r.Kind == goproxy.KindList || r.Kind == goproxy.KindLatest || !r.Immutable() {
		body, err := io.ReadAll(lr)
		return body, int64(len(body)), err
	}
	n, err := io.Copy(io.Discard, lr)
	return nil, n, err
}
