package goproxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

var hedgeReq = Request{Kind: KindMod, Module: "example.com/m", Version: "v1.0.0"}

// fetchAll is a try that fetches hedgeReq and reads the whole answer into *body.
func fetchAll(mu *sync.Mutex, body *string, tried map[string]int) func(context.Context, *Client) error {
	return func(ctx context.Context, cl *Client) error {
		mu.Lock()
		tried[cl.Name()]++
		mu.Unlock()
		resp, err := cl.Fetch(ctx, hedgeReq)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil {
			return err
		}
		mu.Lock()
		*body = string(b)
		mu.Unlock()
		return nil
	}
}

// TestWalkHedgedSlowUpstream: A sends nothing; after its hedge delay B is asked, B's answer
// wins, and A's request is cancelled.
func TestWalkHedgedSlowUpstream(t *testing.T) {
	aCancelled := make(chan struct{})
	a := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done()
		close(aCancelled)
	}))
	defer a.Close()
	b := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "from B")
	}))
	defer b.Close()
	c, err := ParseChain(a.URL+"|"+b.URL, &http.Client{})
	if err != nil {
		t.Fatal(err)
	}
	var allowed atomic.Int32
	hp := HedgePolicy{
		Delay: func(*Client) (time.Duration, bool) { return 20 * time.Millisecond, true },
		Allow: func(slow, next *Client) bool {
			if slow.Name() != a.URL || next.Name() != b.URL {
				t.Errorf("hedge from %s to %s", slow.Name(), next.Name())
			}
			allowed.Add(1)
			return true
		},
	}
	var mu sync.Mutex
	var body string
	tried := map[string]int{}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.WalkHedged(ctx, nil, hp, fetchAll(&mu, &body, tried)); err != nil {
		t.Fatal(err)
	}
	if body != "from B" {
		t.Fatalf("answer %q, want B's", body)
	}
	if tried[a.URL] != 1 || tried[b.URL] != 1 || allowed.Load() != 1 {
		t.Fatalf("tried %v with %d hedges; want A and B once, one hedge", tried, allowed.Load())
	}
	select {
	case <-aCancelled:
	case <-time.After(10 * time.Second):
		t.Fatal("A's request was not cancelled")
	}
}

// TestWalkHedgedFirstByteInTime: A sends its headers at once and its body slowly; the first
// byte came in time, so B is never asked.
func TestWalkHedgedFirstByteInTime(t *testing.T) {
	a := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusOK)
		w.(http.Flusher).Flush()
		select { // well past the hedge delay
		case <-time.After(time.Second):
		case <-r.Context().Done():
		}
		io.WriteString(w, "from A")
	}))
	defer a.Close()
	var bHits atomic.Int32
	b := upstream(t, 200, &bHits)
	c, err := ParseChain(a.URL+"|"+b, &http.Client{})
	if err != nil {
		t.Fatal(err)
	}
	hp := HedgePolicy{Delay: func(*Client) (time.Duration, bool) { return 300 * time.Millisecond, true }}
	var mu sync.Mutex
	var body string
	tried := map[string]int{}
	if err := c.WalkHedged(context.Background(), nil, hp, fetchAll(&mu, &body, tried)); err != nil {
		t.Fatal(err)
	}
	if body != "from A" || tried[b] != 0 || bHits.Load() != 0 {
		t.Fatalf("answer %q, tried %v, B hits %d; want A's answer and B untouched", body, tried, bHits.Load())
	}
}

// TestWalkHedgedCap: with a budget of three hedges, twenty slow walks hedge exactly three
// times; the others wait for A.
func TestWalkHedgedCap(t *testing.T) {
	a := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(30 * time.Millisecond):
			io.WriteString(w, "from A")
		case <-r.Context().Done():
		}
	}))
	defer a.Close()
	b := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "from B")
	}))
	defer b.Close()
	c, err := ParseChain(a.URL+"|"+b.URL, &http.Client{})
	if err != nil {
		t.Fatal(err)
	}
	var budget, asked atomic.Int32
	budget.Store(3)
	hp := HedgePolicy{
		Delay: func(*Client) (time.Duration, bool) { return time.Millisecond, true },
		Allow: func(slow, next *Client) bool {
			asked.Add(1)
			return budget.Add(-1) >= 0
		},
	}
	var mu sync.Mutex
	tried := map[string]int{}
	for i := range 20 {
		var body string
		if err := c.WalkHedged(context.Background(), nil, hp, fetchAll(&mu, &body, tried)); err != nil {
			t.Fatalf("walk %d: %v", i, err)
		}
	}
	granted := min(asked.Load(), 3)
	if tried[a.URL] != 20 || int32(tried[b.URL]) != granted || asked.Load() < 4 {
		t.Fatalf("tried %v, %d hedges asked; want A 20 times, B once per granted hedge (%d), more than 3 asked", tried, asked.Load(), granted)
	}
}

