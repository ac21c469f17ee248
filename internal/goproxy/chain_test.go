package goproxy

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestParseChain(t *testing.T) {
	tests := []struct {
		in, want string
		wantErr  bool
	}{
		{in: "http://a.test", want: "http://a.test"},
		{in: "http://a.test/,https://b.test|direct", want: "http://a.test,https://b.test|direct"},
		{in: " http://a.test , off ", want: "http://a.test,off"},
		{in: "http://a.test,", want: "http://a.test"},
		{in: "", wantErr: true},
		// As the go command reads a list: empty entries skipped, a host without a scheme
		// is https, the list ends at off or direct.
		{in: "http://a.test,,http://b.test", want: "http://a.test,http://b.test"},
		{in: " , |", wantErr: true},
		{in: "proxy-a.test,direct", want: "https://proxy-a.test,direct"},
		{in: "proxy-a.test:8443/go|b.test", want: "https://proxy-a.test:8443/go|https://b.test"},
		{in: "direct,http://b.test", want: "direct"},
		{in: "http://a.test|off,ftp://ignored", want: "http://a.test|off"},
		{in: "ftp://a.test", wantErr: true},
		{in: "noscheme", wantErr: true},
		{in: "/srv/goproxy", wantErr: true},
		{in: "http://a.test?x=1", wantErr: true},
		// An empty query or fragment would end up in every request URL
		// ("http://a.test/?/m/@v/list").
		{in: "http://a.test/?", wantErr: true},
		{in: "http://a.test/#", wantErr: true},
	}
	for _, tt := range tests {
		c, err := ParseChain(tt.in, http.DefaultClient)
		if tt.wantErr {
			if err == nil {
				t.Errorf("ParseChain(%q) = %v; want an error", tt.in, c)
			}
			continue
		}
		if err != nil || c.String() != tt.want {
			t.Errorf("ParseChain(%q) = %v, %v; want %q", tt.in, c, err, tt.want)
		}
	}
}

// upstream is a test proxy answering every request with one status.
func upstream(t *testing.T, status int, hits *atomic.Int32) string {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		if status != http.StatusOK {
			http.Error(w, fmt.Sprintf("status %d from test upstream", status), status)
			return
		}
		io.WriteString(w, "module example.com/m\n")
	}))
	t.Cleanup(srv.Close)
	return srv.URL
}

func TestChainWalk(t *testing.T) {
	req := Request{Kind: KindMod, Module: "example.com/m", Version: "v1.0.0"}
	tests := []struct {
		name     string
		statuses []int
		seps     string // separators between upstreams
		tail     string // appended keyword, e.g. ",direct"
		wantHits []int32
		wantOK   bool
		wantNF   bool // error satisfies fs.ErrNotExist
	}{
		{name: "A 404 falls to B", statuses: []int{404, 200}, seps: ",", wantHits: []int32{1, 1}, wantOK: true},
		{name: "A 410 falls to B", statuses: []int{410, 200}, seps: ",", wantHits: []int32{1, 1}, wantOK: true},
		{name: "A 500 with comma stops", statuses: []int{500, 200}, seps: ",", wantHits: []int32{1, 0}},
		{name: "A 500 with pipe falls to B", statuses: []int{500, 200}, seps: "|", wantHits: []int32{1, 1}, wantOK: true},
		{name: "all 404 is not found", statuses: []int{404, 404}, seps: ",", wantHits: []int32{1, 1}, wantNF: true},
		{name: "404 then off is not found", statuses: []int{404}, tail: ",off", wantHits: []int32{1}, wantNF: true},
		{name: "404 then direct is not found", statuses: []int{404}, tail: ",direct", wantHits: []int32{1}, wantNF: true},
		{name: "A 200 never asks B", statuses: []int{200, 200}, seps: ",", wantHits: []int32{1, 0}, wantOK: true},
		{name: "404 then 503 is not not-found", statuses: []int{404, 503}, seps: ",", wantHits: []int32{1, 1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			hits := make([]atomic.Int32, len(tt.statuses))
			var urls []string
			for i, s := range tt.statuses {
				urls = append(urls, upstream(t, s, &hits[i]))
			}
			list := strings.Join(urls, tt.seps) + tt.tail
			c, err := ParseChain(list, http.DefaultClient)
			if err != nil {
				t.Fatal(err)
			}
			var served string
			err = c.Walk(context.Background(), nil, func(ctx context.Context, cl *Client) error {
				resp, err := cl.Fetch(ctx, req)
				if err != nil {
					return err
				}
				defer resp.Body.Close()
				served = cl.Name()
				return nil
			})
			if (err == nil) != tt.wantOK {
				t.Fatalf("Walk error = %v; want success %v", err, tt.wantOK)
			}
			if got := errors.Is(err, fs.ErrNotExist); err != nil && got != tt.wantNF {
				t.Errorf("errors.Is(%v, fs.ErrNotExist) = %v; want %v", err, got, tt.wantNF)
			}
			for i := range hits {
				if got := hits[i].Load(); got != tt.wantHits[i] {
					t.Errorf("upstream %d hits = %d; want %d", i, got, tt.wantHits[i])
				}
			}
			if tt.wantOK && served == "" {
				t.Error("success without a serving upstream")
			}
			if err != nil && !strings.Contains(err.Error(), "127.0.0.1") {
				t.Errorf("error %q does not name the upstream", err)
			}
		})
	}
}

