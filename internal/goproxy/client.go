package goproxy

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/holoproxy/holoproxy/internal/netobs"
)

// StatusError is an upstream's answer with a status other than 200. Errors for 404 and 410
// satisfy errors.Is(err, fs.ErrNotExist), the GOPROXY signal to try the next proxy after ','.
type StatusError struct {
	Upstream string
	Status   int
	Message  string // the first line of the upstream's error body, trimmed
	// RetryAfter is how long the upstream asked to be left alone (its Retry-After header,
	// in seconds or as a date), zero when it did not say.
	RetryAfter time.Duration
}

func (e *StatusError) Error() string {
	msg := fmt.Sprintf("%s answered %d %s", e.Upstream, e.Status, http.StatusText(e.Status))
	if e.Message != "" {
		msg += ": " + e.Message
	}
	return msg
}

// Is makes 404 and 410 answers match fs.ErrNotExist.
func (e *StatusError) Is(target error) bool {
	return target == fs.ErrNotExist && (e.Status == http.StatusNotFound || e.Status == http.StatusGone)
}

// Class returns the error class of the answer, e.g. "http_503".
func (e *StatusError) Class() string { return netobs.HTTPClass(e.Status) }

// ErrTooLarge marks an answer larger than the protocol's limit for its kind.
var ErrTooLarge = errors.New("answer exceeds the size limit")

// Client fetches from one upstream proxy.
type Client struct {
	base *url.URL // without user info
	dir  string   // for a file:// upstream, the directory of its tree
	// direct, for the "direct" entry, runs the go command against version control origins.
	direct *Direct
	http   *http.Client
	// Header is added to every request (the user agent and the hop header of the loop guard).
	Header http.Header
}

