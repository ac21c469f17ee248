package report

import (
	"bufio"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/holoproxy/holoproxy/internal/netobs"
)

// TerminalOptions shape the terminal rendering.
type TerminalOptions struct {
	// Color selects 256-colour ANSI output; the caller sets it when the writer is a
	// terminal. Without it the output is plain text with a density ramp.
	Color bool
	// Width is the line width to fit; 0 means 100.
	Width int
	// Buckets is the number of heatmap columns per Run; 0 fits them into Width.
	Buckets int
	// ByRequest makes heatmap columns follow requests in start order instead of time.
	ByRequest bool
	// Slowest is the number of waterfalls per Run; 0 means 5, negative means none.
	Slowest int
}

func (o TerminalOptions) width() int {
	if o.Width <= 0 {
		return 100
	}
	return o.Width
}

func (o TerminalOptions) slowest() int {
	if o.Slowest == 0 {
		return 5
	}
	return max(0, o.Slowest)
}

// WriteTerminal writes the report for a terminal: the verdict, a table of figures per
// upstream with the Runs as columns, the latency heatmaps side by side and the slowest
// requests as waterfalls.
func WriteTerminal(w io.Writer, t Trace, opt TerminalOptions) error {
	bw := bufio.NewWriter(w)
	tw := termWriter{w: bw, color: opt.Color}
	sum := Summarize(t)
	tw.writeHeader(t, sum)
	tw.writeTables(sum)
	tw.writeHeatmaps(&t, opt)
	tw.writeWaterfalls(&t, opt)
	return bw.Flush()
}

type termWriter struct {
	w     *bufio.Writer
	color bool
}

// sgr wraps s in an ANSI graphics sequence when colour is on.
func (tw termWriter) sgr(code, s string) string {
	if !tw.color || s == "" {
		return s
	}
	return "\x1b[" + code + "m" + s + "\x1b[0m"
}

func (tw termWriter) bold(s string) string { return tw.sgr("1", s) }
func (tw termWriter) dim(s string) string  { return tw.sgr("2", s) }

func (tw termWriter) println(parts ...string) {
	tw.w.WriteString(strings.TrimRight(strings.Join(parts, ""), " "))
	tw.w.WriteByte('\n')
}

// visible returns the printed width of s: runes outside ANSI escape sequences.
func visible(s string) int {
	n := 0
	for i := 0; i < len(s); {
		if s[i] == 0x1b {
			j := strings.IndexByte(s[i:], 'm')
			if j < 0 {
				break
			}
			i += j + 1
			continue
		}
		_, size := utf8.DecodeRuneInString(s[i:])
		i += size
		n++
	}
	return n
}

// pad right-pads s with blanks to printed width n.
func pad(s string, n int) string {
	if v := visible(s); v < n {
		return s + strings.Repeat(" ", n-v)
	}
	return s
}

// clipMiddle shortens s to n runes by cutting out its middle, keeping both ends of a path.
func clipMiddle(s string, n int) string {
	r := []rune(s)
	if len(r) <= n || n < 5 {
		return s
	}
	head := (n - 1) / 2
	return string(r[:head]) + "…" + string(r[len(r)-(n-1-head):])
}

// clip shortens plain text s to n runes, marking the cut with "…".
func clip(s string, n int) string {
	if utf8.RuneCountInString(s) <= n {
		return s
	}
	if n <= 1 {
		return string([]rune(s)[:max(0, n)])
	}
	return string([]rune(s)[:n-1]) + "…"
}

func (tw termWriter) writeHeader(t Trace, sum Summary) {
	title := t.Title
	if title == "" {
		title = "holoproxy trace"
	}
	tw.println(tw.bold(title))
	for _, r := range sum.Runs {
		name := ""
		if len(sum.Runs) > 1 {
			name = r.Name + ": "
		}
		tw.println(tw.bold("verdict "), name, r.Verdict)
	}
	if sum.Comparison != "" {
		tw.println(tw.bold("compare "), sum.Comparison)
	}
	tw.println()
}

// table is rows of cells with a header; cell widths are measured when printed.
type table struct {
	head []string
	rows [][]string
}

