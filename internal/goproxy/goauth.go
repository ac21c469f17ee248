package goproxy

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/textproto"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"golang.org/x/net/http/httpguts"
	"golang.org/x/sync/singleflight"
)

// AuthMethod is one entry of a GOAUTH list (`go help goauth`) other than off.
type AuthMethod struct {
	// Kind is "netrc", "git" or "command".
	Kind string
	// Dir is the absolute directory `git credential` runs in, for "git".
	Dir string
	// Args is the command line of "command": the entry split into words as the go command
	// splits it (white space, with '...' or "..." around a word that holds some).
	Args []string
}

// String names the method for messages: "netrc", "git DIR", or "command NAME" with the
// program's base name alone, since its arguments may hold a secret.
func (m AuthMethod) String() string {
	switch m.Kind {
	case "git":
		return "git " + m.Dir
	case "command":
		return "command " + filepath.Base(m.Args[0])
	}
	return m.Kind
}

// ParseGOAUTH parses a GOAUTH value, a ';'-separated list, into its methods, refusing
// what the go command refuses: an empty entry, off with anything else, git without an
// absolute directory that exists. Any other entry is a command: its first word is the
// program (there is no "command" keyword). off gives no methods.
func ParseGOAUTH(value string) ([]AuthMethod, error) {
	parts := strings.Split(value, ";")
	var out []AuthMethod
	for _, part := range parts {
		words := strings.Fields(part)
		if len(words) == 0 {
			return nil, fmt.Errorf("GOAUTH has an empty entry")
		}
		switch words[0] {
		case "off":
			if len(parts) != 1 {
				return nil, fmt.Errorf("GOAUTH=off cannot be combined with other methods")
			}
			return nil, nil
		case "netrc":
			out = append(out, AuthMethod{Kind: "netrc"})
		case "git":
			if len(words) != 2 || !filepath.IsAbs(words[1]) {
				return nil, fmt.Errorf("GOAUTH entry %q: git needs an absolute directory", "git")
			}
			if fi, err := os.Stat(words[1]); err != nil || !fi.IsDir() {
				return nil, fmt.Errorf("GOAUTH entry %q: %s is not a directory", "git", words[1])
			}
			out = append(out, AuthMethod{Kind: "git", Dir: words[1]})
		default:
			args, err := splitQuoted(part)
			if err != nil {
				return nil, fmt.Errorf("GOAUTH command %s: %v", filepath.Base(words[0]), err)
			}
			out = append(out, AuthMethod{Kind: "command", Args: args})
		}
	}
	return out, nil
}

// splitQuoted splits s into words at white space, a word quoted with ' or " keeping its spaces,
// with no escapes: the rules of the go command's cmd/internal/quoted.Split, which is
// internal to it.
func splitQuoted(s string) ([]string, error) {
	var f []string
	for {
		s = strings.TrimLeft(s, " \t\n\r")
		if s == "" {
			return f, nil
		}
		if q := s[0]; q == '"' || q == '\'' {
			i := strings.IndexByte(s[1:], q)
			if i < 0 {
				return nil, fmt.Errorf("unterminated %c string", q)
			}
			f = append(f, s[1:1+i])
			s = s[2+i:]
			continue
		}
		i := strings.IndexAny(s, " \t\n\r")
		if i < 0 {
			i = len(s)
		}
		f = append(f, s[:i])
		s = s[i:]
	}
}

// AuthConfig configures the GOAUTH methods of a Credentials (UseGOAUTH).
type AuthConfig struct {
	// Methods are the GOAUTH methods in the order of the list.
	Methods []AuthMethod
	// Netrc are the netrc file's entries, for a netrc method.
	Netrc []NetrcEntry
	// Timeout bounds one run of git or a command (default 10s): it is killed, with every
	// process it started, and counts as a run that gave nothing.
	Timeout time.Duration
	// MaxOutput bounds what a run may print (default 1 MiB); more is an error.
	MaxOutput int
	// Reuse is how long the answer of git or a command run for a URL is taken again for
	// later 4xx answers under the same scheme, host and port instead of running it again
	// (default 5m): the go command runs them again after every 4xx, which a long-running
	// proxy answering many 404s cannot afford. An answer that gave nothing is reused too,
	// so that an upstream refusing every request does not start a process for each.
	Reuse time.Duration
	// Retry is how soon a credential the upstream refused (401 or 403) may be asked for
	// again (default 10s).
	Retry time.Duration
	// Logf reports a method that fails, once per distinct message; never a credential.
	Logf func(format string, args ...any)
	// Env is the environment of the runs (default os.Environ()).
	Env []string
}