// fakeTry is a try over clients that never touch the network: each upstream's behaviour is
// named in plan by its host (a.test, b.test, ...): "ok", "stall" (until cancelled),
// "404", "500", "slow-<status>" (stall 50ms, then answer the status; 200 for success), or
// "late-<status>" (answer the status once another attempt has returned: deterministic
// ordering without timing).
type fakeTry struct {
	plan      map[string]string
	otherDone chan struct{} // closed when an attempt that is not "late" returns
	closeOnce sync.Once
	mu        sync.Mutex
	tried     []string
	cancelled []string
	winner    string
}

func (f *fakeTry) try(ctx context.Context, cl *Client) error {
	host := strings.TrimPrefix(cl.Name(), "http://")
	f.mu.Lock()
	f.tried = append(f.tried, host)
	f.mu.Unlock()
	behaviour := f.plan[host]
	status := 0
	if !strings.HasPrefix(behaviour, "late-") {
		defer f.closeOnce.Do(func() { close(f.otherDone) })
	}
	switch {
	case behaviour == "ok":
	case strings.HasPrefix(behaviour, "late-"):
		select {
		case <-f.otherDone:
		case <-ctx.Done():
			return ctx.Err()
		}
		fmt.Sscan(strings.TrimPrefix(behaviour, "late-"), &status)
	case behaviour == "stall":
		<-ctx.Done()
		f.mu.Lock()
		f.cancelled = append(f.cancelled, host)
		f.mu.Unlock()
		return ctx.Err()
	case strings.HasPrefix(behaviour, "slow-"):
		select {
		case <-time.After(50 * time.Millisecond):
		case <-ctx.Done():
			f.mu.Lock()
			f.cancelled = append(f.cancelled, host)
			f.mu.Unlock()
			return ctx.Err()
		}
		fmt.Sscan(strings.TrimPrefix(behaviour, "slow-"), &status)
	default:
		fmt.Sscan(behaviour, &status)
	}
	notifyFirstByte(ctx)
	if status != 0 && status != 200 {
		return &StatusError{Upstream: cl.Name(), Status: status}
	}
	f.mu.Lock()
	f.winner = host
	f.mu.Unlock()
	return nil
}

