package netobs

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	rtrace "runtime/trace"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

// TransportConfig configures the Transport. Zero fields take the documented defaults.
type TransportConfig struct {
	// Resolver resolves upstream names. Nil means a Resolver on the system backend.
	Resolver *Resolver
	// CAFile is a PEM file of extra root certificates, trusted besides the system roots.
	CAFile string
	// TLSConfig is the base client TLS configuration (client certificates, version or group
	// limits). Nil means the crypto/tls defaults. Its RootCAs, if set, replace the system
	// roots; CAFile is added to them. ServerName and NextProtos are set per connection.
	TLSConfig *tls.Config

	// ConnectTimeout bounds the TCP connect, all addresses raced (DNS is bounded by the
	// Resolver's Timeout). Zero means 10 seconds.
	ConnectTimeout time.Duration
	// TLSTimeout bounds the TLS handshake. Zero means 10 seconds.
	TLSTimeout time.Duration
	// FirstByteTimeout bounds the wait from the request written to the first response
	// byte. Zero means 30 seconds.
	FirstByteTimeout time.Duration
	// BodyIdleTimeout cuts a response body when no byte arrives for this long. Zero means
	// 30 seconds.
	BodyIdleTimeout time.Duration

	// MaxIdleConnsPerHost is the keep-alive pool of each upstream. Zero means 64.
	MaxIdleConnsPerHost int
	// MaxIdleConns is the keep-alive pool over all upstreams. Zero means 512.
	MaxIdleConns int
	// IdleConnTimeout closes connections idle that long. Zero means 90 seconds.
	IdleConnTimeout time.Duration
	// MaxConnsPerHost caps the connections to each upstream host, counting those being
	// dialled, in use and idle (http.Transport.MaxConnsPerHost; plain http upstreams
	// behind an http:// or https:// forward proxy share the proxy's). A request that
	// finds the cap reached and no idle connection waits for one, and that wait counts
	// against ConnectTimeout: a request that has no connection, nor a dial started for
	// it, after ConnectTimeout fails with an *Error of class ClassConnCap (ErrConnCap).
	// HTTP/2 requests share a connection and rarely wait. Zero means no cap; it must not
	// be negative.
	MaxConnsPerHost int

	// Proxy chooses a forward proxy for each upstream: http://, https:// (TLS to the
	// proxy, checked like an upstream's), socks5:// (the upstream's name resolved by the
	// Resolver) or socks5h:// (resolved by the proxy). https upstreams are reached through
	// a tunnel (CONNECT or SOCKS5) with their own TLS inside it, plain http ones by
	// absolute-form requests (SOCKS5: through a tunnel); see proxy.go. Nil means none:
	// every upstream is dialled directly.
	Proxy ProxyFunc

	// Sink receives the Sample of every exchange. Nil drops them.
	Sink Sink
}

// Transport is the one http.RoundTripper every upstream request goes through: HTTP/2 where
// the server offers it, keep-alive pools sized for a proxy, one TLS session cache so that
// reconnects resume, names resolved by the shared Resolver, every phase timed and bounded,
// and every exchange recorded as a Sample handed to the Sink when its body is done.
type Transport struct {
	cfg    TransportConfig
	dialer *Dialer
	tls    *tls.Config // base config with roots and the shared session cache
	rt     *http.Transport
	// viaProxy carries plain http upstreams behind an https:// or SOCKS5 proxy (nil
	// without a Proxy): its dials only ever reach proxies (proxy.go).
	viaProxy *http.Transport
	next     http.RoundTripper // rt, but for benchmarks of the recording alone
	client   *http.Client
	idle     *idleWatch // cuts stalled bodies
	waits    *connWatch // bounds the waits for a connection under MaxConnsPerHost; nil without a cap
	dials    connDials  // dial figures of new connections, until a request uses them
}