// Defaults of AuthConfig.
const (
	DefaultAuthTimeout   = 10 * time.Second
	DefaultAuthMaxOutput = 1 << 20
	DefaultAuthReuse     = 5 * time.Minute
	DefaultAuthRetry     = 10 * time.Second
)

// authEntry is the header of one URL prefix in the credential store, and where it came
// from.
type authEntry struct {
	header http.Header
	git    *gitCred // nil unless from git credential fill
}

// gitCred is a credential from git credential fill, kept to approve or reject it.
type gitCred struct {
	fill    []byte    // the output of fill, the input of approve and reject
	expires time.Time // password_expiry_utc, zero when none
	settled bool      // approved or rejected already
}

// authRun is the last answer of git or a command run for a URL under one origin.
type authRun struct {
	at      time.Time
	entries map[string]*authEntry // by prefix (host/path, no scheme); empty: gave nothing
}

// covers reports whether the run gave a credential for u's prefix (host/path).
func (r *authRun) covers(prefix string) bool {
	for p, e := range r.entries {
		if (prefix == p || strings.HasPrefix(prefix, p+"/")) && len(e.header) > 0 {
			if e.git != nil && !e.git.expires.IsZero() && time.Now().After(e.git.expires) {
				return false
			}
			return true
		}
	}
	return false
}

// goAuth is the state of the GOAUTH methods: the store of headers by URL prefix that the
// go command keeps (cmd/go/internal/auth), filled by a first pass of every method without
// a URL before the first https request, and by a pass with the URL after a 4xx answer.
// Lock order: runs (singleflight) before mu; mu is never held while a process runs.
type goAuth struct {
	cfg AuthConfig

	startOnce sync.Once
	started   chan struct{} // closed when the first pass is done

	mu     sync.Mutex
	store  map[string]*authEntry // by prefix: host[:port][/path], no scheme, no trailing '/'
	runs   map[string]*authRun   // by method index and origin
	logged map[string]bool

	same singleflight.Group

	procs *processes // the commands running, for Close
}

func newGoAuth(cfg AuthConfig) *goAuth {
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultAuthTimeout
	}
	if cfg.MaxOutput <= 0 {
		cfg.MaxOutput = DefaultAuthMaxOutput
	}
	if cfg.Reuse <= 0 {
		cfg.Reuse = DefaultAuthReuse
	}
	if cfg.Retry <= 0 {
		cfg.Retry = DefaultAuthRetry
	}
	if cfg.Logf == nil {
		cfg.Logf = func(string, ...any) {}
	}
	if cfg.Env == nil {
		cfg.Env = os.Environ()
	}
	return &goAuth{cfg: cfg, store: map[string]*authEntry{}, runs: map[string]*authRun{}, logged: map[string]bool{},
		procs: newProcesses(errAuthClosed)}
}

// asksAgain reports whether a 4xx answer may get other credentials: only git and commands
// answer differently once they know the URL.
func (a *goAuth) asksAgain() bool {
	return slices.ContainsFunc(a.cfg.Methods, func(m AuthMethod) bool { return m.Kind != "netrc" })
}

func (a *goAuth) logOnce(format string, args ...any) {
	msg := strings.ReplaceAll(fmt.Sprintf(format, args...), "\n", " ")
	a.mu.Lock()
	seen := a.logged[msg]
	a.logged[msg] = true
	a.mu.Unlock()
	if !seen {
		a.cfg.Logf("%s", msg)
	}
}

// urlPrefix is u as the store keys it: host and path, no scheme, no trailing '/'.
func urlPrefix(u *url.URL) string {
	return strings.TrimSuffix(u.Host+u.EscapedPath(), "/")
}

// start runs the first pass, once, before the first https request: every method without a
// URL, the last first so that the first listed wins a prefix (git needs a URL: it waits
// for the first 4xx). A caller whose context ends stops waiting for it; the pass itself
// ends within the runs' timeouts.
func (a *goAuth) start(ctx context.Context) {
	a.startOnce.Do(func() {
		a.started = make(chan struct{})
		go func() {
			defer close(a.started)
			ctx := context.WithoutCancel(ctx) // one request leaving must not leave the pass half done
			results := make([]map[string]*authEntry, len(a.cfg.Methods))
			for i, m := range a.cfg.Methods {
				if m.Kind == "command" {
					results[i] = a.command(ctx, m, "", nil)
				}
			}
			a.apply(results)
		}()
	})
	select {
	case <-a.started:
	case <-ctx.Done():
	}
}

