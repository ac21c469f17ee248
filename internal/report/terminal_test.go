package report

import (
	"bytes"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/holoproxy/holoproxy/internal/netobs"
)

// TestTerminalModes checks what separates the two terminal modes: plain output has no
// escape sequences, colour output uses 256-colour ones; both carry every verdict. In plain
// output each heatmap row holds exactly one character per bucket for every run, and the
// marked characters are exactly the buckets that have data.
func TestTerminalModes(t *testing.T) {
	tr := loadFixture(t)
	sum := Summarize(tr)
	ups := allUpstreams(&tr)
	upW := 0
	for _, u := range ups {
		upW = max(upW, len(shortName(u)))
	}
	labelW := upW + 2 + len("transfer") + 1
	tests := []struct {
		name    string
		opt     TerminalOptions
		wantESC bool
	}{
		{"plain", TerminalOptions{Width: 120, Buckets: 30}, false},
		{"plain by request", TerminalOptions{Width: 120, Buckets: 23, ByRequest: true}, false},
		{"ansi", TerminalOptions{Width: 120, Buckets: 30, Color: true}, true},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			var buf bytes.Buffer
			if err := WriteTerminal(&buf, tr, tc.opt); err != nil {
				t.Fatal(err)
			}
			out := buf.String()
			if got := strings.Contains(out, "\x1b["); got != tc.wantESC {
				t.Errorf("escape sequences present = %v, want %v", got, tc.wantESC)
			}
			if tc.wantESC && !strings.Contains(out, "\x1b[48;5;") {
				t.Error("colour output has no 256-colour background")
			}
			for _, r := range sum.Runs {
				if !strings.Contains(out, r.Verdict) {
					t.Errorf("output lacks the verdict of %q: %q", r.Name, r.Verdict)
				}
			}
			if tc.wantESC {
				return
			}
			var hs []heatmap
			for i := range tr.Runs {
				hs = append(hs, buildHeatmap(&tr.Runs[i], ups, phasesOf(&tr), tc.opt.Buckets, tc.opt.ByRequest))
			}
			row := 0
			for _, line := range strings.Split(out, "\n") {
				if len(line) < labelW || !strings.Contains(line, " │ ") {
					continue
				}
				phase := strings.TrimSpace(line[upW+2 : labelW])
				if !isPhase(phase) {
					continue
				}
				if row >= len(hs[0].Rows) {
					t.Fatalf("more heatmap rows than %d", len(hs[0].Rows))
				}
				if got := hs[0].Rows[row].Phase; string(got) != phase {
					t.Errorf("row %d is %s, want %s", row, phase, got)
				}
				blocks := strings.Split(line[labelW:], " │ ")
				if len(blocks) != len(tr.Runs) {
					t.Fatalf("row %q has %d run blocks, want %d", line, len(blocks), len(tr.Runs))
				}
				for i, b := range blocks {
					n := utf8.RuneCountInString(b)
					if i < len(blocks)-1 && n != tc.opt.Buckets || n > tc.opt.Buckets {
						t.Errorf("run %d row %d has %d characters, want %d", i, row, n, tc.opt.Buckets)
					}
					for j, c := range hs[i].Cells[row] {
						marked := j < len(b) && b[j] != ' '
						if marked != (c.N > 0) {
							t.Errorf("run %d row %d bucket %d: marked=%v but %d samples", i, row, j, marked, c.N)
						}
					}
				}
				row++
			}
			if want := len(ups) * len(netobs.Phases); row != want {
				t.Errorf("found %d heatmap rows, want %d", row, want)
			}
		})
	}
}

func isPhase(s string) bool {
	for _, p := range netobs.Phases {
		if string(p) == s {
			return true
		}
	}
	return false
}

func TestClipMiddle(t *testing.T) {
	tests := []struct {
		in   string
		n    int
		want string
	}{
		{"short", 10, "short"},
		{"proxy-a.test/example.test/alpha/@v/v1.0.0.zip", 21, "proxy-a.te…v1.0.0.zip"},
		{"abcdef", 5, "ab…ef"},
	}
	for _, tc := range tests {
		got := clipMiddle(tc.in, tc.n)
		if got != tc.want || utf8.RuneCountInString(got) > max(tc.n, len(tc.in)) {
			t.Errorf("clipMiddle(%q, %d) = %q, want %q", tc.in, tc.n, got, tc.want)
		}
	}
}
