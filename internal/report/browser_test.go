package report

import (
	"bytes"
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/holoproxy/holoproxy/internal/report/headless"
)

// screenshotPath is where -update writes the screenshot shown in the documentation.
var screenshotPath = filepath.Join("..", "..", "docs", "trace-report.png")

// browser returns the Chromium to test with. Outside CI a missing browser skips the test;
// under CI=true it fails it.
func browser(t *testing.T) string {
	t.Helper()
	path, err := headless.Find()
	if errors.Is(err, headless.ErrNoBrowser) {
		if os.Getenv("CI") == "true" {
			t.Fatalf("CI=true but no browser: %v", err)
		}
		t.Skipf("skipping browser test: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	return path
}

// TestHTMLInBrowser renders the fixture report in headless Chromium, served from a local
// test server: the heatmap must be laid out with a non-zero size and the page must log no
// console errors. Under -update it also writes docs/trace-report.png.
func TestHTMLInBrowser(t *testing.T) {
	exe := browser(t)
	tr := loadFixture(t)
	tests := []struct {
		name     string
		trace    Trace
		selector string
		media    string
	}{
		{"comparison heatmap", tr, "#heatmap", ""},
		{"comparison waterfalls", tr, "#waterfalls", ""},
		{"single run heatmap", Trace{Title: "one run", Runs: tr.Runs[:1]}, "svg.heatmap", ""},
		{"printed heatmap", tr, "#heatmap", "print"},
		{"direct heatmap", directTrace(), "#heatmap", ""},
		{"long figures", longFigures(tr), "#tables", ""},
		{"direct waterfalls", directTrace(), "#waterfalls", ""},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var page bytes.Buffer
			if err := WriteHTML(&page, tc.trace, HTMLOptions{}); err != nil {
				t.Fatal(err)
			}
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path != "/" {
					t.Errorf("page asked for %s: a standalone page must not load anything", r.URL.Path)
					http.NotFound(w, r)
					return
				}
				w.Header().Set("Content-Type", "text/html; charset=utf-8")
				w.Write(page.Bytes())
			}))
			defer srv.Close()

			ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
			defer cancel()
			shoot := *update && tc.name == "comparison heatmap"
			res, err := headless.Load(ctx, srv.URL+"/", headless.Options{ExecPath: exe, Selector: tc.selector, Screenshot: shoot, Media: tc.media})
			if err != nil {
				t.Fatal(err)
			}
			if res.Width <= 0 || res.Height <= 0 {
				t.Errorf("%s is %dx%d, want a non-zero size", tc.selector, res.Width, res.Height)
			}
			// The page fits the default 1440-pixel viewport: nothing (a long TLS cipher
			// name in a table, say) makes it scroll sideways.
			if tc.media == "" && (res.PageWidth <= 0 || res.PageWidth > 1440) {
				t.Errorf("the page is %d pixels wide; want it to fit the 1440-pixel viewport", res.PageWidth)
			}
			if len(res.ConsoleErrors) > 0 {
				t.Errorf("console errors: %q", res.ConsoleErrors)
			}
			if shoot {
				if err := os.WriteFile(screenshotPath, res.PNG, 0o644); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

// longFigures returns tr with a third run and the long values real runs have in the
// figures tables: a TLS 1.2 cipher suite's name and a DNS server's address.
func longFigures(tr Trace) Trace {
	third := tr.Runs[0]
	third.Name = "chain"
	third.Samples = slices.Clone(third.Samples)
	tr.Runs = append(slices.Clone(tr.Runs), third)
	for i := range tr.Runs {
		r := &tr.Runs[i]
		r.Samples = slices.Clone(r.Samples)
		for j := range r.Samples {
			if r.Samples[j].TLSCipher != "" {
				r.Samples[j].TLSVersion, r.Samples[j].TLSCipher = "TLS 1.2", "TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256"
			}
			if r.Samples[j].DNSBackend != "" {
				r.Samples[j].DNSBackend = "udp://10.213.1.4:53"
			}
		}
		r.DNSQueries = slices.Clone(r.DNSQueries)
		for j := range r.DNSQueries {
			r.DNSQueries[j].Backend = "udp://10.213.1.4:53"
		}
	}
	return tr
}

// TestHeadlessSeesConsoleErrors proves the console check can fail: a page that logs an
// error and throws has both reported.
func TestHeadlessSeesConsoleErrors(t *testing.T) {
	exe := browser(t)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Write([]byte(`<!DOCTYPE html><html><head><link rel="icon" href="data:,"></head><body>` +
			`<script>console.error("broken"); throw new Error("boom");</script></body></html>`))
	}))
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	res, err := headless.Load(ctx, srv.URL+"/", headless.Options{ExecPath: exe, Selector: "body"})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.ConsoleErrors) < 2 {
		t.Errorf("console errors = %q, want the console.error call and the exception", res.ConsoleErrors)
	}
}