// apply stores the results of one pass, the last method's first, as the go command does.
func (a *goAuth) apply(results []map[string]*authEntry) {
	a.mu.Lock()
	defer a.mu.Unlock()
	for i := len(a.cfg.Methods) - 1; i >= 0; i-- {
		if a.cfg.Methods[i].Kind == "netrc" {
			for j := len(a.cfg.Netrc) - 1; j >= 0; j-- {
				e := a.cfg.Netrc[j]
				h := http.Header{}
				(&http.Request{Header: h}).SetBasicAuth(e.Login, e.Password)
				a.store[strings.TrimSuffix(e.Machine, "/")] = &authEntry{header: h}
			}
			continue
		}
		for p, e := range results[i] {
			if len(e.header) == 0 {
				delete(a.store, p)
			} else {
				a.store[p] = e
			}
		}
	}
}

// load returns the entry of the longest stored prefix of u, cut at '/'s, or nil.
func (a *goAuth) load(u *url.URL) *authEntry {
	a.mu.Lock()
	defer a.mu.Unlock()
	p := urlPrefix(u)
	for {
		if e, ok := a.store[p]; ok {
			return e
		}
		i := strings.LastIndexByte(p, '/')
		if i < 0 {
			return nil
		}
		p = p[:i]
	}
}

// refresh runs the pass with the URL after a 4xx answer res to a request for u that
// carried sent (nil: no credentials), reusing recent answers as AuthConfig.Reuse says.
func (a *goAuth) refresh(ctx context.Context, u *url.URL, res *http.Response, sent *authEntry) {
	stdin := responseText(res)
	refused := res.StatusCode == http.StatusUnauthorized || res.StatusCode == http.StatusForbidden
	origin := u.Host
	results := make([]map[string]*authEntry, len(a.cfg.Methods))
	for i, m := range a.cfg.Methods {
		if m.Kind == "netrc" {
			continue
		}
		key := strconv.Itoa(i) + " " + origin
		a.mu.Lock()
		r := a.runs[key]
		a.mu.Unlock()
		if r != nil && a.reusable(r, urlPrefix(u), refused, sent) {
			results[i] = r.entries
			continue
		}
		ch := a.same.DoChan(key, func() (any, error) {
			run := &authRun{at: time.Now()}
			rctx := context.WithoutCancel(ctx)
			if m.Kind == "git" {
				run.entries = a.git(rctx, m, u)
			} else {
				run.entries = a.command(rctx, m, u.String(), stdin)
			}
			a.mu.Lock()
			a.runs[key] = run
			a.mu.Unlock()
			return run, nil
		})
		select {
		case <-ctx.Done():
			return
		case res := <-ch:
			results[i] = res.Val.(*authRun).entries
		}
	}
	a.apply(results)
}

// reusable reports whether run r may stand for a new run for prefix: it is recent, and it
// either gave nothing or gave a credential for prefix that has not just been refused.
func (a *goAuth) reusable(r *authRun, prefix string, refused bool, sent *authEntry) bool {
	age := time.Since(r.at)
	if age >= a.cfg.Reuse {
		return false
	}
	fromRun := false
	for _, e := range r.entries {
		fromRun = fromRun || e == sent
	}
	if refused && fromRun {
		return age < a.cfg.Retry
	}
	return len(r.entries) == 0 || r.covers(prefix)
}

// settle tells git's credential helpers the outcome of a credential from git credential
// fill, once: approve after an answer below 400, reject after 401 or 403, as the go
// command does after validating it.
func (a *goAuth) settle(ctx context.Context, e *authEntry, status int) {
	if e == nil || e.git == nil {
		return
	}
	action := ""
	switch {
	case status < 400:
		action = "approve"
	case status == http.StatusUnauthorized || status == http.StatusForbidden:
		action = "reject"
	default:
		return
	}
	a.mu.Lock()
	done := e.git.settled
	e.git.settled = true
	a.mu.Unlock()
	if done {
		return
	}
	dir := ""
	for _, m := range a.cfg.Methods {
		if m.Kind == "git" {
			dir = m.Dir
			break
		}
	}
	if _, err := a.run(context.WithoutCancel(ctx), dir, gitArgs(action), e.git.fill); err != nil {
		a.logOnce("GOAUTH git: git credential %s: %v", action, err)
	}
}

