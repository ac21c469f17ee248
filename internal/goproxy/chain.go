package goproxy

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/http"
	"path"
	"path/filepath"
	"strings"
)

// ErrOff is the error of a chain that reached "off": module lookup disabled.
var ErrOff = errors.New("module lookup disabled by GOPROXY=off")

// ErrDirect is the error of a chain that reached "direct" without a Direct to fetch with
// (Chain.UseDirect): fetching from version control origins is left to the client.
var ErrDirect = errors.New("direct (version control) fetching is off in holoproxy")

// Entry is one element of a GOPROXY list.
type Entry struct {
	// Client fetches from the proxy; nil for "off", and for "direct" unless the chain
	// uses a Direct (UseDirect).
	Client *Client
	// Direct and Off mark the two keywords.
	Direct, Off bool
	// FallbackOnError is true when the entry is followed by '|': the next entry is tried
	// after any error. After ',' (false) it is tried only after 404 or 410.
	FallbackOnError bool
}

// Name returns the entry as written in the list.
func (e Entry) Name() string {
	switch {
	case e.Off:
		return "off"
	case e.Direct:
		return "direct"
	}
	return e.Client.Name()
}

// Chain is a GOPROXY list: entries tried in order with the list's fall-through rules.
type Chain struct {
	Entries []Entry
}

// ParseChain parses a list in GOPROXY syntax, read as the go command reads it
// (cmd/go/internal/modfetch's proxyList): empty entries are skipped ("a,,b" is "a,b"), an
// entry with a dot, colon or slash but no scheme is an https URL ("proxy.corp.example" is
// "https://proxy.corp.example"), and the list ends at "off" or "direct" (what follows is
// ignored, unparsed). Every proxy entry sends through hc.
func ParseChain(list string, hc *http.Client) (*Chain, error) {
	var c Chain
	list = strings.TrimSpace(list)
	if list == "" {
		return nil, fmt.Errorf("empty upstream list")
	}
	orig := Redact(list)
	for list != "" {
		var entry string
		i := strings.IndexAny(list, ",|")
		var sep byte
		if i >= 0 {
			entry, sep, list = list[:i], list[i], list[i+1:]
		} else {
			entry, list = list, ""
		}
		entry = strings.TrimSpace(entry)
		if entry == "" {
			continue
		}
		e := Entry{FallbackOnError: sep == '|'}
		switch entry {
		case "off":
			e.Off = true
		case "direct":
			e.Direct = true
		default:
			cl, err := NewClient(withScheme(entry), hc)
			if err != nil {
				return nil, err
			}
			e.Client = cl
		}
		c.Entries = append(c.Entries, e)
		if e.Off || e.Direct {
			break // the end of the line, as for the go command
		}
	}
	if len(c.Entries) == 0 {
		return nil, fmt.Errorf("upstream list %q has no entry", orig)
	}
	return &c, nil
}

// withScheme returns entry with "https://" before it when the go command reads it so: it
// has a dot, colon or slash, no ":/", and is not an absolute path.
func withScheme(entry string) string {
	if strings.ContainsAny(entry, ".:/") && !strings.Contains(entry, ":/") && !filepath.IsAbs(entry) && !path.IsAbs(entry) {
		return "https://" + entry
	}
	return entry
}

// String returns the list in GOPROXY syntax.
func (c *Chain) String() string {
	var b strings.Builder
	for i, e := range c.Entries {
		b.WriteString(e.Name())
		if i < len(c.Entries)-1 {
			if e.FallbackOnError {
				b.WriteByte('|')
			} else {
				b.WriteByte(',')
			}
		}
	}
	return b.String()
}

// UseDirect makes the chain's "direct" entries fetch through d; without it a walk ends at
// "direct" with ErrDirect.
func (c *Chain) UseDirect(d *Direct) {
	for i := range c.Entries {
		if c.Entries[i].Direct {
			c.Entries[i].Client = d.Client()
		}
	}
}

// HasDirect reports whether the chain has a "direct" entry.
func (c *Chain) HasDirect() bool {
	for _, e := range c.Entries {
		if e.Direct {
			return true
		}
	}
	return false
}

// ListHasDirect reports whether list, in GOPROXY syntax, is valid and has a "direct"
// entry.
func ListHasDirect(list string) bool {
	c, err := ParseChain(list, nil)
	return err == nil && c.HasDirect()
}

// Clients returns the proxies of the chain in order, without direct and off.
func (c *Chain) Clients() []*Client {
	var out []*Client
	for _, e := range c.Entries {
		if e.Client != nil && !e.Direct {
			out = append(out, e.Client)
		}
	}
	return out
}

// WalkError is the error of a walk that found no answer: why each tried entry failed.
// It satisfies errors.Is(err, fs.ErrNotExist) when every failure was a not-found answer,
// the signal for a client to try its own next proxy.
type WalkError struct {
	Errs []error
}

