package report

import (
	"bytes"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/holoproxy/holoproxy/internal/netobs"
)

// A recorded command's Run shows how the command ended in the terminal table, on the
// HTML page and in the JSON document, which reads back to the same Command; Runs of
// trace's own requests show no such row.
func TestRecordedCommandRendering(t *testing.T) {
	start := time.Date(2026, 11, 26, 9, 0, 0, 0, time.UTC)
	s := netobs.Sample{Upstream: "https://proxy-a.test", Kind: "mod", Method: "GET", URL: "https://proxy-a.test/m.test/a/@v/v1.0.0.mod",
		Start: start.Add(10 * time.Millisecond), TTFB: 20 * time.Millisecond, Total: 25 * time.Millisecond, Status: 200}
	for _, tc := range []struct {
		cmd  *Command
		want string
	}{
		{&Command{Args: []string{"go", "build", "./..."}}, "command exit    0"},
		{&Command{Args: []string{"go", "test"}, ExitCode: 1, Error: "exit status 1"}, "command exit    1 (exit status 1)"},
		{&Command{Args: []string{"go", "test"}, ExitCode: -1, Error: "signal: killed"}, "command exit    killed (signal: killed)"},
		{nil, ""},
	} {
		tr := Trace{Title: "t", Runs: []Run{{Name: "r", Samples: []netobs.Sample{s}, Wall: 100 * time.Millisecond, Requests: 1, Command: tc.cmd}}}
		var term, page, doc bytes.Buffer
		if err := WriteTerminal(&term, tr, TerminalOptions{}); err != nil {
			t.Fatal(err)
		}
		if err := WriteHTML(&page, tr, HTMLOptions{}); err != nil {
			t.Fatal(err)
		}
		if err := WriteJSON(&doc, tr); err != nil {
			t.Fatal(err)
		}
		if tc.cmd == nil {
			if strings.Contains(term.String(), "command exit") || strings.Contains(page.String(), "command exit") || strings.Contains(doc.String(), `"command"`) {
				t.Errorf("a Run without a command shows one")
			}
			continue
		}
		if !strings.Contains(term.String(), tc.want) {
			t.Errorf("terminal report lacks %q:\n%s", tc.want, term.String())
		}
		if !strings.Contains(page.String(), "command exit "+strings.TrimSpace(strings.TrimPrefix(tc.want, "command exit"))) {
			t.Errorf("HTML report lacks the command's exit %q", tc.want)
		}
		back, err := ReadJSON(&doc)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(back.Runs[0].Command, tc.cmd) {
			t.Errorf("JSON round trip: command %+v, want %+v", back.Runs[0].Command, tc.cmd)
		}
		// The idle share is the command's own work: 75 of the 100 ms.
		if sum := Summarize(tr); len(sum.Runs[0].Shares) == 0 || sum.Runs[0].Shares[0].Cost != CostIdle || sum.Runs[0].Shares[0].Time != 75*time.Millisecond {
			t.Errorf("shares %+v; want idle 75ms first", sum.Runs[0].Shares)
		}
	}
}