// NewTransport builds the Transport. It fails only when MaxConnsPerHost is negative or
// CAFile cannot be used. A DoH backend of cfg.Resolver without a client of its own is
// given the Transport's client.
func NewTransport(cfg TransportConfig) (*Transport, error) {
	if cfg.MaxConnsPerHost < 0 {
		return nil, fmt.Errorf("netobs: MaxConnsPerHost is %d: a cap on connections cannot be negative", cfg.MaxConnsPerHost)
	}
	base := cloneTLS(cfg.TLSConfig)
	if cfg.CAFile != "" {
		pool, err := AddCAFile(base.RootCAs, cfg.CAFile)
		if err != nil {
			return nil, fmt.Errorf("netobs: %w", err)
		}
		base.RootCAs = pool
	}
	if base.ClientSessionCache == nil {
		base.ClientSessionCache = tls.NewLRUClientSessionCache(1024)
	}
	t := &Transport{
		cfg:  cfg,
		tls:  base,
		idle: newIdleWatch(durOr(cfg.BodyIdleTimeout, 30*time.Second)),
		dialer: &Dialer{
			Resolver: cfg.Resolver,
			Timeout:  durOr(cfg.ConnectTimeout, 10*time.Second),
		},
	}
	if cfg.MaxConnsPerHost > 0 {
		t.waits = newConnWatch(t.dialer.Timeout, cfg.MaxConnsPerHost)
	}
	t.rt = t.httpTransport(t.dial, t.dialTLS)
	t.rt.ForceAttemptHTTP2 = true
	t.rt.HTTP2 = &http.HTTP2Config{
		// Detect dead HTTP/2 connections instead of waiting on them.
		SendPingTimeout: 30 * time.Second,
		PingTimeout:     15 * time.Second,
	}
	if cfg.Proxy != nil {
		// https upstreams are tunnelled by dialTLS; rt's Proxy is for plain http upstreams
		// behind an http:// proxy, viaProxy's for those behind https:// and SOCKS5 ones
		// (proxy.go).
		t.rt.Proxy = t.httpProxy
		t.viaProxy = t.httpTransport(t.dialSOCKSUpstream, t.dialProxyTLS)
		t.viaProxy.Proxy = t.viaProxyProxy
	}
	t.next = t.rt
	t.client = &http.Client{Transport: t}
	if cfg.Resolver != nil {
		if doh, ok := cfg.Resolver.Backend.(*DoHBackend); ok && doh.Client == nil {
			doh.Client = &http.Client{Transport: t.rt} // not t: DNS queries are not upstream Samples
		}
	}
	return t, nil
}

// httpTransport returns an http.Transport with the Transport's pools and timeouts that
// dials with dial and dialTLS.
func (t *Transport) httpTransport(dial, dialTLS func(context.Context, string, string) (net.Conn, error)) *http.Transport {
	return &http.Transport{
		DialContext:           dial,
		DialTLSContext:        dialTLS,
		MaxIdleConns:          intOr(t.cfg.MaxIdleConns, 512),
		MaxIdleConnsPerHost:   intOr(t.cfg.MaxIdleConnsPerHost, 64),
		IdleConnTimeout:       durOr(t.cfg.IdleConnTimeout, 90*time.Second),
		MaxConnsPerHost:       t.cfg.MaxConnsPerHost,
		ExpectContinueTimeout: time.Second,
		ResponseHeaderTimeout: durOr(t.cfg.FirstByteTimeout, 30*time.Second),
	}
}

func intOr(n, def int) int {
	if n == 0 {
		return def
	}
	return n
}

// Client returns an http.Client over the Transport. It sets no overall timeout: every
// phase has its own, and callers bound the whole exchange with their context.
func (t *Transport) Client() *http.Client { return t.client }

// CloseIdleConnections closes the idle keep-alive connections of every upstream.
func (t *Transport) CloseIdleConnections() {
	t.rt.CloseIdleConnections()
	if t.viaProxy != nil {
		t.viaProxy.CloseIdleConnections()
	}
}

// Dialer returns the Dialer the Transport connects with.
func (t *Transport) Dialer() *Dialer { return t.dialer }

// ConnWaiting adds to into, for each upstream (a request's Labels.Upstream, else its
// host), how many of its requests wait now for a connection under MaxConnsPerHost. It
// adds nothing without a cap.
func (t *Transport) ConnWaiting(into map[string]int) {
	if t.waits != nil {
		t.waits.waiting(into)
	}
}

// dial connects a plain connection and files its dial figures under it.
func (t *Transport) dial(ctx context.Context, network, addr string) (net.Conn, error) {
	dialStarts(ctx)
	c, err := t.dialer.DialContext(ctx, network, addr)
	if err == nil {
		if rec := RecorderFrom(ctx); rec != nil {
			t.dials.put(c, rec.dialSnapshot())
		}
	}
	return c, err
}