// NewClient returns a Client for the proxy at base, sending through hc (the shared observed
// transport). User info in base ("https://user:token@host/path") is left out of the
// Client, its Name and every error: the credentials go with the requests through a
// Credentials transport (ListCredentials).
func NewClient(base string, hc *http.Client) (*Client, error) {
	u, err := url.Parse(strings.TrimSuffix(base, "/"))
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // its message repeats the URL, user info and all
		}
		return nil, fmt.Errorf("upstream %q: %w", Redact(base), err)
	}
	// An empty query or fragment counts ("https://proxy-a.test/?", ".../#"): the
	// request URLs are the base's text followed by a path.
	if u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || strings.Contains(base, "#") {
		return nil, fmt.Errorf("upstream %q: no query or fragment allowed", Redact(base))
	}
	if u.Scheme == "file" {
		// A GOPROXY file tree on this machine, as the go command reads file:// entries.
		// Its path is read before a trailing '/' is cut: "file:///" is the root, and
		// "file://" no path.
		if u, err = url.Parse(base); err != nil || (u.Host != "" && u.Host != "localhost") || u.User != nil ||
			!strings.HasPrefix(u.Path, "/") {
			return nil, fmt.Errorf("upstream %q: want file:///absolute/path", Redact(base))
		}
		dir := filepath.FromSlash(u.Path)
		if runtime.GOOS == "windows" {
			dir = strings.TrimPrefix(dir, `\`) // file:///C:/dir
		}
		// Named file:///path, without a trailing '/' unless it is the root.
		name := &url.URL{Scheme: "file", Path: strings.TrimSuffix(u.Path, "/"), RawPath: strings.TrimSuffix(u.RawPath, "/")}
		if name.Path == "" {
			name.Path = "/"
		}
		listSafe(name)
		return &Client{base: name, dir: filepath.Clean(dir), http: hc, Header: http.Header{}}, nil
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return nil, fmt.Errorf("upstream %q: want an http, https or file URL", Redact(base))
	}
	u.User = nil
	listSafe(u)
	return &Client{base: u, http: hc, Header: http.Header{}}, nil
}

// listSeparators escapes the characters that separate the entries of a GOPROXY list.
var listSeparators = strings.NewReplacer(",", "%2C", "|", "%7C")

// listSafe makes u's path escape ',' and '|' (which net/url leaves as they are), so that
// the name of an upstream whose path holds one ("%2C" in the list, or "file:/a b%2C")
// reads back as the same upstream in a list.
func listSafe(u *url.URL) {
	if p := u.EscapedPath(); strings.ContainsAny(p, ",|") {
		u.RawPath = listSeparators.Replace(p)
	}
}

// Local reports whether the upstream is a file tree on this machine (a file:// URL): it
// has no network exchanges to time, probe or hedge.
func (c *Client) Local() bool { return c.dir != "" }

// userInfoRE matches the user info of the URLs in a GOPROXY list: after "//", or at the
// start of an entry of a URL without its scheme ("//user:token@host", "user:token@host").
var userInfoRE = regexp.MustCompile(`(^|[,|\s]|//)[^/?#,|\s]*@`)

// Redact returns s, a URL or a GOPROXY list, with the user info of every URL replaced by
// "xxxxx", for messages.
func Redact(s string) string { return userInfoRE.ReplaceAllString(s, "${1}xxxxx@") }

// Direct reports whether the client is the "direct" entry: version control origins
// reached through the go command, not a proxy.
func (c *Client) Direct() bool { return c.direct != nil }

// Name returns the upstream's base URL ("direct" for the direct entry), the label its
// Samples and errors carry. It never holds credentials.
func (c *Client) Name() string {
	if c.direct != nil {
		return DirectName
	}
	return c.base.String()
}

// URL returns the URL of r at this upstream.
func (c *Client) URL(r Request) string { return c.Name() + "/" + r.Path() }

// Fetch GETs r from the upstream. On 200 it returns the response, whose body the caller
// reads and closes; an answer declared larger than r's kind allows is refused. Any other
// status is a *StatusError.
func (c *Client) Fetch(ctx context.Context, r Request) (*http.Response, error) {
	if c.direct != nil {
		resp, err := c.direct.Fetch(ctx, r)
		if err == nil {
			notifyFirstByte(ctx)
		}
		return resp, err
	}
	if c.Local() {
		return c.getFile(ctx, r.Path(), r.MaxSize())
	}
	return c.get(ctx, c.URL(r), string(r.Kind), r.MaxSize())
}

// FetchPath GETs a path below the base URL (the checksum database endpoints under sumdb/)
// with the same rules as Fetch; kind labels its Sample.
func (c *Client) FetchPath(ctx context.Context, path, kind string, maxSize int64) (*http.Response, error) {
	if c.direct != nil {
		return nil, &StatusError{Upstream: DirectName, Status: http.StatusNotFound, Message: "no proxy endpoints at direct"}
	}
	if c.Local() {
		return c.getFile(ctx, strings.TrimPrefix(path, "/"), maxSize)
	}
	return c.get(ctx, c.base.String()+"/"+strings.TrimPrefix(path, "/"), kind, maxSize)
}

func (c *Client) get(ctx context.Context, u, kind string, maxSize int64) (*http.Response, error) {
	req, err := netobs.NewRequest(ctx, http.MethodGet, u, nil, netobs.Labels{Upstream: c.Name(), Kind: kind})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", c.Name(), err)
	}
	for k, vs := range c.Header {
		req.Header[k] = vs
	}
	for k, vs := range headerFrom(ctx) {
		// Clip so that appending never writes into c.Header's backing array.
		req.Header[k] = append(slices.Clip(req.Header[k]), vs...)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", c.Name(), err)
	}
	notifyFirstByte(ctx) // response headers arrived: WalkHedged stops waiting to hedge
	if resp.StatusCode != http.StatusOK {
		defer resp.Body.Close()
		return nil, &StatusError{Upstream: c.Name(), Status: resp.StatusCode, Message: firstLine(resp.Body),
			RetryAfter: retryAfter(resp.Header.Get("Retry-After"), time.Now())}
	}
	if resp.ContentLength > maxSize {
		resp.Body.Close()
		return nil, fmt.Errorf("%s: %s: %d bytes declared, limit %d: %w", c.Name(), u, resp.ContentLength, maxSize, ErrTooLarge)
	}
	return resp, nil
}

// getFile answers a fetch of rel (a slash path below the tree) from a file:// upstream's
// directory as its HTTP twin would: 200 with the file, a *StatusError 404 when there is
// none. rel never leaves the directory.
func (c *Client) getFile(ctx context.Context, rel string, maxSize int64) (*http.Response, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("%s: %w", c.Name(), err)
	}
	notFound := &StatusError{Upstream: c.Name(), Status: http.StatusNotFound, Message: "no file " + rel}
	local := filepath.FromSlash(rel)
	if !filepath.IsLocal(local) {
		return nil, notFound
	}
	f, err := os.Open(filepath.Join(c.dir, local))
	if errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR) {
		return nil, notFound
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", c.Name(), err)
	}
	fi, err := f.Stat()
	if err != nil || !fi.Mode().IsRegular() {
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", c.Name(), err)
		}
		return nil, notFound
	}
	if fi.Size() > maxSize {
		f.Close()
		return nil, fmt.Errorf("%s: %s: %d bytes, limit %d: %w", c.Name(), rel, fi.Size(), maxSize, ErrTooLarge)
	}
	notifyFirstByte(ctx)
	return &http.Response{Status: "200 OK", StatusCode: http.StatusOK, Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: http.Header{}, Body: f, ContentLength: fi.Size()}, nil
}

// maxRetryAfter bounds what a Retry-After asks for.
const maxRetryAfter = 24 * time.Hour

// retryAfter parses a Retry-After value (RFC 9110: delay-seconds or an HTTP-date) at now;
// zero when it is empty, malformed or past, and at most maxRetryAfter.
func retryAfter(v string, now time.Time) time.Duration {
	if v == "" {
		return 0
	}
	if n, err := strconv.ParseInt(v, 10, 64); err == nil {
		if n <= 0 {
			return 0
		}
		return time.Duration(min(n, int64(maxRetryAfter/time.Second))) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return min(t.Sub(now), maxRetryAfter)
	}
	return 0
}

// firstLine reads the first line of an error body as oneLineText of at most 200 bytes
// (an upstream's body may hold anything).
func firstLine(r io.Reader) string {
	sc := bufio.NewScanner(io.LimitReader(r, 4096))
	sc.Buffer(make([]byte, 0, 4096), 4096)
	if !sc.Scan() {
		return ""
	}
	return oneLineText(sc.Text(), 200)
}

type headerKey struct{}

// WithHeader returns a context whose upstream requests carry the fields of h in addition to
// Client.Header: per-request fields such as the hop list of the server's loop guard.
func WithHeader(ctx context.Context, h http.Header) context.Context {
	return context.WithValue(ctx, headerKey{}, h)
}

func headerFrom(ctx context.Context) http.Header {
	h, _ := ctx.Value(headerKey{}).(http.Header)
	return h
}
