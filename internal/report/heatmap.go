package report

import (
	"math"
	"slices"
	"sort"
	"time"

	"github.com/holoproxy/holoproxy/internal/netobs"
)

// heatRow is one row of a heatmap: one phase at one upstream.
type heatRow struct {
	Upstream string
	Phase    netobs.Phase
}

// heatCell is one bucket of one row: how many Samples had the phase there and their
// median and maximum duration. N == 0 means no data.
type heatCell struct {
	N           int
	Median, Max time.Duration
}

// heatmap is the latency of every phase at every upstream of one Run, bucketed by start
// time (or by request order).
type heatmap struct {
	Run       string
	Rows      []heatRow
	Cols      int
	ByRequest bool
	// Bucket is the width of a column: a duration in time mode; in request mode the
	// number of requests per column is BucketRequests.
	Bucket         time.Duration
	BucketRequests int
	Span           time.Duration // time covered (time mode)
	Cells          [][]heatCell  // [row][col]
}

// allUpstreams returns the upstreams of every Run in order of first appearance, so that
// side-by-side heatmaps share their rows.
func allUpstreams(t *Trace) []string {
	var out []string
	seen := map[string]bool{}
	for i := range t.Runs {
		for _, u := range upstreams(&t.Runs[i]) {
			if !seen[u] {
				seen[u] = true
				out = append(out, u)
			}
		}
	}
	return out
}

// buildHeatmap buckets the Samples of r into cols columns: by start time over the span of
// the Run, or by start order when byRequest is set.
// phases gives each upstream's rows (phasesOf); an upstream it lacks has netobs.Phases.
func buildHeatmap(r *Run, ups []string, phases map[string][]netobs.Phase, cols int, byRequest bool) heatmap {
	h := heatmap{Run: r.Name, Cols: cols, ByRequest: byRequest}
	rowOf := map[heatRow]int{}
	for _, u := range ups {
		ps := phases[u]
		if ps == nil {
			ps = netobs.Phases
		}
		for _, p := range ps {
			rowOf[heatRow{u, p}] = len(h.Rows)
			h.Rows = append(h.Rows, heatRow{u, p})
		}
	}
	vals := make([][][]time.Duration, len(h.Rows))
	for i := range vals {
		vals[i] = make([][]time.Duration, cols)
	}
	order := make([]int, len(r.Samples))
	for i := range order {
		order[i] = i
	}
	sort.SliceStable(order, func(a, b int) bool { return r.Samples[order[a]].Start.Before(r.Samples[order[b]].Start) })
	first, last := r.bounds()
	h.Span = last.Sub(first)
	if h.Span <= 0 {
		h.Span = 1
	}
	h.Bucket = (h.Span + time.Duration(cols) - 1) / time.Duration(cols)
	h.BucketRequests = max(1, (len(order)+cols-1)/cols)
	for rank, i := range order {
		s := &r.Samples[i]
		var col int
		if byRequest {
			col = rank * cols / max(1, len(order))
		} else {
			col = int(int64(s.Start.Sub(first)) * int64(cols) / int64(h.Span))
		}
		col = max(0, min(col, cols-1))
		for _, p := range allPhases {
			row, ok := rowOf[heatRow{s.Upstream, p}]
			if d := s.PhaseDuration(p); d > 0 && ok {
				vals[row][col] = append(vals[row][col], d)
			}
		}
	}
	h.Cells = make([][]heatCell, len(h.Rows))
	for i := range h.Cells {
		h.Cells[i] = make([]heatCell, cols)
		for j, ds := range vals[i] {
			if len(ds) == 0 {
				continue
			}
			slices.Sort(ds)
			h.Cells[i][j] = heatCell{N: len(ds), Median: ds[(len(ds)-1)/2], Max: ds[len(ds)-1]}
		}
	}
	return h
}

// allPhases are the phases of HTTP exchanges and of exchanges answered by a child process.
var allPhases = []netobs.Phase{netobs.PhaseDNS, netobs.PhaseConnect, netobs.PhaseTLS, netobs.PhaseTTFB, netobs.PhaseTransfer,
	netobs.PhaseLookup, netobs.PhaseVCS, netobs.PhaseGo}

// levels is the number of colour steps of the latency scale, shared by every output.
const levels = 9

// logScale maps durations to colour levels on a logarithmic scale. Its step edges are
// round numbers (1-2-5, 1-3 or 1 per decade, the finest that covers the data) so that the
// legend reads well.
type logScale struct {
	// Bounds are the lower edges of the levels; Hi is the upper edge of the last.
	Bounds [levels]time.Duration
	Hi     time.Duration
}