func (tw termWriter) writeTable(tb table) {
	widths := make([]int, len(tb.head))
	for _, row := range append([][]string{tb.head}, tb.rows...) {
		for i, c := range row {
			widths[i] = max(widths[i], visible(c))
		}
	}
	line := func(row []string, style func(string) string) {
		var b strings.Builder
		for i, c := range row {
			if i > 0 {
				b.WriteString("  ")
			}
			b.WriteString(pad(style(c), widths[i]))
		}
		tw.println(b.String())
	}
	line(tb.head, tw.bold)
	for _, row := range tb.rows {
		line(row, func(s string) string { return s })
	}
}

// figure formats quantiles as "p50 / p99" with the count.
func figure(q Quantiles) string {
	if q.N == 0 {
		return "–"
	}
	return fmt.Sprintf("%s / %s  n=%d", fmtDur(q.P50), fmtDur(q.P99), q.N)
}

// tally formats counts as "label n, label n".
func tally(cs []Count) string {
	if len(cs) == 0 {
		return "–"
	}
	var parts []string
	for _, c := range cs {
		parts = append(parts, fmt.Sprintf("%s %d", c.Label, c.N))
	}
	return strings.Join(parts, ", ")
}

// shareOf formats the most frequent label of cs with its share of all: "TLS 1.3 100 %".
func shareOf(cs []Count) string {
	if len(cs) == 0 {
		return "–"
	}
	n := 0
	for _, c := range cs {
		n += c.N
	}
	s := fmt.Sprintf("%s %s", cs[0].Label, percent(float64(cs[0].N)/float64(n)))
	if len(cs) > 1 {
		s += fmt.Sprintf(" (+%d more)", len(cs)-1)
	}
	return s
}

// runFigures are the rows of the overview table: label and value per Run.
func runFigures(r RunSummary) [][2]string {
	dnsq := "–"
	if r.DNSQueries > 0 {
		dnsq = fmt.Sprintf("%d (%s), p50/p99 %s / %s", r.DNSQueries, tally(r.DNSByBackend), fmtDur(r.DNSQuery.P50), fmtDur(r.DNSQuery.P99))
	}
	reqs := fmt.Sprint(r.Exchanges)
	if r.Requests > 0 {
		reqs = fmt.Sprintf("%d requests, %d exchanges", r.Requests, r.Exchanges)
	}
	rows := [][2]string{
		{"wall time", fmtDur(r.Wall)},
		{"exchanges", reqs},
		{"failed overall", fmt.Sprint(r.Failed)},
		{"fall-throughs", fmt.Sprint(r.FallThroughs)},
		{"dns queries", dnsq},
		{"peak in flight", fmt.Sprint(r.PeakConns)},
	}
	if r.Command != nil {
		rows = append(rows, [2]string{"command exit", exitText(r.Command)})
	}
	return rows
}

// exitText says how a recorded command ended: "0", "1 (exit status 1)", "killed (signal:
// killed)".
func exitText(c *Command) string {
	switch {
	case c.ExitCode < 0:
		return "killed (" + c.Error + ")"
	case c.Error != "":
		return fmt.Sprintf("%d (%s)", c.ExitCode, c.Error)
	}
	return fmt.Sprint(c.ExitCode)
}

