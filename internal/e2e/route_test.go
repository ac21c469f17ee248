package e2e

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestRouteWithGoCommand: --route sends the named modules to a company proxy of their own
// (which wants basic credentials, given in its URL) and never to --upstream; the go command
// downloads and builds with the honest go.sum; each origin hears only of its modules; the
// company proxy is scored and shown like any upstream, and its password appears nowhere.
func TestRouteWithGoCommand(t *testing.T) {
	mods, roots := fixtureModules()
	public, corp := newOrigin(t, mods), newOrigin(t, mods)
	corp.requireAuth("corp", "route-secret")
	corpURL := strings.Replace(corp.URL, "http://", "http://corp:route-secret@", 1)
	p := startHoloproxy(t, []string{"--cache-dir=" + t.TempDir(), "--upstream=" + public.URL,
		"--route=mods.test/legacy,mods.test/two/*=" + corpURL}, nil)
	downloadAndBuild(t, newApp(t, "http://"+p.addr, mods, roots), nil, "with a route", sumLineSet(t, mods))

	routed := func(path string) bool {
		return strings.HasPrefix(path, "mods.test/legacy/") || strings.HasPrefix(path, "mods.test/two/")
	}
	for path, n := range public.counts() {
		if routed(path) {
			t.Errorf("the public origin was asked %d times for %s", n, path)
		}
	}
	corpHits := corp.counts()
	if len(corpHits) == 0 {
		t.Errorf("the company origin was asked nothing")
	}
	for path, n := range corpHits {
		if path != "" && !routed(path) { // "": the health prober's requests for the base URL
			t.Errorf("the company origin was asked %d times for %s, which is not routed to it", n, path)
		}
	}
	var doc struct {
		Routes []struct {
			Patterns string `json:"patterns"`
			Chain    string `json:"chain"`
		} `json:"routes"`
		Upstreams []struct {
			Name string `json:"name"`
		} `json:"upstreams"`
	}
	_, body, _ := get(t, "http://"+p.addr+"/api/chain")
	if err := json.Unmarshal(body, &doc); err != nil {
		t.Fatal(err)
	}
	if len(doc.Routes) != 1 || doc.Routes[0].Patterns != "mods.test/legacy,mods.test/two/*" || doc.Routes[0].Chain != corp.URL {
		t.Errorf("/api/chain routes = %+v; want the route with its proxy's name (no password)", doc.Routes)
	}
	var names []string
	for _, u := range doc.Upstreams {
		names = append(names, u.Name)
	}
	if !strings.Contains(strings.Join(names, " "), corp.URL) {
		t.Errorf("/api/chain upstreams %v do not show the route's proxy %s", names, corp.URL)
	}
	_, metrics, _ := get(t, "http://"+p.addr+"/metrics")
	for what, text := range map[string]string{"log": p.log.String(), "/metrics": string(metrics), "/api/chain": string(body)} {
		if strings.Contains(text, "route-secret") {
			t.Errorf("the route's password appears in the %s", what)
		}
	}
}