// seriesDown returns the largest m×10^k (m from mults) not above d.
func seriesDown(d time.Duration, mults []float64) time.Duration {
	p := math.Pow(10, math.Floor(math.Log10(float64(d))))
	for i := len(mults) - 1; i >= 0; i-- {
		if v := mults[i] * p; v <= float64(d)*(1+1e-9) {
			return time.Duration(math.Round(v))
		}
	}
	return time.Duration(math.Round(p))
}

// scaleBetween builds the finest round scale from lo that reaches hi.
func scaleBetween(lo, hi time.Duration) logScale {
	series := [][]float64{{1, 2, 5}, {1, 3}, {1}}
	var sc logScale
	for _, mults := range series {
		v := seriesDown(lo, mults)
		p := math.Pow(10, math.Floor(math.Log10(float64(v))))
		i := slices.Index(mults, math.Round(float64(v)/p))
		for k := 0; k <= levels; k++ {
			d := time.Duration(math.Round(mults[i] * p))
			if k < levels {
				sc.Bounds[k] = d
			} else {
				sc.Hi = d
			}
			if i++; i == len(mults) {
				i, p = 0, p*10
			}
		}
		if sc.Hi >= hi {
			break
		}
	}
	return sc
}

// scaleFor spans every cell of every heatmap, so side-by-side heatmaps share one legend.
// Below 100µs differences do not matter to a download; flooring the scale there keeps tiny
// bodies from stretching it.
func scaleFor(hs []heatmap) logScale {
	var lo, hi time.Duration
	for _, h := range hs {
		for _, row := range h.Cells {
			for _, c := range row {
				if c.N == 0 {
					continue
				}
				if lo == 0 || c.Median < lo {
					lo = c.Median
				}
				hi = max(hi, c.Median)
			}
		}
	}
	if lo <= 0 {
		lo, hi = time.Millisecond, time.Second
	}
	return scaleBetween(max(lo, 100*time.Microsecond), hi)
}

// level returns the colour step 0..levels-1 of d.
func (s logScale) level(d time.Duration) int {
	l := 0
	for i, b := range s.Bounds {
		if d >= b {
			l = i
		}
	}
	return l
}

// bound returns the lower edge of colour step i.
func (s logScale) bound(i int) time.Duration { return s.Bounds[i] }

// Colours of the latency scale, fast to slow: as RGB for HTML and as the nearest colours of
// the 256-colour ANSI palette for terminals.
var (
	heatRGB  = [levels]string{"#2c7bb6", "#00a6ca", "#00b39a", "#6cc46a", "#c3d62f", "#f2c12e", "#f29e2e", "#e76818", "#d7191c"}
	heatANSI = [levels]int{31, 38, 36, 71, 148, 220, 214, 202, 160}
	// heatRamp is the density ramp of plain output; a blank means no data.
	heatRamp = [levels]byte{'.', ':', '-', '=', '+', '*', '#', '%', '@'}
)

// Colours and glyphs of the phases in waterfalls.
var (
	phaseRGB = map[string]string{
		"dns": "#3b8bd0", "connect": "#e39b2d", "tls": "#a95cc4", "ttfb": "#3aa36b", "transfer": "#d04f6a",
		"lookup": "#17a2b8", "vcs": "#6f42c1", "go": "#8d9b2e",
		CostFallThrough: "#8a6d3b", CostOther: "#c3c9d2", CostIdle: "#e9ecf0",
	}
	phaseANSI = map[netobs.Phase]int{"dns": 33, "connect": 214, "tls": 134, "ttfb": 35, "transfer": 168,
		"lookup": 37, "vcs": 98, "go": 142}
	phaseGlyph = map[netobs.Phase]byte{"dns": 'd', "connect": 'c', "tls": 't', "ttfb": 'f', "transfer": '=',
		"lookup": 'l', "vcs": 'v', "go": 'g'}
)

// slowest returns the indexes of the n longest Samples of r, longest first.
func slowest(r *Run, n int) []int {
	idx := make([]int, len(r.Samples))
	for i := range idx {
		idx[i] = i
	}
	sort.SliceStable(idx, func(a, b int) bool {
		return length(&r.Samples[idx[a]]) > length(&r.Samples[idx[b]])
	})
	if len(idx) > n {
		idx = idx[:n]
	}
	return idx
}
