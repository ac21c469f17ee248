package trace

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/holoproxy/holoproxy/internal/lab/modtree"
	"github.com/holoproxy/holoproxy/internal/netobs"
	"github.com/holoproxy/holoproxy/internal/report"
)

// origins starts two TLS proxies over one modtree tree; proxy A answers 404 for the modules
// whose path ends in an even digit.
func origins(t *testing.T) (a, b *httptest.Server, hitsA, hitsB *atomic.Int64, pool *x509.CertPool, targets []Target) {
	t.Helper()
	dir := t.TempDir()
	mods, _ := modtree.Graph("mods.test/t", 10, 2, 2)
	if err := modtree.Write(dir, mods); err != nil {
		t.Fatal(err)
	}
	for _, m := range mods {
		targets = append(targets, Target{Path: m.Path, Version: m.Version})
	}
	targets = append(targets, Target{Path: mods[0].Path}) // a latest query: list first
	fs := http.FileServer(http.Dir(dir))
	hitsA, hitsB = new(atomic.Int64), new(atomic.Int64)
	start := func(hits *atomic.Int64, filter bool) *httptest.Server {
		s := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			hits.Add(1)
			mod, _, _ := strings.Cut(r.URL.Path, "/@")
			if filter && strings.ContainsAny(mod[len(mod)-1:], "02468") {
				http.Error(w, "not found", http.StatusNotFound)
				return
			}
			fs.ServeHTTP(w, r)
		}))
		s.EnableHTTP2 = true
		s.StartTLS()
		t.Cleanup(s.Close)
		return s
	}
	a, b = start(hitsA, true), start(hitsB, false)
	pool = x509.NewCertPool()
	pool.AddCert(a.Certificate())
	pool.AddCert(b.Certificate())
	return a, b, hitsA, hitsB, pool, targets
}

func runByName(t *testing.T, tr report.Trace, name string) report.Run {
	t.Helper()
	for _, r := range tr.Runs {
		if r.Name == name {
			return r
		}
	}
	t.Fatalf("no run %q in %d runs", name, len(tr.Runs))
	return report.Run{}
}

func TestRunChainAndEntries(t *testing.T) {
	a, b, _, _, pool, targets := origins(t)
	proxy := a.URL + "," + b.URL
	setups, err := PerEntrySetups(proxy)
	if err != nil {
		t.Fatal(err)
	}
	if len(setups) != 3 {
		t.Fatalf("setups = %v; want A alone, B alone, chain", setups)
	}
	var lastDone, lastTotal int
	tr, err := Run(context.Background(), Options{
		Proxy: proxy, Targets: targets, Jobs: 2,
		Transport: netobs.TransportConfig{TLSConfig: &tls.Config{RootCAs: pool}},
		Progress:  func(d, total int) { lastDone, lastTotal = d, total },
	}, setups)
	if err != nil {
		t.Fatal(err)
	}
	notFoundAtA := 0
	for _, tg := range targets {
		if strings.ContainsAny(tg.Path[len(tg.Path)-1:], "02468") {
			if tg.Version == "" {
				notFoundAtA += 4 // list, info, mod, zip
			} else {
				notFoundAtA += 3
			}
		}
	}
	chain := runByName(t, tr, "chain")
	if chain.Failed != 0 {
		t.Errorf("chain: %d failed requests; want 0", chain.Failed)
	}
	if chain.FallThroughs != notFoundAtA {
		t.Errorf("chain: %d fall-throughs; want %d (every request A answers 404)", chain.FallThroughs, notFoundAtA)
	}
	if chain.Requests != plannedRequests(targets) {
		t.Errorf("chain: %d requests; want %d", chain.Requests, plannedRequests(targets))
	}
	if got := len(chain.Samples); got != chain.Requests+notFoundAtA {
		t.Errorf("chain: %d samples; want one per try (%d)", got, chain.Requests+notFoundAtA)
	}
	aAlone := runByName(t, tr, a.URL+" alone")
	if aAlone.Failed == 0 || aAlone.FallThroughs != 0 {
		t.Errorf("A alone: failed %d, fall-throughs %d; want failures and no fall-through", aAlone.Failed, aAlone.FallThroughs)
	}
	if bAlone := runByName(t, tr, b.URL+" alone"); bAlone.Failed != 0 {
		t.Errorf("B alone: %d failed", bAlone.Failed)
	}
	for _, s := range chain.Samples {
		if s.Upstream != a.URL && s.Upstream != b.URL {
			t.Fatalf("sample upstream %q is neither proxy", s.Upstream)
		}
		if s.Kind == "" || (s.Status != 200 && s.Status != 404) {
			t.Fatalf("sample kind %q status %d", s.Kind, s.Status)
		}
	}
	made := 0
	for _, r := range tr.Runs {
		made += r.Requests
	}
	if lastDone != made || lastTotal != made {
		t.Errorf("progress ended at %d/%d; want %d/%d, every request made", lastDone, lastTotal, made, made)
	}
}

