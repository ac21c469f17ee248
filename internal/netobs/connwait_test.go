package netobs

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"go.uber.org/goleak"
)

// TestConnCapBoundsConnections sends many requests at once through a Transport with a cap
// of 3 connections per host: the origin accepts at most 3 connections, over plain HTTP/1.1,
// HTTPS with HTTP/1.1 and HTTPS with HTTP/2 (whose requests share a connection), and every
// request succeeds, whether made by NewRequest or by net/http.
func TestConnCapBoundsConnections(t *testing.T) {
	const maxConns, requests = 3, 60
	ca := newCA(t)
	lab := newDNSLab(t, ca)
	cert := ca.issue(t, []string{"proxy-a.test"}, nil, time.Time{}, time.Time{}, false)
	for _, tc := range []struct {
		name  string
		tls   *tls.Config
		proto string
	}{
		{name: "http"},
		{name: "https-h1", tls: &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"http/1.1"}}, proto: "HTTP/1.1"},
		{name: "https-h2", tls: &tls.Config{Certificates: []tls.Certificate{cert}, NextProtos: []string{"h2"}}, proto: "HTTP/2.0"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var inHandler, most atomic.Int64
			h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				n := inHandler.Add(1)
				defer inHandler.Add(-1)
				for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
				}
				time.Sleep(5 * time.Millisecond) // let requests pile up
				io.WriteString(w, r.URL.Path)
			})
			o := startOrigin(t, tc.tls, h)
			base := "http://127.0.0.1:" + o.port
			if tc.tls != nil {
				base = "https://proxy-a.test:" + o.port
			}
			tr, got := newLabTransport(t, lab, ca, TransportConfig{MaxConnsPerHost: maxConns})
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			var wg sync.WaitGroup
			for i := range requests {
				wg.Add(1)
				go func() {
					defer wg.Done()
					path := fmt.Sprintf("/mod%d/@v/list", i)
					var req *http.Request
					var err error
					if i%2 == 0 {
						req, err = NewRequest(ctx, http.MethodGet, base+path, nil, Labels{Upstream: base, Kind: "list"})
					} else {
						req, err = http.NewRequestWithContext(ctx, http.MethodGet, base+path, nil)
					}
					if err != nil {
						t.Error(err)
						return
					}
					resp, err := tr.Client().Do(req)
					if err != nil {
						t.Errorf("%s: %v", path, err)
						return
					}
					defer resp.Body.Close()
					b, err := io.ReadAll(resp.Body)
					if err != nil || string(b) != path {
						t.Errorf("%s: body %q, %v", path, b, err)
					}
					if tc.proto != "" && resp.Proto != tc.proto {
						t.Errorf("%s: protocol %s, want %s", path, resp.Proto, tc.proto)
					}
				}()
			}
			wg.Wait()
			if n := o.opened.Load(); n > maxConns || n < 1 {
				t.Errorf("the origin accepted %d connections; the cap is %d", n, maxConns)
			}
			if tc.proto != "HTTP/2.0" && most.Load() < 2 {
				t.Logf("at most %d requests ran at once at the origin", most.Load())
			}
			if n := len(got.all()); n != requests {
				t.Errorf("%d Samples, want %d", n, requests)
			}
			for _, s := range got.all() {
				if s.ErrClass != "" {
					t.Errorf("Sample with error %s: %s", s.ErrClass, s.Err)
				}
			}
			waiting := map[string]int{}
			tr.ConnWaiting(waiting)
			for up, n := range waiting {
				if n != 0 {
					t.Errorf("%d requests of %s still listed as waiting for a connection", n, up)
				}
			}
		})
	}
}

// stallOrigin starts a plain HTTP origin whose handler holds every request until release
// is called (or the test ends), and returns it with a channel that receives once for each
// request that reached the handler.
func stallOrigin(t *testing.T) (o *origin, entered chan struct{}, release func()) {
	t.Helper()
	entered = make(chan struct{}, 100)
	stop := make(chan struct{})
	var once sync.Once
	release = func() { once.Do(func() { close(stop) }) }
	t.Cleanup(release) // before the origin's Close, which waits for no handler
	o = startOrigin(t, nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		entered <- struct{}{}
		select {
		case <-stop:
			io.WriteString(w, "late")
		case <-r.Context().Done():
		}
	}))
	return o, entered, release
}

