package report

import (
	_ "embed"
	"fmt"
	"html/template"
	"io"
	"math"
	"slices"
	"time"

	"github.com/holoproxy/holoproxy/internal/netobs"
)

// HTMLOptions shape the HTML rendering.
type HTMLOptions struct {
	// Buckets is the number of heatmap columns per Run; 0 means 60.
	Buckets int
	// ByRequest makes heatmap columns follow requests in start order instead of time.
	ByRequest bool
	// Slowest is the number of waterfalls per Run; 0 means 8, negative means none.
	Slowest int
}

//go:embed trace.html.tmpl
var pageSource string

//go:embed trace.css
var pageCSS string

var page = template.Must(template.New("trace").Parse(pageSource))

// WriteHTML writes the report as one standalone page: inline CSS and SVG, no scripts and no
// network assets, readable offline and printable. Runs are side by side.
func WriteHTML(w io.Writer, t Trace, opt HTMLOptions) error {
	return page.Execute(w, buildPage(&t, opt))
}

type htmlPage struct {
	Title, Traced string
	CSS           template.CSS
	Comparison    string
	Runs          []htmlRun
	Heatmaps      []htmlHeatmap
	HeatWhat      string
	Legend        htmlLegend
	Tables        []htmlTable
	Waterfalls    []htmlWaterfall
	WaterfallAxis string
	Phases        []swatch
	SchemaVersion int
	// SideCols is how many Runs sit side by side before the grid wraps.
	SideCols int
	// HeatPhaseX and HeatTextDY place the heatmap row labels.
	HeatPhaseX, HeatTextDY int
}

type swatch struct{ Label, Color string }

type htmlRun struct {
	Name, Wall, Verdict string
	Facts               []string
	Bar                 []htmlSegment
	Top                 []htmlShare
}

// htmlSegment is a piece of the stacked bar of wall-time shares, in percent of its width.
type htmlSegment struct {
	X, W        string
	Color, Hint string
}

type htmlShare struct{ Color, Label, Percent, Time string }

type htmlTable struct {
	Title string
	Head  []string
	Rows  [][]string
}

type htmlHeatmap struct {
	Run, Bucket   string
	Width, Height int
	Rows          []htmlHeatRow
	Cells         []htmlRect
	Ticks         []htmlTick
}

type htmlHeatRow struct {
	Upstream, Phase string
	Y               int
}

type htmlRect struct {
	X, Y, W, H float64
	Fill, Hint string
	Empty      bool
}

type htmlTick struct {
	X     float64
	Label string
	// Anchor is the SVG text-anchor of the label.
	Anchor string
}

type htmlLegend struct {
	Steps []htmlLegendStep
	Hi    string
}

type htmlLegendStep struct{ Color, From string }

type htmlWaterfall struct {
	Run           string
	Width, Height int
	Items         []htmlWaterfallItem
	Grid          []htmlTick
}

type htmlWaterfallItem struct {
	Y                        int
	Rank, Label, Detail, URL string
	Total                    string
	Outline                  htmlRect
	Bars                     []htmlRect
}

// Geometry of the SVG drawings, in user units.
const (
	heatLabelW   = 150
	heatCellW    = 10
	heatCellH    = 17
	heatGroupGap = 10
	heatTop      = 4
	wfBarW       = 560
	wfRowH       = 34
)

