package report

import (
	"math"
	"slices"
	"testing"
	"time"

	"github.com/holoproxy/holoproxy/internal/netobs"
)

var t0 = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)

const ms = time.Millisecond

// at builds a Sample of upstream u starting at off with the given TTFB and transfer.
func at(u string, off, ttfb, transfer time.Duration) netobs.Sample {
	return netobs.Sample{Upstream: u, URL: u + "/m/@v/list", Start: t0.Add(off), TTFB: ttfb, Transfer: transfer,
		Total: ttfb + transfer, Status: 200, Reused: true}
}

func TestQuantiles(t *testing.T) {
	var hundred []time.Duration
	for i := 100; i >= 1; i-- {
		hundred = append(hundred, time.Duration(i)*ms)
	}
	tests := []struct {
		name string
		in   []time.Duration
		want Quantiles
	}{
		{"empty", nil, Quantiles{}},
		{"one", []time.Duration{7 * ms}, Quantiles{1, 7 * ms, 7 * ms, 7 * ms}},
		{"hundred, nearest rank", hundred, Quantiles{100, 50 * ms, 99 * ms, 100 * ms}},
		{"two", []time.Duration{3 * ms, 1 * ms}, Quantiles{2, 1 * ms, 3 * ms, 3 * ms}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := quantiles(slices.Clone(tc.in)); got != tc.want {
				t.Errorf("quantiles = %+v, want %+v", got, tc.want)
			}
		})
	}
}

func TestPeak(t *testing.T) {
	a := "https://proxy-a.test"
	tests := []struct {
		name    string
		samples []netobs.Sample
		want    int
	}{
		{"none", nil, 0},
		{"back to back do not overlap", []netobs.Sample{at(a, 0, 10*ms, 0), at(a, 10*ms, 10*ms, 0), at(a, 20*ms, 10*ms, 0)}, 1},
		{"chain of overlaps", []netobs.Sample{at(a, 0, 10*ms, 0), at(a, 5*ms, 10*ms, 0), at(a, 10*ms, 10*ms, 0)}, 2},
		{"nested", []netobs.Sample{at(a, 0, 10*ms, 0), at(a, 1*ms, 8*ms, 0), at(a, 2*ms, 6*ms, 0)}, 3},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := peak(tc.samples, func(*netobs.Sample) bool { return true }); got != tc.want {
				t.Errorf("peak = %d, want %d", got, tc.want)
			}
		})
	}
}

func TestSpans(t *testing.T) {
	tests := []struct {
		name string
		s    netobs.Sample
		want []span
	}{
		{"reused", netobs.Sample{TTFB: 5 * ms, Transfer: 2 * ms, Wrote: ms},
			[]span{{netobs.PhaseTTFB, ms, 6 * ms}, {netobs.PhaseTransfer, 6 * ms, 8 * ms}}},
		{"new connection, wrote unknown", netobs.Sample{DNS: ms, Connect: 2 * ms, TLS: 3 * ms, TTFB: 4 * ms},
			[]span{{netobs.PhaseDNS, 0, ms}, {netobs.PhaseConnect, ms, 3 * ms}, {netobs.PhaseTLS, 3 * ms, 6 * ms}, {netobs.PhaseTTFB, 6 * ms, 10 * ms}}},
		{"failed connect", netobs.Sample{Connect: 9 * ms}, []span{{netobs.PhaseConnect, 0, 9 * ms}}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := spans(&tc.s); !slices.Equal(got, tc.want) {
				t.Errorf("spans = %v, want %v", got, tc.want)
			}
		})
	}
}

