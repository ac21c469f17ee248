package report

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/holoproxy/holoproxy/internal/netobs"
)

// directTrace is a deterministic trace of the chain https://proxy-a.test,direct: proxy-a
// answers a private module 404, the client falls through to direct, where the go command
// looks the path up (go-get), runs git and builds the zip; one module direct does not find.
func directTrace() Trace {
	base := time.Date(2026, 11, 26, 9, 0, 0, 0, time.UTC)
	ms := time.Millisecond
	run := Run{Name: "chain", Requests: 4, Failed: 1, FallThroughs: 4}
	at := base
	miss := func(path string) {
		run.Samples = append(run.Samples, netobs.Sample{
			Upstream: proxyA.base, Kind: strings.TrimPrefix(path[strings.LastIndexByte(path, '.'):], "."), Method: "GET",
			URL: proxyA.base + "/" + path, Host: proxyA.host, Start: at, DNS: 3 * ms, Connect: 18 * ms, TLS: 20 * ms,
			Wrote: 41200 * time.Microsecond, TTFB: 19 * ms, Transfer: 100 * time.Microsecond, Total: 60300 * time.Microsecond,
			Status: 404, Bytes: 60, ErrClass: "http_404", TLSVersion: "TLS 1.3", Proto: "HTTP/1.1", RemoteAddr: proxyA.addr,
		})
		at = at.Add(61 * ms)
	}
	direct := func(path string, steps []netobs.Step, transfer, total time.Duration, bytes int64, errClass, err string) {
		s := netobs.Sample{Upstream: "direct", Kind: strings.TrimPrefix(path[strings.LastIndexByte(path, '.'):], "."),
			URL: "direct/" + path, Start: at, Steps: steps, Transfer: transfer, Total: total, Bytes: bytes}
		s.SetStepPhases()
		if errClass == "" {
			s.Status = 200
		} else {
			s.ErrClass, s.Err = errClass, err
		}
		run.Samples = append(run.Samples, s)
		at = at.Add(total + 2*ms)
	}
	clone := []netobs.Step{
		{Phase: netobs.PhaseGo, Command: "go list -m -json corp.test/lib@v1.2.0", Offset: 1 * ms, Duration: 402 * ms},
		{Phase: netobs.PhaseLookup, Command: "GET https://corp.test/lib?go-get=1", Offset: 9 * ms, Duration: 61 * ms, Result: "200 OK"},
		{Phase: netobs.PhaseVCS, Command: "git ls-remote -q --end-of-options https://corp.test/lib.git", Offset: 75 * ms, Duration: 88 * ms},
		{Phase: netobs.PhaseVCS, Command: "git init --bare", Offset: 165 * ms, Duration: 3 * ms},
		{Phase: netobs.PhaseVCS, Command: "git -c protocol.version=2 fetch -f --depth=1 --end-of-options origin refs/tags/v1.2.0:refs/tags/v1.2.0", Offset: 170 * ms, Duration: 190 * ms},
	}
	miss("corp.test/lib/@v/v1.2.0.info")
	direct("corp.test/lib/@v/v1.2.0.info", clone, 50*time.Microsecond, 404*ms, 180, "", "")
	miss("corp.test/lib/@v/v1.2.0.mod")
	direct("corp.test/lib/@v/v1.2.0.mod", nil, 40*time.Microsecond, 300*time.Microsecond, 40, "", "")
	miss("corp.test/lib/@v/v1.2.0.zip")
	direct("corp.test/lib/@v/v1.2.0.zip", []netobs.Step{
		{Phase: netobs.PhaseGo, Command: "go mod download -json corp.test/lib@v1.2.0", Offset: 1 * ms, Duration: 240 * ms},
		{Phase: netobs.PhaseLookup, Command: "GET https://corp.test/lib?go-get=1", Offset: 8 * ms, Duration: 58 * ms, Result: "200 OK"},
		{Phase: netobs.PhaseVCS, Command: "git ls-remote -q --end-of-options origin", Offset: 70 * ms, Duration: 84 * ms},
		{Phase: netobs.PhaseVCS, Command: "git -c core.autocrlf=input -c core.eol=lf archive --format=zip --prefix=prefix/ --end-of-options b7de82ba", Offset: 160 * ms, Duration: 40 * ms},
	}, 2*ms, 244*ms, 48_000, "", "")
	miss("corp.test/gone/@v/v0.1.0.info")
	direct("corp.test/gone/@v/v0.1.0.info", []netobs.Step{
		{Phase: netobs.PhaseGo, Command: "go list -m -json corp.test/gone@v0.1.0", Offset: 1 * ms, Duration: 80 * ms},
		{Phase: netobs.PhaseLookup, Command: "GET https://corp.test/gone?go-get=1", Offset: 8 * ms, Duration: 60 * ms, Result: "404 Not Found"},
	}, 0, 81*ms, 0, "direct_not_found", `direct: corp.test/gone@v0.1.0: unrecognized import path "corp.test/gone": reading https://corp.test/gone?go-get=1: 404 Not Found`)
	run.Wall = at.Sub(base) + 20*ms
	return Trace{Title: "corp.test/lib, GOPROXY=https://proxy-a.test,direct", Runs: []Run{run}}
}