func TestCompareTransports(t *testing.T) {
	_, b, _, _, pool, targets := origins(t)
	tr, err := Run(context.Background(), Options{
		Proxy: b.URL, Targets: targets, Jobs: 2, Count: 3,
		Transport: netobs.TransportConfig{TLSConfig: &tls.Config{RootCAs: pool}},
	}, []Setup{{Name: "fresh", Fresh: true}, {Name: "shared"}})
	if err != nil {
		t.Fatal(err)
	}
	handshakes := func(r report.Run) (n, resumed int) {
		for _, s := range r.Samples {
			if s.TLS > 0 {
				n++
				if s.TLSResumed {
					resumed++
				}
			}
		}
		return n, resumed
	}
	fresh, shared := runByName(t, tr, "fresh"), runByName(t, tr, "shared")
	fh, fr := handshakes(fresh)
	sh, _ := handshakes(shared)
	if fh < 3 || fh <= sh {
		t.Errorf("handshakes: fresh %d, shared %d; want fresh to pay one per pass and more than shared", fh, sh)
	}
	if fr != 0 {
		t.Errorf("fresh transports resumed %d TLS sessions; want none (no session cache)", fr)
	}
	if fresh.Failed != 0 || shared.Failed != 0 {
		t.Errorf("failed: fresh %d, shared %d", fresh.Failed, shared.Failed)
	}
}

func TestTargetsFromGoMod(t *testing.T) {
	dir := t.TempDir()
	mods, roots := modtree.Graph("mods.test/w", 12, 3, 2)
	sum, err := modtree.AppGoSum(mods, roots)
	if err != nil {
		t.Fatal(err)
	}
	if err := modtree.WriteApp(dir, "app.test/m", mods, roots, sum); err != nil {
		t.Fatal(err)
	}
	ts, err := TargetsFromGoMod(filepath.Join(dir, "go.mod"))
	if err != nil {
		t.Fatal(err)
	}
	selected, graph := modtree.BuildList(mods, roots)
	full, modOnly := 0, 0
	for _, tg := range ts {
		if tg.ModOnly {
			modOnly++
		} else {
			full++
		}
	}
	if full != len(selected) || full+modOnly != len(graph) {
		t.Errorf("targets: %d full, %d mod-only; want %d full of %d in the graph", full, modOnly, len(selected), len(graph))
	}
}

func TestParseTargets(t *testing.T) {
	ts, err := ParseTargets([]string{"example.com/m@v1.2.3", "example.com/n", "example.com/o@latest"})
	if err != nil || len(ts) != 3 || ts[0].Version != "v1.2.3" || ts[1].Version != "" || ts[2].Version != "" {
		t.Errorf("ParseTargets = %v, %v", ts, err)
	}
	for _, bad := range []string{"not a path", "example.com/m@v2.0.0", "example.com/m@bad/query"} {
		if _, err := ParseTargets([]string{bad}); err == nil {
			t.Errorf("ParseTargets(%q) succeeded", bad)
		}
	}
}
