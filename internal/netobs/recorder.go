package netobs

import (
	"context"
	"crypto/tls"
	"errors"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/url"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// Recorder builds the Sample of one upstream exchange from the hooks that fire during it:
// the Resolver and Dialer (DNS, connect, including failures), the Transport's TLS handshake,
// httptrace (connection reuse, request written, first byte) and the body reader (transfer
// end). The Transport makes one per request; it is exported so that callers that drive
// their own exchanges can record them the same way. Methods are safe for concurrent use:
// dials run on goroutines of their own.
//
// The Recorder keeps only what the hooks of a request on a reused connection set, and makes
// the Sample at Finish: it is allocated with every request, and its size is a measurable
// part of the per-request cost (docs/benchmarks.md). What a dial records lives apart, in a
// dialState allocated only when the request dials.
type Recorder struct {
	sink  Sink
	hook  func(Sample) // the context's WithSampleHook, called after sink
	dials *connDials   // the Transport's figures of new connections; nil outside a Transport
	// waiter is the request's wait for a connection under the Transport's cap on
	// connections (connwait.go), which a dial for it ends; nil without a cap.
	waiter *connWaiter

	// What was asked, fixed when recording began. The URL is kept, not formatted: most
	// Samples never have it printed, and formatting it was ~0.7 % of a loopback request
	// (docs/benchmarks.md).
	upstream, kind, method, host string
	url                          *url.URL

	start time.Time // when recording began (has a monotonic reading: time.Since is cheap)

	// The hooks that fire on every request are lock-free: offsets from start in
	// nanoseconds (0 = not yet) and the byte count.
	wroteAt     atomic.Int64
	firstByteAt atomic.Int64
	bytes       atomic.Int64

	mu       sync.Mutex
	dial     *dialState    // guarded by mu; the dial this request ran, nil until it dials
	used     *dialFigures  // guarded by mu; the dial the Sample reports (see GotConn), nil for none
	remote   string        // guarded by mu; the remote address of the connection got
	idle     time.Duration // guarded by mu; how long a reused connection sat idle
	status   int           // guarded by mu
	proto    string        // guarded by mu
	reused   bool          // guarded by mu
	gotConn  bool          // guarded by mu
	finished bool          // guarded by mu
	end      finishFigures // guarded by mu; set by the first Finish
}

// dialState is what a request's own dial records.
type dialState struct {
	fig       dialFigures
	tlsConn   *tls.Conn // the connection this request's dial set up
	lateAlert error     // an alert salvaged when that connection closed
}

// finishFigures freeze, at the first Finish, what hooks firing later could still change.
type finishFigures struct {
	end, wrote, firstByte, bytes int64
	err                          error
}

// NewRecorder starts recording req; the finished Sample goes to sink (which may be nil).
func NewRecorder(req *http.Request, sink Sink) *Recorder {
	r := new(Recorder)
	r.init(req, sink)
	return r
}

func (r *Recorder) init(req *http.Request, sink Sink) {
	l := LabelsFrom(req.Context())
	r.sink = sink
	r.hook = sampleHookFrom(req.Context())
	r.upstream, r.kind = l.Upstream, l.Kind
	r.method = req.Method
	r.url = req.URL
	r.host = canonicalHostPort(req)
	r.start = time.Now()
}

// since returns the offset of now from start, at least 1ns so that 0 can mean "not yet".
func (r *Recorder) since() int64 { return max(int64(time.Since(r.start)), 1) }

func canonicalHostPort(req *http.Request) string {
	if req.URL.Port() != "" {
		return req.URL.Host // already host:port; no allocation
	}
	host, port := req.URL.Hostname(), req.URL.Port()
	if port == "" {
		port = "80"
		if req.URL.Scheme == "https" {
			port = "443"
		}
	}
	if len(host) > 0 && host[0] != '[' && containsColon(host) {
		host = "[" + host + "]"
	}
	return host + ":" + port
}

func containsColon(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] == ':' {
			return true
		}
	}
	return false
}

type recorderKey struct{}

