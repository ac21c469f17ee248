package netobs

import (
	"context"
	"encoding/json"
	"net/url"
	"slices"
	"strconv"
	"time"
)

// Phase names one timed step of an upstream exchange. The vocabulary is shared by
// metrics, health, the dashboard and every report.
type Phase string

// The phases of one exchange, in the order they happen.
const (
	PhaseDNS      Phase = "dns"      // name resolution (zero for IP literals and cached answers)
	PhaseConnect  Phase = "connect"  // TCP connect, including racing several addresses
	PhaseTLS      Phase = "tls"      // TLS handshake
	PhaseTTFB     Phase = "ttfb"     // request written until the first response byte
	PhaseTransfer Phase = "transfer" // first response byte until the body is fully read or closed
)

// Phases lists every Phase of an HTTP exchange in order, for renderers that iterate over
// them.
var Phases = []Phase{PhaseDNS, PhaseConnect, PhaseTLS, PhaseTTFB, PhaseTransfer}

// The phases of an exchange answered by a child process (the go command fetching from a
// version control origin for "direct") rather than over HTTP, from its Steps.
const (
	PhaseLookup Phase = "lookup" // HTTP GETs of the go-get discovery (https://host/path?go-get=1)
	PhaseVCS    Phase = "vcs"    // version control commands (git ls-remote, git fetch, ...)
	PhaseGo     Phase = "go"     // the rest of the go command's run: start-up, module cache, checks, zips
)

// StepPhases lists the phases of an exchange answered by a child process, then its
// transfer (reading what the process left), in the order renderers show them.
var StepPhases = []Phase{PhaseLookup, PhaseVCS, PhaseGo, PhaseTransfer}

// Step is one timed step of the child process that answered an exchange: a go-get lookup,
// a version control command, or the run of the process as a whole (PhaseGo).
type Step struct {
	Phase Phase `json:"phase"` // PhaseLookup, PhaseVCS or PhaseGo
	// Command says what ran: "GET https://git.test/repo?go-get=1", "git fetch ...", "go list -m ...".
	Command string `json:"command"`
	// Offset is when the step began, from the Sample's Start; Duration how long it took.
	Offset   time.Duration `json:"offset_ns"`
	Duration time.Duration `json:"duration_ns"`
	// Result is what a lookup got ("200 OK", "404 Not Found") or why a run failed.
	Result string `json:"result,omitempty"`
}

// Span is one phase placed on a Sample's time line: From and To are offsets from its Start.
type Span struct {
	Phase    Phase
	From, To time.Duration
}

// StepSpans lays steps out on a time line without overlap: at every instant the innermost
// step's phase wins (lookup, then vcs, then go), so that the spans of each phase add up to
// the time the exchange spent in it, never more than the exchange lasted even when the
// child process ran steps in parallel. Adjacent spans of one phase are merged; the result
// is in time order.
func StepSpans(steps []Step) []Span {
	rank := map[Phase]int{PhaseLookup: 3, PhaseVCS: 2, PhaseGo: 1}
	var edges []time.Duration
	for _, st := range steps {
		if st.Duration > 0 && rank[st.Phase] > 0 {
			edges = append(edges, st.Offset, st.Offset+st.Duration)
		}
	}
	slices.Sort(edges)
	edges = slices.Compact(edges)
	var out []Span
	for i := 0; i+1 < len(edges); i++ {
		from, to := edges[i], edges[i+1]
		var best Phase
		for _, st := range steps {
			if st.Duration > 0 && st.Offset <= from && st.Offset+st.Duration >= to && rank[st.Phase] > rank[best] {
				best = st.Phase
			}
		}
		if best == "" {
			continue
		}
		if n := len(out); n > 0 && out[n-1].Phase == best && out[n-1].To == from {
			out[n-1].To = to
			continue
		}
		out = append(out, Span{best, from, to})
	}
	return out
}

