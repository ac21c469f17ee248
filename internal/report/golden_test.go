package report

import (
	"bytes"
	"flag"
	"os"
	"path/filepath"
	"testing"
)

var update = flag.Bool("update", false, "regenerate testdata/trace.json from the simulation and rewrite the golden files")

// loadFixture reads the committed fixture (regenerating it first under -update).
func loadFixture(t *testing.T) Trace {
	t.Helper()
	path := filepath.Join("testdata", "trace.json")
	if *update {
		var buf bytes.Buffer
		if err := WriteJSON(&buf, fixtureTrace()); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tr, err := ReadJSON(f)
	if err != nil {
		t.Fatal(err)
	}
	return tr
}

// golden compares got with testdata/name, rewriting the file under -update.
func golden(t *testing.T, name string, got []byte) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, got, 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test -update to create it)", err)
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s differs from the golden file; rerun with -update if the change is intended\n%s", name, firstDiff(got, want))
	}
}

// firstDiff shows the first differing line of got and want.
func firstDiff(got, want []byte) string {
	g, w := bytes.Split(got, []byte("\n")), bytes.Split(want, []byte("\n"))
	for i := 0; i < max(len(g), len(w)); i++ {
		var gl, wl []byte
		if i < len(g) {
			gl = g[i]
		}
		if i < len(w) {
			wl = w[i]
		}
		if !bytes.Equal(gl, wl) {
			return "line " + itoa(i+1) + ":\n got: " + string(gl) + "\nwant: " + string(wl)
		}
	}
	return ""
}

func itoa(i int) string {
	return string(bytes.TrimSpace([]byte(fmtInt(i))))
}

func fmtInt(i int) string {
	var b []byte
	if i == 0 {
		return "0"
	}
	for ; i > 0; i /= 10 {
		b = append([]byte{byte('0' + i%10)}, b...)
	}
	return string(b)
}

func TestTerminalGolden(t *testing.T) {
	tr := loadFixture(t)
	tests := []struct {
		golden string
		opt    TerminalOptions
	}{
		{"trace.plain.golden", TerminalOptions{Width: 120}},
		{"trace.ansi.golden", TerminalOptions{Width: 120, Color: true}},
		{"trace.byrequest.plain.golden", TerminalOptions{Width: 100, ByRequest: true, Slowest: 3}},
	}
	for _, tc := range tests {
		t.Run(tc.golden, func(t *testing.T) {
			var buf bytes.Buffer
			if err := WriteTerminal(&buf, tr, tc.opt); err != nil {
				t.Fatal(err)
			}
			golden(t, tc.golden, buf.Bytes())
		})
	}
}

func TestHTMLGolden(t *testing.T) {
	tr := loadFixture(t)
	var buf bytes.Buffer
	if err := WriteHTML(&buf, tr, HTMLOptions{}); err != nil {
		t.Fatal(err)
	}
	golden(t, "trace.html.golden", buf.Bytes())
}