// WithRecorder returns a context whose dials and lookups are recorded in r.
func WithRecorder(ctx context.Context, r *Recorder) context.Context {
	return context.WithValue(ctx, recorderKey{}, r)
}

// RecorderFrom returns the Recorder set by WithRecorder, or nil.
func RecorderFrom(ctx context.Context) *Recorder {
	r, _ := ctx.Value(recorderKey{}).(*Recorder)
	return r
}

// dialed returns the state of this request's own dial, creating it. r.mu must be held.
func (r *Recorder) dialed() *dialState {
	if r.dial == nil {
		r.dial = new(dialState)
	}
	return r.dial
}

// DNSDone records the lookup that served a dial.
func (r *Recorder) DNSDone(l Lookup, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	d := &r.dialed().fig
	d.DNS = l.Duration
	d.DNSBackend = l.Backend
	d.DNSRcode = l.Rcode
	d.DNSCache = l.Cache
}

// ConnectDone records the end of a connect phase: the address connected to (empty on
// failure), how many addresses were tried, and how long it took.
func (r *Recorder) ConnectDone(remote string, attempts int, d time.Duration, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	f := &r.dialed().fig
	f.Connect = d
	f.RemoteAddr = remote
	f.DialAttempts = attempts
}

// addDNS adds a second lookup to the dns phase: the upstream's name, resolved by holoproxy
// for a socks5:// proxy after the proxy's own name. The backend, rcode and cache are the
// upstream lookup's.
func (r *Recorder) addDNS(l Lookup) {
	r.mu.Lock()
	defer r.mu.Unlock()
	d := &r.dialed().fig
	d.DNS += l.Duration
	if l.Backend != "" {
		d.DNSBackend, d.DNSRcode, d.DNSCache = l.Backend, l.Rcode, l.Cache
	}
}

// addConnect adds d to the connect phase: what follows the TCP connect to a forward
// proxy (the TLS handshake with an https:// proxy, the CONNECT or SOCKS5 exchange).
func (r *Recorder) addConnect(d time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.dialed().fig.Connect += d
}

// TLSDone records a TLS handshake: its duration and, when it completed, what it agreed on.
func (r *Recorder) TLSDone(cs *tls.ConnectionState, d time.Duration, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	f := &r.dialed().fig
	f.TLS = d
	if cs == nil || !cs.HandshakeComplete {
		return
	}
	f.TLSVersion = tls.VersionName(cs.Version)
	f.TLSCipher = tls.CipherSuiteName(cs.CipherSuite)
	if cs.CurveID != 0 {
		f.TLSCurve = GroupName(cs.CurveID)
	}
	f.TLSResumed = cs.DidResume
	f.TLSHRR = cs.HelloRetryRequest
	f.ALPN = cs.NegotiatedProtocol
	f.PeerChainLen = len(cs.PeerCertificates)
	f.OCSPStapled = len(cs.OCSPResponse) > 0
}

// dialFigures are the Sample fields a dial fills, kept apart until the request is known
// to use that dial's connection.
type dialFigures struct {
	DNS, Connect, TLS                          time.Duration
	DNSBackend, DNSRcode, DNSCache, RemoteAddr string
	DialAttempts, PeerChainLen                 int
	TLSVersion, TLSCipher, TLSCurve, ALPN      string
	TLSResumed, TLSHRR, OCSPStapled            bool
}

// dialSnapshot returns the figures of the dial this request ran, for its connection.
func (r *Recorder) dialSnapshot() dialFigures {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.dial == nil {
		return dialFigures{}
	}
	return r.dial.fig
}

// ownDial returns a copy of the figures of the dial this request ran, or nil when it ran
// none. r.mu must be held.
func (r *Recorder) ownDial() *dialFigures {
	if r.dial == nil {
		return nil
	}
	f := r.dial.fig
	return &f
}

