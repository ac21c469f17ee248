package report

import (
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/holoproxy/holoproxy/internal/netobs"
)

// Quantiles summarises a set of durations. The zero value means "no observations".
type Quantiles struct {
	N   int           `json:"n"`      // number of observations
	P50 time.Duration `json:"p50_ns"` // median (nearest rank)
	P99 time.Duration `json:"p99_ns"` // 99th percentile (nearest rank)
	Max time.Duration `json:"max_ns"` // largest observation
}

// quantiles computes nearest-rank quantiles of ds; ds is sorted in place.
func quantiles(ds []time.Duration) Quantiles {
	if len(ds) == 0 {
		return Quantiles{}
	}
	slices.Sort(ds)
	rank := func(p float64) time.Duration {
		i := int(math.Ceil(p*float64(len(ds)))) - 1
		return ds[max(0, min(i, len(ds)-1))]
	}
	return Quantiles{N: len(ds), P50: rank(0.50), P99: rank(0.99), Max: ds[len(ds)-1]}
}

// Count is one labelled tally, e.g. an error class or a TLS version and how often it was seen.
type Count struct {
	Label string `json:"label"` // what was counted, e.g. "http_404" or "TLS 1.3"
	N     int    `json:"n"`     // how often
}

// counts turns a tally into Counts, most frequent first, ties by label.
func counts(m map[string]int) []Count {
	out := make([]Count, 0, len(m))
	for k, n := range m {
		out = append(out, Count{k, n})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].N != out[j].N {
			return out[i].N > out[j].N
		}
		return out[i].Label < out[j].Label
	})
	return out
}

// UpstreamSummary holds the figures of one upstream within one Run.
type UpstreamSummary struct {
	// Upstream is the upstream's base URL, as in Sample.Upstream.
	Upstream string `json:"upstream"`
	// Exchanges counts the upstream exchanges (Samples); OK those answered 2xx without error.
	Exchanges int `json:"exchanges"`
	OK        int `json:"ok"`
	// Errors counts the other exchanges by class (ErrClass, else http_<status>).
	Errors []Count `json:"errors,omitempty"`
	// FallThroughs counts exchanges answered 404/410 and then asked at another upstream.
	FallThroughs int `json:"fall_throughs"`

	// DNS is the resolution time requests waited for (Samples with a DNS phase).
	DNS Quantiles `json:"dns"`
	// DNSQueries counts the Run's DNSQuery records for this upstream's host name;
	// DNSCached how many of them the cache answered; DNSQuery their latency.
	DNSQueries int       `json:"dns_queries"`
	DNSCached  int       `json:"dns_cached"`
	DNSQuery   Quantiles `json:"dns_query"`

	// Connect is the TCP connect time of new connections.
	Connect Quantiles `json:"connect"`
	// TLS is the handshake time; TLSVersions, TLSCiphers and TLSGroups tally what the
	// handshakes negotiated; TLSResumed counts resumed sessions.
	TLS         Quantiles `json:"tls"`
	TLSVersions []Count   `json:"tls_versions,omitempty"`
	TLSCiphers  []Count   `json:"tls_ciphers,omitempty"`
	TLSGroups   []Count   `json:"tls_groups,omitempty"`
	TLSResumed  int       `json:"tls_resumed"`

	// TTFB is the time from the request written to the first response byte.
	TTFB Quantiles `json:"ttfb"`
	// Total is the whole exchange.
	Total Quantiles `json:"total"`
	// Lookup, VCS and Go are the phases of exchanges a child process answered (direct:
	// the go command's go-get lookups, version control commands and own work), over the
	// exchanges that had them; absent for an upstream without such exchanges.
	Lookup Quantiles `json:"lookup,omitzero"`
	VCS    Quantiles `json:"vcs,omitzero"`
	Go     Quantiles `json:"go,omitzero"`

	// Bytes is the body bytes read; TransferTime the summed transfer phases of exchanges
	// that read a body; MBps is Bytes/TransferTime in 10^6 bytes per second.
	Bytes        int64         `json:"bytes"`
	TransferTime time.Duration `json:"transfer_ns"`
	MBps         float64       `json:"mb_per_s"`

	// NewConns and Reused count exchanges on a new and on a reused connection; ReuseRate
	// is Reused/(NewConns+Reused).
	NewConns  int     `json:"new_conns"`
	Reused    int     `json:"reused"`
	ReuseRate float64 `json:"reuse_rate"`
	// PeakConns is the most exchanges in flight at once (from Sample start and end times):
	// the connections in use at the peak for HTTP/1.1, an upper bound for HTTP/2.
	PeakConns int `json:"peak_conns"`
}

