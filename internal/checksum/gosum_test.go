package checksum

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/holoproxy/holoproxy/internal/lab/modtree"
	"golang.org/x/mod/module"
)

const (
	hashA = "h1:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU="
	hashB = "h1:ypeBEsobvcr6wjGzmiPcTaeG7/gUfE5yuYB3ha/uSLs="
)

func TestParseGoSum(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    []string // lines as String() renders them
		errLine string   // substring of the error, "" for success
	}{
		{"empty", "", nil, ""},
		{"pair", "mods.test/a v1.0.0 " + hashA + "\nmods.test/a v1.0.0/go.mod " + hashB + "\n",
			[]string{"mods.test/a v1.0.0 " + hashA, "mods.test/a v1.0.0/go.mod " + hashB}, ""},
		{"blank lines and CRLF", "\r\nmods.test/a v1.0.0 " + hashA + "\r\n\n",
			[]string{"mods.test/a v1.0.0 " + hashA}, ""},
		{"repeated line kept once", "mods.test/a v1.0.0 " + hashA + "\nmods.test/a v1.0.0 " + hashA + "\n",
			[]string{"mods.test/a v1.0.0 " + hashA}, ""},
		{"two fields", "mods.test/a v1.0.0\n", nil, "line 1: want 3 fields"},
		{"four fields", "ok.test/b v1.0.0 " + hashA + "\nmods.test/a v1.0.0 " + hashA + " x\n", nil, "line 2: want 3 fields"},
		{"not h1", "mods.test/a v1.0.0 h2:abc\n", nil, "line 1: hash \"h2:abc\" is not an h1: hash"},
		{"short hash", "mods.test/a v1.0.0 h1:YWJj\n", nil, "line 1: hash \"h1:YWJj\" is not the base64"},
		{"bad version", "\n\nmods.test/a 1.0 " + hashA + "\n", nil, "line 3:"},
		{"non-canonical version", "mods.test/a v1.0 " + hashA + "\n", nil, "line 1:"},
		{"bad path", "Mods..test/a v1.0.0 " + hashA + "\n", nil, "line 1:"},
		{"conflicting hashes", "mods.test/a v1.0.0 " + hashA + "\nmods.test/a v1.0.0 " + hashB + "\n", nil, "line 2: hash for mods.test/a v1.0.0 differs from line 1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := ParseGoSum([]byte(tt.in))
			if tt.errLine != "" {
				if err == nil || !errors.Is(err, ErrMalformedGoSum) || !strings.Contains(err.Error(), tt.errLine) {
					t.Fatalf("err = %v, want ErrMalformedGoSum containing %q", err, tt.errLine)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			var got []string
			for _, l := range s.Lines {
				got = append(got, l.String())
			}
			if strings.Join(got, "\n") != strings.Join(tt.want, "\n") {
				t.Fatalf("lines = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestGoSumHashLookup(t *testing.T) {
	s, err := ParseGoSum([]byte("mods.test/a v1.0.0 " + hashA + "\nmods.test/a v1.0.0/go.mod " + hashB + "\n"))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		path, version string
		goMod         bool
		want          string
		ok            bool
	}{
		{"mods.test/a", "v1.0.0", false, hashA, true},
		{"mods.test/a", "v1.0.0", true, hashB, true},
		{"mods.test/a", "v1.1.0", false, "", false},
		{"mods.test/b", "v1.0.0", true, "", false},
	}
	for _, tt := range tests {
		got, ok := s.Hash(tt.path, tt.version, tt.goMod)
		if got != tt.want || ok != tt.ok {
			t.Errorf("Hash(%s, %s, %v) = %q, %v; want %q, %v", tt.path, tt.version, tt.goMod, got, ok, tt.want, tt.ok)
		}
	}
	if s.Lines[1].Line != 2 || !s.Lines[1].GoMod {
		t.Errorf("second line = %+v, want line 2 with GoMod", s.Lines[1])
	}
}

// TestHashesMatchGoSum checks HashMod, HashZip and HashZipReader against the go.sum lines
// modtree computes with dirhash, for modules with and without a go.mod.
func TestHashesMatchGoSum(t *testing.T) {
	mods := []modtree.Module{
		{Path: "mods.test/a", Version: "v1.0.0"},
		{Path: "mods.test/nomod", Version: "v0.1.0", NoGoMod: true},
		{Path: "mods.test/b/v2", Version: "v2.3.4", Require: []module.Version{{Path: "mods.test/a", Version: "v1.0.0"}},
			Files: map[string]string{"x/y.go": "package y\n", "README": "r\n"}},
	}
	for _, m := range mods {
		t.Run(m.Path, func(t *testing.T) {
			lines, err := m.SumLines()
			if err != nil {
				t.Fatal(err)
			}
			zipPath := writeZip(t, m)
			zh, err := HashZip(zipPath)
			if err != nil {
				t.Fatal(err)
			}
			z, _ := m.Zip()
			zr, err := HashZipReader(bytes.NewReader(z), int64(len(z)))
			if err != nil {
				t.Fatal(err)
			}
			mh, err := HashMod(m.GoMod())
			if err != nil {
				t.Fatal(err)
			}
			if want := m.Path + " " + m.Version + " " + zh; lines[0] != want {
				t.Errorf("zip line %q, HashZip gives %q", lines[0], want)
			}
			if zr != zh {
				t.Errorf("HashZipReader = %s, HashZip = %s", zr, zh)
			}
			if want := m.Path + " " + m.Version + "/go.mod " + mh; lines[1] != want {
				t.Errorf("go.mod line %q, HashMod gives %q", lines[1], want)
			}
		})
	}
	if _, err := HashZip(filepath.Join(t.TempDir(), "missing.zip")); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("HashZip(missing) = %v, want fs.ErrNotExist", err)
	}
	if _, err := HashZipReader(strings.NewReader("not a zip"), 9); err == nil {
		t.Error("HashZipReader(garbage) succeeded")
	}
}

func writeZip(t *testing.T, m modtree.Module) string {
	t.Helper()
	z, err := m.Zip()
	if err != nil {
		t.Fatal(err)
	}
	p := filepath.Join(t.TempDir(), "m.zip")
	if err := os.WriteFile(p, z, 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

// FuzzParseGoSum checks that any input is parsed or refused with ErrMalformedGoSum, never
// a panic, and that what is accepted renders back (SumLine.String) to a file that parses to
// the same lines.
func FuzzParseGoSum(f *testing.F) {
	for _, seed := range []string{
		"",
		"mods.test/a v1.0.0 " + hashA + "\nmods.test/a v1.0.0/go.mod " + hashB + "\n",
		"mods.test/Upper v1.0.0/go.mod " + hashA + "\r\n\r\n",
		"mods.test/a v1.0.0 " + hashA + "\nmods.test/a v1.0.0 " + hashB + "\n",
		"mods.test/a/v2 v2.0.0+incompatible " + hashA,
		"mods.test/a v0.0.0-20240102030405-abcdefabcdef h2:x",
		"mods.test/a v1.0 " + hashA,
		"../a v1.0.0 " + hashA,
	} {
		f.Add([]byte(seed))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		s, err := ParseGoSum(data)
		if err != nil {
			if !errors.Is(err, ErrMalformedGoSum) {
				t.Fatalf("error %v does not wrap ErrMalformedGoSum", err)
			}
			return
		}
		var b strings.Builder
		for _, l := range s.Lines {
			b.WriteString(l.String() + "\n")
			if h, ok := s.Hash(l.Path, l.Version, l.GoMod); !ok || h != l.Hash {
				t.Fatalf("Hash(%s %s %v) = %q, %v; want %q", l.Path, l.Version, l.GoMod, h, ok, l.Hash)
			}
		}
		again, err := ParseGoSum([]byte(b.String()))
		if err != nil {
			t.Fatalf("rendered lines do not parse: %v\n%s", err, b.String())
		}
		if len(again.Lines) != len(s.Lines) {
			t.Fatalf("rendered lines parse to %d lines; want %d", len(again.Lines), len(s.Lines))
		}
		for i, l := range again.Lines {
			if l.String() != s.Lines[i].String() {
				t.Fatalf("line %d: %q after rendering; want %q", i, l.String(), s.Lines[i].String())
			}
		}
	})
}
