package warm

import (
	"fmt"
	"io"
	"slices"
	"text/tabwriter"
	"time"

	"github.com/holoproxy/holoproxy/internal/netobs"
)

// WriteSummary writes what a Run did: modules, files, bytes, time, the per-upstream phase
// figures of the exchanges in samples, and every failure.
func WriteSummary(w io.Writer, res Result, samples []netobs.Sample) {
	fmt.Fprintf(w, "warm: %d modules (%d files): %d fetched (%s), %d already present, %d failed in %s",
		res.Modules, res.Files, res.Fetched, FormatBytes(res.Bytes), res.Present, len(res.Failures), res.Wall.Round(time.Millisecond))
	if s := res.Wall.Seconds(); s > 0 && res.Bytes > 0 {
		fmt.Fprintf(w, " (%s/s)", FormatBytes(int64(float64(res.Bytes)/s)))
	}
	fmt.Fprintln(w)
	if res.Pushed > 0 {
		fmt.Fprintf(w, "warm: %d files pushed (fetched and verified by the push destinations' upstreams, checked here)\n", res.Pushed)
	}
	if res.Unverified > 0 {
		fmt.Fprintf(w, "warm: %d files had no go.sum hash and were stored unverified (use --sumdb)\n", res.Unverified)
	}
	if len(samples) > 0 {
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', tabwriter.AlignRight)
		fmt.Fprintln(tw, "upstream\trequests\tok\terrors\tconns new/reused\tconnect p50\ttls p50\tttfb p50\tttfb p99\ttransfer p50\tbytes\t")
		for _, u := range summarize(samples) {
			fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d/%d\t%s\t%s\t%s\t%s\t%s\t%s\t\n",
				u.name, u.requests, u.ok, u.requests-u.ok, u.newConns, u.requests-u.newConns,
				ms(u.phase[netobs.PhaseConnect], 50), ms(u.phase[netobs.PhaseTLS], 50),
				ms(u.phase[netobs.PhaseTTFB], 50), ms(u.phase[netobs.PhaseTTFB], 99),
				ms(u.phase[netobs.PhaseTransfer], 50), FormatBytes(u.bytes))
		}
		tw.Flush()
	}
	for _, f := range res.Failures {
		fmt.Fprintf(w, "FAILED %s: %v\n", f.Item, f.Err)
	}
}

// upstreamFigures are the phase figures of one upstream's exchanges.
type upstreamFigures struct {
	name                   string
	requests, ok, newConns int
	bytes                  int64
	phase                  map[netobs.Phase][]time.Duration // durations of the exchanges that had the phase
}

// summarize groups samples by upstream, in order of first appearance.
func summarize(samples []netobs.Sample) []*upstreamFigures {
	var out []*upstreamFigures
	by := map[string]*upstreamFigures{}
	for _, s := range samples {
		u := by[s.Upstream]
		if u == nil {
			u = &upstreamFigures{name: s.Upstream, phase: map[netobs.Phase][]time.Duration{}}
			by[s.Upstream] = u
			out = append(out, u)
		}
		u.requests++
		if s.OK() {
			u.ok++
		}
		if !s.Reused {
			u.newConns++
		}
		u.bytes += s.Bytes
		for _, p := range netobs.Phases {
			if d := s.PhaseDuration(p); d > 0 {
				u.phase[p] = append(u.phase[p], d)
			}
		}
	}
	return out
}

// ms renders the pth percentile of ds in milliseconds, "-" when there is none.
func ms(ds []time.Duration, p int) string {
	if len(ds) == 0 {
		return "-"
	}
	sorted := append([]time.Duration(nil), ds...)
	slices.Sort(sorted)
	i := (len(sorted)*p+99)/100 - 1
	i = max(0, min(i, len(sorted)-1))
	return fmt.Sprintf("%.1fms", float64(sorted[i])/float64(time.Millisecond))
}
