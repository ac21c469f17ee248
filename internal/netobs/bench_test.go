package netobs

import (
	"context"
	"crypto/tls"
	"io"
	"net/http"
	"net/http/httptest"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// benchClients returns a plain, uninstrumented http.Transport client and a netobs client
// (with Metrics as its Sink) sized alike, and the URL of a loopback origin: HTTP/1.1 over
// TCP, or HTTP/2 over TLS when h2 is set. With sameTimeouts the plain transport also has
// the first-byte timeout (ResponseHeaderTimeout) that netobs sets, so that the comparison
// isolates the recording from the cost of having the timeout at all.
func benchClients(b *testing.B, h2, sameTimeouts bool) (plain, obs *http.Client, url string) {
	b.Helper()
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "v1.0.0\nv1.1.0\n")
	}))
	pt := &http.Transport{MaxIdleConns: 512, MaxIdleConnsPerHost: 64, IdleConnTimeout: 90 * time.Second, ForceAttemptHTTP2: true}
	if sameTimeouts {
		pt.ResponseHeaderTimeout = 30 * time.Second
	}
	var cfg TransportConfig
	if h2 {
		srv.EnableHTTP2 = true
		srv.StartTLS()
		roots := srv.Client().Transport.(*http.Transport).TLSClientConfig.RootCAs
		pt.TLSClientConfig = &tls.Config{RootCAs: roots}
		cfg.TLSConfig = &tls.Config{RootCAs: roots}
	} else {
		srv.Start()
	}
	b.Cleanup(srv.Close)
	m, err := NewMetrics(prometheus.NewRegistry())
	if err != nil {
		b.Fatal(err)
	}
	cfg.Sink = m
	tr, err := NewTransport(cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(tr.CloseIdleConnections)
	b.Cleanup(pt.CloseIdleConnections)
	return &http.Client{Transport: pt}, tr.Client(), srv.URL + "/example.test/mod/@v/list"
}

// benchGet makes one request the way holoproxy's callers do: under a deadline (every wait
// in the project takes one) and with Labels.
func benchGet(b *testing.B, c *http.Client, url string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	ctx = WithLabels(ctx, Labels{Upstream: "bench", Kind: "list"})
	if err := get(ctx, c, url, false); err != nil {
		b.Fatal(err)
	}
}

// BenchmarkRequest measures one sequential request on a kept-alive loopback connection,
// through a plain http.Transport and through the netobs Transport, in the same run.
func BenchmarkRequest(b *testing.B) {
	for _, proto := range []struct {
		name string
		h2   bool
	}{{"h1", false}, {"h2", true}} {
		plain, obs, url := benchClients(b, proto.h2, false)
		b.Run(proto.name+"/plain", func(b *testing.B) {
			for b.Loop() {
				benchGet(b, plain, url)
			}
		})
		b.Run(proto.name+"/netobs", func(b *testing.B) {
			for b.Loop() {
				benchGet(b, obs, url)
			}
		})
	}
}

// BenchmarkOverhead alternates a plain and an instrumented request in every iteration
// (swapping which goes first), so both see the same machine load, and reports the median
// duration of each and their ratio netobs/plain ("ratio"; 1.05 is 5 % overhead). Medians,
// not means: on a shared machine a few requests stall for scheduling reasons unrelated to
// either transport.
//
// Sub-benchmarks: h1 (HTTP/1.1 over TCP) and h2 (HTTP/2 over TLS), each against a default
// http.Transport ("vs-default") and against one with the same first-byte timeout
// ("vs-same-timeouts", the cost of the recording alone).
func BenchmarkOverhead(b *testing.B) {
	for _, proto := range []struct {
		name     string
		h2, same bool
	}{
		{"h1/vs-default", false, false}, {"h1/vs-same-timeouts", false, true},
		{"h2/vs-default", true, false}, {"h2/vs-same-timeouts", true, true},
	} {
		b.Run(proto.name, func(b *testing.B) {
			plain, obs, url := benchClients(b, proto.h2, proto.same)
			benchGet(b, plain, url) // open both connections outside the measurement
			benchGet(b, obs, url)
			tp := make([]time.Duration, 0, b.N)
			to := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				first, second := plain, obs
				if i%2 == 1 {
					first, second = obs, plain
				}
				t0 := time.Now()
				benchGet(b, first, url)
				t1 := time.Now()
				benchGet(b, second, url)
				t2 := time.Now()
				if i%2 == 0 {
					tp, to = append(tp, t1.Sub(t0)), append(to, t2.Sub(t1))
				} else {
					to, tp = append(to, t1.Sub(t0)), append(tp, t2.Sub(t1))
				}
			}
			b.StopTimer()
			slices.Sort(tp)
			slices.Sort(to)
			mp, mo := tp[len(tp)/2], to[len(to)/2]
			b.ReportMetric(float64(mp.Nanoseconds()), "plain-ns/req")
			b.ReportMetric(float64(mo.Nanoseconds()), "netobs-ns/req")
			b.ReportMetric(float64(mo)/float64(mp), "ratio")
		})
	}
}
