package lab

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log"
	"math/rand/v2"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/mod/module"
)

// OriginConfig configures a module origin: a GOPROXY file tree (or any handler) served from a
// lab host.
type OriginConfig struct {
	// Tree is the directory of a GOPROXY file tree (see modtree.Write).
	Tree string
	// Handler, if set, answers instead of Tree (faults and the log still apply).
	Handler http.Handler
	// Plain serves HTTP without TLS; otherwise the origin serves HTTPS with a certificate from
	// the lab CA for Names.
	Plain bool
	// HTTP2 offers HTTP/2 as well as HTTP/1.1 (over TLS by ALPN; with Plain, prior knowledge).
	HTTP2 bool
	// TLSVersion pins the TLS version (tls.VersionTLS12 or tls.VersionTLS13); 0 allows both.
	TLSVersion uint16
	// Port is the TCP port; default 443, or 80 with Plain.
	Port int
	// Names are the certificate's names; default the host's DNS name and address.
	Names []string
	// Faults are the initial fault knobs; change them with Origin.SetFaults.
	Faults Faults
}

// Faults are an origin's fault knobs. Rates are probabilities from 0 to 1, drawn per request
// from a generator seeded with Seed, so a run is repeatable; Match narrows which requests the
// rate faults apply to.
type Faults struct {
	// NotFound lists module paths answered 404 on every endpoint.
	NotFound map[string]bool
	// Delay is added before answering every request.
	Delay time.Duration
	// ErrorRate is the share of requests answered with ErrorStatus.
	ErrorRate float64
	// ErrorStatus is the status of those answers: 500 (the default), 429, 503...
	ErrorStatus int
	// ResetRate is the share of successful answers whose connection is reset after half the
	// body (HTTP/1: TCP RST; HTTP/2: RST_STREAM).
	ResetRate float64
	// StallRate is the share of successful answers whose body stops after half and never
	// continues, until the client gives up or the origin closes.
	StallRate float64
	// HangRate is the share of requests that get no answer at all, not even a status line,
	// until the client gives up or the origin closes: what a first-byte timeout is for.
	HangRate float64
	// CorruptRate is the share of successful .mod and .zip answers (the files a checksum
	// database covers) sent with one byte changed, the length kept: what checks and
	// checksum verification must refuse. Other answers are never corrupted.
	CorruptRate float64
	// Match, if set, limits the rate faults to requests whose path (as sent, without the
	// leading slash) it accepts.
	Match func(path string) bool
	// Seed seeds the fault draws.
	Seed uint64
}

// Request is one request an origin answered.
type Request struct {
	Time     time.Time     // when it arrived
	Method   string        // GET, HEAD
	Path     string        // as sent, without the leading slash
	Module   string        // the module path, if Path is a GOPROXY request
	Status   int           // the status sent
	Fault    string        // "", "not_found", "error", "hang", "reset", "stall", "corrupt" (corrupt and cut: "reset" or "stall")
	Conn     int64         // the connection's id (1, 2, ... per origin)
	Proto    string        // "HTTP/1.1" or "HTTP/2.0"
	Resumed  bool          // the TLS session was resumed
	Bytes    int64         // body bytes written
	Duration time.Duration // until the handler returned
}

// OriginStats sum up an origin's log.
type OriginStats struct {
	Conns      int         // TCP connections accepted
	Handshakes int         // TLS handshakes completed
	Resumed    int         // of which resumed a session
	Requests   int         // requests answered
	ByStatus   map[int]int // requests per status
}

// Origin is a running module origin.
type Origin struct {
	host *Host
	cfg  OriginConfig
	url  string
	srv  *http.Server
	done chan struct{}

	conns      atomic.Int64
	handshakes atomic.Int64
	resumed    atomic.Int64

	mu     sync.Mutex
	faults Faults
	rng    *rand.Rand
	log    []Request
}