// upstreamFigures are the rows of an upstream's table.
func upstreamFigures(u *UpstreamSummary) [][2]string {
	if u == nil {
		return nil
	}
	dnsq := "–"
	if u.DNSQueries > 0 {
		dnsq = fmt.Sprintf("%d (%d cached), %s / %s", u.DNSQueries, u.DNSCached, fmtDur(u.DNSQuery.P50), fmtDur(u.DNSQuery.P99))
	}
	resumed := "–"
	if h := sumCounts(u.TLSVersions); h > 0 {
		resumed = percent(float64(u.TLSResumed) / float64(h))
	}
	transfer := "–"
	if u.TransferTime > 0 {
		transfer = fmt.Sprintf("%.1f MB/s  (%.1f MB)", u.MBps, float64(u.Bytes)/1e6)
	}
	reuse := "–"
	if n := u.NewConns + u.Reused; n > 0 {
		reuse = fmt.Sprintf("%s  (%d of %d)", percent(u.ReuseRate), u.Reused, n)
	}
	if u.Lookup.N+u.VCS.N+u.Go.N > 0 {
		// Answered by the go command (direct): its steps, not connections.
		return [][2]string{
			{"exchanges", fmt.Sprintf("%d  (ok %d)", u.Exchanges, u.OK)},
			{"errors", tally(u.Errors)},
			{"fall-throughs", fmt.Sprint(u.FallThroughs)},
			{"lookup p50/p99", figure(u.Lookup)},
			{"vcs p50/p99", figure(u.VCS)},
			{"go p50/p99", figure(u.Go)},
			{"total p50/p99", figure(u.Total)},
			{"transfer", transfer},
			{"peak in flight", fmt.Sprint(u.PeakConns)},
		}
	}
	return [][2]string{
		{"exchanges", fmt.Sprintf("%d  (ok %d)", u.Exchanges, u.OK)},
		{"errors", tally(u.Errors)},
		{"fall-throughs", fmt.Sprint(u.FallThroughs)},
		{"dns wait p50/p99", figure(u.DNS)},
		{"dns queries", dnsq},
		{"connect p50/p99", figure(u.Connect)},
		{"tls p50/p99", figure(u.TLS)},
		{"tls version", shareOf(u.TLSVersions)},
		{"tls cipher", shareOf(u.TLSCiphers)},
		{"tls group", shareOf(u.TLSGroups)},
		{"tls resumed", resumed},
		{"ttfb p50/p99", figure(u.TTFB)},
		{"total p50/p99", figure(u.Total)},
		{"transfer", transfer},
		{"conn reuse", reuse},
		{"peak in flight", fmt.Sprint(u.PeakConns)},
	}
}

func sumCounts(cs []Count) int {
	n := 0
	for _, c := range cs {
		n += c.N
	}
	return n
}

// find returns the summary of upstream u in r, or nil.
func (r *RunSummary) find(u string) *UpstreamSummary {
	for i := range r.Upstreams {
		if r.Upstreams[i].Upstream == u {
			return &r.Upstreams[i]
		}
	}
	return nil
}

// columns builds a table with one column per Run from per-Run figure lists.
func columns(label string, runs []RunSummary, figs func(*RunSummary) [][2]string) table {
	tb := table{head: []string{label}}
	var labels []string
	vals := map[string][]string{}
	for i := range runs {
		tb.head = append(tb.head, runs[i].Name)
		for _, f := range figs(&runs[i]) {
			if _, ok := vals[f[0]]; !ok {
				labels = append(labels, f[0])
				vals[f[0]] = make([]string, len(runs))
			}
			vals[f[0]][i] = f[1]
		}
	}
	for _, l := range labels {
		row := []string{l}
		for _, v := range vals[l] {
			if v == "" {
				v = "–"
			}
			row = append(row, v)
		}
		tb.rows = append(tb.rows, row)
	}
	return tb
}

func (tw termWriter) writeTables(sum Summary) {
	tw.writeTable(columns("run", sum.Runs, func(r *RunSummary) [][2]string { return runFigures(*r) }))
	tw.println()
	seen := map[string]bool{}
	for _, r := range sum.Runs {
		for _, u := range r.Upstreams {
			if seen[u.Upstream] {
				continue
			}
			seen[u.Upstream] = true
			tw.writeTable(columns(shortName(u.Upstream), sum.Runs, func(r *RunSummary) [][2]string {
				return upstreamFigures(r.find(u.Upstream))
			}))
			tw.println()
		}
	}
	tw.println(tw.bold("where the wall time went"))
	tw.writeTable(columns("cost", sum.Runs, func(r *RunSummary) [][2]string {
		var out [][2]string
		for _, s := range r.Shares {
			if s.Fraction < 0.005 {
				continue
			}
			out = append(out, [2]string{costLabel(s), fmt.Sprintf("%5s  %s", percent(s.Fraction), fmtDur(s.Time))})
		}
		return out
	}))
	tw.println()
}

// costLabel names a Share in a table row: "proxy-a.test ttfb", "idle".
func costLabel(s Share) string {
	if s.Upstream == "" {
		return s.Cost
	}
	return shortName(s.Upstream) + " " + s.Cost
}

// heatLabels returns the row labels of a heatmap: the upstream on its first phase row.
func heatLabels(rows []heatRow) []string {
	out := make([]string, len(rows))
	for i, r := range rows {
		up := ""
		if i == 0 || rows[i-1].Upstream != r.Upstream {
			up = shortName(r.Upstream)
		}
		out[i] = up + "\x00" + string(r.Phase)
	}
	return out
}

