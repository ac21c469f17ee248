package e2e

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"runtime"
	"strings"
	"testing"

	"github.com/holoproxy/holoproxy/internal/checksum/sumdbtest"
	"github.com/holoproxy/holoproxy/internal/lab/modtree"
)

// TestServeObservability runs holoproxy serve (the binary) against an upstream named by
// host name, so the shared resolver is used: an answer filled from the upstream carries
// Server-Timing with every phase and the upstream, a cached one does not; /metrics holds
// the server's, the upstream and DNS, the checksum, the Go and the process metrics; at
// debug level every upstream exchange is logged with its whole Sample.
func TestServeObservability(t *testing.T) {
	mods := []modtree.Module{{Path: "mods.test/obs", Version: "v1.0.0"}}
	db := sumdbtest.New(t, mods)
	org := newOrigin(t, mods)
	u, err := url.Parse(org.URL)
	if err != nil {
		t.Fatal(err)
	}
	upstream := "http://localhost:" + u.Port()
	p := startHoloproxy(t, append([]string{"--cache-dir=" + t.TempDir(), "--upstream=" + upstream,
		"--log-level=debug", "--dns=system", "--dns-min-ttl=1s", "--dns-max-ttl=1m"}, sumdbArgs(db, "")...), nil)

	const key = "mods.test/obs/@v/v1.0.0.mod"
	status, body, h := get(t, "http://"+p.addr+"/"+key)
	if status != http.StatusOK {
		t.Fatalf("GET %s: %d %s", key, status, body)
	}
	st := h.Get("Server-Timing")
	for _, want := range []string{"dns;dur=", "connect;dur=", "tls;dur=", "ttfb;dur=", "transfer;dur=", fmt.Sprintf("upstream;desc=%q", upstream)} {
		if !strings.Contains(st, want) {
			t.Errorf("miss: Server-Timing %q lacks %q", st, want)
		}
	}
	status, _, h = get(t, "http://"+p.addr+"/"+key)
	if status != http.StatusOK || h.Get("X-Holoproxy-Cache") != "hit" {
		t.Fatalf("second GET: %d, cache %q; want a hit", status, h.Get("X-Holoproxy-Cache"))
	}
	if st := h.Get("Server-Timing"); st != "" {
		t.Errorf("hit carries Server-Timing %q; want none", st)
	}

	// The dashboard's document names the running version and the Go that built it.
	var doc struct {
		Version string `json:"version"`
	}
	if _, body, _ := get(t, "http://"+p.addr+"/api/chain"); json.Unmarshal(body, &doc) != nil || !strings.HasSuffix(doc.Version, " "+runtime.Version()) {
		t.Errorf("/api/chain version %q; want the build's version and %s", doc.Version, runtime.Version())
	}
	fam := families(scrape(t, p.addr))
	for _, name := range []string{
		"holoproxy_server_cache_answers_total", "holoproxy_server_fill_attempts_total",
		"holoproxy_upstream_requests_total", "holoproxy_upstream_phase_seconds_bucket",
		"holoproxy_dns_queries_total",
		"holoproxy_checksum_verification_enabled", "holoproxy_checksum_verifications_total",
		"holoproxy_sumdb_proxy_answers_total",
		"go_goroutines", "process_cpu_seconds_total", "go_build_info", "go_info",
	} {
		if !fam[name] {
			t.Errorf("/metrics lacks %s", name)
		}
	}
	exchange := waitLog(p, `msg="upstream exchange"`, "sample.kind=mod")
	for _, want := range []string{"level=DEBUG", "sample.upstream=" + upstream, "sample.status=200", "sample.ttfb="} {
		if !strings.Contains(exchange, want) {
			t.Errorf("debug line of the .mod exchange %q lacks %q", exchange, want)
		}
	}
	// The exchange that dialled the upstream carries the lookup: the .mod's own, or that of
	// the .info the prefetcher asks for at the same time, when it got the new connection
	// first and the .mod reused it.
	if waitLog(p, `msg="upstream exchange"`, "sample.upstream="+upstream, "sample.reused=false", "sample.dns_backend=system") == "" {
		t.Errorf("no debug line of an exchange that dialled %s with its DNS detail (sample.dns_backend=system)", upstream)
	}
	// The verifier's requests to the checksum database are labelled as such.
	if waitLog(p, "sample.upstream="+db.URL+" sample.kind=sumdb") == "" {
		t.Errorf("no debug line of a checksum database exchange labelled upstream=%s kind=sumdb", db.URL)
	}
}

// TestServeWithoutKey: a checksum database named without a key the go installation knows
// turns verification off, loudly: a warning at start that says how to pass name+key, and
// the enabled gauge at 0 with the reason on /metrics. Files are still served.
func TestServeWithoutKey(t *testing.T) {
	mods := []modtree.Module{{Path: "mods.test/nokey", Version: "v1.0.0"}}
	org := newOrigin(t, mods)
	p := startHoloproxy(t, []string{"--cache-dir=" + t.TempDir(), "--upstream=" + org.URL,
		"--sumdb=nokey.test", "--gonosumdb=", "--goprivate="}, nil)
	logs := p.log.String()
	if !strings.Contains(logs, "level=WARN") || !strings.Contains(logs, "CHECKSUM VERIFICATION IS OFF") || !strings.Contains(logs, "nokey.test+<key>") {
		t.Errorf("start log lacks the loud warning with how to pass name+key:\n%s", logs)
	}
	if status, body, _ := get(t, "http://"+p.addr+"/mods.test/nokey/@v/v1.0.0.mod"); status != http.StatusOK {
		t.Errorf("GET .mod with verification off: %d %s", status, body)
	}
	m := scrape(t, p.addr)
	if v, ok := m[`holoproxy_checksum_verification_enabled{database="nokey.test"}`]; !ok || v != 0 {
		t.Errorf("enabled gauge = %v (present %v); want 0", v, ok)
	}
	var warned bool
	for series, v := range m {
		if strings.HasPrefix(series, "holoproxy_checksum_verification_warning{") && strings.Contains(series, "nokey.test") && v == 1 {
			warned = true
		}
	}
	if !warned {
		t.Errorf("/metrics has no holoproxy_checksum_verification_warning naming nokey.test")
	}
}

// TestSumDBFromGoEnv: without --sumdb, serve verifies against the database `go env GOSUMDB`
// names (here set in its environment, URL included), as the go command would.
func TestSumDBFromGoEnv(t *testing.T) {
	mods := []modtree.Module{{Path: "mods.test/env", Version: "v1.0.0"}}
	db := sumdbtest.New(t, mods)
	org := newOrigin(t, mods)
	p := startHoloproxy(t, []string{"--cache-dir=" + t.TempDir(), "--upstream=" + org.URL},
		[]string{"HOLOPROXY_SUMDB=", "GOSUMDB=" + db.GOSUMDB(), "GONOSUMDB=", "GOPRIVATE=", "GOENV=off"})
	if status, body, _ := get(t, "http://"+p.addr+"/mods.test/env/@v/v1.0.0.mod"); status != http.StatusOK {
		t.Fatalf("GET .mod: %d %s", status, body)
	}
	if db.Count("/lookup/mods.test/env@v1.0.0") == 0 {
		t.Errorf("the database of go env GOSUMDB was not asked")
	}
	m := scrape(t, p.addr)
	if got := m[`holoproxy_checksum_verifications_total{outcome="verified"}`]; got != 1 {
		t.Errorf("verified files = %v; want 1", got)
	}
}