// ServeOrigin starts an origin on the host, stopped when the lab closes.
func (h *Host) ServeOrigin(cfg OriginConfig) (*Origin, error) {
	if cfg.Tree == "" && cfg.Handler == nil {
		return nil, errors.New("lab: origin needs a Tree or a Handler")
	}
	if cfg.Port == 0 {
		cfg.Port = 443
		if cfg.Plain {
			cfg.Port = 80
		}
	}
	if len(cfg.Names) == 0 {
		cfg.Names = []string{h.DNSName(), h.addr.String()}
	}
	scheme, defPort := "https", 443
	if cfg.Plain {
		scheme, defPort = "http", 80
	}
	url := scheme + "://" + h.DNSName()
	if cfg.Port != defPort {
		url += ":" + strconv.Itoa(cfg.Port)
	}
	o := newOrigin(cfg, url)
	o.host = h
	ln, err := h.Listen("tcp", net.JoinHostPort(h.addr.String(), strconv.Itoa(cfg.Port)))
	if err != nil {
		return nil, err
	}
	var tlsConfig *tls.Config
	if !cfg.Plain {
		cert, err := h.lab.ca.Issue(cfg.Names...)
		if err != nil {
			ln.Close()
			return nil, err
		}
		tlsConfig = &tls.Config{
			Certificates: []tls.Certificate{cert},
			MinVersion:   tls.VersionTLS12,
			MaxVersion:   tls.VersionTLS13,
			VerifyConnection: func(cs tls.ConnectionState) error {
				o.handshakes.Add(1)
				if cs.DidResume {
					o.resumed.Add(1)
				}
				return nil
			},
		}
		if cfg.TLSVersion != 0 {
			tlsConfig.MinVersion, tlsConfig.MaxVersion = cfg.TLSVersion, cfg.TLSVersion
		}
	}
	o.start(ln, tlsConfig)
	h.lab.mu.Lock()
	h.lab.origins = append(h.lab.origins, o)
	h.lab.closers = append(h.lab.closers, func() error { o.Close(); return nil })
	h.lab.mu.Unlock()
	return o, nil
}

// ServeOriginOn starts a plain-HTTP origin on ln, a listener the caller made: a loopback
// port, for tests that want an origin's faults and log without a lab (no root, no
// namespaces). It serves cfg's Tree or Handler with cfg's Faults, and HTTP/2 by prior
// knowledge with HTTP2; Plain, Port, Names and TLSVersion do not apply. Its URL is
// http://<ln's address>; it serves until Close, which the caller owes.
func ServeOriginOn(ln net.Listener, cfg OriginConfig) (*Origin, error) {
	if cfg.Tree == "" && cfg.Handler == nil {
		return nil, errors.New("lab: origin needs a Tree or a Handler")
	}
	cfg.Plain = true
	o := newOrigin(cfg, "http://"+ln.Addr().String())
	o.start(ln, nil)
	return o, nil
}

// newOrigin returns an origin of cfg at url, not yet serving.
func newOrigin(cfg OriginConfig, url string) *Origin {
	o := &Origin{cfg: cfg, url: url, done: make(chan struct{})}
	o.setFaults(cfg.Faults)
	return o
}

// start serves on ln: over TLS with tlsConfig, else plain.
func (o *Origin) start(ln net.Listener, tlsConfig *tls.Config) {
	var protos http.Protocols
	protos.SetHTTP1(true)
	if o.cfg.HTTP2 {
		if tlsConfig == nil {
			protos.SetUnencryptedHTTP2(true)
		} else {
			protos.SetHTTP2(true)
		}
	}
	o.srv = &http.Server{
		Handler:           http.HandlerFunc(o.serve),
		Protocols:         &protos,
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       60 * time.Second,
		ErrorLog:          log.New(io.Discard, "", 0),
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			return context.WithValue(ctx, connKey{}, c)
		},
		TLSConfig: tlsConfig,
	}
	cl := &countingListener{Listener: ln, o: o}
	if tlsConfig == nil {
		go func() { _ = o.srv.Serve(cl) }()
	} else {
		go func() { _ = o.srv.ServeTLS(cl, "", "") }()
	}
}

// Close stops the origin, releasing stalled answers.
func (o *Origin) Close() {
	select {
	case <-o.done:
		return
	default:
	}
	close(o.done)
	_ = o.srv.Close()
}

// DropIdle closes the HTTP/1 connections idle between requests at the call, as a server
// that times them out would (a connection whose answer is being finished is not idle yet);
// connections go on being kept alive afterwards. A client's pool of idle connections to the
// origin empties, which a test of the client's descriptors wants.
func (o *Origin) DropIdle() {
	o.srv.SetKeepAlivesEnabled(false) // closes the idle connections
	o.srv.SetKeepAlivesEnabled(true)
}

// URL returns the origin's base URL, e.g. https://proxy-a.test, for GOPROXY.
func (o *Origin) URL() string { return o.url }

// Host returns the host the origin runs on; nil for one started by ServeOriginOn.
func (o *Origin) Host() *Host { return o.host }

// SetFaults replaces the origin's fault knobs, for the requests that arrive from now on.
func (o *Origin) SetFaults(f Faults) { o.setFaults(f) }

