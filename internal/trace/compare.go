package trace

import (
	"errors"
	"fmt"
	"strings"

	"github.com/holoproxy/holoproxy/internal/netobs"
	"github.com/holoproxy/holoproxy/internal/report"
)

// Names of the Runs a comparison makes.
const (
	NameShared = "shared transport"
	NameFresh  = "fresh transports"
)

// ErrBadCompare is the error of a comparison spec ParseCompare does not accept.
var ErrBadCompare = errors.New(`want "transports" or "dns=BACKEND,BACKEND,..."`)

// CompareSetups returns the Runs of a comparison of the chain, spec being the value of
// trace's --compare flag:
//
//   - "transports": fresh transports for every pass and proxy (no connection, TLS session
//     or DNS answer kept, as a series of go commands) against one shared transport (as
//     `serve`), both on the resolver backend dns;
//   - "dns=B1,B2,...": one Run per resolver backend (the --dns forms: system,
//     udp://host:port, tcp://..., tls://..., https://...), with a shared transport.
//
// An empty spec returns the default Runs, PerEntrySetups on the backend dns, named as
// PerEntrySetups names them ("chain", "<proxy> alone"). Errors wrap
// ErrBadCompare or the backend's parse error.
func CompareSetups(spec, proxy, dns string) ([]Setup, error) {
	switch {
	case spec == "":
		setups, err := PerEntrySetups(proxy)
		if err != nil {
			return nil, err
		}
		for i := range setups {
			// One backend for every Run: it is not what tells them apart, so it stays out
			// of their names (the caller names it once, in the title).
			setups[i].Name = setups[i].name()
			setups[i].DNS = dns
		}
		return setups, nil
	case spec == "transports":
		return []Setup{{Name: NameFresh, Fresh: true, DNS: dns}, {Name: NameShared, DNS: dns}}, nil
	case strings.HasPrefix(spec, "dns="):
		var setups []Setup
		seen := map[string]bool{}
		for _, b := range strings.Split(strings.TrimPrefix(spec, "dns="), ",") {
			b = strings.TrimSpace(b)
			if b == "" {
				return nil, fmt.Errorf("%q: empty backend: %w", spec, ErrBadCompare)
			}
			if seen[b] {
				return nil, fmt.Errorf("%q: backend %s named twice", spec, b)
			}
			seen[b] = true
			if _, err := netobs.ParseBackend(b, netobs.BackendOptions{}); err != nil {
				return nil, fmt.Errorf("%q: %w", spec, err)
			}
			setups = append(setups, Setup{Name: "dns=" + b, DNS: b})
		}
		if len(setups) < 2 {
			return nil, fmt.Errorf("%q: a comparison needs two backends or more", spec)
		}
		return setups, nil
	}
	return nil, fmt.Errorf("%q: %w", spec, ErrBadCompare)
}

// ChainFailures sums the requests and the failed requests of the Runs of t that went
// through the whole chain. t.Runs must be in the order of setups, as Run returns them.
// Runs of one proxy alone are left out: a proxy answering 404 for a module the next one
// has is what a chain is for, not a failure.
func ChainFailures(setups []Setup, t report.Trace) (failed, requests int) {
	for i, s := range setups {
		if s.Only != "" || i >= len(t.Runs) {
			continue
		}
		failed += t.Runs[i].Failed
		requests += t.Runs[i].Requests
	}
	return failed, requests
}