// Share is the part of a Run's wall time spent on one cost.
type Share struct {
	// Upstream is empty for time outside every upstream exchange.
	Upstream string `json:"upstream,omitempty"`
	// Cost is a phase name (dns, connect, tls, ttfb, transfer; lookup, vcs, go for direct),
	// "fall-through" (the whole
	// of an exchange answered 404/410 and then asked elsewhere), "other" (inside an
	// exchange but in no timed phase: queueing, writing the request) or "idle" (no
	// exchange in flight: the client's own work).
	Cost string `json:"cost"`
	// Time is the wall time attributed to the cost; Fraction is Time divided by the
	// Run's wall time.
	Time     time.Duration `json:"time_ns"`
	Fraction float64       `json:"fraction"`
}

// Names of the costs that are not phases.
const (
	CostFallThrough = "fall-through"
	CostOther       = "other"
	CostIdle        = "idle"
)

// RunSummary holds the figures of one Run.
type RunSummary struct {
	// Name is the Run's name; Wall the wall time the Shares divide (Run.Wall, or the
	// span of its Samples).
	Name string        `json:"name"`
	Wall time.Duration `json:"wall_ns"`
	// Exchanges counts the Run's Samples; Requests, Failed and FallThroughs are copied
	// from the Run.
	Exchanges    int `json:"exchanges"`
	Requests     int `json:"requests,omitempty"`
	Failed       int `json:"failed"`
	FallThroughs int `json:"fall_throughs"`
	// DNSQueries counts every DNSQuery of the Run; DNSByBackend tallies them per backend
	// and DNSRcodes per response code; DNSQuery is their latency.
	DNSQueries   int       `json:"dns_queries"`
	DNSByBackend []Count   `json:"dns_by_backend,omitempty"`
	DNSRcodes    []Count   `json:"dns_rcodes,omitempty"`
	DNSQuery     Quantiles `json:"dns_query"`
	// PeakConns is the most exchanges in flight at once across all upstreams.
	PeakConns int `json:"peak_conns"`
	// Upstreams are in order of first appearance.
	Upstreams []UpstreamSummary `json:"upstreams"`
	// Shares splits the wall time between costs, largest first; they add up to Wall.
	Shares []Share `json:"shares"`
	// Verdict names the dominant costs in one sentence.
	Verdict string `json:"verdict"`
	// Command is the Run's recorded command (Run.Command), nil for a Run of trace's own
	// requests.
	Command *Command `json:"command,omitempty"`
}

// Summary holds the figures of a whole Trace.
type Summary struct {
	// Runs are in the Trace's order.
	Runs []RunSummary `json:"runs"`
	// Comparison relates the Runs' wall times in one sentence; empty for a single Run.
	Comparison string `json:"comparison,omitempty"`
}

// Summarize computes the figures every rendering shows: per Run, per upstream summaries,
// the split of wall time between costs and the verdict.
func Summarize(t Trace) Summary {
	var sum Summary
	for i := range t.Runs {
		sum.Runs = append(sum.Runs, summarizeRun(&t.Runs[i]))
	}
	sum.Comparison = compare(sum.Runs)
	return sum
}

// upstreams returns the upstreams of r in order of first appearance by start time.
func upstreams(r *Run) []string {
	idx := make([]int, len(r.Samples))
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool { return r.Samples[idx[a]].Start.Before(r.Samples[idx[b]].Start) })
	var out []string
	seen := map[string]bool{}
	for _, i := range idx {
		u := r.Samples[i].Upstream
		if !seen[u] {
			seen[u] = true
			out = append(out, u)
		}
	}
	return out
}

func summarizeRun(r *Run) RunSummary {
	rs := RunSummary{
		Name:         r.Name,
		Wall:         r.wall(),
		Exchanges:    len(r.Samples),
		Requests:     r.Requests,
		Failed:       r.Failed,
		FallThroughs: r.FallThroughs,
		DNSQueries:   len(r.DNSQueries),
		PeakConns:    peak(r.Samples, func(*netobs.Sample) bool { return true }),
		Command:      r.Command,
	}
	backends, rcodes := map[string]int{}, map[string]int{}
	var lat []time.Duration
	for _, q := range r.DNSQueries {
		backends[q.Backend]++
		rcodes[q.Rcode]++
		lat = append(lat, q.Latency)
	}
	rs.DNSByBackend, rs.DNSRcodes, rs.DNSQuery = counts(backends), counts(rcodes), quantiles(lat)

	ft := fallThroughs(r)
	for _, u := range upstreams(r) {
		rs.Upstreams = append(rs.Upstreams, summarizeUpstream(r, u, ft))
	}
	rs.Shares = shares(r, ft, rs.Wall)
	rs.Verdict = verdict(rs.Exchanges, rs.Shares)
	return rs
}