func (tw termWriter) writeHeatmaps(t *Trace, opt TerminalOptions) {
	if len(t.Runs) == 0 {
		return
	}
	ups := allUpstreams(t)
	phases := phasesOf(t)
	upW := 0
	for _, u := range ups {
		upW = max(upW, utf8.RuneCountInString(shortName(u)))
	}
	labelW := upW + 2 + len("transfer") + 1
	n := len(t.Runs)
	cols := opt.Buckets
	if cols <= 0 {
		cols = (opt.width() - labelW - 3*(n-1)) / n
		cols = max(8, min(cols, 72))
	}
	var hs []heatmap
	for i := range t.Runs {
		hs = append(hs, buildHeatmap(&t.Runs[i], ups, phases, cols, opt.ByRequest))
	}
	sc := scaleFor(hs)
	what := "columns are time buckets"
	if opt.ByRequest {
		what = "columns are requests in start order"
	}
	tw.println(tw.bold("heatmap"), " median latency per phase; ", what)
	head := strings.Repeat(" ", labelW)
	sub := strings.Repeat(" ", labelW)
	for i, h := range hs {
		if i > 0 {
			head += " │ "
			sub += " │ "
		}
		head += pad(tw.bold(clip(h.Run, cols)), cols)
		bucket := fmt.Sprintf("%s per column", fmtDur(h.Bucket))
		if opt.ByRequest {
			bucket = fmt.Sprintf("%d per column", h.BucketRequests)
		}
		sub += pad(tw.dim(clip(bucket, cols)), cols)
	}
	tw.println(head)
	tw.println(sub)
	labels := heatLabels(hs[0].Rows)
	for row := range hs[0].Rows {
		up, phase, _ := strings.Cut(labels[row], "\x00")
		line := pad(up, upW+2) + pad(phase, labelW-upW-2)
		for i, h := range hs {
			if i > 0 {
				line += " │ "
			}
			line += tw.heatCells(h.Cells[row], sc)
		}
		if row > 0 && hs[0].Rows[row].Upstream != hs[0].Rows[row-1].Upstream {
			tw.println()
		}
		tw.println(line)
	}
	tw.writeLegend(sc)
	tw.println()
}

// heatCells renders one heatmap row, one character per bucket.
func (tw termWriter) heatCells(cells []heatCell, sc logScale) string {
	var b strings.Builder
	cur := -1 // the level whose colour is on; -1 is none
	for _, c := range cells {
		lvl := -1
		if c.N > 0 {
			lvl = sc.level(c.Median)
		}
		if !tw.color {
			if lvl < 0 {
				b.WriteByte(' ')
			} else {
				b.WriteByte(heatRamp[lvl])
			}
			continue
		}
		if lvl != cur {
			if lvl < 0 {
				b.WriteString("\x1b[0m")
			} else {
				fmt.Fprintf(&b, "\x1b[48;5;%dm", heatANSI[lvl])
			}
			cur = lvl
		}
		b.WriteByte(' ')
	}
	if tw.color && cur >= 0 {
		b.WriteString("\x1b[0m")
	}
	return b.String()
}

func (tw termWriter) writeLegend(sc logScale) {
	var b strings.Builder
	b.WriteString("legend  ")
	if tw.color {
		b.WriteString("blank = no data  ")
	} else {
		b.WriteString("' ' no data  ")
	}
	for i := 0; i < levels; i++ {
		mark := string(heatRamp[i])
		if tw.color {
			mark = fmt.Sprintf("\x1b[48;5;%dm  \x1b[0m", heatANSI[i])
		}
		fmt.Fprintf(&b, "%s ≥%s  ", mark, fmtRound(sc.bound(i)))
	}
	b.WriteString("(log scale, up to " + fmtRound(sc.Hi) + ")")
	tw.println(b.String())
}

// waterfall describes the slowest requests of one Run for the terminal: label lines and
// bars on a time axis shared by every Run.
func (tw termWriter) waterfallBlock(r *Run, n, width int, scale time.Duration) []string {
	out := []string{tw.bold(clip(r.Name, width))}
	first, _ := r.bounds()
	for k, i := range slowest(r, n) {
		s := &r.Samples[i]
		status := fmt.Sprint(s.Status)
		if c := errClass(s); c != "" {
			status = c
		}
		label := fmt.Sprintf("#%d %s %s +%s %s %s", k+1, fmtDur(length(s)), status, fmtDur(s.Start.Sub(first)), shortName(s.Upstream), "/"+requestPath(s))
		out = append(out, clip(label, width))
		out = append(out, tw.bar(s, width, scale))
		if st := slowestStep(s); st != "" {
			out = append(out, tw.dim(clip("  slowest step: "+st, width)))
		}
	}
	return out
}

