package main

import (
	"strings"
	"testing"
)

// serve warns at start when direct would fetch any module path for any client beyond
// this machine, and only then.
func TestDirectExposure(t *testing.T) {
	for _, tc := range []struct {
		listen        string
		mainHasDirect bool
		clientAuth    bool
		warn          bool
	}{
		{":7070", true, false, true},
		{"0.0.0.0:7070", true, false, true},
		{"[::]:7070", true, false, true},
		{"10.1.2.3:7070", true, false, true},
		{"proxy.corp.example:7070", true, false, true},
		{"127.0.0.1:7070", true, false, false},
		{"[::1]:7070", true, false, false},
		{"localhost:7070", true, false, false},
		{":7070", false, false, false}, // direct only in routes, or not at all
		{":7070", true, true, false},   // clients admitted by --client-auth
	} {
		w := directExposure(tc.listen, tc.mainHasDirect, tc.clientAuth)
		if (w != "") != tc.warn {
			t.Errorf("directExposure(%q, %v, %v) = %q; want a warning: %v", tc.listen, tc.mainHasDirect, tc.clientAuth, w, tc.warn)
		}
		if w != "" && (!strings.Contains(w, "--route") || !strings.Contains(w, "--client-auth")) {
			t.Errorf("the warning does not say what to do: %q", w)
		}
	}
}