// SetStepPhases sets s's Lookup, VCS and Go from its Steps (StepSpans).
func (s *Sample) SetStepPhases() {
	s.Lookup, s.VCS, s.Go = 0, 0, 0
	for _, sp := range StepSpans(s.Steps) {
		switch sp.Phase {
		case PhaseLookup:
			s.Lookup += sp.To - sp.From
		case PhaseVCS:
			s.VCS += sp.To - sp.From
		case PhaseGo:
			s.Go += sp.To - sp.From
		}
	}
}

// Error classes carried by Sample.ErrClass. They are the labels metrics, health and reports
// group failures by. HTTP status failures use HTTPClass; TLS alerts use TLSAlertClass.
const (
	ClassDNSNXDomain      = "dns_nxdomain"
	ClassDNSServFail      = "dns_servfail"
	ClassDNSRefused       = "dns_refused"
	ClassDNSTimeout       = "dns_timeout"
	ClassDNSOther         = "dns_error"
	ClassTCPRefused       = "tcp_refused"
	ClassTCPTimeout       = "tcp_timeout"
	ClassTCPReset         = "tcp_reset"
	ClassTCPUnreachable   = "tcp_unreachable"
	ClassTLSCert          = "tls_cert"
	ClassTLSOther         = "tls_error"
	ClassBodyTruncated    = "body_truncated"
	ClassTimeout          = "timeout"
	ClassCanceled         = "canceled"
	ClassChecksumMismatch = "checksum_mismatch"
	ClassInvalidResponse  = "invalid_response"
	// ClassConnCap is a request that found the Transport's cap on connections to its
	// host reached (TransportConfig.MaxConnsPerHost) and got none within the connect
	// timeout. It says the upstream is busy (or its connections stalled), not that it
	// failed: the requests holding the connections report how it is doing.
	ClassConnCap = "conn_cap"
	ClassOther   = "other"
)

// Sample is everything observed about one upstream HTTP exchange. Durations are zero for
// phases that did not happen (a reused connection has no DNS, connect or TLS phase).
type Sample struct {
	// What was asked, set by the caller through WithLabels.
	Upstream string `json:"upstream"`       // upstream label (its base URL)
	Kind     string `json:"kind,omitempty"` // list, info, mod, zip, latest, sumdb, probe
	Method   string `json:"method"`
	// URL is the URL asked. A Sample made by a Recorder leaves it empty and keeps the
	// request's URL, formatted only when asked for: read it with URLString (JSON and log
	// output do). The Recorder keeps the request's *url.URL, which callers must not change
	// once the exchange is done.
	URL  string   `json:"url"`
	url  *url.URL // the request's URL, when URL is empty
	Host string   `json:"host"` // host:port dialled

	Start time.Time `json:"start"` // when the request was handed to the transport

	// Phase durations.
	DNS      time.Duration `json:"dns_ns"`
	Connect  time.Duration `json:"connect_ns"`
	TLS      time.Duration `json:"tls_ns"`
	Wrote    time.Duration `json:"wrote_ns"` // Start until the request was fully written
	TTFB     time.Duration `json:"ttfb_ns"`  // request written until the first response byte
	Transfer time.Duration `json:"transfer_ns"`
	Total    time.Duration `json:"total_ns"` // Start until the body was finished (or the failure)

	// Phases of an exchange answered by a child process (direct), from its Steps laid out
	// by StepSpans: they add up to at most Total. Zero for HTTP exchanges.
	Lookup time.Duration `json:"lookup_ns,omitempty"`
	VCS    time.Duration `json:"vcs_ns,omitempty"`
	Go     time.Duration `json:"go_ns,omitempty"`
	// Steps are the child process's timed steps, in the order they ended.
	Steps []Step `json:"steps,omitempty"`

	// DNS detail (empty when no lookup happened).
	DNSBackend   string `json:"dns_backend,omitempty"`
	DNSRcode     string `json:"dns_rcode,omitempty"` // NOERROR, NXDOMAIN, SERVFAIL, REFUSED, timeout
	DNSCache     string `json:"dns_cache,omitempty"` // miss, hit, stale, coalesced
	RemoteAddr   string `json:"remote_addr,omitempty"`
	DialAttempts int    `json:"dial_attempts,omitempty"` // addresses tried while racing

	// Connection detail.
	Reused   bool          `json:"reused"`
	IdleTime time.Duration `json:"idle_ns,omitempty"` // how long a reused connection sat idle
	Proto    string        `json:"proto,omitempty"`   // HTTP/1.1, HTTP/2.0

	// TLS detail (empty for plain HTTP and for reused connections).
	TLSVersion   string `json:"tls_version,omitempty"` // "TLS 1.3"
	TLSCipher    string `json:"tls_cipher,omitempty"`
	TLSCurve     string `json:"tls_curve,omitempty"` // key-exchange group, e.g. X25519MLKEM768, P-256
	TLSResumed   bool   `json:"tls_resumed,omitempty"`
	TLSHRR       bool   `json:"tls_hrr,omitempty"` // HelloRetryRequest happened
	ALPN         string `json:"alpn,omitempty"`
	PeerChainLen int    `json:"peer_chain_len,omitempty"`
	OCSPStapled  bool   `json:"ocsp_stapled,omitempty"`

	// Outcome.
	Status   int    `json:"status,omitempty"`
	Bytes    int64  `json:"bytes"`
	ErrClass string `json:"err_class,omitempty"`
	Err      string `json:"err,omitempty"`
}