func summarizeUpstream(r *Run, upstream string, ft []bool) UpstreamSummary {
	us := UpstreamSummary{Upstream: upstream}
	var dns, conn, tls, ttfb, total, lookup, vcs, goRun []time.Duration
	errs, vers, ciphers, groups := map[string]int{}, map[string]int{}, map[string]int{}, map[string]int{}
	hosts := map[string]bool{}
	// An upstream answered by a child process (direct) makes no connection of ours, even
	// for a request answered without a run.
	process := false
	for i := range r.Samples {
		if r.Samples[i].Upstream == upstream && stepSample(&r.Samples[i]) {
			process = true
			break
		}
	}
	for i := range r.Samples {
		s := &r.Samples[i]
		if s.Upstream != upstream {
			continue
		}
		hosts[hostOf(s)] = true
		us.Exchanges++
		if c := errClass(s); c != "" {
			errs[c]++
		} else {
			us.OK++
		}
		if ft[i] {
			us.FallThroughs++
		}
		if s.DNS > 0 {
			dns = append(dns, s.DNS)
		}
		if s.Connect > 0 {
			conn = append(conn, s.Connect)
		}
		if s.TLS > 0 || s.TLSVersion != "" {
			if s.TLS > 0 {
				tls = append(tls, s.TLS)
			}
			if s.TLSVersion != "" {
				vers[s.TLSVersion]++
			}
			if s.TLSCipher != "" {
				ciphers[s.TLSCipher]++
			}
			if s.TLSCurve != "" {
				groups[s.TLSCurve]++
			}
			if s.TLSResumed {
				us.TLSResumed++
			}
		}
		if s.TTFB > 0 {
			ttfb = append(ttfb, s.TTFB)
		}
		total = append(total, length(s))
		if s.Lookup > 0 {
			lookup = append(lookup, s.Lookup)
		}
		if s.VCS > 0 {
			vcs = append(vcs, s.VCS)
		}
		if s.Go > 0 {
			goRun = append(goRun, s.Go)
		}
		if s.Bytes > 0 && s.Transfer > 0 {
			us.Bytes += s.Bytes
			us.TransferTime += s.Transfer
		}
		switch {
		case process:
		case s.Reused:
			us.Reused++
		case s.Connect > 0 || s.ErrClass == "":
			us.NewConns++
		}
	}
	var qlat []time.Duration
	for _, q := range r.DNSQueries {
		if hosts[strings.ToLower(strings.TrimSuffix(q.Name, "."))] {
			us.DNSQueries++
			if q.Cached {
				us.DNSCached++
			}
			qlat = append(qlat, q.Latency)
		}
	}
	us.Errors = counts(errs)
	us.TLSVersions, us.TLSCiphers, us.TLSGroups = counts(vers), counts(ciphers), counts(groups)
	us.DNS, us.DNSQuery, us.Connect, us.TLS = quantiles(dns), quantiles(qlat), quantiles(conn), quantiles(tls)
	us.TTFB, us.Total = quantiles(ttfb), quantiles(total)
	us.Lookup, us.VCS, us.Go = quantiles(lookup), quantiles(vcs), quantiles(goRun)
	if us.TransferTime > 0 {
		us.MBps = float64(us.Bytes) / 1e6 / us.TransferTime.Seconds()
	}
	if n := us.NewConns + us.Reused; n > 0 {
		us.ReuseRate = float64(us.Reused) / float64(n)
	}
	us.PeakConns = peak(r.Samples, func(s *netobs.Sample) bool { return s.Upstream == upstream })
	return us
}