func TestDirectSpans(t *testing.T) {
	tr := directTrace()
	for i := range tr.Runs[0].Samples {
		s := &tr.Runs[0].Samples[i]
		if !stepSample(s) && s.Upstream == "direct" && len(s.Steps) == 0 {
			continue // answered from what an earlier run left
		}
		var sum time.Duration
		prev := time.Duration(-1)
		for _, sp := range spans(s) {
			if sp.From < prev {
				t.Errorf("%s: spans overlap: %v", s.URLString(), spans(s))
			}
			prev = sp.To
			sum += sp.To - sp.From
		}
		if sum > s.Total {
			t.Errorf("%s: spans add up to %s, more than the exchange's %s", s.URLString(), sum, s.Total)
		}
		if s.Upstream == "direct" && s.Transfer > 0 {
			last := spans(s)[len(spans(s))-1]
			if last.Phase != netobs.PhaseTransfer || last.To != s.Total {
				t.Errorf("%s: transfer %v; want it last, ending with the exchange", s.URLString(), last)
			}
		}
	}
	// The info's run: lookup 61ms, vcs 88+3+190ms, the rest of the run go.
	info := &tr.Runs[0].Samples[1]
	if info.Lookup != 61*time.Millisecond || info.VCS != 281*time.Millisecond || info.Go != 402*time.Millisecond-342*time.Millisecond {
		t.Errorf("info: lookup %s, vcs %s, go %s", info.Lookup, info.VCS, info.Go)
	}
}

func TestDirectSummary(t *testing.T) {
	sum := Summarize(directTrace())
	rs := sum.Runs[0]
	if len(rs.Upstreams) != 2 || rs.Upstreams[1].Upstream != "direct" {
		t.Fatalf("upstreams %+v; want proxy-a then direct", rs.Upstreams)
	}
	a, d := rs.Upstreams[0], rs.Upstreams[1]
	if a.FallThroughs != 4 {
		t.Errorf("proxy-a: %d fall-throughs; want its 4 404s", a.FallThroughs)
	}
	if d.Exchanges != 4 || d.OK != 3 || len(d.Errors) != 1 || d.Errors[0].Label != "direct_not_found" {
		t.Errorf("direct: %d exchanges, %d ok, errors %v", d.Exchanges, d.OK, d.Errors)
	}
	if d.Lookup.N != 3 || d.VCS.N != 2 || d.Go.N != 3 || d.NewConns != 0 || d.Reused != 0 || d.Connect.N != 0 {
		t.Errorf("direct: lookup n=%d, vcs n=%d, go n=%d, conns %d/%d; want step phases and no connections", d.Lookup.N, d.VCS.N, d.Go.N, d.NewConns, d.Reused)
	}
	if a.Lookup.N != 0 {
		t.Errorf("proxy-a has lookup figures")
	}
	costs := map[string]bool{}
	var total float64
	for _, s := range rs.Shares {
		total += s.Fraction
		if s.Upstream == "direct" {
			costs[s.Cost] = true
		}
	}
	if !costs["lookup"] || !costs["vcs"] || !costs["go"] || !costs["transfer"] {
		t.Errorf("direct's shares %v; want lookup, vcs, go and transfer", costs)
	}
	if total < 0.999 || total > 1.001 {
		t.Errorf("shares add up to %f", total)
	}
	if !strings.Contains(rs.Verdict, "version control commands (git, ...) at direct") {
		t.Errorf("verdict %q; want git at direct named (the largest cost)", rs.Verdict)
	}
}

func TestDirectJSONRoundTrip(t *testing.T) {
	tr := directTrace()
	var buf bytes.Buffer
	if err := WriteJSON(&buf, tr); err != nil {
		t.Fatal(err)
	}
	for _, field := range []string{`"lookup_ns"`, `"vcs_ns"`, `"go_ns"`, `"steps"`, `"phase": "vcs"`, `"command": "GET https://corp.test/lib?go-get=1"`, `"lookup": {`} {
		if !bytes.Contains(buf.Bytes(), []byte(field)) {
			t.Errorf("JSON lacks %s", field)
		}
	}
	back, err := ReadJSON(&buf)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back.Runs[0].Samples, tr.Runs[0].Samples) {
		t.Errorf("samples changed in a JSON round trip")
	}
	// The proxy's summary has no step figures: the new fields stay out of its JSON.
	var doc struct {
		Runs []struct {
			Summary struct{ Upstreams []map[string]json.RawMessage }
		}
	}
	var again bytes.Buffer
	WriteJSON(&again, tr)
	if err := json.Unmarshal(again.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	if _, ok := doc.Runs[0].Summary.Upstreams[0]["lookup"]; ok {
		t.Errorf("proxy-a's summary has a lookup field")
	}
}

func TestDirectGolden(t *testing.T) {
	tr := directTrace()
	for _, tc := range []struct {
		golden string
		opt    TerminalOptions
	}{
		{"direct.plain.golden", TerminalOptions{Width: 120}},
		{"direct.ansi.golden", TerminalOptions{Width: 120, Color: true}},
	} {
		t.Run(tc.golden, func(t *testing.T) {
			var buf bytes.Buffer
			if err := WriteTerminal(&buf, tr, tc.opt); err != nil {
				t.Fatal(err)
			}
			golden(t, tc.golden, buf.Bytes())
		})
	}
	t.Run("direct.html.golden", func(t *testing.T) {
		var buf bytes.Buffer
		if err := WriteHTML(&buf, tr, HTMLOptions{}); err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{">lookup<", ">vcs<", ">go<", "slowest step: vcs 190ms git -c protocol.version=2 fetch"} {
			if !strings.Contains(buf.String(), want) {
				t.Errorf("HTML lacks %q", want)
			}
		}
		golden(t, "direct.html.golden", buf.Bytes())
	})
}
