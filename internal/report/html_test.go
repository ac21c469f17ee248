package report

import (
	"bytes"
	"strings"
	"testing"

	"github.com/holoproxy/holoproxy/internal/netobs"
	"golang.org/x/net/html"
)

// walk calls f for every element node under n.
func walk(n *html.Node, f func(*html.Node)) {
	if n.Type == html.ElementNode {
		f(n)
	}
	for c := n.FirstChild; c != nil; c = c.NextSibling {
		walk(c, f)
	}
}

func attr(n *html.Node, key string) string {
	for _, a := range n.Attr {
		if a.Key == key {
			return a.Val
		}
	}
	return ""
}

func hasClass(n *html.Node, class string) bool {
	return strings.Contains(" "+attr(n, "class")+" ", " "+class+" ")
}

// TestHTMLStructure parses the page and checks, for several bucket counts, that every
// heatmap SVG holds exactly one cell per (upstream, phase, bucket) with a tooltip, and that
// the page loads nothing from elsewhere.
func TestHTMLStructure(t *testing.T) {
	tr := loadFixture(t)
	upstreamSet := map[string]bool{}
	for _, r := range tr.Runs {
		for _, s := range r.Samples {
			upstreamSet[s.Upstream] = true
		}
	}
	rows := len(upstreamSet) * len(netobs.Phases)
	tests := []struct {
		name    string
		trace   Trace
		opt     HTMLOptions
		buckets int
	}{
		{"default buckets", tr, HTMLOptions{}, 60},
		{"17 buckets", tr, HTMLOptions{Buckets: 17}, 17},
		{"by request", tr, HTMLOptions{Buckets: 25, ByRequest: true}, 25},
		{"single run", Trace{Runs: tr.Runs[1:]}, HTMLOptions{Buckets: 40}, 40},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := WriteHTML(&buf, tc.trace, tc.opt); err != nil {
				t.Fatal(err)
			}
			doc, err := html.Parse(&buf)
			if err != nil {
				t.Fatal(err)
			}
			var heatmaps []*html.Node
			walk(doc, func(n *html.Node) {
				if n.Data == "svg" && hasClass(n, "heatmap") {
					heatmaps = append(heatmaps, n)
				}
				switch n.Data {
				case "script", "iframe", "object", "embed", "img":
					t.Errorf("standalone page has a <%s> element", n.Data)
				case "link":
					if href := attr(n, "href"); !strings.HasPrefix(href, "data:") {
						t.Errorf("page links to %q", href)
					}
				}
				for _, a := range []string{"src", "xlink:href"} {
					if v := attr(n, a); v != "" {
						t.Errorf("<%s %s=%q> loads a resource", n.Data, a, v)
					}
				}
			})
			if len(heatmaps) != len(tc.trace.Runs) {
				t.Fatalf("found %d heatmaps, want one per run (%d)", len(heatmaps), len(tc.trace.Runs))
			}
			for _, h := range heatmaps {
				cells, titled := 0, 0
				walk(h, func(n *html.Node) {
					if n.Data == "rect" && hasClass(n, "cell") {
						cells++
						if c := n.FirstChild; c != nil && c.Data == "title" && c.FirstChild != nil && c.FirstChild.Data != "" {
							titled++
						}
					}
				})
				if want := rows * tc.buckets; cells != want {
					t.Errorf("heatmap %q has %d cells, want %d (%d rows × %d buckets)", attr(h, "data-run"), cells, want, rows, tc.buckets)
				}
				if titled != cells {
					t.Errorf("heatmap %q: %d of %d cells have a tooltip", attr(h, "data-run"), titled, cells)
				}
			}
		})
	}
}
