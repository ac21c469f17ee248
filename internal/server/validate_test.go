package server

import (
	"strings"
	"testing"

	"golang.org/x/mod/modfile"
	"golang.org/x/mod/module"
	"golang.org/x/mod/semver"

	"github.com/holoproxy/holoproxy/internal/goproxy"
	"github.com/holoproxy/holoproxy/internal/store"
)

// FuzzCheckAnswer checks the validation of an upstream's .info, @latest, .mod and list
// answers for the request at path: what is accepted is what the kind promises (a list of
// semantic versions; a .info of the version asked, or of a canonical version of the
// module that makes a valid store key; a go.mod declaring the module asked), and what is
// refused gets a one-line reason.
func FuzzCheckAnswer(f *testing.F) {
	for _, s := range []struct{ path, body string }{
		{"mods.test/m/@v/list", "v1.0.0\nv1.1.0-pre\n"},
		{"mods.test/m/@v/list", ""},
		{"mods.test/m/@v/list", "v1.0.0 2024-01-02T03:04:05Z\r\n\n  v2.0.0+incompatible\n"},
		{"mods.test/m/@v/list", "v1.0.0\nmaster\n"},
		{"mods.test/m/@v/list", "v1.0.0\x00\n"},
		{"mods.test/m/@v/list", "<html>\n"},
		{"mods.test/m/@v/v1.0.0.info", `{"Version":"v1.0.0","Time":"2024-01-02T03:04:05Z"}`},
		{"mods.test/m/@v/v1.0.0.info", `{"Version":"v1.0.1"}`},
		{"mods.test/m/@v/v1.0.0.info", `{"Version":""}`},
		{"mods.test/m/@v/v1.0.0.info", `{"Version":"v1.0.0","Time":"yesterday"}`},
		{"mods.test/m/@v/master.info", `{"Version":"v0.0.0-20240102030405-abcdefabcdef"}`},
		{"mods.test/m/@v/master.info", `{"Version":"v1.0"}`},
		{"mods.test/m/@v/master.info", `{"Version":"v1.0.0/../../x"}`},
		{"mods.test/m/v2/@latest", `{"Version":"v1.0.0"}`},
		{"mods.test/m/v2/@latest", `{"Version":"v2.0.0"}`},
		{"mods.test/m/@latest", "[1,2]"},
		{"mods.test/m/@v/v1.0.0.mod", "module mods.test/m\n\ngo 1.22\n"},
		{"mods.test/m/@v/v1.0.0.mod", "module mods.test/other\n"},
		{"mods.test/m/@v/v1.0.0.mod", "go 1.22\n"},
		{"mods.test/m/@v/v1.0.0.mod", "module mods.test/m\nrequire (\nbad\n"},
		{"mods.test/m/@v/v1.0.0.mod", "module \"mods.test/m\"\nfoo bar\nbaz\n"},
	} {
		f.Add(s.path, []byte(s.body))
	}
	f.Fuzz(func(t *testing.T, path string, body []byte) {
		req, err := goproxy.ParseRequest(path)
		if err != nil {
			return
		}
		var reason string
		switch req.Kind {
		case goproxy.KindList:
			err, reason = checkList(body), ReasonInvalidList
			if err == nil {
				for i, line := range strings.Split(string(body), "\n") {
					if f := strings.Fields(line); len(f) > 0 && !semver.IsValid(f[0]) {
						t.Fatalf("accepted a list whose line %d is no version: %q", i+1, line)
					}
				}
			}
		case goproxy.KindInfo, goproxy.KindLatest:
			err, reason = checkInfo(req, body), ReasonInvalidInfo
			if err == nil {
				v, verr := infoVersion(body)
				if verr != nil {
					t.Fatalf("accepted a .info whose version does not read: %v", verr)
				}
				if req.Kind == goproxy.KindInfo && req.Immutable() && v != req.Version {
					t.Fatalf("accepted .info of %q for %q", v, req.Version)
				}
				// storeResolved stores the .info under the version it names.
				key := goproxy.Request{Kind: goproxy.KindInfo, Module: req.Module, Version: v}.Path()
				if r, err := goproxy.ParseRequest(key); err != nil || r.Path() != key || !r.Immutable() {
					t.Fatalf("accepted .info of %q, whose key %q does not parse back as a canonical .info (%v)", v, key, err)
				}
				if err := store.CheckKey(key); err != nil {
					t.Fatalf("accepted .info of %q: %v", v, err)
				}
			}
		case goproxy.KindMod:
			err, reason = checkMod(req, body), ReasonInvalidMod
			if err == nil {
				mf, perr := modfile.ParseLax("go.mod", body, nil)
				if perr != nil || mf.Module == nil || mf.Module.Mod.Path != req.Module {
					t.Fatalf("accepted a go.mod that does not declare %s (%v)", req.Module, perr)
				}
				if cerr := module.CheckPath(req.Module); cerr != nil {
					t.Fatalf("accepted a go.mod of an invalid module path: %v", cerr)
				}
			}
		default:
			return
		}
		if err == nil {
			return
		}
		msg := refuse("https://proxy-a.test", req, reason, err).Error()
		if strings.ContainsAny(msg, "\r\n") {
			t.Fatalf("refusal of more than one line: %q", msg)
		}
	})
}