func TestSummarizeUpstream(t *testing.T) {
	a, b := "https://proxy-a.test", "https://proxy-b.test"
	newConn := func(s netobs.Sample, version, group string, resumed bool) netobs.Sample {
		s.Reused, s.DNS, s.Connect, s.TLS = false, 2*ms, 10*ms, 20*ms
		s.Host, s.TLSVersion, s.TLSCipher, s.TLSCurve, s.TLSResumed = "Proxy-A.test:443", version, "TLS_AES_128_GCM_SHA256", group, resumed
		return s
	}
	withBytes := func(s netobs.Sample, n int64) netobs.Sample { s.Bytes = n; return s }
	status := func(s netobs.Sample, code int, class string) netobs.Sample {
		s.Status, s.ErrClass = code, class
		return s
	}
	run := Run{
		Name: "r",
		Samples: []netobs.Sample{
			newConn(withBytes(at(a, 0, 50*ms, 500*ms), 1_000_000), "TLS 1.3", "X25519MLKEM768", false),
			newConn(withBytes(at(a, 0, 50*ms, 500*ms), 1_000_000), "TLS 1.2", "P-256", true),
			status(at(a, 600*ms, 5*ms, 0), 0, netobs.ClassTCPReset),
			status(at(a, 700*ms, 5*ms, 0), 503, ""),
			at(b, 800*ms, 5*ms, 0),
		},
		DNSQueries: []DNSQuery{
			{Backend: "udp://10.0.0.53:53", Name: "proxy-a.test.", Rcode: "NOERROR", Latency: 4 * ms},
			{Backend: "udp://10.0.0.53:53", Name: "PROXY-A.TEST", Rcode: "NOERROR", Cached: true},
			{Backend: "udp://10.0.0.53:53", Name: "proxy-b.test", Rcode: "NXDOMAIN", Latency: 9 * ms},
		},
	}
	got := Summarize(Trace{Runs: []Run{run}}).Runs[0]
	if len(got.Upstreams) != 2 || got.Upstreams[0].Upstream != a || got.Upstreams[1].Upstream != b {
		t.Fatalf("upstreams = %+v, want proxy-a then proxy-b", got.Upstreams)
	}
	u := got.Upstreams[0]
	checks := []struct {
		name      string
		got, want any
	}{
		{"exchanges", u.Exchanges, 4},
		{"ok", u.OK, 2},
		{"errors", u.Errors, []Count{{"http_503", 1}, {"tcp_reset", 1}}},
		{"dns queries", u.DNSQueries, 2},
		{"dns cached", u.DNSCached, 1},
		{"dns query p99", u.DNSQuery.P99, 4 * ms},
		{"dns wait", u.DNS, Quantiles{2, 2 * ms, 2 * ms, 2 * ms}},
		{"connect n", u.Connect.N, 2},
		{"tls versions", u.TLSVersions, []Count{{"TLS 1.2", 1}, {"TLS 1.3", 1}}},
		{"tls groups", u.TLSGroups, []Count{{"P-256", 1}, {"X25519MLKEM768", 1}}},
		{"tls resumed", u.TLSResumed, 1},
		{"bytes", u.Bytes, int64(2_000_000)},
		{"MB/s", math.Round(u.MBps*1000) / 1000, 2.0},
		{"new conns", u.NewConns, 2},
		{"reused", u.Reused, 2},
		{"reuse rate", u.ReuseRate, 0.5},
		{"peak", u.PeakConns, 2},
		{"run peak", got.PeakConns, 2},
		{"run dns rcodes", got.DNSRcodes, []Count{{"NOERROR", 2}, {"NXDOMAIN", 1}}},
	}
	for _, c := range checks {
		if !equal(c.got, c.want) {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
}

func equal(a, b any) bool {
	switch x := a.(type) {
	case []Count:
		return slices.Equal(x, b.([]Count))
	}
	return a == b
}

func TestSharesAndVerdict(t *testing.T) {
	a, b := "https://proxy-a.test", "https://proxy-b.test"
	fall := at(a, 0, 30*ms, 0)
	fall.Status = 404
	fall.URL = a + "/corp.test/x/@v/v1.0.0.mod"
	after := at(b, 30*ms, 70*ms, 0)
	after.URL = b + "/corp.test/x/@v/v1.0.0.mod"
	notFall := at(b, 100*ms, 10*ms, 0) // a 404 at the last upstream is an answer, not a fall-through
	notFall.Status = 404
	tests := []struct {
		name        string
		run         Run
		want        map[string]float64 // "upstream cost" -> fraction
		wantVerdict string
	}{
		{
			name: "overlap split equally, rest idle",
			run:  Run{Samples: []netobs.Sample{at(a, 0, 100*ms, 0), at(b, 0, 100*ms, 0)}, Wall: 200 * ms},
			want: map[string]float64{a + " ttfb": 0.25, b + " ttfb": 0.25, " idle": 0.5},
			wantVerdict: "50 % of wall time is outside upstream requests (client work); " +
				"25 % is TTFB at proxy-a.test",
		},
		{
			name:        "phases in sequence, wall from samples",
			run:         Run{Samples: []netobs.Sample{at(a, 0, 60*ms, 40*ms)}},
			want:        map[string]float64{a + " ttfb": 0.6, a + " transfer": 0.4},
			wantVerdict: "60 % of wall time is TTFB at proxy-a.test; 40 % is transfer from proxy-a.test",
		},
		{
			name:        "fall-through after 404",
			run:         Run{Samples: []netobs.Sample{fall, after, notFall}, Wall: 110 * ms},
			want:        map[string]float64{a + " fall-through": 30.0 / 110, b + " ttfb": 80.0 / 110},
			wantVerdict: "73 % of wall time is TTFB at proxy-b.test; 27 % is fall-through after 404/410 at proxy-a.test",
		},
		{
			name: "connection set-up adds up across phases",
			run: Run{Samples: []netobs.Sample{{Upstream: a, Start: t0, DNS: 10 * ms, Connect: 20 * ms, TLS: 20 * ms,
				TTFB: 50 * ms, Total: 100 * ms, Status: 200}}},
			want: map[string]float64{a + " dns": 0.1, a + " connect": 0.2, a + " tls": 0.2, a + " ttfb": 0.5},
			wantVerdict: "50 % of wall time is TTFB at proxy-a.test; 20 % is TCP connect to proxy-a.test; " +
				"50 % is setting up new connections (DNS, TCP connect, TLS)",
		},
		{
			name:        "set-up alone is not repeated",
			run:         Run{Samples: []netobs.Sample{{Upstream: a, Start: t0, Connect: 3 * time.Second, Total: 3 * time.Second, ErrClass: netobs.ClassTCPTimeout}}},
			want:        map[string]float64{a + " connect": 1},
			wantVerdict: "100 % of wall time is TCP connect to proxy-a.test",
		},
		{
			name:        "no samples",
			run:         Run{Wall: time.Second},
			want:        map[string]float64{" idle": 1},
			wantVerdict: "100 % of wall time is outside upstream requests (client work)",
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rs := Summarize(Trace{Runs: []Run{tc.run}}).Runs[0]
			got := map[string]float64{}
			var sum float64
			for _, s := range rs.Shares {
				got[s.Upstream+" "+s.Cost] = s.Fraction
				sum += s.Fraction
			}
			if math.Abs(sum-1) > 1e-9 {
				t.Errorf("shares add up to %v, want 1", sum)
			}
			for k, w := range tc.want {
				if math.Abs(got[k]-w) > 1e-9 {
					t.Errorf("share %q = %v, want %v (all: %v)", k, got[k], w, got)
				}
			}
			if len(got) != len(tc.want) {
				t.Errorf("shares = %v, want exactly %v", got, tc.want)
			}
			if rs.Verdict != tc.wantVerdict {
				t.Errorf("verdict = %q\nwant      %q", rs.Verdict, tc.wantVerdict)
			}
		})
	}
}

func TestCompare(t *testing.T) {
	tests := []struct {
		name string
		runs []Run
		want string
	}{
		{"single run", []Run{{Name: "a", Wall: time.Second}}, ""},
		{"two runs", []Run{{Name: "fresh", Wall: 3 * time.Second}, {Name: "shared", Wall: time.Second}},
			"fastest: shared (1.00s); fresh 3.00s (3.0× slower)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			if got := Summarize(Trace{Runs: tc.runs}).Comparison; got != tc.want {
				t.Errorf("comparison = %q, want %q", got, tc.want)
			}
		})
	}
}
