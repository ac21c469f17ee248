package health

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/holoproxy/holoproxy/internal/netobs"
)

// observingTransport stands in for netobs.Transport: it turns each exchange into a Sample
// for the Scorer.
type observingTransport struct {
	sink netobs.Sink
	rt   http.RoundTripper
}

func (o observingTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	l := netobs.LabelsFrom(req.Context())
	start := time.Now()
	resp, err := o.rt.RoundTrip(req)
	s := netobs.Sample{Upstream: l.Upstream, Kind: l.Kind, Start: start, TTFB: time.Since(start)}
	if err != nil {
		s.ErrClass = netobs.ClassOf(err)
	} else {
		s.Status = resp.StatusCode
	}
	o.sink.Observe(s)
	return resp, err
}

// TestProberOpensAndCloses: probes alone open the circuit of an upstream that fails and
// close it through half-open once it answers again.
func TestProberOpensAndCloses(t *testing.T) {
	var failing atomic.Bool
	var probes atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		probes.Add(1)
		if r.URL.Path != "/health/ping" {
			t.Errorf("probe path %q", r.URL.Path)
		}
		if failing.Load() {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		http.NotFound(w, r) // a 404 is alive
	}))
	defer srv.Close()

	s, err := New(Config{BackoffMin: 20 * time.Millisecond, BackoffMax: 40 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	s.Track(srv.URL)
	hc := &http.Client{Transport: observingTransport{sink: s, rt: http.DefaultTransport}}
	p := &Prober{Client: hc, Scorer: s, Upstreams: []string{srv.URL}, Path: "health/ping",
		Interval: 10 * time.Millisecond, FastInterval: 5 * time.Millisecond, Timeout: 5 * time.Second}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- p.Run(ctx) }()
	defer func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
	}()

	waitState := func(want State) {
		t.Helper()
		deadline := time.Now().Add(20 * time.Second)
		for s.State(srv.URL) != want {
			if time.Now().After(deadline) {
				t.Fatalf("state %s, want %s; transitions %+v", s.State(srv.URL), want, s.Transitions())
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	failing.Store(true)
	waitState(StateUnhealthy)
	failing.Store(false)
	waitState(StateHealthy)

	var path []State
	for _, tr := range s.Transitions() {
		path = append(path, tr.To)
	}
	// Half-open trials may fail while the server was still failing; the last three
	// transitions must be open, half-open, healthy.
	if n := len(path); n < 3 || path[n-3] != StateUnhealthy || path[n-2] != StateHalfOpen || path[n-1] != StateHealthy {
		t.Fatalf("transitions %v, want to end unhealthy, half-open, healthy", path)
	}
	if probes.Load() < 6 {
		t.Fatalf("%d probes, want at least 6", probes.Load())
	}
}

// TestProberTimeoutIsFailure: a probe to an upstream that never answers fails by its own
// timeout, reported as a timeout rather than ignored as a cancellation.
func TestProberTimeoutIsFailure(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close() // accepts into the backlog, never answers
	up := "http://" + ln.Addr().String()
	s, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	p := &Prober{Client: &http.Client{}, Scorer: s, Upstreams: []string{up}, Timeout: 20 * time.Millisecond, Report: true}
	for range 3 {
		if err := p.probe(context.Background(), up); err == nil {
			t.Fatal("probe of a silent upstream succeeded")
		}
	}
	st := s.Statuses()[0]
	if st.State != StateUnhealthy || st.ErrorsByClass[netobs.ClassTimeout] != 3 {
		t.Fatalf("status %+v, want unhealthy after 3 timeouts", st)
	}
}

// TestProberFreshConnections: with CloseIdle, every probe round dials anew.
func TestProberFreshConnections(t *testing.T) {
	var conns atomic.Int64
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNoContent)
	}))
	srv.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateNew {
			conns.Add(1)
		}
	}
	srv.Start()
	defer srv.Close()
	s, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	tr := &http.Transport{}
	defer tr.CloseIdleConnections()
	var rounds atomic.Int64
	p := &Prober{Client: &http.Client{Transport: tr}, Scorer: s, Upstreams: []string{srv.URL}, Report: true,
		Interval: time.Millisecond, FastInterval: time.Millisecond,
		CloseIdle: func() { rounds.Add(1); tr.CloseIdleConnections() }}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { p.Run(ctx); close(done) }()
	deadline := time.Now().Add(20 * time.Second)
	for rounds.Load() < 5 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	<-done
	// Each round closed the previous probe's connection: at least one dial per completed
	// round but the last.
	if r, c := rounds.Load(), conns.Load(); r < 5 || c < r-1 {
		t.Fatalf("%d rounds, %d connections; want at least 5 rounds and a dial per round", r, c)
	}
}

// TestProbeSampleLabels: a probe through the observed transport is recorded as the
// upstream's, of kind "probe", so its figures land on the right upstream's metrics.
func TestProbeSampleLabels(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()
	s, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	var got []netobs.Sample
	sink := netobs.SinkFunc(func(smp netobs.Sample) {
		mu.Lock()
		got = append(got, smp)
		mu.Unlock()
	})
	tr, err := netobs.NewTransport(netobs.TransportConfig{Sink: sink})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.CloseIdleConnections()
	p := &Prober{Client: tr.Client(), Scorer: s, Upstreams: []string{srv.URL}}
	if err := p.probe(context.Background(), srv.URL); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(got) != 1 || got[0].Upstream != srv.URL || got[0].Kind != "probe" || got[0].Status != http.StatusNoContent {
		t.Fatalf("Samples %+v; want one of upstream %s, kind probe, status 204", got, srv.URL)
	}
}
