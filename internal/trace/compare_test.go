package trace

import (
	"errors"
	"testing"

	"github.com/holoproxy/holoproxy/internal/report"
)

func TestCompareSetups(t *testing.T) {
	const proxy = "https://proxy-a.test,https://proxy-b.test"
	for _, tc := range []struct {
		spec, dns string
		want      []Setup // nil: an error
		usage     bool    // the error wraps ErrBadCompare
	}{
		{spec: "", dns: "system", want: []Setup{
			{Name: "https://proxy-a.test alone", Only: "https://proxy-a.test", DNS: "system"},
			{Name: "https://proxy-b.test alone", Only: "https://proxy-b.test", DNS: "system"},
			{Name: "chain", DNS: "system"},
		}},
		{spec: "", dns: "udp://10.0.0.53:53", want: []Setup{ // the backend stays out of the names
			{Name: "https://proxy-a.test alone", Only: "https://proxy-a.test", DNS: "udp://10.0.0.53:53"},
			{Name: "https://proxy-b.test alone", Only: "https://proxy-b.test", DNS: "udp://10.0.0.53:53"},
			{Name: "chain", DNS: "udp://10.0.0.53:53"},
		}},
		{spec: "transports", dns: "system", want: []Setup{{Name: NameFresh, Fresh: true, DNS: "system"}, {Name: NameShared, DNS: "system"}}},
		{spec: "dns=system, udp://10.0.0.53:53", want: []Setup{{Name: "dns=system", DNS: "system"}, {Name: "dns=udp://10.0.0.53:53", DNS: "udp://10.0.0.53:53"}}},
		{spec: "sideways", usage: true},
		{spec: "dns=", usage: true},
		{spec: "dns=system,,udp://10.0.0.53:53", usage: true},
		{spec: "dns=system"},                 // one backend is no comparison
		{spec: "dns=system,system"},          // named twice
		{spec: "dns=system,ftp://10.0.0.53"}, // not a backend
	} {
		got, err := CompareSetups(tc.spec, proxy, tc.dns)
		if tc.want == nil {
			if err == nil {
				t.Errorf("CompareSetups(%q) = %v; want an error", tc.spec, got)
			} else if tc.usage && !errors.Is(err, ErrBadCompare) {
				t.Errorf("CompareSetups(%q): %v; want ErrBadCompare", tc.spec, err)
			}
			continue
		}
		if err != nil || len(got) != len(tc.want) {
			t.Errorf("CompareSetups(%q, %q) = %v, %v; want %v", tc.spec, tc.dns, got, err, tc.want)
			continue
		}
		for i := range got {
			if got[i] != tc.want[i] {
				t.Errorf("CompareSetups(%q, %q)[%d] = %+v; want %+v", tc.spec, tc.dns, i, got[i], tc.want[i])
			}
		}
	}
}

func TestChainFailures(t *testing.T) {
	setups := []Setup{{Only: "https://proxy-a.test"}, {}, {Fresh: true}}
	tr := report.Trace{Runs: []report.Run{
		{Requests: 10, Failed: 4}, // proxy-a alone: its 404s are no failure of the chain
		{Requests: 10, Failed: 1},
		{Requests: 12, Failed: 2},
	}}
	if failed, requests := ChainFailures(setups, tr); failed != 3 || requests != 22 {
		t.Errorf("ChainFailures = %d of %d; want 3 of 22 (the chain runs only)", failed, requests)
	}
}