func TestChainOrderOnlyWithinPipeGroups(t *testing.T) {
	c, err := ParseChain("http://a.test|http://b.test,http://c.test", http.DefaultClient)
	if err != nil {
		t.Fatal(err)
	}
	reverse := func(cs []*Client) []*Client {
		for i, j := 0, len(cs)-1; i < j; i, j = i+1, j-1 {
			cs[i], cs[j] = cs[j], cs[i]
		}
		return cs
	}
	var tried []string
	c.Walk(context.Background(), reverse, func(ctx context.Context, cl *Client) error {
		tried = append(tried, cl.Name())
		return &StatusError{Upstream: cl.Name(), Status: 404}
	})
	want := "http://b.test http://a.test http://c.test"
	if got := strings.Join(tried, " "); got != want {
		t.Errorf("tried %s; want %s", got, want)
	}
}

func TestFetchRefusesOversizedAnswer(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", fmt.Sprint(MaxInfoSize+1))
		w.WriteHeader(200)
	}))
	defer srv.Close()
	cl, err := NewClient(srv.URL, http.DefaultClient)
	if err != nil {
		t.Fatal(err)
	}
	_, err = cl.Fetch(context.Background(), Request{Kind: KindInfo, Module: "example.com/m", Version: "v1.0.0"})
	if !errors.Is(err, ErrTooLarge) {
		t.Errorf("Fetch error = %v; want ErrTooLarge", err)
	}
}

func TestRetryAfter(t *testing.T) {
	now := time.Date(2026, 11, 26, 12, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		in   string
		want time.Duration
	}{
		{"", 0},
		{"3", 3 * time.Second},
		{"0", 0},
		{"-5", 0},
		{"soon", 0},
		{"999999999", 24 * time.Hour},
		{now.Add(90 * time.Second).Format(http.TimeFormat), 90 * time.Second},
		{now.Add(-time.Minute).Format(http.TimeFormat), 0},
	} {
		if got := retryAfter(tc.in, now); got != tc.want {
			t.Errorf("retryAfter(%q) = %v, want %v", tc.in, got, tc.want)
		}
	}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Retry-After", "7")
		http.Error(w, "slow down", http.StatusTooManyRequests)
	}))
	defer srv.Close()
	c, err := NewClient(srv.URL, srv.Client())
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.Fetch(context.Background(), Request{Kind: KindMod, Module: "example.com/m", Version: "v1.0.0"})
	var se *StatusError
	if !errors.As(err, &se) || se.Status != http.StatusTooManyRequests || se.RetryAfter != 7*time.Second {
		t.Errorf("Fetch = %v; want a 429 StatusError with RetryAfter 7s", err)
	}
}

