package goproxy

import (
	"net/http"
	"net/url"
	"strings"
)

// Credentials are the HTTP basic credentials the go command would send to upstreams: those
// in the user info of a proxy URL of the GOPROXY list, for every request below that URL,
// and those of a netrc file (GOAUTH=netrc, the go command's default), for every request to
// the host of a proxy of the list that carries none in its URL. Its RoundTripper adds them
// to the requests that match; requests that already carry an Authorization header, and
// those to any other host (after a redirect, say), go as they are.
type Credentials struct {
	byURL  []urlCredential
	byHost []NetrcEntry
	list   []*url.URL // the proxies of the list, for UseNetrc
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

// UseNetrc adds, for each proxy of the list whose URL has no user info, the first netrc
// entry whose machine is its host (with or without the port). It returns the names of the
// proxies that got credentials so.
func (c *Credentials) UseNetrc(entries []NetrcEntry) []string {
	var got []string
	for _, u := range c.list {
		if u.User != nil {
			continue
		}
		for _, e := range entries {
			if strings.EqualFold(e.Machine, u.Host) || strings.EqualFold(e.Machine, u.Hostname()) {
				c.byHost = append(c.byHost, NetrcEntry{Machine: strings.ToLower(u.Host), Login: e.Login, Password: e.Password})
				got = append(got, (&url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path}).String())
				break
			}
		}
	}
	return got
}

// Empty reports whether there are no credentials at all.
func (c *Credentials) Empty() bool { return c == nil || len(c.byURL)+len(c.byHost) == 0 }

// lookup returns the credentials for u: the longest matching URL prefix first, then the
// host's netrc entry.
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
	for _, e := range c.byHost {
		if e.Machine == host {
			return e.Login, e.Password, true
		}
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