func (o *Origin) setFaults(f Faults) {
	if f.ErrorStatus == 0 {
		f.ErrorStatus = http.StatusInternalServerError
	}
	o.mu.Lock()
	o.faults = f
	o.rng = rand.New(rand.NewPCG(f.Seed, 0x0815))
	o.mu.Unlock()
}

// Log returns the requests answered so far, in the order they finished.
func (o *Origin) Log() []Request {
	o.mu.Lock()
	defer o.mu.Unlock()
	return append([]Request(nil), o.log...)
}

// Stats sums up the origin's connections, handshakes and requests.
func (o *Origin) Stats() OriginStats {
	s := OriginStats{
		Conns:      int(o.conns.Load()),
		Handshakes: int(o.handshakes.Load()),
		Resumed:    int(o.resumed.Load()),
		ByStatus:   map[int]int{},
	}
	for _, r := range o.Log() {
		s.Requests++
		s.ByStatus[r.Status]++
	}
	return s
}

type connKey struct{}

// countingListener numbers the connections it accepts.
type countingListener struct {
	net.Listener
	o *Origin
}

func (l *countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &idConn{Conn: c, id: l.o.conns.Add(1)}, nil
}

// idConn is an accepted connection with its number.
type idConn struct {
	net.Conn
	id int64
}

// connOf returns the numbered connection under the request's (possibly TLS) connection.
func connOf(r *http.Request) *idConn {
	c, _ := r.Context().Value(connKey{}).(net.Conn)
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	ic, _ := c.(*idConn)
	return ic
}

// statusWriter records what a handler sends.
type statusWriter struct {
	http.ResponseWriter
	status int
	bytes  int64
}

func (w *statusWriter) WriteHeader(code int) {
	if w.status == 0 {
		w.status = code
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *statusWriter) Write(b []byte) (int, error) {
	if w.status == 0 {
		w.status = http.StatusOK
	}
	n, err := w.ResponseWriter.Write(b)
	w.bytes += int64(n)
	return n, err
}

func (w *statusWriter) Unwrap() http.ResponseWriter { return w.ResponseWriter }

// modulePath returns the module path of a GOPROXY request path, or "".
func modulePath(p string) string {
	i := strings.Index(p, "/@v/")
	if i < 0 {
		i = strings.Index(p, "/@latest")
	}
	if i < 0 {
		return ""
	}
	mp, err := module.UnescapePath(p[:i])
	if err != nil {
		return ""
	}
	return mp
}

func (o *Origin) serve(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	p := strings.TrimPrefix(r.URL.Path, "/")
	rec := Request{Time: start, Method: r.Method, Path: p, Module: modulePath(p), Proto: r.Proto}
	if ic := connOf(r); ic != nil {
		rec.Conn = ic.id
	}
	if r.TLS != nil {
		rec.Resumed = r.TLS.DidResume
	}
	sw := &statusWriter{ResponseWriter: w}
	defer func() {
		rec.Status, rec.Bytes, rec.Duration = sw.status, sw.bytes, time.Since(start)
		o.mu.Lock()
		o.log = append(o.log, rec)
		o.mu.Unlock()
	}()

	o.mu.Lock()
	f := o.faults
	var errDraw, resetDraw, stallDraw, hangDraw, corruptDraw, corruptAt float64 = 1, 1, 1, 1, 1, 0
	if f.Match == nil || f.Match(p) {
		errDraw, resetDraw, stallDraw = o.rng.Float64(), o.rng.Float64(), o.rng.Float64()
		// The later knobs draw only when set, so that a seed gives the draws it gave
		// before they existed.
		if f.HangRate > 0 {
			hangDraw = o.rng.Float64()
		}
		if f.CorruptRate > 0 {
			corruptDraw, corruptAt = o.rng.Float64(), o.rng.Float64()
		}
	}
	o.mu.Unlock()

	if f.Delay > 0 {
		t := time.NewTimer(f.Delay)
		select {
		case <-t.C:
		case <-r.Context().Done():
			t.Stop()
			return
		case <-o.done:
			t.Stop()
			return
		}
	}
	switch {
	case rec.Module != "" && f.NotFound[rec.Module]:
		rec.Fault = "not_found"
		http.Error(sw, "lab origin: module "+rec.Module+" is not served here", http.StatusNotFound)
		return
	case errDraw < f.ErrorRate:
		rec.Fault = "error"
		http.Error(sw, fmt.Sprintf("lab origin: injected %d", f.ErrorStatus), f.ErrorStatus)
		return
	case hangDraw < f.HangRate:
		rec.Fault = "hang"
		select {
		case <-r.Context().Done():
		case <-o.done:
		}
		return
	}
	if o.cfg.Handler != nil {
		o.cfg.Handler.ServeHTTP(sw, r)
		return
	}
	data, ctype, err := o.readTree(p)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			http.Error(sw, "lab origin: not found: "+p, http.StatusNotFound)
		} else {
			http.Error(sw, "lab origin: "+err.Error(), http.StatusInternalServerError)
		}
		return
	}
	sw.Header().Set("Content-Type", ctype)
	if corruptDraw < f.CorruptRate && len(data) > 0 && (strings.HasSuffix(p, ".mod") || strings.HasSuffix(p, ".zip")) {
		rec.Fault = "corrupt"
		data = bytes.Clone(data)
		data[min(int(corruptAt*float64(len(data))), len(data)-1)] ^= 0xff
	}
	reset, stall := resetDraw < f.ResetRate, stallDraw < f.StallRate
	if !reset && !stall || r.Method == http.MethodHead {
		http.ServeContent(sw, r, "", time.Time{}, bytes.NewReader(data))
		return
	}
	sw.Header().Set("Content-Length", strconv.Itoa(len(data)))
	sw.WriteHeader(http.StatusOK)
	_, _ = sw.Write(data[:len(data)/2])
	_ = http.NewResponseController(sw).Flush()
	if reset {
		rec.Fault = "reset"
		if ic := connOf(r); ic != nil && r.ProtoMajor == 1 {
			if tc, ok := ic.Conn.(*net.TCPConn); ok {
				// Close the TCP connection under TLS at once: no close_notify, just a RST.
				_ = tc.SetLinger(0)
				_ = tc.Close()
			}
		}
		// The deferred log entry is still written: defers run while the panic unwinds.
		panic(http.ErrAbortHandler)
	}
	rec.Fault = "stall"
	select {
	case <-r.Context().Done():
	case <-o.done:
	}
}

