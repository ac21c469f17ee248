package goproxy

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"reflect"
	"slices"
	"strings"
)

// Credentials are the credentials the go command would send to upstreams: those in the
// user info of a proxy URL of the GOPROXY list, for every request below that URL, and
// those of its GOAUTH methods (UseGOAUTH): the netrc file (the go command's default), git
// credential fill and commands. GOAUTH's apply as the go command applies them: only over
// https, to a URL without user info, by the longest stored prefix of the request's host
// (with its port, if the URL has one) and path cut at a '/'; after a 4xx answer, git and
// the commands are asked again for the URL and the request is made again once with what
// they gave. User info in a proxy URL wins. Its RoundTripper adds them to the requests
// that match; requests that already carry an Authorization header, and those nothing
// matches (another host after a redirect, say), go as they are.
type Credentials struct {
	byURL []urlCredential
	auth  *goAuth
	list  []*url.URL // the proxies of the list, for UseGOAUTH's report
}

type urlCredential struct {
	scheme, host, path string // path without a trailing slash
	user               *url.Userinfo
}

// ListCredentials returns the credentials in the user info of list's proxy URLs (GOPROXY
// syntax). Entries that do not parse are skipped: ParseChain reports them.
func ListCredentials(list string) *Credentials {
	c := &Credentials{}
	for _, entry := range strings.FieldsFunc(list, func(r rune) bool { return r == ',' || r == '|' }) {
		u, err := url.Parse(strings.TrimSuffix(withScheme(strings.TrimSpace(entry)), "/"))
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			continue
		}
		c.list = append(c.list, u)
		if u.User != nil {
			c.byURL = append(c.byURL, urlCredential{scheme: u.Scheme, host: strings.ToLower(u.Host),
				path: strings.TrimSuffix(u.EscapedPath(), "/"), user: u.User})
		}
	}
	return c
}

// UseNetrc is UseGOAUTH for GOAUTH=netrc with the netrc file's entries (the first of a
// machine listed twice wins, as with the go command).
func (c *Credentials) UseNetrc(entries []NetrcEntry) []string {
	return c.UseGOAUTH(AuthConfig{Methods: []AuthMethod{{Kind: "netrc"}}, Netrc: entries})
}

// UseGOAUTH sets the GOAUTH methods (once, before the RoundTripper is used). It returns
// the names of the list's proxies that get credentials from the netrc file.
func (c *Credentials) UseGOAUTH(cfg AuthConfig) []string {
	if len(cfg.Methods) == 0 || (len(cfg.Netrc) == 0 && !newGoAuth(cfg).asksAgain()) {
		c.auth = nil // nothing to send, ever
		return nil
	}
	c.auth = newGoAuth(cfg)
	if !slices.ContainsFunc(cfg.Methods, func(m AuthMethod) bool { return m.Kind == "netrc" }) {
		return nil
	}
	netrc := newGoAuth(AuthConfig{Methods: []AuthMethod{{Kind: "netrc"}}, Netrc: cfg.Netrc})
	netrc.apply(make([]map[string]*authEntry, 1))
	var got []string
	for _, u := range c.list {
		if u.User == nil && u.Scheme == "https" && netrc.load(u) != nil {
			got = append(got, (&url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path}).String())
		}
	}
	return got
}

// UsesGOAUTH reports whether a proxy of the list is one GOAUTH applies to: https, without
// user info.
func (c *Credentials) UsesGOAUTH() bool {
	return slices.ContainsFunc(c.list, func(u *url.URL) bool { return u.Scheme == "https" && u.User == nil })
}

// Close kills the GOAUTH commands still running, with the processes they started, and
// returns once they are gone (or with ctx's error). A program calls it before it exits;
// later requests get no GOAUTH credential. Credentials without GOAUTH have nothing to end.
func (c *Credentials) Close(ctx context.Context) error {
	if c == nil || c.auth == nil {
		return nil
	}
	if err := c.auth.procs.closeAndWait(ctx, "GOAUTH commands"); err != nil {
		return fmt.Errorf("GOAUTH: %w", err)
	}
	return nil
}

// Empty reports whether there are no credentials at all.
func (c *Credentials) Empty() bool { return c == nil || (len(c.byURL) == 0 && c.auth == nil) }

// fromURL returns the user info of the longest proxy URL that u is below.
func (c *Credentials) fromURL(u *url.URL) (*url.Userinfo, bool) {
	host := strings.ToLower(u.Host)
	best := -1
	for i, uc := range c.byURL {
		if uc.scheme != u.Scheme || uc.host != host {
			continue
		}
		p := u.EscapedPath()
		if p != uc.path && !strings.HasPrefix(p, uc.path+"/") {
			continue
		}
		if best < 0 || len(uc.path) > len(c.byURL[best].path) {
			best = i
		}
	}
	if best < 0 {
		return nil, false
	}
	return c.byURL[best].user, true
}

// RoundTripper returns next with the credentials added to the requests they are for; next
// itself when there are none.
func (c *Credentials) RoundTripper(next http.RoundTripper) http.RoundTripper {
	if c.Empty() {
		return next
	}
	return &authTransport{creds: c, next: next}
}

type authTransport struct {
	creds *Credentials
	next  http.RoundTripper
}

func (t *authTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Header.Get("Authorization") != "" {
		return t.next.RoundTrip(req)
	}
	if user, ok := t.creds.fromURL(req.URL); ok {
		req = req.Clone(req.Context()) // a RoundTripper must not change its request
		pw, _ := user.Password()
		req.SetBasicAuth(user.Username(), pw)
		return t.next.RoundTrip(req)
	}
	a := t.creds.auth
	if a == nil || req.URL.Scheme != "https" || req.URL.User != nil {
		return t.next.RoundTrip(req)
	}
	ctx := req.Context()
	a.start(ctx)
	sent := a.load(req.URL)
	resp, err := t.next.RoundTrip(withHeader(req, sent))
	if err != nil {
		return nil, err
	}
	a.settle(ctx, sent, resp.StatusCode)
	if resp.StatusCode < 400 || resp.StatusCode >= 500 || !a.asksAgain() || (req.Body != nil && req.GetBody == nil) {
		return resp, nil
	}
	// The go command asks GOAUTH again with the URL after a 4xx and tries once more.
	a.refresh(ctx, req.URL, resp, sent)
	again := a.load(req.URL)
	if again == sent || (again != nil && sent != nil && reflect.DeepEqual(again.header, sent.header)) || ctx.Err() != nil {
		return resp, nil // the same request again would get the same answer
	}
	retry := req.Clone(ctx)
	if req.GetBody != nil {
		if retry.Body, err = req.GetBody(); err != nil {
			return resp, nil
		}
	}
	io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10)) // the connection may serve the retry
	resp.Body.Close()
	resp, err = t.next.RoundTrip(withHeader(retry, again))
	if err != nil {
		return nil, err
	}
	a.settle(ctx, again, resp.StatusCode)
	return resp, nil
}

// withHeader returns req with e's header added (a copy: a RoundTripper must not change its
// request), or req itself when e is nil.
func withHeader(req *http.Request, e *authEntry) *http.Request {
	if e == nil || len(e.header) == 0 {
		return req
	}
	req = req.Clone(req.Context())
	for k, vs := range e.header {
		for _, v := range vs {
			req.Header.Add(k, v)
		}
	}
	return req
}

// CloseIdleConnections passes on to the wrapped transport.
func (t *authTransport) CloseIdleConnections() {
	if c, ok := t.next.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}