// With a Direct, "direct" is an entry like a proxy: tried in its place after a 404 (and
// after any error behind '|'), never moved by the order function, not one of Clients,
// and never hedged to.
func TestChainUseDirect(t *testing.T) {
	c, err := ParseChain("http://a.test|http://b.test|direct,off", http.DefaultClient)
	if err != nil {
		t.Fatal(err)
	}
	if !c.HasDirect() {
		t.Fatal("HasDirect = false")
	}
	d := &Direct{sem: make(chan struct{}, 1)} // never run: try below does not fetch
	c.UseDirect(d)
	if cs := c.Clients(); len(cs) != 2 || cs[0].Name() != "http://a.test" || cs[1].Name() != "http://b.test" {
		t.Errorf("Clients() = %v; want the two proxies", cs)
	}
	reverse := func(cs []*Client) []*Client {
		slices.Reverse(cs)
		return cs
	}
	var tried []string
	err = c.Walk(context.Background(), reverse, func(_ context.Context, cl *Client) error {
		tried = append(tried, cl.Name())
		return errors.New("failed") // any error: '|' goes on
	})
	if want := []string{"http://a.test", "http://b.test", "direct"}; !slices.Equal(tried, want) {
		t.Errorf("tried %v; want %v (no reordering in a group with direct, direct in its place)", tried, want)
	}
	if err == nil || errors.Is(err, ErrDirect) {
		t.Errorf("walk error %v; want the failures, not ErrDirect, once direct fetches", err)
	}

	tried = nil
	hp := HedgePolicy{
		Delay: func(*Client) (time.Duration, bool) { return time.Millisecond, true },
		Allow: func(_, _ *Client) bool { return true },
	}
	c2, _ := ParseChain("http://a.test|direct", http.DefaultClient)
	c2.UseDirect(d)
	var mu sync.Mutex
	var directAt time.Duration
	start := time.Now()
	err = c2.WalkHedged(context.Background(), nil, hp, func(ctx context.Context, cl *Client) error {
		mu.Lock()
		tried = append(tried, cl.Name())
		mu.Unlock()
		if cl.Direct() {
			directAt = time.Since(start)
			return nil
		}
		select { // slow enough that a hedge would start
		case <-time.After(100 * time.Millisecond):
		case <-ctx.Done():
		}
		return errors.New("failed")
	})
	if err != nil || !slices.Equal(tried, []string{"http://a.test", "direct"}) || directAt < 100*time.Millisecond {
		t.Errorf("hedged walk: %v, tried %v, direct at %s; want a, then direct only after a failed (100ms)", err, tried, directAt)
	}
}

// FuzzParseChain checks that a GOPROXY list (--upstream, --route, the go command's) is
// parsed or refused with a one-line error, that an accepted list renders back
// (Chain.String) to a list that parses to the same, and that the password of a proxy URL
// shows neither in the rendering, the entries' names, nor an error.
func FuzzParseChain(f *testing.F) {
	for _, s := range []string{
		"http://a.test", "http://a.test/,https://b.test|direct", " http://a.test , off ", "http://a.test,", "",
		"http://a.test,,http://b.test", "ftp://a.test", "a.test", "http://a.test?x=1", "http://a.test#f",
		"https://user:s3cr3tpw@a.test/p|direct", "https://user:s3cr3tpw@a.test:bad/p", "https://user:s3cr3tpw@a.test/p?q",
		"file:///srv/goproxy", "file://host/srv", "file:relative", "off|", "direct,off", "|", "http://[::1]:8080/x/",
		"https://us%zzer:pw@a.test", "https://a.test/%zz", "https://user:s3cr3t#pw@a.test", "http://a.test/?",
		"http://a.test//", "http://a.test/%2F", "file://", "file:///", "file:/srv/x/", "file://localhost/srv/a%20b/", "file:/0 00%2C", "http://a.test/x y%7Cz",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, list string) {
		// The passwords of the entries that parse as URLs, when they appear nowhere else.
		var secrets []string
		for _, entry := range strings.FieldsFunc(list, func(r rune) bool { return r == ',' || r == '|' }) {
			u, err := url.Parse(strings.TrimSpace(entry))
			if err != nil || u.User == nil {
				continue
			}
			if pw, ok := u.User.Password(); ok && len(pw) >= 6 &&
				strings.Count(list, pw) == strings.Count(u.User.String(), pw) {
				secrets = append(secrets, pw)
			}
		}
		leaks := func(what, s string) {
			for _, pw := range secrets {
				if strings.Contains(s, pw) {
					t.Fatalf("ParseChain(%q): %s %q shows the password %q", list, what, s, pw)
				}
			}
		}
		c, err := ParseChain(list, nil)
		if err != nil {
			if msg := err.Error(); strings.ContainsAny(msg, "\r\n") {
				t.Fatalf("ParseChain(%q): error of more than one line: %q", list, msg)
			}
			leaks("error", err.Error())
			return
		}
		if len(c.Entries) == 0 {
			t.Fatalf("ParseChain(%q) has no entry", list)
		}
		for _, e := range c.Entries {
			if (e.Client == nil) != (e.Off || e.Direct) {
				t.Fatalf("ParseChain(%q): entry %+v", list, e)
			}
			leaks("entry", e.Name())
		}
		s := c.String()
		leaks("list", s)
		again, err := ParseChain(s, nil)
		if err != nil {
			t.Fatalf("ParseChain(%q) renders as %q, which does not parse: %v", list, s, err)
		}
		if slices.ContainsFunc(c.Entries, func(e Entry) bool { return strings.HasSuffix(e.Name(), "/") }) {
			// "http://a.test//" is the base "http://a.test/" (one trailing '/' cut, as
			// the go command cuts it), which renders the same and parses as "http://a.test".
			return
		}
		if again.String() != s {
			t.Fatalf("ParseChain(%q) renders as %q, which parses to %v, %v", list, s, again, err)
		}
	})
}