func buildPage(t *Trace, opt HTMLOptions) htmlPage {
	sum := Summarize(*t)
	pg := htmlPage{Title: t.Title, CSS: template.CSS(pageCSS), Comparison: sum.Comparison, SchemaVersion: SchemaVersion,
		HeatPhaseX: heatLabelW - 6, HeatTextDY: heatCellH - 5, SideCols: max(1, min(len(t.Runs), 3))}
	if pg.Title == "" {
		pg.Title = "holoproxy trace"
	}
	var first time.Time
	for i := range t.Runs {
		if f, _ := t.Runs[i].bounds(); !f.IsZero() && (first.IsZero() || f.Before(first)) {
			first = f
		}
	}
	if !first.IsZero() {
		pg.Traced = first.UTC().Format("2006-01-02 15:04:05 UTC")
	}
	for _, r := range sum.Runs {
		pg.Runs = append(pg.Runs, htmlRunOf(r))
	}
	legend := netobs.Phases
	if hasSteps(t) {
		legend = append(slices.Clone(legend), netobs.PhaseLookup, netobs.PhaseVCS, netobs.PhaseGo)
	}
	for _, p := range legend {
		pg.Phases = append(pg.Phases, swatch{string(p), phaseRGB[string(p)]})
	}
	pg.Phases = append(pg.Phases, swatch{"other (queueing, writing)", phaseRGB[CostOther]})

	// Tables: the overview, then one per upstream, Runs as columns.
	ov := columns("", sum.Runs, func(r *RunSummary) [][2]string { return runFigures(*r) })
	pg.Tables = append(pg.Tables, htmlTable{Title: "Runs", Head: ov.head, Rows: ov.rows})
	for _, u := range allUpstreams(t) {
		tb := columns("", sum.Runs, func(r *RunSummary) [][2]string { return upstreamFigures(r.find(u)) })
		pg.Tables = append(pg.Tables, htmlTable{Title: u, Head: tb.head, Rows: tb.rows})
	}

	// Heatmaps.
	cols := opt.Buckets
	if cols <= 0 {
		cols = 60
	}
	ups := allUpstreams(t)
	phases := phasesOf(t)
	var hs []heatmap
	for i := range t.Runs {
		hs = append(hs, buildHeatmap(&t.Runs[i], ups, phases, cols, opt.ByRequest))
	}
	sc := scaleFor(hs)
	pg.HeatWhat = "Columns are equal slices of each run's time; each cell is the median duration of the phase for exchanges that started in it."
	if opt.ByRequest {
		pg.HeatWhat = "Columns are exchanges in start order; each cell is the median duration of the phase for the exchanges in it."
	}
	for _, h := range hs {
		pg.Heatmaps = append(pg.Heatmaps, htmlHeatmapOf(h, sc))
	}
	for i := 0; i < levels; i++ {
		pg.Legend.Steps = append(pg.Legend.Steps, htmlLegendStep{heatRGB[i], fmtRound(sc.bound(i))})
	}
	pg.Legend.Hi = fmtRound(sc.Hi)

	// Waterfalls on one axis.
	n := opt.Slowest
	if n == 0 {
		n = 8
	}
	if n > 0 {
		var scale time.Duration
		for i := range t.Runs {
			for _, j := range slowest(&t.Runs[i], n) {
				scale = max(scale, length(&t.Runs[i].Samples[j]))
			}
		}
		if scale > 0 {
			scale = axisUp(scale)
			pg.WaterfallAxis = fmtRound(scale)
			for i := range t.Runs {
				pg.Waterfalls = append(pg.Waterfalls, htmlWaterfallOf(&t.Runs[i], n, scale))
			}
		}
	}
	return pg
}

// axisUp rounds d up to a round axis end: 1, 1.5, 2, 2.5, 3, 4, 5, 6 or 8 times a power of ten.
func axisUp(d time.Duration) time.Duration {
	p := math.Pow(10, math.Floor(math.Log10(float64(d))))
	for _, m := range []float64{1, 1.5, 2, 2.5, 3, 4, 5, 6, 8, 10} {
		if m*p >= float64(d) {
			return time.Duration(m * p)
		}
	}
	return time.Duration(10 * p)
}

func htmlRunOf(r RunSummary) htmlRun {
	hr := htmlRun{Name: r.Name, Wall: fmtDur(r.Wall), Verdict: r.Verdict}
	req := fmt.Sprintf("%d exchanges", r.Exchanges)
	if r.Requests > 0 {
		req = fmt.Sprintf("%d requests, %d exchanges", r.Requests, r.Exchanges)
	}
	hr.Facts = []string{req, fmt.Sprintf("%d failed", r.Failed), fmt.Sprintf("%d fall-throughs", r.FallThroughs),
		fmt.Sprintf("%d DNS queries", r.DNSQueries), fmt.Sprintf("peak %d in flight", r.PeakConns)}
	if r.Command != nil {
		hr.Facts = append(hr.Facts, "command exit "+exitText(r.Command))
	}
	x := 0.0
	for _, s := range r.Shares {
		w := 100 * s.Fraction
		hint := fmt.Sprintf("%s: %s, %s", costLabel(s), percent(s.Fraction), fmtDur(s.Time))
		hr.Bar = append(hr.Bar, htmlSegment{X: fmt.Sprintf("%.3f", x), W: fmt.Sprintf("%.3f", w), Color: phaseRGB[s.Cost], Hint: hint})
		x += w
		if len(hr.Top) < 6 && s.Fraction >= 0.01 {
			hr.Top = append(hr.Top, htmlShare{Color: phaseRGB[s.Cost], Label: costLabel(s), Percent: percent(s.Fraction), Time: fmtDur(s.Time)})
		}
	}
	return hr
}