// peak returns the most Samples (among those keep accepts) in flight at one instant.
// A Sample that ends exactly when another starts does not overlap it.
func peak(samples []netobs.Sample, keep func(*netobs.Sample) bool) int {
	type ev struct {
		t     time.Time
		delta int
	}
	var evs []ev
	for i := range samples {
		s := &samples[i]
		if !keep(s) {
			continue
		}
		evs = append(evs, ev{s.Start, +1}, ev{s.Start.Add(length(s)), -1})
	}
	sort.Slice(evs, func(i, j int) bool {
		if !evs[i].t.Equal(evs[j].t) {
			return evs[i].t.Before(evs[j].t)
		}
		return evs[i].delta < evs[j].delta // ends before starts at the same instant
	})
	n, best := 0, 0
	for _, e := range evs {
		n += e.delta
		best = max(best, n)
	}
	return best
}

// shares splits wall between costs. At every instant the time is divided equally between
// the phases in flight, so that overlapping exchanges are not counted twice and the shares
// add up to the wall time; time with nothing in flight is idle.
func shares(r *Run, ft []bool, wall time.Duration) []Share {
	type cost struct{ upstream, cost string }
	type ev struct {
		t     time.Duration
		c     cost
		delta int
	}
	first, _ := r.bounds()
	var evs []ev
	for i := range r.Samples {
		s := &r.Samples[i]
		off := s.Start.Sub(first)
		n := length(s)
		if n <= 0 {
			continue
		}
		if ft[i] {
			c := cost{s.Upstream, CostFallThrough}
			evs = append(evs, ev{off, c, +1}, ev{off + n, c, -1})
			continue
		}
		// Whole-exchange "other" underneath, phases on top: an instant covered by a phase
		// belongs to the phase alone.
		t := time.Duration(0)
		for _, sp := range spans(s) {
			if sp.From > t {
				c := cost{s.Upstream, CostOther}
				evs = append(evs, ev{off + t, c, +1}, ev{off + sp.From, c, -1})
			}
			c := cost{s.Upstream, string(sp.Phase)}
			evs = append(evs, ev{off + sp.From, c, +1}, ev{off + sp.To, c, -1})
			t = sp.To
		}
		if n > t {
			c := cost{s.Upstream, CostOther}
			evs = append(evs, ev{off + t, c, +1}, ev{off + n, c, -1})
		}
	}
	sort.SliceStable(evs, func(i, j int) bool { return evs[i].t < evs[j].t })
	active := map[cost]int{}
	acc := map[cost]float64{}
	inflight := 0
	var covered float64
	for i := 0; i < len(evs); {
		t := evs[i].t
		for ; i < len(evs) && evs[i].t == t; i++ {
			active[evs[i].c] += evs[i].delta
			inflight += evs[i].delta
		}
		if i == len(evs) || inflight == 0 {
			continue
		}
		dt := float64(evs[i].t - t)
		covered += dt
		for c, k := range active {
			if k > 0 {
				acc[c] += dt * float64(k) / float64(inflight)
			}
		}
	}
	total := float64(wall)
	if covered > total {
		total = covered
	}
	if idle := total - covered; idle > 0 {
		acc[cost{"", CostIdle}] = idle
	}
	var out []Share
	for c, v := range acc {
		if v <= 0 {
			continue
		}
		out = append(out, Share{Upstream: c.upstream, Cost: c.cost, Time: time.Duration(math.Round(v)), Fraction: v / total})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Time != out[j].Time {
			return out[i].Time > out[j].Time
		}
		if out[i].Upstream != out[j].Upstream {
			return out[i].Upstream < out[j].Upstream
		}
		return out[i].Cost < out[j].Cost
	})
	return out
}

// describe names a Share for a sentence: "TTFB at proxy-a.test", "fall-through after 404
// at proxy-a.test", "idle (no upstream exchange in flight)".
func describe(s Share) string {
	switch s.Cost {
	case CostIdle:
		return "outside upstream requests (client work)"
	case CostFallThrough:
		return "fall-through after 404/410 at " + shortName(s.Upstream)
	case CostOther:
		return "queueing and writing requests at " + shortName(s.Upstream)
	case string(netobs.PhaseDNS):
		return "DNS for " + shortName(s.Upstream)
	case string(netobs.PhaseTTFB):
		return "TTFB at " + shortName(s.Upstream)
	case string(netobs.PhaseTLS):
		return "TLS handshakes with " + shortName(s.Upstream)
	case string(netobs.PhaseConnect):
		return "TCP connect to " + shortName(s.Upstream)
	case string(netobs.PhaseTransfer):
		return "transfer from " + shortName(s.Upstream)
	case string(netobs.PhaseLookup):
		return "go-get lookups at " + shortName(s.Upstream)
	case string(netobs.PhaseVCS):
		return "version control commands (git, ...) at " + shortName(s.Upstream)
	case string(netobs.PhaseGo):
		return "the go command's own work at " + shortName(s.Upstream)
	}
	return s.Cost + " at " + shortName(s.Upstream)
}