// dialTLS connects and runs the TLS handshake under its own timeout, recording it.
func (t *Transport) dialTLS(ctx context.Context, network, addr string) (net.Conn, error) {
	dialStarts(ctx)
	raw, err := t.dialVia(ctx, network, addr)
	if err != nil {
		return nil, err
	}
	host, _, _ := net.SplitHostPort(addr)
	cfg := t.tls.Clone()
	if cfg.ServerName == "" {
		cfg.ServerName = host
	}
	cfg.NextProtos = []string{"h2", "http/1.1"}
	rec := RecorderFrom(ctx)
	ac := &alertConn{Conn: raw, rec: rec}
	tc := tls.Client(ac, cfg)
	ac.tc = tc
	hctx, cancel := context.WithTimeoutCause(ctx, durOr(t.cfg.TLSTimeout, 10*time.Second), errTLSTimeout)
	defer cancel()
	region := rtrace.StartRegion(ctx, string(PhaseTLS)) // a region of the request's task, for go tool trace
	start := time.Now()
	err = tc.HandshakeContext(hctx)
	d := time.Since(start)
	region.End()
	cs := tc.ConnectionState()
	if err != nil {
		rtrace.Log(ctx, string(PhaseTLS), "failed: "+err.Error()) // the region stands for no handshake
		raw.Close()
		if context.Cause(hctx) == errTLSTimeout && ctx.Err() == nil {
			err = &Error{Class: ClassTimeout, Phase: PhaseTLS, Err: fmt.Errorf("%w: %w", errTLSTimeout, err)}
		} else {
			err = &Error{Class: ClassOf(err), Phase: PhaseTLS, Err: err}
		}
	}
	if rec != nil {
		rec.TLSDone(&cs, d, err)
		if err == nil {
			rec.setTLSConn(tc)
			t.dials.put(tc, rec.dialSnapshot())
		}
	}
	if err != nil {
		return nil, err
	}
	return tc, nil
}

// RoundTrip performs one exchange and records it. The Sample is finished when the
// response body is read to its end or closed, or at once when RoundTrip fails. Failures
// are *Error carrying their class.
//
// A request made by NewRequest carries its exchange in its context and is sent as it is;
// any other request is sent as a copy under a context that carries a new exchange.
//
// The first-byte timeout is http.Transport's ResponseHeaderTimeout and the body idle
// timeout closes the body: neither needs a cancellable context of its own, which would
// cost every request more than all the rest of the instrumentation (see
// docs/benchmarks.md).
func (t *Transport) RoundTrip(req *http.Request) (*http.Response, error) {
	ex := prepared(req)
	if ex == nil {
		ex = &exchange{}
	}
	ex.rec.init(req, t.cfg.Sink)
	ex.rec.dials = &t.dials
	ex.trace = httptrace.ClientTrace{
		WroteRequest:         ex.rec.WroteRequest,
		GotFirstResponseByte: ex.rec.GotFirstResponseByte,
	}
	if t.waits == nil {
		ex.trace.GotConn = ex.rec.GotConn // waitFor sets the hooks of a capped Transport
	}
	if req.Context() != &ex.ctx {
		if t.waits != nil {
			ex.waitFor(t.waits, req.Context())
		}
		req = req.WithContext(ex.context(req.Context()))
	} else if t.waits != nil {
		ex.waitFor(t.waits, ex.ctx.Context)
	}
	next := t.next
	if t.viaProxyFor(req) {
		next = t.viaProxy
	}
	resp, err := next.RoundTrip(req)
	if err != nil {
		return nil, ex.fail(err, nil)
	}
	ex.rec.GotResponse(resp)
	if resp.Body == nil || resp.Body == http.NoBody {
		ex.finish()
		return resp, nil
	}
	b := &ex.body
	b.ex, b.rc, b.watch = ex, resp.Body, t.idle
	t.idle.watch(b)
	resp.Body = b
	return resp, nil
}

// NewRequest is http.NewRequestWithContext for a request recorded under l, as
// WithLabels(ctx, l) would. The request's context carries the state of its exchange already,
// so that RoundTrip sends it as it is instead of copying it to attach that state: the copy
// and the context value of WithLabels were ~1 % of a loopback exchange (docs/benchmarks.md).
// The request is recorded by the first RoundTrip of a Transport that sends it; a second
// send (a retry by the caller, a redirect) is recorded as an exchange of its own.
func NewRequest(ctx context.Context, method, url string, body io.Reader, l Labels) (*http.Request, error) {
	ex := &exchange{prepared: true}
	ex.rec.upstream, ex.rec.kind = l.Upstream, l.Kind // where Recorder.init puts them anyway
	ex.unsent.Store(true)
	ex.ctx = exchangeContext{Context: ctx, ex: ex}
	return http.NewRequestWithContext(&ex.ctx, method, url, body)
}