// gitArgs is the git command line of a credential action, never prompting.
func gitArgs(action string) []string {
	return []string{"git", "-c", "credential.interactive=false", "credential", action}
}

// git runs git credential fill in m.Dir for u and returns its credential by prefix (the
// URL git answers for, which must be a prefix of u's), or nothing.
func (a *goAuth) git(ctx context.Context, m AuthMethod, u *url.URL) map[string]*authEntry {
	target := (&url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path, RawPath: u.RawPath}).String()
	out, err := a.run(ctx, m.Dir, gitArgs("fill"), []byte("url="+target+"\n"))
	if err != nil {
		a.logOnce("GOAUTH git %s: git credential fill for %s://%s gave no credential: %v", m.Dir, u.Scheme, u.Host, err)
		return nil
	}
	prefix, user, password, expires := parseGitFill(out)
	switch {
	case prefix == "" || (target != prefix && !strings.HasPrefix(target, strings.TrimSuffix(prefix, "/")+"/")):
		a.logOnce("GOAUTH git %s: git credential fill for %s://%s answered for another URL", m.Dir, u.Scheme, u.Host)
		return nil
	case user == "" && password == "":
		return nil
	}
	h := http.Header{}
	(&http.Request{Header: h}).SetBasicAuth(user, password)
	pu, err := url.Parse(prefix) // parseGitFill gives only prefixes that parse
	if err != nil {
		return nil
	}
	return map[string]*authEntry{urlPrefix(pu): {header: h, git: &gitCred{fill: out, expires: expires}}}
}

// parseGitFill reads the attributes of git credential fill's answer (key=value lines, git's
// credential protocol): the URL it is for, from url= or protocol, host and path.
func parseGitFill(out []byte) (prefix, user, password string, expires time.Time) {
	p := &url.URL{}
	for line := range strings.SplitSeq(string(out), "\n") {
		key, value, ok := strings.Cut(strings.TrimSuffix(line, "\r"), "=")
		if !ok {
			continue
		}
		switch key {
		case "protocol":
			p.Scheme = value
		case "host":
			p.Host = value
		case "path":
			p.Path = "/" + strings.TrimPrefix(value, "/")
		case "url":
			if u, err := url.ParseRequestURI(value); err == nil {
				p = u
			}
		case "username":
			user = value
		case "password":
			password = value
		case "password_expiry_utc":
			if s, err := strconv.ParseInt(value, 10, 64); err == nil {
				expires = time.Unix(s, 0)
			}
		}
	}
	if p.Scheme != "https" || p.Host == "" {
		return "", "", "", time.Time{}
	}
	p.User = nil
	prefix = p.String()
	if _, err := url.Parse(prefix); err != nil {
		// A host no URL can carry ("a b", "[::1"): it is the prefix of no request.
		return "", "", "", time.Time{}
	}
	return prefix, user, password, expires
}

// command runs a GOAUTH command, with url as its last argument and the 4xx answer on its
// stdin when url is set, and returns its credentials by prefix, or nothing.
func (a *goAuth) command(ctx context.Context, m AuthMethod, url string, stdin []byte) map[string]*authEntry {
	args := m.Args
	if url != "" {
		args = append(slices.Clip(args), url)
	}
	out, err := a.run(ctx, "", args, stdin)
	if err != nil {
		a.logOnce("GOAUTH %s: %v", m, err)
		return nil
	}
	creds, err := ParseAuthCommandOutput(out)
	if err != nil {
		a.logOnce("GOAUTH %s: malformed output: %v", m, err)
		return nil
	}
	entries := make(map[string]*authEntry, len(creds))
	for p, h := range creds {
		entries[p] = &authEntry{header: h}
	}
	return entries
}