// URLString returns the URL asked: URL when set, else the request's URL formatted.
func (s *Sample) URLString() string {
	if s.URL == "" && s.url != nil {
		return s.url.String()
	}
	return s.URL
}

// MarshalJSON writes s with its URL formatted (see URL).
func (s Sample) MarshalJSON() ([]byte, error) {
	type plain Sample // the same fields without this method
	p := plain(s)
	p.URL = s.URLString()
	return json.Marshal(p)
}

// PhaseDuration returns the duration of phase p in s.
func (s *Sample) PhaseDuration(p Phase) time.Duration {
	switch p {
	case PhaseDNS:
		return s.DNS
	case PhaseConnect:
		return s.Connect
	case PhaseTLS:
		return s.TLS
	case PhaseTTFB:
		return s.TTFB
	case PhaseTransfer:
		return s.Transfer
	case PhaseLookup:
		return s.Lookup
	case PhaseVCS:
		return s.VCS
	case PhaseGo:
		return s.Go
	}
	return 0
}

// OK reports whether the exchange completed without a transport error and with a 2xx status.
func (s *Sample) OK() bool {
	return s.ErrClass == "" && s.Status >= 200 && s.Status < 300
}

// Sink receives finished Samples. Implementations must be safe for concurrent use and must
// not block: metrics, health and the dashboard all hang off one.
type Sink interface {
	Observe(Sample)
}

// SinkFunc adapts a function to Sink.
type SinkFunc func(Sample)

// Observe calls f(s).
func (f SinkFunc) Observe(s Sample) { f(s) }

// Sinks fans one Sample out to several sinks in order.
type Sinks []Sink

// Observe hands s to every sink.
func (ss Sinks) Observe(s Sample) {
	for _, k := range ss {
		if k != nil {
			k.Observe(s)
		}
	}
}

type labelsKey struct{}

// Labels name the request an exchange belongs to; they are copied into its Sample.
type Labels struct {
	Upstream string
	Kind     string
}

// WithLabels returns a context whose upstream requests are recorded under l.
func WithLabels(ctx context.Context, l Labels) context.Context {
	return context.WithValue(ctx, labelsKey{}, l)
}

// LabelsFrom returns the Labels set by WithLabels or NewRequest, or zero Labels.
func LabelsFrom(ctx context.Context) Labels {
	if ec, ok := ctx.(*exchangeContext); ok && ec.ex.prepared {
		return ec.ex.labels() // without boxing them for Value
	}
	l, _ := ctx.Value(labelsKey{}).(Labels)
	return l
}

// HTTPClass is the error class of an answer with an unexpected HTTP status, e.g. "http_503".
func HTTPClass(status int) string { return "http_" + strconv.Itoa(status) }

// TLSAlertClass is the error class of a TLS alert received from the peer, e.g.
// "tls_alert:handshake_failure" (alert names as in RFC 8446, lower case with underscores).
func TLSAlertClass(alert string) string { return "tls_alert:" + alert }