// prepared returns the exchange of a request made by NewRequest and claims it, or nil when
// req was not made by NewRequest, was sent before, or runs under a caller's ClientTrace
// (which needs httptrace.WithClientTrace to compose both).
func prepared(req *http.Request) *exchange {
	ec, ok := req.Context().(*exchangeContext)
	if !ok || !ec.ex.prepared || clientTraceKey == nil || httptrace.ContextClientTrace(ec.Context) != nil {
		return nil
	}
	if !ec.ex.unsent.CompareAndSwap(true, false) {
		return nil
	}
	return ec.ex
}

// exchange is the per-request state of RoundTrip.
type exchange struct {
	rec   Recorder
	trace httptrace.ClientTrace
	ctx   exchangeContext
	body  body
	wait  connWaiter // under MaxConnsPerHost only
	done  atomic.Bool
	// unsent marks the exchange of a request of NewRequest that no RoundTrip has claimed
	// yet: until one does, its context answers neither the Recorder's nor the
	// ClientTrace's key.
	unsent atomic.Bool
	// prepared marks an exchange made by NewRequest, whose Labels are its own (kept in the
	// Recorder).
	prepared bool
}

// waitFor readies the exchange for a capped Transport (see connWatch): the request runs
// under a cancellable context of its own under parent (the caller's), and the hooks put
// it on cw's list while it waits for a connection. The exchange's context is that
// context's until the exchange ends, then the caller's again (see exchangeContext).
func (ex *exchange) waitFor(cw *connWatch, parent context.Context) {
	ctx, cancel := context.WithCancelCause(parent)
	w := &ex.wait
	w.ctx, w.watch, w.cancel, w.host = ctx, cw, cancel, ex.rec.host
	w.on.Store(true)
	w.upstream = ex.rec.upstream
	if w.upstream == "" {
		w.upstream = ex.rec.host
	}
	ex.rec.waiter = w
	ex.trace.GetConn = w.getConn
	ex.trace.GotConn = ex.gotConn
}

// gotConn is the GotConn hook of a capped Transport: the wait is over.
func (ex *exchange) gotConn(info httptrace.GotConnInfo) {
	ex.wait.done()
	ex.rec.GotConn(info)
}

// endWait releases the request's own context of a capped Transport, once the exchange
// ended: net/http has put an HTTP/1 connection back in its pool before the body reports
// its end (it holds the reader at EOF until then), so this never costs a connection. The
// request's context is the caller's again, so that the request can be sent once more
// (GOAUTH's retry after a 401, a redirect).
func (ex *exchange) endWait() {
	if ex.wait.cancel != nil {
		ex.wait.on.Store(false)
		ex.wait.done()
		ex.wait.cancel(context.Canceled)
	}
}

// labels returns the Labels of an exchange made by NewRequest.
func (ex *exchange) labels() Labels {
	return Labels{Upstream: ex.rec.upstream, Kind: ex.rec.kind}
}

// context returns the context the exchange runs under: parent with the Recorder (for the
// Dialer) and the ClientTrace (for net/http).
func (ex *exchange) context(parent context.Context) context.Context {
	if clientTraceKey == nil || httptrace.ContextClientTrace(parent) != nil {
		// The caller traces too: WithClientTrace composes both traces. The request is
		// a copy, so that it may carry the capped Transport's context for good.
		if ex.wait.on.Load() {
			parent = ex.wait.ctx
		}
		return httptrace.WithClientTrace(WithRecorder(parent, &ex.rec), &ex.trace)
	}
	ex.ctx = exchangeContext{Context: parent, ex: ex}
	return &ex.ctx
}

// exchangeContext answers the Recorder's and httptrace's context keys (and the Labels' of
// a request of NewRequest), as context.WithValue layers would, without allocating them: it
// is part of the exchange. Every request pays for each allocation on its path
// (docs/benchmarks.md).
//
// Under a capped Transport it is, while the exchange runs, the request's own cancellable
// context (connWaiter.ctx, under the caller's): its Done, Err and the context package's
// own key answer as that context, so that net/http's per-request context is its child
// and a wait for a connection can be cut. Once the exchange ends it answers as the
// caller's context again: a request of NewRequest is the caller's, who may send it once
// more, and the cancelled context of an exchange that ended must not end the next.
type exchangeContext struct {
	context.Context
	ex *exchange
}

// Done implements context.Context.
func (c *exchangeContext) Done() <-chan struct{} {
	if w := &c.ex.wait; w.on.Load() {
		return w.ctx.Done()
	}
	return c.Context.Done()
}

// Err implements context.Context.
func (c *exchangeContext) Err() error {
	if w := &c.ex.wait; w.on.Load() {
		return w.ctx.Err()
	}
	return c.Context.Err()
}