// bar draws the phases of s, one character per scale/width of time.
func (tw termWriter) bar(s *netobs.Sample, width int, scale time.Duration) string {
	var b strings.Builder
	sp := spans(s)
	n := length(s)
	cur := ""
	for i := 0; i < width; i++ {
		from := time.Duration(int64(scale) * int64(i) / int64(width))
		to := time.Duration(int64(scale) * int64(i+1) / int64(width))
		if from >= n {
			break
		}
		// The phase covering most of this cell; "." for time in no phase.
		best, bestD := netobs.Phase(""), time.Duration(0)
		for _, p := range sp {
			if d := min(to, p.To) - max(from, p.From); d > bestD {
				best, bestD = p.Phase, d
			}
		}
		if !tw.color {
			if best == "" {
				b.WriteByte('.')
			} else {
				b.WriteByte(phaseGlyph[best])
			}
			continue
		}
		code := "38;5;250"
		glyph := "·"
		if best != "" {
			code, glyph = fmt.Sprintf("38;5;%d", phaseANSI[best]), "█"
		}
		if code != cur {
			b.WriteString("\x1b[" + code + "m")
			cur = code
		}
		b.WriteString(glyph)
	}
	if cur != "" {
		b.WriteString("\x1b[0m")
	}
	if b.Len() == 0 {
		b.WriteString("▏")
	}
	return b.String()
}

func (tw termWriter) writeWaterfalls(t *Trace, opt TerminalOptions) {
	n := opt.slowest()
	if n == 0 || len(t.Runs) == 0 {
		return
	}
	var scale time.Duration
	for i := range t.Runs {
		for _, j := range slowest(&t.Runs[i], n) {
			scale = max(scale, length(&t.Runs[i].Samples[j]))
		}
	}
	if scale <= 0 {
		return
	}
	runs := len(t.Runs)
	width := max(20, (opt.width()-3*(runs-1))/runs)
	tw.println(tw.bold("slowest requests"), fmt.Sprintf(" one axis for all, 0 to %s; start offset after +", fmtDur(scale)))
	var blocks [][]string
	height := 0
	for i := range t.Runs {
		bl := tw.waterfallBlock(&t.Runs[i], n, width, scale)
		bl = append(bl, axis(width, scale))
		blocks = append(blocks, bl)
		height = max(height, len(bl))
	}
	for line := 0; line < height; line++ {
		var b strings.Builder
		for i, bl := range blocks {
			if i > 0 {
				b.WriteString(" │ ")
			}
			cell := ""
			if line < len(bl) {
				cell = bl[line]
			}
			if i < len(blocks)-1 {
				cell = pad(cell, width)
			}
			b.WriteString(cell)
		}
		tw.println(b.String())
	}
	var leg strings.Builder
	leg.WriteString("phases  ")
	legend := netobs.Phases
	if hasSteps(t) {
		legend = append(slices.Clone(legend), netobs.PhaseLookup, netobs.PhaseVCS, netobs.PhaseGo)
	}
	for _, p := range legend {
		mark := string(phaseGlyph[p])
		if tw.color {
			mark = fmt.Sprintf("\x1b[38;5;%dm█\x1b[0m", phaseANSI[p])
		}
		fmt.Fprintf(&leg, "%s %s  ", mark, p)
	}
	if tw.color {
		leg.WriteString("\x1b[38;5;250m·\x1b[0m other")
	} else {
		leg.WriteString(". other")
	}
	tw.println(leg.String())
}

// axis labels a time axis of the given width: 0, the middle and the end.
func axis(width int, scale time.Duration) string {
	mid, end := fmtDur(scale/2), fmtDur(scale)
	line := []rune(strings.Repeat(" ", width))
	put := func(at int, s string) {
		for i, r := range s {
			if at+i >= 0 && at+i < width {
				line[at+i] = r
			}
		}
	}
	put(0, "0")
	put(width/2-len(mid)/2, mid)
	put(width-utf8.RuneCountInString(end), end)
	return string(line)
}