func htmlHeatmapOf(h heatmap, sc logScale) htmlHeatmap {
	hh := htmlHeatmap{Run: h.Run, Width: heatLabelW + h.Cols*heatCellW + 8}
	hh.Bucket = fmtDur(h.Bucket) + " per column"
	if h.ByRequest {
		hh.Bucket = fmt.Sprintf("%d exchanges per column", h.BucketRequests)
	}
	y := heatTop
	for i, row := range h.Rows {
		if i > 0 && h.Rows[i-1].Upstream != row.Upstream {
			y += heatGroupGap
		}
		up := ""
		if i == 0 || h.Rows[i-1].Upstream != row.Upstream {
			up = shortName(row.Upstream)
		}
		hh.Rows = append(hh.Rows, htmlHeatRow{Upstream: up, Phase: string(row.Phase), Y: y})
		for j, c := range h.Cells[i] {
			r := htmlRect{X: float64(heatLabelW + j*heatCellW), Y: float64(y), W: heatCellW - 1, H: heatCellH - 1}
			where := fmt.Sprintf("+%s", fmtDur(h.Bucket*time.Duration(j)))
			if h.ByRequest {
				where = fmt.Sprintf("exchanges %d–%d", j*h.BucketRequests+1, (j+1)*h.BucketRequests)
			}
			if c.N == 0 {
				r.Empty = true
				r.Fill = "#eef0f3"
				r.Hint = fmt.Sprintf("%s %s, %s: no %s phase", shortName(row.Upstream), row.Phase, where, row.Phase)
			} else {
				r.Fill = heatRGB[sc.level(c.Median)]
				r.Hint = fmt.Sprintf("%s %s, %s: median %s, max %s, n=%d", shortName(row.Upstream), row.Phase, where, fmtDur(c.Median), fmtDur(c.Max), c.N)
			}
			hh.Cells = append(hh.Cells, r)
		}
		y += heatCellH
	}
	hh.Height = y + 22
	for k := 0; k <= 4; k++ {
		tk := htmlTick{X: float64(heatLabelW + k*h.Cols*heatCellW/4), Anchor: "middle"}
		if h.ByRequest {
			tk.Label = fmt.Sprintf("#%d", k*h.Cols*h.BucketRequests/4)
		} else {
			tk.Label = fmtDur(h.Span * time.Duration(k) / 4)
		}
		switch k {
		case 0:
			tk.Anchor, tk.Label = "start", "0"
		case 4:
			tk.Anchor = "end"
		}
		hh.Ticks = append(hh.Ticks, tk)
	}
	return hh
}

func htmlWaterfallOf(r *Run, n int, scale time.Duration) htmlWaterfall {
	wf := htmlWaterfall{Run: r.Name, Width: wfBarW + 16}
	first, _ := r.bounds()
	x := func(d time.Duration) float64 { return 8 + float64(wfBarW)*float64(d)/float64(scale) }
	y := 0
	for k, i := range slowest(r, n) {
		s := &r.Samples[i]
		status := fmt.Sprint(s.Status)
		if c := errClass(s); c != "" {
			status = c
		}
		conn := "reused"
		switch {
		case stepSample(s):
			conn = "go command"
			if st := slowestStep(s); st != "" {
				conn += " · slowest step: " + st
			}
		case !s.Reused:
			conn = "new conn"
		}
		it := htmlWaterfallItem{
			Y: y, Rank: fmt.Sprintf("#%d", k+1), Total: fmtDur(length(s)),
			Label:  clipMiddle(shortName(s.Upstream)+"/"+requestPath(s), 52),
			URL:    s.URLString(),
			Detail: fmt.Sprintf("%s · %s · +%s", status, conn, fmtDur(s.Start.Sub(first))),
		}
		it.Outline = htmlRect{X: x(0), Y: float64(y + 18), W: x(length(s)) - x(0), H: 12, Fill: phaseRGB[CostOther],
			Hint: fmt.Sprintf("whole exchange %s", fmtDur(length(s)))}
		for _, sp := range spans(s) {
			hint := fmt.Sprintf("%s %s", sp.Phase, fmtDur(sp.To-sp.From))
			if st, ok := longestStep(s, sp.Phase, sp.From, sp.To); ok {
				hint += fmt.Sprintf(": %s (%s)", st.Command, fmtDur(st.Duration))
			}
			it.Bars = append(it.Bars, htmlRect{X: x(sp.From), Y: float64(y + 18), W: max(0.8, x(sp.To)-x(sp.From)), H: 12,
				Fill: phaseRGB[string(sp.Phase)], Hint: hint})
		}
		wf.Items = append(wf.Items, it)
		y += wfRowH + 8
	}
	wf.Height = y + 18
	for k := 0; k <= 4; k++ {
		tk := htmlTick{X: x(scale * time.Duration(k) / 4), Label: fmtRound(scale * time.Duration(k) / 4), Anchor: "middle"}
		switch k {
		case 0:
			tk.Anchor, tk.Label = "start", "0"
		case 4:
			tk.Anchor = "end"
		}
		wf.Grid = append(wf.Grid, tk)
	}
	return wf
}