func TestWalkHedgedSemantics(t *testing.T) {
	tests := []struct {
		name      string
		list      string
		plan      map[string]string
		hedgeFrom string // the upstream whose delay is 1ms; others never hedge
		winner    string // "" = the walk fails
		wantNF    bool
		tried     string // sorted set of upstreams tried
		cancelled string
	}{
		{name: "hedge over a stalled upstream", list: "a|b", plan: map[string]string{"a": "stall", "b": "ok"}, hedgeFrom: "a",
			winner: "b", tried: "a b", cancelled: "a"},
		{name: "never across a comma", list: "a,b", plan: map[string]string{"a": "slow-200", "b": "ok"}, hedgeFrom: "a",
			winner: "a", tried: "a"},
		{name: "hedge fails: the walk moves on as after an error", list: "a|b|c", plan: map[string]string{"a": "stall", "b": "500", "c": "ok"},
			hedgeFrom: "a", winner: "c", tried: "a b c", cancelled: "a"},
		{name: "slow one wins after the hedge fails", list: "a|b", plan: map[string]string{"a": "late-200", "b": "500"}, hedgeFrom: "a",
			winner: "a", tried: "a b"},
		{name: "all fail", list: "a|b", plan: map[string]string{"a": "late-503", "b": "503"}, hedgeFrom: "a", tried: "a b"},
		{name: "run ends in not found: next run", list: "a|b,c", plan: map[string]string{"a": "late-404", "b": "404", "c": "ok"}, hedgeFrom: "a",
			winner: "c", tried: "a b c"},
		{name: "run ends in an error: stop", list: "a|b,c", plan: map[string]string{"a": "late-404", "b": "500", "c": "ok"}, hedgeFrom: "a",
			tried: "a b"},
		{name: "all not found", list: "a|b", plan: map[string]string{"a": "late-404", "b": "404"}, hedgeFrom: "a", tried: "a b", wantNF: true},
		{name: "no hedge to direct", list: "a|direct", plan: map[string]string{"a": "slow-500"}, hedgeFrom: "a", tried: "a"},
		{name: "not found then off", list: "a|b,off", plan: map[string]string{"a": "late-404", "b": "404"}, hedgeFrom: "a", tried: "a b", wantNF: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var entries []string
			plan := map[string]string{}
			for _, e := range strings.FieldsFunc(tt.list, func(r rune) bool { return r == ',' || r == '|' }) {
				entries = append(entries, e)
			}
			list := tt.list
			for _, e := range entries {
				if e != "direct" && e != "off" {
					list = strings.Replace(list, e, "http://"+e+".test", 1)
					plan[e+".test"] = tt.plan[e]
				}
			}
			c, err := ParseChain(list, http.DefaultClient)
			if err != nil {
				t.Fatal(err)
			}
			f := &fakeTry{plan: plan, otherDone: make(chan struct{})}
			hp := HedgePolicy{Delay: func(cl *Client) (time.Duration, bool) {
				if cl.Name() == "http://"+tt.hedgeFrom+".test" {
					return time.Millisecond, true
				}
				return time.Hour, true
			}}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			err = c.WalkHedged(ctx, nil, hp, f.try)
			wantWinner := ""
			if tt.winner != "" {
				wantWinner = tt.winner + ".test"
			}
			if (err == nil) != (tt.winner != "") || f.winner != wantWinner {
				t.Fatalf("err %v, winner %q; want winner %q", err, f.winner, wantWinner)
			}
			if err != nil && errors.Is(err, fs.ErrNotExist) != tt.wantNF {
				t.Fatalf("errors.Is(%v, fs.ErrNotExist) = %v, want %v", err, !tt.wantNF, tt.wantNF)
			}
			if got := hosts(f.tried); got != tt.tried {
				t.Fatalf("tried %s, want %s", got, tt.tried)
			}
			if got := hosts(f.cancelled); got != tt.cancelled {
				t.Fatalf("cancelled %s, want %s", got, tt.cancelled)
			}
		})
	}
}

func hosts(hs []string) string {
	var out []string
	for _, h := range hs {
		out = append(out, strings.TrimSuffix(h, ".test"))
	}
	for i := range out { // insertion sort: tiny lists
		for j := i; j > 0 && out[j] < out[j-1]; j-- {
			out[j], out[j-1] = out[j-1], out[j]
		}
	}
	return strings.Join(out, " ")
}

// TestWalkHedgedMatchesWalk: with a policy that never fires, WalkHedged tries the same
// upstreams in the same order as Walk and fails the same way.
func TestWalkHedgedMatchesWalk(t *testing.T) {
	lists := []string{"a,b", "a|b", "a|b,c", "a,b|c", "a|b|c,off", "a,direct", "a|b|c|d"}
	outcomes := []string{"ok", "404", "500"}
	never := HedgePolicy{Delay: func(*Client) (time.Duration, bool) { return 0, false }}
	for _, list := range lists {
		forEachPlan(t, list, outcomes, func(c *Chain, plan map[string]string) {
			w1, w2 := &fakeTry{plan: plan, otherDone: make(chan struct{})}, &fakeTry{plan: plan, otherDone: make(chan struct{})}
			e1 := c.Walk(context.Background(), nil, w1.try)
			e2 := c.WalkHedged(context.Background(), nil, never, w2.try)
			same := (e1 == nil) == (e2 == nil) && errors.Is(e1, fs.ErrNotExist) == errors.Is(e2, fs.ErrNotExist) &&
				strings.Join(w1.tried, " ") == strings.Join(w2.tried, " ") && w1.winner == w2.winner
			if e1 != nil && e2 != nil && e1.Error() != e2.Error() {
				same = false
			}
			if !same {
				t.Errorf("%s %v: Walk tried %v (%v), WalkHedged tried %v (%v)", list, plan, w1.tried, e1, w2.tried, e2)
			}
		})
	}
}

