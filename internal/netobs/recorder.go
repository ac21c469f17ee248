package netobs

import (
	"context"
	"crypto/tls"
	"net/http"
	"net/http/httptrace"
	"sync"
	"time"
)

// Recorder builds the Sample of one upstream exchange from the hooks that fire during it:
// the Resolver and Dialer (DNS, connect, including failures), the Transport's TLS handshake,
// httptrace (connection reuse, request written, first byte) and the body reader (transfer
// end). The Transport makes one per request; it is exported so that callers that drive
// their own exchanges can record them the same way. Methods are safe for concurrent use:
// dials run on goroutines of their own.
type Recorder struct {
	sink Sink

	mu        sync.Mutex
	s         Sample    // guarded by mu
	wrote     time.Time // guarded by mu; when the request was fully written
	firstByte time.Time // guarded by mu
	reused    bool      // guarded by mu; GotConn said reused: later dial hooks are another request's
	finished  bool      // guarded by mu
}

// NewRecorder starts recording req; the finished Sample goes to sink (which may be nil).
func NewRecorder(req *http.Request, sink Sink) *Recorder {
	l := LabelsFrom(req.Context())
	r := &Recorder{sink: sink}
	r.s = Sample{
		Upstream: l.Upstream,
		Kind:     l.Kind,
		Method:   req.Method,
		URL:      req.URL.String(),
		Host:     canonicalHostPort(req),
		Start:    time.Now(),
	}
	return r
}

func canonicalHostPort(req *http.Request) string {
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

// DNSDone records the lookup that served a dial.
func (r *Recorder) DNSDone(l Lookup, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.reused || r.finished {
		return
	}
	r.s.DNS = l.Duration
	r.s.DNSBackend = l.Backend
	r.s.DNSRcode = l.Rcode
	r.s.DNSCache = l.Cache
}

// ConnectDone records the end of a connect phase: the address connected to (empty on
// failure), how many addresses were tried, and how long it took.
func (r *Recorder) ConnectDone(remote string, attempts int, d time.Duration, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.reused || r.finished {
		return
	}
	r.s.Connect = d
	r.s.RemoteAddr = remote
	r.s.DialAttempts = attempts
}

// TLSDone records a TLS handshake: its duration and, when it completed, what it agreed on.
func (r *Recorder) TLSDone(cs *tls.ConnectionState, d time.Duration, err error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.reused || r.finished {
		return
	}
	r.s.TLS = d
	if cs == nil || !cs.HandshakeComplete {
		return
	}
	r.s.TLSVersion = tls.VersionName(cs.Version)
	r.s.TLSCipher = tls.CipherSuiteName(cs.CipherSuite)
	if cs.CurveID != 0 {
		r.s.TLSCurve = GroupName(cs.CurveID)
	}
	r.s.TLSResumed = cs.DidResume
	r.s.TLSHRR = cs.HelloRetryRequest
	r.s.ALPN = cs.NegotiatedProtocol
	r.s.PeerChainLen = len(cs.PeerCertificates)
	r.s.OCSPStapled = len(cs.OCSPResponse) > 0
}

// GotConn records which connection the request got. On a reused connection the dial
// figures are cleared: a dial this request started may have gone to another request.
func (r *Recorder) GotConn(info httptrace.GotConnInfo) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.finished {
		return
	}
	if info.Reused {
		r.reused = true
		r.s.Reused = true
		r.s.IdleTime = info.IdleTime
		r.s.DNS, r.s.Connect, r.s.TLS = 0, 0, 0
		r.s.DNSBackend, r.s.DNSRcode, r.s.DNSCache = "", "", ""
		r.s.DialAttempts = 0
		r.s.TLSVersion, r.s.TLSCipher, r.s.TLSCurve, r.s.ALPN = "", "", "", ""
		r.s.TLSResumed, r.s.TLSHRR, r.s.OCSPStapled, r.s.PeerChainLen = false, false, false, 0
	}
	if info.Conn != nil {
		r.s.RemoteAddr = info.Conn.RemoteAddr().String()
	}
}

// WroteRequest records that the request was fully written.
func (r *Recorder) WroteRequest(httptrace.WroteRequestInfo) {
	now := time.Now()
	r.mu.Lock()
	r.wrote = now
	r.s.Wrote = now.Sub(r.s.Start)
	r.mu.Unlock()
}

// GotFirstResponseByte records the first byte of the response.
func (r *Recorder) GotFirstResponseByte() {
	now := time.Now()
	r.mu.Lock()
	r.firstByte = now
	if !r.wrote.IsZero() {
		r.s.TTFB = now.Sub(r.wrote)
	} else {
		r.s.TTFB = now.Sub(r.s.Start)
	}
	r.mu.Unlock()
}

// GotResponse records the response header.
func (r *Recorder) GotResponse(resp *http.Response) {
	r.mu.Lock()
	r.s.Status = resp.StatusCode
	r.s.Proto = resp.Proto
	r.mu.Unlock()
}

// BodyRead records n more body bytes.
func (r *Recorder) BodyRead(n int) {
	r.mu.Lock()
	r.s.Bytes += int64(n)
	r.mu.Unlock()
}

// Finish ends the exchange: err is the failure (nil when the body was read to its end or
// closed). It fills Transfer, Total and the error class, hands the Sample to the sink and
// returns it. Only the first call counts; later calls return the same Sample.
func (r *Recorder) Finish(err error) Sample {
	now := time.Now()
	r.mu.Lock()
	if r.finished {
		s := r.s
		r.mu.Unlock()
		return s
	}
	r.finished = true
	if !r.firstByte.IsZero() {
		r.s.Transfer = now.Sub(r.firstByte)
	}
	r.s.Total = now.Sub(r.s.Start)
	if err != nil {
		r.s.ErrClass = ClassOf(err)
		r.s.Err = err.Error()
	}
	s := r.s
	r.mu.Unlock()
	if r.sink != nil {
		r.sink.Observe(s)
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