func (c *exchangeContext) Value(key any) any {
	switch key {
	case recorderKey{}:
		if !c.ex.unsent.Load() {
			return &c.ex.rec
		}
	case clientTraceKey:
		if !c.ex.unsent.Load() {
			return &c.ex.trace
		}
	case labelsKey{}:
		if c.ex.prepared {
			return c.ex.labels()
		}
	}
	if w := &c.ex.wait; w.on.Load() {
		return w.ctx.Value(key) // the same values, and the context package's own key
	}
	return c.Context.Value(key)
}

// clientTraceKey is the context key net/http/httptrace keeps a ClientTrace under. The key
// is unexported, so it is learnt once by asking httptrace for the trace of a context that
// notes what it is asked (TestExchangeContext checks that httptrace then finds the trace);
// nil if that does not work, and exchange.context falls back to httptrace.WithClientTrace.
var clientTraceKey = func() any {
	var p keyProbe
	httptrace.ContextClientTrace(&p)
	return p.key
}()

// keyProbe is a context that notes the key of the last Value call.
type keyProbe struct {
	context.Context // nil: only Value is called
	key             any
}

func (p *keyProbe) Value(key any) any {
	p.key = key
	return nil
}

// finish ends a successful exchange; only the first end counts.
func (ex *exchange) finish() {
	if ex.done.CompareAndSwap(false, true) {
		ex.rec.Finish(nil)
		ex.endWait()
	}
}

// fail ends the exchange with err, first giving it its class. cause, if set, is the
// Transport's own timeout that cut the exchange.
func (ex *exchange) fail(err error, cause *timeoutCause) error {
	switch {
	case cause != nil:
		err = &Error{Class: cause.class, Phase: cause.phase, Err: fmt.Errorf("%w: %w", cause, err)}
	case isHeaderTimeout(err):
		err = &Error{Class: ClassTimeout, Phase: PhaseTTFB, Err: fmt.Errorf("%w: %w", errFirstByteTimeout, err)}
	case !errors.As(err, new(*Error)):
		phase := ex.phase()
		if _, ok := tlsAlertName(err); !ok && connDied(err) {
			// The request's own new connection may have died of a TLS alert that
			// net/http did not report.
			if alert := ex.rec.lateTLSAlert(); alert != nil {
				err, phase = fmt.Errorf("%w: %w", err, alert), PhaseTLS
			}
		}
		err = &Error{Class: ClassOf(err), Phase: phase, Err: err}
	}
	if ex.done.CompareAndSwap(false, true) {
		ex.rec.Finish(err)
		ex.endWait()
	}
	return err
}

// connDied reports whether err says the connection itself is gone (so probing it for a
// late TLS alert cannot disturb a live connection that other requests share).
func connDied(err error) bool {
	return errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNRESET) ||
		strings.Contains(err.Error(), "could not be established")
}

// isHeaderTimeout recognises http.Transport's ResponseHeaderTimeout, which both its
// HTTP/1 ("net/http: timeout awaiting response headers") and HTTP/2 ("http2: timeout
// awaiting response headers") halves report only as text.
func isHeaderTimeout(err error) bool {
	return strings.Contains(err.Error(), "timeout awaiting response headers")
}

// phase guesses the phase a failure without a phase of its own happened in.
func (ex *exchange) phase() Phase {
	switch {
	case ex.rec.firstByteAt.Load() != 0:
		return PhaseTransfer
	case ex.rec.wroteAt.Load() != 0:
		return PhaseTTFB
	}
	return PhaseConnect
}

// body wraps a response body: it counts bytes, tells the idle watch of every read, is
// closed by the watch when it stalls, and finishes the Sample at the end of the body,
// where httptrace has no hook.
type body struct {
	ex    *exchange
	rc    io.ReadCloser
	watch *idleWatch
	cut   atomic.Bool // the idle watch closed the body

	tickEntry[body] // on the idle watch's list until the body ends; stamped by every Read
}

func (b *body) expire() {
	b.cut.Store(true)
	b.rc.Close()
}

func (b *body) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if n > 0 {
		b.ex.rec.BodyRead(n)
		b.watch.touch(b)
	}
	switch {
	case err == io.EOF:
		b.watch.unwatch(b)
		b.ex.finish()
	case err != nil:
		b.watch.unwatch(b)
		var cause *timeoutCause
		if b.cut.Load() {
			cause = errBodyIdleTimeout
		}
		err = b.ex.fail(err, cause)
	}
	return n, err
}

func (b *body) Close() error {
	b.watch.unwatch(b)
	err := b.rc.Close()
	b.ex.finish()
	return err
}