func (e *WalkError) Error() string {
	msgs := make([]string, len(e.Errs))
	for i, err := range e.Errs {
		msgs[i] = err.Error()
	}
	return strings.Join(msgs, "; ")
}

// Unwrap returns the failures that decide what the walk means: every failure when all were
// not-found answers, else only the others, so that errors.Is(err, fs.ErrNotExist) holds for
// the walk as a whole and never because one entry of a failed walk answered 404.
func (e *WalkError) Unwrap() []error {
	if e.Is(fs.ErrNotExist) {
		return e.Errs
	}
	var out []error
	for _, err := range e.Errs {
		if !errors.Is(err, fs.ErrNotExist) {
			out = append(out, err)
		}
	}
	return out
}

// Is reports whether target is fs.ErrNotExist and every entry answered not found (or the
// list ended with direct, when it is off, or off after not-found answers).
func (e *WalkError) Is(target error) bool {
	if target != fs.ErrNotExist || len(e.Errs) == 0 {
		return false
	}
	for _, err := range e.Errs {
		if !errors.Is(err, fs.ErrNotExist) && !errors.Is(err, ErrOff) && !errors.Is(err, ErrDirect) {
			return false
		}
	}
	return true
}

// Walk calls try with each proxy of the chain in order until one succeeds, following the
// GOPROXY rules: after ',' the next entry is tried only when try's error satisfies
// errors.Is(err, fs.ErrNotExist); after '|' after any error. "off" ends the walk, and so
// does "direct" unless the chain uses a Direct.
// order, when non-nil, may reorder the proxies within each run of entries joined by '|'
// (which the list declares interchangeable); it must return a permutation of its argument.
// Reordering changes which proxy is asked first, never whether the walk succeeds: every
// proxy of a run is tried until one answers, and the walk goes past the run only when the
// proxy the list writes last in it (the one before the ',') answered not found, wherever
// the order put it.
// Walk returns nil on success, else a *WalkError with every failure.
func (c *Chain) Walk(ctx context.Context, order func([]*Client) []*Client, try func(context.Context, *Client) error) error {
	var errs []error
	for _, r := range c.runs(order) {
		var lastErr error // the error of the run's last proxy as written
		for i, e := range r.entries {
			if err := ctx.Err(); err != nil {
				return &WalkError{Errs: append(errs, err)}
			}
			switch {
			case e.Off:
				return &WalkError{Errs: append(errs, ErrOff)}
			case e.Direct && e.Client == nil:
				return &WalkError{Errs: append(errs, ErrDirect)}
			}
			err := try(ctx, e.Client)
			if err == nil {
				return nil
			}
			errs = append(errs, err)
			if i == r.last {
				lastErr = err
			}
			if !e.FallbackOnError && !errors.Is(lastErr, fs.ErrNotExist) {
				return &WalkError{Errs: errs}
			}
		}
	}
	if len(errs) == 0 {
		errs = append(errs, fmt.Errorf("no upstream: %w", fs.ErrNotExist))
	}
	return &WalkError{Errs: errs}
}

// run is a run of entries joined by '|' (ending with an entry followed by ',', or at the
// end of the list), in the order to try them.
type run struct {
	entries []Entry
	// last is the position in entries of the run's last entry as the list writes it: its
	// error decides whether the walk goes past the run. Every position but the final one
	// is followed by '|', as in the list: only which proxy stands at a position changes.
	last int
}

// runs splits the entries into runs joined by '|', reordering proxies within a run by
// order.
func (c *Chain) runs(order func([]*Client) []*Client) []run {
	var out []run
	var cur []Entry
	for _, e := range c.Entries {
		cur = append(cur, e)
		if !e.FallbackOnError {
			out = append(out, run{entries: cur, last: len(cur) - 1})
			cur = nil
		}
	}
	if len(cur) > 0 {
		out = append(out, run{entries: cur, last: len(cur) - 1})
	}
	if order == nil {
		return out
	}
	for ri, r := range out {
		g := r.entries
		var clients []*Client
		for _, e := range g {
			if e.Client == nil || e.Direct {
				clients = nil
				break // keywords keep their place; do not reorder around them
			}
			clients = append(clients, e.Client)
		}
		if len(clients) < 2 {
			continue
		}
		ordered := order(append([]*Client(nil), clients...))
		if len(ordered) != len(clients) {
			continue
		}
		ng := run{entries: make([]Entry, len(g)), last: -1}
		for i := range g {
			ng.entries[i] = g[i]
			ng.entries[i].Client = ordered[i]
			if ordered[i] == g[r.last].Client {
				ng.last = i
			}
		}
		if ng.last < 0 {
			continue // not a permutation: keep the written order
		}
		out[ri] = ng
	}
	return out
}
