package main

import (
	"context"
	"crypto/tls"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/holoproxy/holoproxy/internal/lab"
	"github.com/holoproxy/holoproxy/internal/lab/modtree"
	"github.com/holoproxy/holoproxy/internal/netobs"
	"github.com/holoproxy/holoproxy/internal/report"
	"github.com/holoproxy/holoproxy/internal/report/headless"
)

// screenshotEnv, set to 1, makes TestTraceLab replace docs/trace-report.png with a
// screenshot of the HTML report of its run.
const screenshotEnv = "HOLOPROXY_UPDATE_SCREENSHOT"

// builtHoloproxy builds cmd/holoproxy into a directory of t's and returns the binary's path.
func builtHoloproxy(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "holoproxy")
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Minute)
	defer cancel()
	if out, err := exec.CommandContext(ctx, "go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	return bin
}

// The lab's shape. Link delays apply to what a host sends, so proxy-b's 80 ms make every
// round trip to it 80 ms longer: 40 ms more each way.
const (
	labRTTB     = 80 * time.Millisecond
	labDNSDelay = 50 * time.Millisecond
	labModules  = 10
)

// labTrace is one run of holoproxy trace in the lab's client host.
type labTrace struct {
	code   int
	stderr string
	trace  report.Trace
	// conns and handshakes are what the two origins saw during the run.
	conns, handshakes int
}