// readTree reads the file of a GOPROXY request from the tree.
func (o *Origin) readTree(p string) ([]byte, string, error) {
	clean := path.Clean("/" + p)
	if clean == "/" || strings.Contains(clean, "/../") {
		return nil, "", fs.ErrNotExist
	}
	file := filepath.Join(o.cfg.Tree, filepath.FromSlash(clean))
	st, err := os.Stat(file)
	if err != nil {
		return nil, "", err
	}
	if st.IsDir() {
		return nil, "", fs.ErrNotExist
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, "", err
	}
	ctype := "text/plain; charset=utf-8"
	switch {
	case strings.HasSuffix(p, ".zip"):
		ctype = "application/zip"
	case strings.HasSuffix(p, ".info"), strings.HasSuffix(p, "/@latest"):
		ctype = "application/json"
	}
	return data, ctype, nil
}

// Origins returns the lab's origins in the order they were started.
func (l *Lab) Origins() []*Origin {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]*Origin(nil), l.origins...)
}

// Summary reports, one line per host, what the lab saw of it: frames sent and dropped by its
// link, DNS queries it asked (and, on the DNS host, answered), and for each origin on it the
// TCP connections, TLS handshakes and requests by status.
func (l *Lab) Summary() string {
	l.mu.Lock()
	d := l.dns
	l.mu.Unlock()
	asked := map[netip.Addr]int{}
	answered := 0
	if d != nil {
		for _, q := range d.Queries() {
			asked[q.From]++
			answered++
		}
	}
	var b strings.Builder
	for _, h := range l.Hosts() {
		st, _ := h.Stats()
		fmt.Fprintf(&b, "%s (%s): %d frames sent, %d dropped, %d delayed (late by %v mean, %v max); %d DNS queries asked",
			h.name, h.addr, st.Forwarded, st.Dropped, st.Delayed, st.MeanLate, st.MaxLate, asked[h.addr])
		if d != nil && d.host == h {
			fmt.Fprintf(&b, ", %d answered", answered)
		}
		for _, o := range l.Origins() {
			if o.host != h {
				continue
			}
			s := o.Stats()
			fmt.Fprintf(&b, "; origin %s: %d TCP connections, %d TLS handshakes (%d resumed), %d requests %v",
				o.url, s.Conns, s.Handshakes, s.Resumed, s.Requests, s.ByStatus)
		}
		b.WriteString("\n")
	}
	return b.String()
}
