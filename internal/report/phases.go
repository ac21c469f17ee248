package report

import (
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
// handshakes when Wrote is unknown) and transfer follows it. Phases that did not happen are
// left out.
func spans(s *netobs.Sample) []span {
	var out []span
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
	for _, p := range []netobs.Phase{netobs.PhaseTTFB, netobs.PhaseTransfer} {
		if d := s.PhaseDuration(p); d > 0 {
			out = append(out, span{p, t, t + d})
			t += d
		}
	}
	return out
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
