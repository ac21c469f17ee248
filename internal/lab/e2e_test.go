package lab

import (
	"crypto/tls"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/holoproxy/holoproxy/internal/lab/modtree"
	"golang.org/x/mod/module"
)

// goCommand returns the go command's path, skipping (or failing under CI) without one.
func goCommand(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("go")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI=true but no go command: %v", err)
		}
		t.Skipf("no go command: %v", err)
	}
	return p
}

// TestSeedScenario runs the real go command in a client host against two TLS origins behind
// 40 ms links, the first answering 404 for half the modules, with a DNS server that answers
// after 50 ms: `go mod download all` must succeed through the fall-through, and the lab's
// logs must account for the DNS queries, connections, handshakes and requests.
func TestSeedScenario(t *testing.T) {
	goBin := goCommand(t)
	l := New(t, Options{})
	client := l.MustAddHost(t, "client")
	pa := l.MustAddHost(t, "proxy-a")
	pb := l.MustAddHost(t, "proxy-b")
	dns, err := l.DNS()
	if err != nil {
		t.Fatal(err)
	}
	dns.SetDelay("", 50*time.Millisecond)

	tmp := t.TempDir()
	mods, roots := modtree.Graph("mods.test/g", 40, 4, 3)
	tree := filepath.Join(tmp, "tree")
	if err := modtree.Write(tree, mods); err != nil {
		t.Fatal(err)
	}
	sum, err := modtree.AppGoSum(mods, roots)
	if err != nil {
		t.Fatal(err)
	}
	app := filepath.Join(tmp, "app")
	if err := modtree.WriteApp(app, "app.test/main", mods, roots, sum); err != nil {
		t.Fatal(err)
	}
	paths := map[string]bool{}
	for _, m := range mods {
		paths[m.Path] = true
	}
	sorted := make([]string, 0, len(paths))
	for p := range paths {
		sorted = append(sorted, p)
	}
	sort.Strings(sorted)
	notFound := map[string]bool{}
	for i, p := range sorted {
		if i%2 == 0 {
			notFound[p] = true
		}
	}

	a, err := pa.ServeOrigin(OriginConfig{Tree: tree, HTTP2: true, Faults: Faults{NotFound: notFound}})
	if err != nil {
		t.Fatal(err)
	}
	b, err := pb.ServeOrigin(OriginConfig{Tree: tree, TLSVersion: tls.VersionTLS12})
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range []*Host{pa, pb} {
		if err := h.SetLink(Link{Delay: 40 * time.Millisecond}); err != nil {
			t.Fatal(err)
		}
	}

	env, err := l.GoEnv(a.URL() + "," + b.URL())
	if err != nil {
		t.Fatal(err)
	}
	ctx := t.Context()
	cmd := client.Command(ctx, goBin, "mod", "download", "all")
	cmd.Dir = app
	cmd.Env = env
	start := time.Now()
	out, err := cmd.CombinedOutput()
	elapsed := time.Since(start)
	if err != nil {
		t.Fatalf("go mod download all: %v\n%s", err, out)
	}
	t.Logf("go mod download all: %v for %d modules (%d versions)", elapsed.Round(time.Millisecond), len(paths), len(mods))

	// Every selected module's zip is in the module cache, and verified against go.sum.
	var modcache string
	for _, e := range env {
		if v, ok := strings.CutPrefix(e, "GOMODCACHE="); ok {
			modcache = v
		}
	}
	selected, _ := modtree.BuildList(mods, roots)
	for _, m := range selected {
		ep, _ := module.EscapePath(m.Path)
		if _, err := os.Stat(filepath.Join(modcache, "cache/download", ep, "@v", m.Version+".zip")); err != nil {
			t.Errorf("%s@%s not downloaded: %v", m.Path, m.Version, err)
		}
	}

	// proxy-a answered 404 (and only 404) for its missing modules; proxy-b served them.
	servedByB := map[string]bool{}
	for _, r := range b.Log() {
		if r.Status == http.StatusOK {
			servedByB[r.Module] = true
		}
	}
	for _, r := range a.Log() {
		if notFound[r.Module] && r.Status != http.StatusNotFound {
			t.Errorf("proxy-a answered %s with %d, want 404", r.Path, r.Status)
		}
	}
	for _, m := range selected {
		if notFound[m.Path] && !servedByB[m.Path] {
			t.Errorf("%s: proxy-a 404s it but proxy-b never served it", m.Path)
		}
	}
	for _, r := range a.Log() {
		if r.Proto != "HTTP/2.0" {
			t.Errorf("proxy-a request %s over %s, want HTTP/2.0", r.Path, r.Proto)
			break
		}
	}

	// The lab's own logs account for what each host saw.
	byName := map[string]int{}
	for _, q := range dns.Queries() {
		byName[q.Name+" "+q.Type+" "+q.Rcode]++
		if q.Delay < 50*time.Millisecond {
			t.Errorf("DNS query %s answered with delay %v, want 50ms", q.Name, q.Delay)
		}
	}
	for _, name := range []string{pa.DNSName(), pb.DNSName()} {
		if byName[name+" A NOERROR"] == 0 {
			t.Errorf("no A query for %s in the DNS log: %v", name, byName)
		}
	}
	for _, o := range []*Origin{a, b} {
		if s := o.Stats(); s.Conns == 0 || s.Handshakes == 0 || s.Requests == 0 {
			t.Errorf("%s: stats %+v, want connections, handshakes and requests", o.Host().Name(), s)
		}
	}
	if sa := a.Stats(); sa.ByStatus[http.StatusNotFound] == 0 || sa.ByStatus[http.StatusOK] == 0 {
		t.Errorf("proxy-a statuses %v, want both 200s and 404s", sa.ByStatus)
	}
	summary := l.Summary()
	for _, want := range []string{"client (", "queries asked", "origin https://proxy-a.test:", "origin https://proxy-b.test:", "TLS handshakes"} {
		if !strings.Contains(summary, want) {
			t.Errorf("lab summary lacks %q:\n%s", want, summary)
		}
	}
	for _, o := range []*Origin{a, b} {
		perConn := map[int64]int{}
		for _, r := range o.Log() {
			perConn[r.Conn]++
		}
		t.Logf("%s: requests per connection %v", o.Host().Name(), perConn)
	}
	t.Logf("DNS queries: %v\n%s", byName, summary)
}