// ParseAuthCommandOutput parses the output of a GOAUTH command (`go help goauth`): sets of
// URL lines, an empty line, header lines, an empty line. It returns the headers by URL
// prefix as the go command keys them: host and path without "https://" and a trailing '/'.
// A set with no header lines removes the credentials of its prefixes. Errors never quote
// a header line, which holds a secret.
func ParseAuthCommandOutput(out []byte) (map[string]http.Header, error) {
	creds := map[string]http.Header{}
	r := textproto.NewReader(bufio.NewReader(bytes.NewReader(out)))
	for set := 1; ; set++ {
		var prefixes []string
		for {
			line, err := r.ReadLine()
			if err == io.EOF && len(prefixes) == 0 && line == "" {
				return creds, nil
			}
			if err != nil {
				return nil, fmt.Errorf("set %d: no empty line after its URLs", set)
			}
			if line == "" {
				break
			}
			u, err := url.ParseRequestURI(line)
			if err != nil || u.Scheme != "https" || u.Host == "" {
				// No part of the line is shown: in output that lacks the empty line
				// after its URLs, it is a header line, a secret.
				if err == nil && u.Scheme == "http" {
					return nil, fmt.Errorf("set %d: an http:// URL, not an https URL", set)
				}
				return nil, fmt.Errorf("set %d: a line where a URL is expected is not an https URL (is the empty line after the URLs missing?)", set)
			}
			prefixes = append(prefixes, strings.TrimSuffix(strings.TrimPrefix(u.String(), "https://"), "/"))
		}
		if len(prefixes) == 0 {
			return nil, fmt.Errorf("set %d: no URL before its headers", set)
		}
		h, err := r.ReadMIMEHeader()
		if err != nil {
			return nil, fmt.Errorf("set %d: header lines not ended by an empty line, or not \"Name: value\"", set)
		}
		for name, values := range h {
			for _, v := range values {
				if !httpguts.ValidHeaderFieldName(name) || !httpguts.ValidHeaderFieldValue(v) {
					return nil, fmt.Errorf("set %d: invalid header %q", set, name)
				}
			}
		}
		for _, p := range prefixes {
			creds[p] = http.Header(h).Clone()
		}
	}
}

// responseText is res as the go command writes it to a GOAUTH command's stdin: status
// line, header lines, empty line.
func responseText(res *http.Response) []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s %s\n", res.Proto, res.Status)
	keys := make([]string, 0, len(res.Header))
	for k := range res.Header {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		fmt.Fprintf(&b, "%s: %s\n", k, strings.Join(res.Header[k], ", "))
	}
	b.WriteString("\n")
	return b.Bytes()
}

// run runs args in dir (the current directory when empty) with stdin, within the
// configured time and output bounds, killing it with every process it started when the
// time is up. git never prompts: no terminal, no askpass program. The error is one line
// and holds the last line of what the program wrote to stderr, never its output.
func (a *goAuth) run(ctx context.Context, dir string, args []string, stdin []byte) ([]byte, error) {
	ctx, done, closed := a.procs.start(ctx)
	if closed != nil {
		return nil, closed
	}
	defer done()
	ctx, cancel := context.WithTimeout(ctx, a.cfg.Timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, args[0], args[1:]...)
	waitGroup := SetProcessGroup(cmd)
	cmd.WaitDelay = time.Second
	cmd.Dir = dir
	cmd.Env = append(slices.Clip(a.cfg.Env), "GIT_TERMINAL_PROMPT=0", "GIT_ASKPASS=", "SSH_ASKPASS=", "GCM_INTERACTIVE=never")
	cmd.Stdin = bytes.NewReader(stdin)
	stdout := &cappedBuffer{max: a.cfg.MaxOutput}
	stderr := &cappedBuffer{max: 4096}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	err := cmd.Run()
	waitGroup()
	switch {
	case ctx.Err() == context.DeadlineExceeded:
		return nil, fmt.Errorf("no answer within %v: killed", a.cfg.Timeout)
	case errors.Is(context.Cause(ctx), errAuthClosed):
		return nil, errAuthClosed
	case err != nil:
		if last := lastLine(stderr.b.String()); last != "" {
			return nil, fmt.Errorf("%v: %s", err, last)
		}
		return nil, err
	case stdout.over:
		return nil, fmt.Errorf("output exceeds %d bytes", a.cfg.MaxOutput)
	}
	return stdout.b.Bytes(), nil
}

// errAuthClosed is the failure of a GOAUTH command killed, or not started, after Close.
var errAuthClosed = fmt.Errorf("GOAUTH: closed: %w", context.Canceled)

// lastLine returns the last non-empty line of s, at most 200 bytes of it.
func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	l := strings.TrimSpace(lines[len(lines)-1])
	if len(l) > 200 {
		l = l[:200] + "..."
	}
	return l
}

// cappedBuffer keeps the first max bytes written to it and notes that there were more,
// still taking them, so that the program writing never blocks on a full pipe.
type cappedBuffer struct {
	b    bytes.Buffer
	max  int
	over bool
}

func (c *cappedBuffer) Write(p []byte) (int, error) {
	if room := c.max - c.b.Len(); len(p) > room {
		c.over = true
		c.b.Write(p[:max(room, 0)])
		return len(p), nil
	}
	return c.b.Write(p)
}
