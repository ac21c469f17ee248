package goproxy

import (
	"net/http"
	"net/url"
	"strings"
)

// Credentials are the HTTP basic credentials the go command would send to upstreams: those
// in the user info of a proxy URL of the GOPROXY list, for every request below that URL,
// and those of a netrc file (GOAUTH=netrc, the go command's default), matched as the go
// command matches them: only over https, and when the entry's machine is the request's
// host (with its port, if the URL has one), or a prefix of host and path ending at a '/'.
// User info in a proxy URL wins over a netrc entry. Its RoundTripper adds them to the
// requests that match; requests that already carry an Authorization header, and those
// nothing matches (another host after a redirect, say), go as they are.
type Credentials struct {
	byURL []urlCredential
	netrc map[string]NetrcEntry // by machine
	list  []*url.URL            // the proxies of the list, for UseNetrc's report
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
		u, err := url.Parse(strings.TrimSuffix(strings.TrimSpace(entry), "/"))
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

// UseNetrc adds the entries of a netrc file (the first of a machine listed twice wins, as
// with the go command). It returns the names of the list's proxies that get credentials
// from them.
func (c *Credentials) UseNetrc(entries []NetrcEntry) []string {
	if c.netrc == nil {
		c.netrc = map[string]NetrcEntry{}
	}
	for _, e := range entries {
		if _, dup := c.netrc[e.Machine]; !dup {
			c.netrc[e.Machine] = e
		}
	}
	var got []string
	for _, u := range c.list {
		if u.User != nil {
			continue
		}
		if _, ok := c.fromNetrc(u); ok {
			got = append(got, (&url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path}).String())
		}
	}
	return got
}

// Empty reports whether there are no credentials at all.
func (c *Credentials) Empty() bool { return c == nil || len(c.byURL)+len(c.netrc) == 0 }

// fromNetrc returns the netrc entry for u: https only, the longest machine that is u's
// host and path cut at a '/'.
func (c *Credentials) fromNetrc(u *url.URL) (NetrcEntry, bool) {
	if u.Scheme != "https" || len(c.netrc) == 0 {
		return NetrcEntry{}, false
	}
	prefix := strings.TrimSuffix(u.Host+u.EscapedPath(), "/")
	for {
		if e, ok := c.netrc[prefix]; ok {
			return e, true
		}
		i := strings.LastIndexByte(prefix, '/')
		if i < 0 {
			return NetrcEntry{}, false
		}
		prefix = prefix[:i]
	}
}

// lookup returns the credentials for u: the longest matching proxy URL first, then the
// netrc file.
func (c *Credentials) lookup(u *url.URL) (user, password string, ok bool) {
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
	if best >= 0 {
		pw, _ := c.byURL[best].user.Password()
		return c.byURL[best].user.Username(), pw, true
	}
	if e, ok := c.fromNetrc(u); ok {
		return e.Login, e.Password, true
	}
	return "", "", false
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
	if req.Header.Get("Authorization") == "" {
		if user, pw, ok := t.creds.lookup(req.URL); ok {
			req = req.Clone(req.Context()) // a RoundTripper must not change its request
			req.SetBasicAuth(user, pw)
		}
	}
	return t.next.RoundTrip(req)
}

// CloseIdleConnections passes on to the wrapped transport.
func (t *authTransport) CloseIdleConnections() {
	if c, ok := t.next.(interface{ CloseIdleConnections() }); ok {
		c.CloseIdleConnections()
	}
}