// percent formats a fraction as a whole percentage, "62 %".
func percent(f float64) string { return fmt.Sprintf("%.0f %%", 100*f) }

// verdict names the largest share and, when they matter (5 % or more), the next one and
// any fall-through cost.
func verdict(exchanges int, sh []Share) string {
	switch {
	case exchanges == 0 && len(sh) == 0:
		return "no upstream exchanges were recorded"
	case len(sh) == 0:
		return "the upstream exchanges took no measurable time"
	}
	parts := []string{percent(sh[0].Fraction) + " of wall time is " + describe(sh[0])}
	var ft *Share
	for i := 1; i < len(sh); i++ {
		if sh[i].Cost == CostFallThrough && sh[0].Cost != CostFallThrough {
			ft = &sh[i]
			break
		}
	}
	if len(sh) > 1 && sh[1].Fraction >= 0.05 && (ft == nil || sh[1] != *ft) {
		parts = append(parts, percent(sh[1].Fraction)+" is "+describe(sh[1]))
	}
	if ft != nil && ft.Fraction >= 0.05 {
		parts = append(parts, percent(ft.Fraction)+" is "+describe(*ft))
	}
	// Connection set-up spread over several phases and upstreams can outweigh any single
	// share; say so when it adds up to more than what was already named.
	var setup, named float64
	for i, s := range sh {
		switch s.Cost {
		case string(netobs.PhaseDNS), string(netobs.PhaseConnect), string(netobs.PhaseTLS):
			setup += s.Fraction
			if i < 2 {
				named += s.Fraction
			}
		}
	}
	if setup >= 0.10 && setup-named >= 0.05 && (len(sh) < 2 || setup > sh[1].Fraction) {
		parts = append(parts, percent(setup)+" is setting up new connections (DNS, TCP connect, TLS)")
	}
	return strings.Join(parts, "; ")
}

// compare relates the wall times of several Runs: the fastest, and how much slower each
// other Run was.
func compare(runs []RunSummary) string {
	if len(runs) < 2 {
		return ""
	}
	best := 0
	for i, r := range runs {
		if r.Wall > 0 && (runs[best].Wall <= 0 || r.Wall < runs[best].Wall) {
			best = i
		}
	}
	b := runs[best]
	parts := []string{fmt.Sprintf("fastest: %s (%s)", b.Name, fmtDur(b.Wall))}
	for i, r := range runs {
		if i == best || b.Wall <= 0 {
			continue
		}
		parts = append(parts, fmt.Sprintf("%s %s (%.1f× slower)", r.Name, fmtDur(r.Wall), float64(r.Wall)/float64(b.Wall)))
	}
	return strings.Join(parts, "; ")
}

// fmtRound formats a duration like fmtDur without trailing zeros ("1ms", "2.5s"), for
// legends and axes whose values are round.
func fmtRound(d time.Duration) string {
	s := fmtDur(d)
	i := strings.IndexByte(s, '.')
	if i < 0 {
		return s
	}
	j := i + 1
	for j < len(s) && s[j] >= '0' && s[j] <= '9' {
		j++
	}
	num := strings.TrimRight(s[:j], "0")
	num = strings.TrimSuffix(num, ".")
	return num + s[j:]
}

// fmtDur formats a duration with three significant figures: "850µs", "12.3ms", "1.25s".
func fmtDur(d time.Duration) string {
	switch {
	case d <= 0:
		return "0"
	case d < time.Microsecond:
		return fmt.Sprintf("%dns", d.Nanoseconds())
	case d < time.Millisecond:
		return fmt.Sprintf("%dµs", d.Microseconds())
	case d < 10*time.Millisecond:
		return fmt.Sprintf("%.2fms", float64(d)/1e6)
	case d < 100*time.Millisecond:
		return fmt.Sprintf("%.1fms", float64(d)/1e6)
	case d < time.Second:
		return fmt.Sprintf("%.0fms", float64(d)/1e6)
	case d < 10*time.Second:
		return fmt.Sprintf("%.2fs", d.Seconds())
	case d < 100*time.Second:
		return fmt.Sprintf("%.1fs", d.Seconds())
	}
	return fmt.Sprintf("%.0fs", d.Seconds())
}