// GotConn records which connection the request got. The figures of a dial reach the
// Sample only here, when the request got a new connection, or at Finish when it never
// got one (the dial failed): a request that got a reused connection reports no dial even
// if one it started finished later (that connection went to the pool), and one retried on
// a new connection after a reused one failed reports the new dial.
func (r *Recorder) GotConn(info httptrace.GotConnInfo) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.finished {
		return
	}
	r.gotConn = true
	// Under a Transport, the request that takes a connection's entry from the dial table is
	// its first, whatever net/http says: HTTP/1 marks a connection reused when it parks it
	// in the idle pool (a dial whose request got another connection is parked unused), and
	// HTTP/2 marks the first request to claim a connection new, which need not be the first
	// to call GotConn (two requests on a new connection could both look new). Every
	// connection the Transport dials is filed there before any request gets it.
	var fig dialFigures
	first := false
	r.reused = info.Reused
	if r.dials != nil && info.Conn != nil {
		fig, first = r.dials.take(info.Conn)
		r.reused = !first
	}
	r.idle = 0
	switch {
	case r.reused:
		r.used = nil // no dial figures, not even those of an earlier attempt
		r.idle = info.IdleTime
	case first:
		r.dialed().fig = fig // the connection may come from another request's dial: its own figures
		r.used = r.ownDial()
	default:
		r.used = r.ownDial()
	}
	r.remote = ""
	if info.Conn != nil {
		r.remote = remoteString(info.Conn)
	}
}

// WroteRequest records that the request was fully written.
func (r *Recorder) WroteRequest(httptrace.WroteRequestInfo) { r.wroteAt.Store(r.since()) }

// GotFirstResponseByte records the first byte of the response.
func (r *Recorder) GotFirstResponseByte() { r.firstByteAt.CompareAndSwap(0, r.since()) }

// GotResponse records the response header.
func (r *Recorder) GotResponse(resp *http.Response) {
	r.mu.Lock()
	r.status = resp.StatusCode
	r.proto = resp.Proto
	r.mu.Unlock()
}

// BodyRead records n more body bytes.
func (r *Recorder) BodyRead(n int) { r.bytes.Add(int64(n)) }

// Finish ends the exchange: err is the failure (nil when the body was read to its end or
// closed). It fills the request-side phases, Transfer, Total and the error class, hands the
// Sample to the sink and returns it. Only the first call counts; later calls return the
// same Sample.
func (r *Recorder) Finish(err error) Sample {
	end := r.since()
	r.mu.Lock()
	if r.finished {
		s := r.sample()
		r.mu.Unlock()
		return s
	}
	r.finished = true
	if !r.gotConn {
		r.used = r.ownDial() // the request failed before it had a connection: say how the dial went
	}
	r.end = finishFigures{
		end: end, wrote: r.wroteAt.Load(), firstByte: r.firstByteAt.Load(), bytes: r.bytes.Load(),
		err: err,
	}
	s := r.sample()
	r.mu.Unlock()
	if r.sink != nil {
		r.sink.Observe(s)
	}
	if r.hook != nil {
		r.hook(s)
	}
	return s
}

// sample makes the Sample of a finished exchange. r.mu must be held.
func (r *Recorder) sample() Sample {
	s := Sample{
		Upstream: r.upstream, Kind: r.kind, Method: r.method, url: r.url, Host: r.host,
		Start: r.start, Reused: r.reused, IdleTime: r.idle, Status: r.status, Proto: r.proto,
	}
	if d := r.used; d != nil {
		s.DNS, s.DNSBackend, s.DNSRcode, s.DNSCache = d.DNS, d.DNSBackend, d.DNSRcode, d.DNSCache
		s.Connect, s.RemoteAddr, s.DialAttempts = d.Connect, d.RemoteAddr, d.DialAttempts
		s.TLS, s.TLSVersion, s.TLSCipher, s.TLSCurve = d.TLS, d.TLSVersion, d.TLSCipher, d.TLSCurve
		s.TLSResumed, s.TLSHRR, s.ALPN = d.TLSResumed, d.TLSHRR, d.ALPN
		s.PeerChainLen, s.OCSPStapled = d.PeerChainLen, d.OCSPStapled
	}
	if r.remote != "" {
		s.RemoteAddr = r.remote
	}
	e := &r.end
	s.Wrote = time.Duration(e.wrote)
	if e.firstByte != 0 {
		s.TTFB = time.Duration(e.firstByte - e.wrote) // from the request written (or the start)
		s.Transfer = time.Duration(e.end - e.firstByte)
	}
	s.Total = time.Duration(e.end)
	s.Bytes = e.bytes
	if e.err != nil {
		s.ErrClass = ClassOf(e.err)
		s.Err = e.err.Error()
	}
	return s
}