// TestConnCapWaitBounded: with the cap's connections all held by requests a stalled origin
// does not answer, the requests waiting for a connection fail once they have waited the
// connect timeout, with ErrConnCap (class conn_cap, phase connect) naming the upstream's
// host and the cap, and never hang: the only other bound on them here is the caller's
// context of a minute (and the first-byte timeout of the requests holding the
// connections is longer still). The requests that hold the connections still get their
// answers.
func TestConnCapWaitBounded(t *testing.T) {
	o, entered, release := stallOrigin(t)
	var got samples
	tr, err := NewTransport(TransportConfig{MaxConnsPerHost: 2, ConnectTimeout: 200 * time.Millisecond,
		FirstByteTimeout: 5 * time.Minute, Sink: &got})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tr.CloseIdleConnections)
	host := "127.0.0.1:" + o.port
	base := "http://" + host
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	holders := make(chan error, 2)
	for i := range 2 {
		go func() { holders <- get(ctx, tr.Client(), fmt.Sprintf("%s/held%d", base, i), false) }()
	}
	for range 2 {
		select {
		case <-entered:
		case <-ctx.Done():
			t.Fatal("the origin never got the requests that hold the connections")
		}
	}

	errs := make(chan error, 5)
	for i := range 5 {
		go func() {
			req, err := NewRequest(ctx, http.MethodGet, fmt.Sprintf("%s/waiter%d", base, i), nil, Labels{Upstream: base, Kind: "mod"})
			if err != nil {
				errs <- err
				return
			}
			resp, err := tr.Client().Do(req)
			if err == nil {
				resp.Body.Close()
			}
			errs <- err
		}()
	}
	for range 5 {
		var err error
		select {
		case err = <-errs:
		case <-ctx.Done():
			t.Fatal("a request waiting for a connection was not cut: it would have waited for as long as its caller")
		}
		if !errors.Is(err, ErrConnCap) {
			t.Fatalf("waiter: %v; want ErrConnCap", err)
		}
		if ClassOf(err) != ClassConnCap {
			t.Errorf("class %q, want %q", ClassOf(err), ClassConnCap)
		}
		var oe *Error
		if !errors.As(err, &oe) || oe.Phase != PhaseConnect {
			t.Errorf("%v: want an *Error of phase connect", err)
		}
		for _, want := range []string{host, "connection cap reached", "all 2 in use"} {
			if !strings.Contains(err.Error(), want) {
				t.Errorf("error %q does not say %q", err, want)
			}
		}
	}
	if ctx.Err() != nil {
		t.Fatal("the caller's context ended first")
	}
	release()
	for range 2 {
		if err := <-holders; err != nil {
			t.Errorf("a request holding a connection: %v", err)
		}
	}
	capped := 0
	for _, s := range got.all() {
		if s.ErrClass == ClassConnCap {
			capped++
			if s.Upstream != base || s.Kind != "mod" {
				t.Errorf("conn_cap Sample of upstream %q kind %q", s.Upstream, s.Kind)
			}
		}
	}
	if capped != 5 {
		t.Errorf("%d Samples of class conn_cap, want 5", capped)
	}
	if n := o.opened.Load(); n != 2 {
		t.Errorf("the origin accepted %d connections; the cap is 2", n)
	}
}

// TestConnCapWaitersGauge: the requests waiting for a connection show in
// holoproxy_upstream_connection_waiters, per upstream, and leave it when their caller
// gives up; an upstream observed without waiters shows 0.
func TestConnCapWaitersGauge(t *testing.T) {
	o, entered, release := stallOrigin(t)
	reg := prometheus.NewRegistry()
	m, err := NewMetrics(reg)
	if err != nil {
		t.Fatal(err)
	}
	tr, err := NewTransport(TransportConfig{MaxConnsPerHost: 1, ConnectTimeout: 5 * time.Minute,
		FirstByteTimeout: 5 * time.Minute, Sink: m})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tr.CloseIdleConnections)
	m.WatchConnWaits(tr)
	base := "http://127.0.0.1:" + o.port
	m.Observe(Sample{Upstream: "https://proxy-b.test", Status: 200})

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	held := make(chan error, 1)
	go func() {
		req, _ := NewRequest(ctx, http.MethodGet, base+"/held", nil, Labels{Upstream: base})
		resp, err := tr.Client().Do(req)
		if err == nil {
			resp.Body.Close()
		}
		held <- err
	}()
	<-entered
	wctx, wcancel := context.WithCancel(ctx)
	errs := make(chan error, 3)
	for i := range 3 {
		go func() {
			req, _ := NewRequest(wctx, http.MethodGet, fmt.Sprintf("%s/waiter%d", base, i), nil, Labels{Upstream: base})
			resp, err := tr.Client().Do(req)
			if err == nil {
				resp.Body.Close()
			}
			errs <- err
		}()
	}
	gauge := func(up string) float64 {
		return metricValue(t, reg, "holoproxy_upstream_connection_waiters", map[string]string{"upstream": up})
	}
	for gauge(base) != 3 {
		if ctx.Err() != nil {
			t.Fatalf("holoproxy_upstream_connection_waiters{upstream=%q} is %v, want 3", base, gauge(base))
		}
		time.Sleep(5 * time.Millisecond)
	}
	if v := gauge("https://proxy-b.test"); v != 0 {
		t.Errorf("an upstream without waiters shows %v", v)
	}
	wcancel()
	for range 3 {
		if err := <-errs; !errors.Is(err, context.Canceled) {
			t.Errorf("waiter whose caller gave up: %v", err)
		}
	}
	if v := gauge(base); v != 0 {
		t.Errorf("after the waiters gave up the gauge is %v", v)
	}
	release()
	if err := <-held; err != nil {
		t.Error(err)
	}
}

