package report

import (
	"time"

	"github.com/holoproxy/holoproxy/internal/netobs"
)

// Trace is the whole input of a report: what was traced and the Runs to show side by side.
type Trace struct {
	// Title heads every rendering, e.g. "go mod download, GOPROXY=https://proxy-a.test,https://proxy-b.test".
	Title string `json:"title,omitempty"`
	// Runs are shown in this order; a single Run is a plain trace, several are a comparison.
	Runs []Run `json:"runs"`
}

// Run is one configuration of a traced workload: its name, every upstream exchange it made
// and the figures only the command that ran it knows.
type Run struct {
	// Name labels the Run in every output, e.g. "chain", "proxy-a alone", "shared transport".
	Name string `json:"name"`
	// Samples are the upstream exchanges, in any order.
	Samples []netobs.Sample `json:"samples"`
	// Wall is the wall time of the whole workload. When zero, the span from the first
	// Sample's start to the last Sample's end is used.
	Wall time.Duration `json:"wall_ns"`
	// Requests counts the requests the workload made (for example the go command's
	// requests to the chain); each may have cost several Samples. Zero means unknown.
	Requests int `json:"requests,omitempty"`
	// Failed counts the workload's requests that failed overall, after every upstream
	// in the chain was tried.
	Failed int `json:"failed"`
	// FallThroughs counts moves to the next upstream after a 404 or 410 answer.
	FallThroughs int `json:"fall_throughs"`
	// DNSQueries are the name lookups made on the wire or answered by the resolver's cache
	// during the Run. Samples only show the lookups a request waited for.
	DNSQueries []DNSQuery `json:"dns_queries,omitempty"`
	// Command, for a Run that recorded the requests of a command the trace ran (trace --
	// COMMAND), is that command and how it ended; nil otherwise. Wall is then the
	// command's wall time, and time outside upstream exchanges is the command's own work.
	Command *Command `json:"command,omitempty"`
}

// Command is a command whose requests a Run recorded.
type Command struct {
	// Args are the command and its arguments.
	Args []string `json:"args"`
	// ExitCode is its exit status; -1 when it did not exit on its own (killed by a signal).
	ExitCode int `json:"exit_code"`
	// Error says how it failed, empty when it succeeded.
	Error string `json:"error,omitempty"`
}

// DNSQuery is one name lookup made by the resolver during a Run, as the trace command
// records it.
type DNSQuery struct {
	// Backend is the resolver backend that answered: "system", "udp://10.0.0.53:53", ...
	Backend string `json:"backend"`
	// Name is the queried name, with or without the trailing dot.
	Name string `json:"name"`
	// Type is the query type, e.g. "A" or "AAAA" (optional).
	Type string `json:"type,omitempty"`
	// Rcode is the answer's response code (NOERROR, NXDOMAIN, SERVFAIL, REFUSED) or "timeout".
	Rcode string `json:"rcode"`
	// Latency is how long the answer took; near zero for cached answers.
	Latency time.Duration `json:"latency_ns"`
	// Cached reports that the resolver's cache answered without a query on the wire.
	Cached bool `json:"cached"`
}

// end returns when s finished.
func end(s *netobs.Sample) time.Time { return s.Start.Add(s.Total) }

// bounds returns the earliest start and the latest end of the Samples of r.
func (r *Run) bounds() (first, last time.Time) {
	for i := range r.Samples {
		s := &r.Samples[i]
		if first.IsZero() || s.Start.Before(first) {
			first = s.Start
		}
		if e := end(s); last.IsZero() || e.After(last) {
			last = e
		}
	}
	return first, last
}

// wall returns the Run's wall time: Wall, or the span its Samples cover.
func (r *Run) wall() time.Duration {
	if r.Wall > 0 {
		return r.Wall
	}
	first, last := r.bounds()
	return last.Sub(first)
}
