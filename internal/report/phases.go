package report

import (
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/holoproxy/holoproxy/internal/netobs"
)

// span is one phase of a Sample placed on its own time line: From and To are offsets from
// the Sample's Start.
type span struct {
	Phase    netobs.Phase
	From, To time.Duration
}

// spans lays the phases of s out in time. DNS, connect and TLS run back to back from the
// start; TTFB begins when the request was fully written (Sample.Wrote, or the end of the
// handshakes when Wrote is unknown) and transfer follows it. An exchange answered by a
// child process (direct) has its Steps laid out by netobs.StepSpans instead, and its
// transfer (reading what the process left) at its end. Phases that did not happen are
// left out.
func spans(s *netobs.Sample) []span {
	var out []span
	if len(s.Steps) > 0 {
		for _, sp := range netobs.StepSpans(s.Steps) {
			out = append(out, span{sp.Phase, sp.From, sp.To})
		}
	}
	t := time.Duration(0)
	for _, p := range []netobs.Phase{netobs.PhaseDNS, netobs.PhaseConnect, netobs.PhaseTLS} {
		if d := s.PhaseDuration(p); d > 0 {
			out = append(out, span{p, t, t + d})
			t += d
		}
	}
	if s.Wrote > t {
		t = s.Wrote
	}
	if s.TTFB > 0 {
		out = append(out, span{netobs.PhaseTTFB, t, t + s.TTFB})
		t += s.TTFB
	} else if n := len(out); n > 0 {
		// No request and answer (direct): the transfer comes after the steps, at the end.
		t = max(out[n-1].To, s.Total-s.Transfer)
	} else if s.Transfer > 0 && s.Total > s.Transfer {
		t = s.Total - s.Transfer
	}
	if s.Transfer > 0 {
		out = append(out, span{netobs.PhaseTransfer, t, t + s.Transfer})
	}
	return out
}

// stepSample reports whether s was answered by a child process (direct): it has Steps or
// their phases.
func stepSample(s *netobs.Sample) bool {
	return len(s.Steps) > 0 || s.Lookup > 0 || s.VCS > 0 || s.Go > 0
}

// phasesOf returns the heatmap phases of each upstream of t: netobs.StepPhases for an
// upstream answered by a child process (direct) in any Run, netobs.Phases for the others.
func phasesOf(t *Trace) map[string][]netobs.Phase {
	out := map[string][]netobs.Phase{}
	for i := range t.Runs {
		for j := range t.Runs[i].Samples {
			s := &t.Runs[i].Samples[j]
			if stepSample(s) {
				out[s.Upstream] = netobs.StepPhases
			} else if out[s.Upstream] == nil {
				out[s.Upstream] = netobs.Phases
			}
		}
	}
	return out
}

// hasSteps reports whether any Sample of t was answered by a child process.
func hasSteps(t *Trace) bool {
	for i := range t.Runs {
		for j := range t.Runs[i].Samples {
			if stepSample(&t.Runs[i].Samples[j]) {
				return true
			}
		}
	}
	return false
}

// longestStep returns the longest Step of s in phase p that overlaps from..to, and
// whether there is one.
func longestStep(s *netobs.Sample, p netobs.Phase, from, to time.Duration) (netobs.Step, bool) {
	var best netobs.Step
	found := false
	for _, st := range s.Steps {
		if st.Phase != p || st.Offset >= to || st.Offset+st.Duration <= from {
			continue
		}
		if !found || st.Duration > best.Duration {
			best, found = st, true
		}
	}
	return best, found
}

// slowestStep describes the longest lookup or vcs Step of s, "" when it has none:
// "vcs 63ms git ls-remote -q origin".
func slowestStep(s *netobs.Sample) string {
	var best netobs.Step
	for _, st := range s.Steps {
		if st.Phase != netobs.PhaseGo && st.Duration > best.Duration {
			best = st
		}
	}
	if best.Duration <= 0 {
		return ""
	}
	return fmt.Sprintf("%s %s %s", best.Phase, fmtDur(best.Duration), best.Command)
}

// length returns how long s lasted: Total, or the end of its last phase if that is later.
func length(s *netobs.Sample) time.Duration {
	d := s.Total
	if sp := spans(s); len(sp) > 0 && sp[len(sp)-1].To > d {
		d = sp[len(sp)-1].To
	}
	return d
}

// shortName is the label of an upstream in tables and verdicts: its base URL without the
// scheme and trailing slash ("https://proxy-a.test" becomes "proxy-a.test").
func shortName(upstream string) string {
	if upstream == "" {
		return "(no upstream)"
	}
	s := upstream
	if i := strings.Index(s, "://"); i >= 0 {
		s = s[i+3:]
	}
	return strings.TrimSuffix(s, "/")
}

// requestPath is the part of a Sample's URL below its upstream's base URL, used to find the
// same request made at another upstream.
func requestPath(s *netobs.Sample) string {
	u := s.URLString()
	if s.Upstream != "" && strings.HasPrefix(u, s.Upstream) {
		return strings.TrimPrefix(strings.TrimPrefix(u, s.Upstream), "/")
	}
	if pu, err := url.Parse(u); err == nil {
		return strings.TrimPrefix(pu.EscapedPath(), "/")
	}
	return u
}

// hostOf returns the host name (no port) a Sample dialled, or that its upstream names.
func hostOf(s *netobs.Sample) string {
	h := s.Host
	if h == "" {
		if u, err := url.Parse(s.Upstream); err == nil {
			h = u.Host
		}
	}
	if i := strings.LastIndex(h, ":"); i >= 0 && !strings.Contains(h[i:], "]") {
		h = h[:i]
	}
	return strings.Trim(strings.ToLower(h), "[]")
}

// fallThroughs marks the Samples of r that were answered 404 or 410 and then asked again at
// another upstream that started no earlier: the cost of a ',' fall-through in a GOPROXY list.
func fallThroughs(r *Run) []bool {
	byPath := map[string][]int{}
	for i := range r.Samples {
		p := requestPath(&r.Samples[i])
		byPath[p] = append(byPath[p], i)
	}
	out := make([]bool, len(r.Samples))
	for i := range r.Samples {
		s := &r.Samples[i]
		if s.Status != 404 && s.Status != 410 {
			continue
		}
		for _, j := range byPath[requestPath(s)] {
			o := &r.Samples[j]
			if o.Upstream != s.Upstream && !o.Start.Before(s.Start) {
				out[i] = true
				break
			}
		}
	}
	return out
}

// errClass is the failure class of s: its ErrClass, or http_<status> for an answer that is
// not 2xx; empty for a success.
func errClass(s *netobs.Sample) string {
	if s.ErrClass != "" {
		return s.ErrClass
	}
	if s.Status != 0 && (s.Status < 200 || s.Status > 299) {
		return netobs.HTTPClass(s.Status)
	}
	return ""
}