// forEachPlan calls f with the chain of list (a GOPROXY list of the letters a to d, each
// the proxy http://X.test, and keywords) and a plan of the proxies' outcomes, for every
// combination of outcomes.
func forEachPlan(t *testing.T, list string, outcomes []string, f func(c *Chain, plan map[string]string)) {
	t.Helper()
	n := strings.Count(list, ",") + strings.Count(list, "|") + 1
	total := 1
	for range n {
		total *= len(outcomes)
	}
	for combo := range total {
		plan := map[string]string{}
		full := list
		k := combo
		for _, e := range []string{"a", "b", "c", "d"} {
			if strings.Contains(list, e) {
				plan[e+".test"] = outcomes[k%len(outcomes)]
				k /= len(outcomes)
				full = strings.Replace(full, e, "http://"+e+".test", 1)
			}
		}
		c, err := ParseChain(full, http.DefaultClient)
		if err != nil {
			t.Fatal(err)
		}
		f(c, plan)
	}
}

// BenchmarkWalkHedgedOneProxy is the walk of every fill behind a single proxy (or a ','
// list): the walk's own cost around a try that does nothing, with its stack used the way
// a real attempt (an HTTP request) uses it.
func BenchmarkWalkHedgedOneProxy(b *testing.B) {
	c, err := ParseChain("https://proxy-a.test", http.DefaultClient)
	if err != nil {
		b.Fatal(err)
	}
	hp := HedgePolicy{Delay: func(*Client) (time.Duration, bool) { return time.Second, true }}
	try := func(context.Context, *Client) error { deepStack(40); return nil }
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if err := c.WalkHedged(ctx, nil, hp, try); err != nil {
			b.Fatal(err)
		}
	}
}

// deepStack uses about n KiB of stack.
//
//go:noinline
func deepStack(n int) byte {
	var buf [1024]byte
	if n <= 1 {
		return buf[n]
	}
	return deepStack(n-1) + buf[n%1024]
}

// TestReorderKeepsOutcome: reordering the proxies of a '|' run (the health scorer's Order
// hook) never changes whether a walk succeeds or ends in not found, for Walk and
// WalkHedged alike. After a run, the walk goes on only when the proxy that the list puts
// last in the run (before the ',') answered not found, wherever the order put it: with
// "a|b,c", a failing and b answering 404, the list promises c, also when b was asked
// first. (The soak test found holoproxy answering 502 there: b tried first, then a's
// error taken as the run's last word.)
func TestReorderKeepsOutcome(t *testing.T) {
	lists := []string{"a|b,c", "a|b|c,d", "a,b|c,d", "a|b,c|d", "a|b"}
	outcomes := []string{"ok", "404", "500"}
	reverse := func(cs []*Client) []*Client { slices.Reverse(cs); return cs }
	never := HedgePolicy{Delay: func(*Client) (time.Duration, bool) { return 0, false }}
	for _, list := range lists {
		forEachPlan(t, list, outcomes, func(c *Chain, plan map[string]string) {
			written := c.Walk(context.Background(), nil, (&fakeTry{plan: plan, otherDone: make(chan struct{})}).try)
			for name, walk := range map[string]func(*fakeTry) error{
				"Walk": func(f *fakeTry) error { return c.Walk(context.Background(), reverse, f.try) },
				"WalkHedged": func(f *fakeTry) error {
					return c.WalkHedged(context.Background(), reverse, never, f.try)
				},
			} {
				f := &fakeTry{plan: plan, otherDone: make(chan struct{})}
				got := walk(f)
				if (got == nil) != (written == nil) || errors.Is(got, fs.ErrNotExist) != errors.Is(written, fs.ErrNotExist) {
					t.Errorf("%s %v: reordered %s tried %v and returned %v; in the written order: %v", list, plan, name, f.tried, got, written)
				}
			}
		})
	}
}
