package goproxy

import (
	"errors"
	"io/fs"
	"strings"
	"testing"
)

func TestParseRequest(t *testing.T) {
	tests := []struct {
		path    string
		want    Request
		wantErr error // nil, ErrBadRequest or fs.ErrNotExist
	}{
		{path: "example.com/m/@v/list", want: Request{Kind: KindList, Module: "example.com/m"}},
		{path: "example.com/m/@latest", want: Request{Kind: KindLatest, Module: "example.com/m"}},
		{path: "example.com/m/@v/v1.2.3.info", want: Request{Kind: KindInfo, Module: "example.com/m", Version: "v1.2.3"}},
		{path: "example.com/m/@v/v1.2.3.mod", want: Request{Kind: KindMod, Module: "example.com/m", Version: "v1.2.3"}},
		{path: "example.com/m/@v/v1.2.3.zip", want: Request{Kind: KindZip, Module: "example.com/m", Version: "v1.2.3"}},
		{path: "github.com/!azure/!s!d!k/@v/v1.0.0.zip", want: Request{Kind: KindZip, Module: "github.com/Azure/SDK", Version: "v1.0.0"}},
		{path: "example.com/m/v2/@v/v2.0.0.mod", want: Request{Kind: KindMod, Module: "example.com/m/v2", Version: "v2.0.0"}},
		{path: "example.com/m/@v/v2.0.0+incompatible.zip", want: Request{Kind: KindZip, Module: "example.com/m", Version: "v2.0.0+incompatible"}},
		{path: "example.com/m/@v/v0.0.0-20240101000000-abcdefabcdef.mod", want: Request{Kind: KindMod, Module: "example.com/m", Version: "v0.0.0-20240101000000-abcdefabcdef"}},
		{path: "example.com/m/@v/v1.0.0-!r!c1.info", want: Request{Kind: KindInfo, Module: "example.com/m", Version: "v1.0.0-RC1"}},
		// A branch or commit query is fine for .info: it is resolved upstream.
		{path: "example.com/m/@v/master.info", want: Request{Kind: KindInfo, Module: "example.com/m", Version: "master"}},
		{path: "example.com/m/@v/abc123.info", want: Request{Kind: KindInfo, Module: "example.com/m", Version: "abc123"}},

		{path: "example.com/m/@v/master.mod", wantErr: ErrBadRequest},
		{path: "example.com/m/@v/v1.2.zip", wantErr: ErrBadRequest},
		{path: "example.com/m/@v/v2.0.0.mod", wantErr: ErrBadRequest}, // v2 needs /v2 path
		{path: "example.com/m/@v/.info", wantErr: ErrBadRequest},
		{path: "example.com/m/@v/a/b.info", wantErr: ErrBadRequest},
		{path: "example.com/M/@v/list", wantErr: ErrBadRequest}, // upper case must be escaped
		{path: "example.com/../etc/@v/list", wantErr: ErrBadRequest},
		{path: "example.com/./m/@v/list", wantErr: ErrBadRequest},
		{path: "/etc/passwd/@v/list", wantErr: ErrBadRequest},
		{path: "example.com//m/@v/list", wantErr: ErrBadRequest},
		{path: "example.com/m\x00/@v/list", wantErr: ErrBadRequest},
		{path: "example.com\\m/@v/list", wantErr: ErrBadRequest},
		{path: "example.com/m/@v/v1.0.0!.info", wantErr: ErrBadRequest},
		{path: "/@v/list", wantErr: ErrBadRequest},
		{path: "@v/list", wantErr: fs.ErrNotExist},
		{path: strings.Repeat("a/", MaxPathLen) + "@v/list", wantErr: ErrBadRequest},
		{path: "example.com/m/@v/v1.0.0.tar", wantErr: fs.ErrNotExist},
		{path: "example.com/m", wantErr: fs.ErrNotExist},
		{path: "", wantErr: fs.ErrNotExist},
	}
	for _, tt := range tests {
		got, err := ParseRequest(tt.path)
		if tt.wantErr != nil {
			if !errors.Is(err, tt.wantErr) {
				t.Errorf("ParseRequest(%q) = %+v, %v; want error %v", tt.path, got, err, tt.wantErr)
			}
			continue
		}
		if err != nil || got != tt.want {
			t.Errorf("ParseRequest(%q) = %+v, %v; want %+v", tt.path, got, err, tt.want)
			continue
		}
		if p := got.Path(); p != tt.path {
			t.Errorf("ParseRequest(%q).Path() = %q; want the path back", tt.path, p)
		}
	}
}

func TestImmutable(t *testing.T) {
	for _, tt := range []struct {
		r    Request
		want bool
	}{
		{Request{Kind: KindZip, Module: "example.com/m", Version: "v1.0.0"}, true},
		{Request{Kind: KindInfo, Module: "example.com/m", Version: "v1.0.0"}, true},
		{Request{Kind: KindInfo, Module: "example.com/m", Version: "master"}, false},
		{Request{Kind: KindInfo, Module: "example.com/m", Version: "v1.0"}, false},
		{Request{Kind: KindList, Module: "example.com/m"}, false},
		{Request{Kind: KindLatest, Module: "example.com/m"}, false},
	} {
		if got := tt.r.Immutable(); got != tt.want {
			t.Errorf("%v.Immutable() = %v; want %v", tt.r, got, tt.want)
		}
	}
}

// FuzzParseRequest checks that any accepted path is valid, round-trips through Path, and
// never escapes the tree (no absolute path, no dot elements, no NUL or backslash).
func FuzzParseRequest(f *testing.F) {
	for _, s := range []string{
		"example.com/m/@v/list", "github.com/!azure/sdk/@v/v1.0.0.zip", "example.com/m/@latest",
		"example.com/m/v2/@v/v2.0.0+incompatible.mod", "example.com/m/@v/master.info",
		"../x/@v/list", "example.com/m/@v/v1.0.0.info/../../x",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, p string) {
		r, err := ParseRequest(p)
		if err != nil {
			if !errors.Is(err, ErrBadRequest) && !errors.Is(err, fs.ErrNotExist) {
				t.Fatalf("ParseRequest(%q): error %v is neither bad request nor not found", p, err)
			}
			return
		}
		key := r.Path()
		if key != p {
			t.Fatalf("ParseRequest(%q).Path() = %q", p, key)
		}
		if strings.HasPrefix(key, "/") || strings.ContainsAny(key, "\x00\\") {
			t.Fatalf("accepted unsafe path %q", p)
		}
		for _, el := range strings.Split(key, "/") {
			if el == "" || el == "." || el == ".." {
				t.Fatalf("accepted path %q with element %q", p, el)
			}
		}
	})
}