// A negative cap is refused with a clear error.
func TestConnCapNegative(t *testing.T) {
	_, err := NewTransport(TransportConfig{MaxConnsPerHost: -1})
	if err == nil || !strings.Contains(err.Error(), "negative") {
		t.Fatalf("NewTransport with MaxConnsPerHost -1: %v", err)
	}
}

// A capped Transport cancels only the context it gives a request, never the caller's: a
// request of NewRequest sent again after its first exchange ended (GOAUTH's retry after a
// 401, a redirect) still goes out, and its context is not done after an exchange.
func TestConnCapRequestSentAgain(t *testing.T) {
	var n atomic.Int64
	o := startOrigin(t, nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) == 1 {
			http.Error(w, "who are you", http.StatusUnauthorized)
			return
		}
		io.WriteString(w, "ok")
	}))
	tr, err := NewTransport(TransportConfig{MaxConnsPerHost: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tr.CloseIdleConnections)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	req, err := NewRequest(ctx, http.MethodGet, "http://127.0.0.1:"+o.port+"/x", nil, Labels{Upstream: "u"})
	if err != nil {
		t.Fatal(err)
	}
	for i, want := range []int{http.StatusUnauthorized, http.StatusOK} {
		send := req // first as made, then again as a copy, as GOAUTH's retry sends it
		if i > 0 {
			send = req.Clone(req.Context())
		}
		resp, err := tr.RoundTrip(send)
		if err != nil {
			t.Fatalf("send %d: %v", i+1, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want {
			t.Errorf("send %d: status %d, want %d", i+1, resp.StatusCode, want)
		}
		if err := req.Context().Err(); err != nil {
			t.Errorf("after send %d the request's context is done: %v", i+1, err)
		}
	}
}

// TestConnWatchStopsWhenEmpty: a request still waiting after the limit is cancelled with
// ErrConnCap, and when the last request stops waiting the watch's timer is stopped at once,
// not left to fire at its next tick (an eighth of the connect timeout), so a capped
// Transport between requests has nothing running or pending.
func TestConnWatchStopsWhenEmpty(t *testing.T) {
	newWaiter := func(cw *connWatch) *connWaiter {
		ctx, cancel := context.WithCancelCause(context.Background())
		t.Cleanup(func() { cancel(nil) })
		return &connWaiter{watch: cw, ctx: ctx, cancel: cancel, upstream: "u", host: "h:443"}
	}
	armed := func(cw *connWatch) bool {
		cw.mu.Lock()
		defer cw.mu.Unlock()
		return cw.armed
	}

	cw := newConnWatch(10*time.Millisecond, 1)
	stuck := newWaiter(cw)
	stuck.getConn("h:443")
	select {
	case <-stuck.ctx.Done():
	case <-time.After(time.Minute): // a bound on waiting, not an expectation
		t.Fatal("a request waiting past the limit was not cancelled")
	}
	if err := context.Cause(stuck.ctx); !errors.Is(err, ErrConnCap) {
		t.Errorf("cause %v, want ErrConnCap", err)
	}
	deadline := time.Now().Add(time.Minute)
	for armed(cw) {
		if time.Now().After(deadline) {
			t.Fatal("the timer is still set after the last waiter was cancelled")
		}
		time.Sleep(time.Millisecond)
	}
	stuck.done() // as the exchange does when it fails

	before := goleak.IgnoreCurrent()
	cw = newConnWatch(time.Hour, 1) // a tick of 7.5 minutes: only done can stop it
	a, b := newWaiter(cw), newWaiter(cw)
	a.getConn("h:443")
	b.getConn("h:443")
	a.getConn("h:443") // a retry while listed: restamped, listed once
	waiting := map[string]int{}
	cw.waiting(waiting)
	if waiting["u"] != 2 {
		t.Errorf("waiting = %v, want 2 of u", waiting)
	}
	a.done()
	a.done()
	if !armed(cw) {
		t.Fatal("the watch stopped with a request still waiting")
	}
	b.done()
	if armed(cw) {
		t.Error("the watch's timer is still set with no request waiting")
	}
	if cw.timer.Stop() {
		t.Error("the timer was still pending with no request waiting")
	}
	goleak.VerifyNone(t, before)
	if a.ctx.Err() != nil || b.ctx.Err() != nil {
		t.Error("a request that got its connection in time was cancelled")
	}
}