// TestTraceLab runs the built holoproxy trace in a lab: proxy-a (TLS 1.2 only, HTTP/1.1,
// answers 404 for half of the modules and closes its connection after every .zip, as some
// HTTP/1.1 servers do) and proxy-b (TLS 1.3, HTTP/2, 80 ms more round trip), and a DNS
// server that answers 50 ms late. The JSON reports must put each cost on the right phase
// and host.
func TestTraceLab(t *testing.T) {
	l := lab.New(t, lab.Options{})
	bin := builtHoloproxy(t)
	client, hostA, hostB := l.MustAddHost(t, "client"), l.MustAddHost(t, "proxy-a"), l.MustAddHost(t, "proxy-b")
	dns, err := l.DNS()
	if err != nil {
		t.Fatal(err)
	}
	dns.SetDelay("", labDNSDelay)

	tree := filepath.Join(t.TempDir(), "tree")
	mods, _ := modtree.Graph("mods.test/lab", labModules, 2, 2)
	if err := modtree.Write(tree, mods); err != nil {
		t.Fatal(err)
	}
	var args []string
	notFound := map[string]bool{} // proxy-a lacks every other module path
	missing := 0                  // module versions of the workload proxy-a lacks
	for i, m := range mods {
		args = append(args, m.Path+"@"+m.Version)
		if i%2 == 0 {
			notFound[m.Path] = true
		}
		if notFound[m.Path] {
			missing++
		}
	}
	files := http.FileServer(http.Dir(tree))
	originA, err := hostA.ServeOrigin(lab.OriginConfig{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if strings.HasSuffix(r.URL.Path, ".zip") {
				w.Header().Set("Connection", "close")
			}
			files.ServeHTTP(w, r)
		}),
		TLSVersion: tls.VersionTLS12,
		Faults:     lab.Faults{NotFound: notFound},
	})
	if err != nil {
		t.Fatal(err)
	}
	originB, err := hostB.ServeOrigin(lab.OriginConfig{Tree: tree, HTTP2: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := hostB.SetLink(lab.Link{Delay: labRTTB}); err != nil {
		t.Fatal(err)
	}
	urlA, urlB := originA.URL(), originB.URL()
	udp := "udp://" + dns.Addr().String()
	dir := t.TempDir()

	run := func(name string, extra ...string) labTrace {
		t.Helper()
		jsonPath := filepath.Join(dir, name+".json")
		full := append([]string{"trace", "--proxy=" + urlA + "," + urlB, "--ca-file=" + l.CA().CertFile(),
			"--json=" + jsonPath, "--progress=off"}, extra...)
		full = append(full, args...)
		ctx, cancel := context.WithTimeout(t.Context(), 3*time.Minute)
		defer cancel()
		cmd := client.Command(ctx, bin, full...)
		// --ca-file alone must make the lab's certificates trusted.
		cmd.Env = slices.DeleteFunc(cmd.Env, func(kv string) bool { return strings.HasPrefix(kv, "SSL_CERT_FILE=") })
		var stderr strings.Builder
		cmd.Stderr = &stderr
		a0, b0 := originA.Stats(), originB.Stats()
		out, err := cmd.Output()
		lt := labTrace{stderr: stderr.String()}
		if ee, ok := err.(*exec.ExitError); ok {
			lt.code = ee.ExitCode()
		} else if err != nil {
			t.Fatalf("holoproxy %v: %v", full, err)
		}
		// The origins count a handshake when their side of it ends, which under load can
		// come well after the client's process has exited: read them once they have been
		// still for half a second (a loaded machine once left one handshake uncounted
		// after 100 ms of stillness).
		a1, b1 := originA.Stats(), originB.Stats()
		still := time.Now()
		for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline) && time.Since(still) < 500*time.Millisecond; {
			time.Sleep(50 * time.Millisecond)
			a2, b2 := originA.Stats(), originB.Stats()
			if a2.Conns != a1.Conns || a2.Handshakes != a1.Handshakes || b2.Conns != b1.Conns || b2.Handshakes != b1.Handshakes {
				a1, b1, still = a2, b2, time.Now()
			}
		}
		lt.conns = a1.Conns - a0.Conns + b1.Conns - b0.Conns
		lt.handshakes = a1.Handshakes - a0.Handshakes + b1.Handshakes - b0.Handshakes
		lt.trace = readTraceJSON(t, jsonPath)
		t.Logf("holoproxy trace %s: exit %d, origins saw %d connections and %d handshakes\n%s%s", name, lt.code, lt.conns, lt.handshakes, out, lt.stderr)
		return lt
	}

	// 1. Each proxy alone and the chain, with a runtime trace and the HTML report.
	htmlPath, rtPath := filepath.Join(dir, "chain.html"), filepath.Join(dir, "chain.trace")
	chainTrace := run("chain", "--dns="+udp, "--html="+htmlPath, "--runtime-trace="+rtPath)
	// 2. Fresh transports for each of three passes against one shared transport.
	compareTrace := run("transports", "--dns="+udp, "--compare=transports", "--count=3")
	// 3. The system resolver (the lab's resolv.conf) against the lab's server over UDP.
	dnsTrace := run("dns", "--compare=dns=system,"+udp)
	t.Logf("lab: %s", l.Summary())

	for name, lt := range map[string]labTrace{"chain": chainTrace, "transports": compareTrace, "dns": dnsTrace} {
		if lt.code != exitOK {
			t.Errorf("%s: exit %d; want 0 (the chain has every module)\n%s", name, lt.code, lt.stderr)
		}
	}

	t.Run("fall-through", func(t *testing.T) {
		tr := chainTrace.trace
		want := 3 * missing // .info, .mod and .zip of every module version proxy-a lacks
		chain := traceRun(t, tr, "chain")
		if chain.Failed != 0 || chain.FallThroughs != want {
			t.Errorf("chain: %d failed, %d fall-throughs; want 0 and %d", chain.Failed, chain.FallThroughs, want)
		}
		if alone := traceRun(t, tr, urlA+" alone"); alone.Failed != missing {
			t.Errorf("proxy-a alone: %d failed; want %d, one per module version it lacks", alone.Failed, missing)
		}
		for _, rs := range report.Summarize(tr).Runs {
			if rs.Name != chain.Name {
				continue
			}
			for _, u := range rs.Upstreams {
				if u.Upstream == urlA && u.FallThroughs != want {
					t.Errorf("chain summary: proxy-a %d fall-throughs; want %d", u.FallThroughs, want)
				}
			}
		}
	})

	samples := func(traces ...report.Trace) []netobs.Sample {
		var out []netobs.Sample
		for _, tr := range traces {
			for _, r := range tr.Runs {
				out = append(out, r.Samples...)
			}
		}
		return out
	}
	all := samples(chainTrace.trace, compareTrace.trace)

	t.Run("round trips", func(t *testing.T) {
		var connA, connB []time.Duration
		for _, s := range all {
			if s.Connect <= 0 {
				continue
			}
			switch s.Upstream {
			case urlA:
				connA = append(connA, s.Connect)
			case urlB:
				connB = append(connB, s.Connect)
			}
		}
		t.Logf("connect proxy-a %v", connA)
		t.Logf("connect proxy-b %v", connB)
		checkMedian(t, "proxy-b connect", connB, labRTTB, 3)
		var tlsB, ttfbB []time.Duration
		for _, s := range all {
			if s.Upstream == urlB && s.TLS > 0 {
				tlsB = append(tlsB, s.TLS)
			}
			if s.Upstream == urlB && s.TTFB > 0 {
				ttfbB = append(ttfbB, s.TTFB)
			}
		}
		checkMedian(t, "proxy-b TLS 1.3 handshake (one round trip)", tlsB, labRTTB, 3)
		checkMedian(t, "proxy-b time to first byte (one round trip)", ttfbB, labRTTB, 10)
		if m := median(connA); len(connA) == 0 || m > labRTTB/5 {
			t.Errorf("proxy-a connect median %v over %d samples; want well under proxy-b's %v (no delay)", m, len(connA), labRTTB)
		}
	})

	t.Run("dns", func(t *testing.T) {
		var miss, hit []time.Duration
		for _, s := range all {
			switch s.DNSCache {
			case netobs.CacheMiss:
				miss = append(miss, s.DNS)
			case netobs.CacheHit:
				hit = append(hit, s.DNS)
			}
		}
		t.Logf("dns wait: miss %v, hit %v", miss, hit)
		checkMedian(t, "dns wait on a cache miss", miss, labDNSDelay, 3)
		if m := median(hit); len(hit) == 0 || m > 5*time.Millisecond {
			t.Errorf("dns wait on a cache hit: median %v over %d samples; want ~0", m, len(hit))
		}
		var wire, cached []time.Duration
		for _, tr := range []report.Trace{chainTrace.trace, compareTrace.trace} {
			for _, r := range tr.Runs {
				for _, q := range r.DNSQueries {
					if q.Cached {
						cached = append(cached, q.Latency)
					} else {
						wire = append(wire, q.Latency)
					}
				}
			}
		}
		checkMedian(t, "dns query on the wire", wire, labDNSDelay, 3)
		if m := median(cached); len(cached) == 0 || m > 5*time.Millisecond {
			t.Errorf("dns query answered by the cache: median %v over %d; want ~0", m, len(cached))
		}
	})

	t.Run("tls", func(t *testing.T) {
		versions := map[string]map[string]int{urlA: {}, urlB: {}}
		for _, s := range all {
			if s.TLS > 0 && versions[s.Upstream] != nil {
				versions[s.Upstream][s.TLSVersion]++
			}
		}
		t.Logf("tls versions: proxy-a %v, proxy-b %v", versions[urlA], versions[urlB])
		if v := versions[urlA]; len(v) != 1 || v["TLS 1.2"] == 0 {
			t.Errorf("proxy-a handshakes by version %v; want TLS 1.2 only", v)
		}
		if v := versions[urlB]; len(v) != 1 || v["TLS 1.3"] == 0 {
			t.Errorf("proxy-b handshakes by version %v; want TLS 1.3 only", v)
		}
	})

	t.Run("compare transports", func(t *testing.T) {
		tr := compareTrace.trace
		count := func(r report.Run) (handshakes, wire int) {
			for _, s := range r.Samples {
				if s.TLS > 0 {
					handshakes++
				}
			}
			for _, q := range r.DNSQueries {
				if !q.Cached {
					wire++
				}
			}
			return handshakes, wire
		}
		fh, fq := count(traceRun(t, tr, "fresh transports"))
		sh, sq := count(traceRun(t, tr, "shared transport"))
		t.Logf("fresh: %d handshakes, %d DNS queries; shared: %d handshakes, %d DNS queries; origins saw %d handshakes in all", fh, fq, sh, sq, compareTrace.handshakes)
		if sh >= fh || sq >= fq {
			t.Errorf("shared transport: %d handshakes, %d DNS queries; want fewer of both than fresh transports (%d, %d)", sh, sq, fh, fq)
		}
	})

	t.Run("compare dns", func(t *testing.T) {
		tr := dnsTrace.trace
		for _, c := range []struct{ run, backend string }{{"dns=system", "system"}, {"dns=" + udp, udp}} {
			r := traceRun(t, tr, c.run)
			if r.Failed != 0 || len(r.DNSQueries) == 0 {
				t.Errorf("%s: %d failed, %d DNS queries; want 0 and some", c.run, r.Failed, len(r.DNSQueries))
			}
			for _, q := range r.DNSQueries {
				if q.Backend != c.backend {
					t.Errorf("%s: a query went to %q", c.run, q.Backend)
					break
				}
			}
		}
	})

	t.Run("runtime trace", func(t *testing.T) {
		requests := 0
		for _, r := range chainTrace.trace.Runs {
			requests += r.Requests
		}
		got := readRuntimeTrace(t, rtPath)
		t.Logf("requests %d, tasks %d, regions %v; origins saw %d connections, %d handshakes", requests, got.tasks, got.regions, chainTrace.conns, chainTrace.handshakes)
		if got.tasks != requests {
			t.Errorf("%d request tasks; want one per request (%d)", got.tasks, requests)
		}
		for _, w := range []struct {
			region string
			n      int
		}{{"dns", chainTrace.conns}, {"connect", chainTrace.conns}, {"tls", chainTrace.handshakes}} {
			if got.regions[w.region] != w.n || w.n == 0 {
				t.Errorf("%d %s regions; want one per new connection (%d)", got.regions[w.region], w.region, w.n)
			}
		}
		if len(got.outside) > 0 {
			t.Errorf("%d regions outside any request's task: %q", len(got.outside), got.outside)
		}
	})

	if os.Getenv(screenshotEnv) == "1" {
		ctx, cancel := context.WithTimeout(t.Context(), 2*time.Minute)
		defer cancel()
		png := filepath.Join("..", "..", "docs", "trace-report.png")
		if err := headless.ScreenshotFile(ctx, htmlPath, png, headless.Options{Width: 1440, Height: 900}); err != nil {
			t.Fatalf("screenshot: %v", err)
		}
		t.Logf("wrote %s", png)
	}
}

// median returns the median of ds (the lower middle one for an even count), zero for none.
func median(ds []time.Duration) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	return s[(len(s)-1)/2]
}

// checkMedian fails t unless ds holds at least min values whose median is within 20 % of
// want.
func checkMedian(t *testing.T, what string, ds []time.Duration, want time.Duration, min int) {
	t.Helper()
	m := median(ds)
	if len(ds) < min {
		t.Errorf("%s: %d samples; want at least %d for a median", what, len(ds), min)
		return
	}
	t.Logf("%s: median %v over %d samples (want %v ± 20 %%)", what, m, len(ds), want)
	if lo, hi := want*8/10, want*12/10; m < lo || m > hi {
		t.Errorf("%s: median %v over %d samples; want %v ± 20 %%", what, m, len(ds), want)
	}
}
