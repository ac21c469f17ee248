package report

import (
	"bytes"
	"strings"
	"testing"
	"time"

	"github.com/holoproxy/holoproxy/internal/netobs"
)

// TestDegenerateInput renders inputs with nothing or almost nothing in them: every output
// must still be produced without panicking and say something sensible.
func TestDegenerateInput(t *testing.T) {
	failed := netobs.Sample{Upstream: "https://proxy-a.test", URL: "https://proxy-a.test/m/@v/list", Start: t0,
		Connect: 3 * time.Second, Total: 3 * time.Second, ErrClass: netobs.ClassTCPTimeout}
	instant := netobs.Sample{Upstream: "https://proxy-b.test", URL: "https://proxy-b.test/m/@v/list", Start: t0, Status: 200}
	tests := []struct {
		name     string
		trace    Trace
		wantText string // in the terminal output
	}{
		{"no runs", Trace{}, "holoproxy trace"},
		{"run without samples", Trace{Runs: []Run{{Name: "empty", Wall: time.Second}}}, "outside upstream requests"},
		{"run without samples or wall", Trace{Runs: []Run{{Name: "nothing"}}}, "no upstream exchanges were recorded"},
		{"one failed connect", Trace{Runs: []Run{{Name: "down", Samples: []netobs.Sample{failed}}}}, "tcp_timeout"},
		{"zero-length sample", Trace{Runs: []Run{{Name: "instant", Samples: []netobs.Sample{instant}}}}, "took no measurable time"},
		{"runs with different upstreams", Trace{Runs: []Run{
			{Name: "a", Samples: []netobs.Sample{failed}},
			{Name: "b", Samples: []netobs.Sample{instant}},
		}}, "fastest: a (3.00s)"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			for _, color := range []bool{false, true} {
				var term bytes.Buffer
				if err := WriteTerminal(&term, tc.trace, TerminalOptions{Color: color}); err != nil {
					t.Fatal(err)
				}
				if !strings.Contains(term.String(), tc.wantText) {
					t.Errorf("terminal output (color=%v) lacks %q:\n%s", color, tc.wantText, term.String())
				}
			}
			var page, js bytes.Buffer
			if err := WriteHTML(&page, tc.trace, HTMLOptions{}); err != nil {
				t.Fatal(err)
			}
			if !strings.Contains(page.String(), "</html>") {
				t.Error("HTML page is incomplete")
			}
			if err := WriteJSON(&js, tc.trace); err != nil {
				t.Fatal(err)
			}
			if _, err := ReadJSON(&js); err != nil {
				t.Errorf("JSON does not read back: %v", err)
			}
		})
	}
}