// ClientTrace returns the httptrace hooks that feed r.
func (r *Recorder) ClientTrace() *httptrace.ClientTrace {
	return &httptrace.ClientTrace{
		GotConn:              r.GotConn,
		WroteRequest:         r.WroteRequest,
		GotFirstResponseByte: r.GotFirstResponseByte,
	}
}

// GroupName names a TLS key-exchange group as the IANA registry does ("P-256",
// "X25519MLKEM768"), where crypto/tls's CurveID.String says "CurveP256".
func GroupName(id tls.CurveID) string {
	switch id {
	case tls.CurveP256:
		return "P-256"
	case tls.CurveP384:
		return "P-384"
	case tls.CurveP521:
		return "P-521"
	}
	return id.String()
}

// setTLSConn remembers the TLS connection this request's dial set up, so that a failure
// HTTP/2 reports without its cause can be explained (see postHandshakeAlert).
func (r *Recorder) setTLSConn(tc *tls.Conn) {
	r.mu.Lock()
	if !r.finished {
		r.dialed().tlsConn = tc
	}
	r.mu.Unlock()
}

// lateTLSAlert returns the TLS alert that killed this request's own new connection after
// its handshake, or nil. In TLS 1.3 a server rejects a client certificate only after the
// client's handshake is done, and net/http may then report only what it saw itself: a
// broken pipe on its first write, or HTTP/2's "client conn could not be established".
// The alert is found either where alertConn salvaged it when the connection was closed,
// or in the tls.Conn, which keeps a read error and returns it again to a read that cannot
// block.
func (r *Recorder) lateTLSAlert() error {
	var tc *tls.Conn
	var alert error
	r.mu.Lock()
	if r.dial != nil {
		tc, alert = r.dial.tlsConn, r.dial.lateAlert
	}
	r.mu.Unlock()
	if alert != nil || tc == nil {
		return alert
	}
	tc.SetReadDeadline(time.Unix(1, 0))
	var b [1]byte
	if _, err := tc.Read(b[:]); err != nil {
		if _, ok := tlsAlertName(err); ok {
			return err
		}
	}
	return nil
}

func (r *Recorder) noteLateAlert(err error) {
	r.mu.Lock()
	if d := r.dialed(); !r.finished && d.lateAlert == nil {
		d.lateAlert = err
	}
	r.mu.Unlock()
}

// alertConn sits between a TLS connection and its TCP connection. When a write failed
// because the peer had closed (as a server does right after a fatal alert) and the
// connection is being closed, it first reads what the peer sent, through the tls.Conn
// (the alert is encrypted in TLS 1.3), and hands any alert to the Recorder. The read is
// bounded by a short deadline and happens only on that failure path.
type alertConn struct {
	net.Conn
	tc          *tls.Conn
	rec         *Recorder
	writeFailed atomic.Bool
	salvaging   atomic.Bool
}

func (c *alertConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	if err != nil && (errors.Is(err, syscall.EPIPE) || errors.Is(err, syscall.ECONNRESET)) {
		c.writeFailed.Store(true)
	}
	return n, err
}

func (c *alertConn) Close() error {
	if c.writeFailed.Load() && c.tc != nil && c.rec != nil && c.salvaging.CompareAndSwap(false, true) {
		c.Conn.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		var b [1]byte
		if _, err := c.tc.Read(b[:]); err != nil {
			if _, ok := tlsAlertName(err); ok {
				c.rec.noteLateAlert(err)
			}
		}
	}
	return c.Conn.Close()
}
