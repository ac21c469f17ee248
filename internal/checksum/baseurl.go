package checksum

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"time"
)

// BaseURLFunc returns the URL the checksum database is fetched from, without a trailing
// slash: lookups are fetched from <base>/lookup/..., tiles from <base>/tile/.... Tests
// inject a fixed one.
type BaseURLFunc func(ctx context.Context) (string, error)

// FixedBaseURL returns a BaseURLFunc that always answers u.
func FixedBaseURL(u string) BaseURLFunc {
	u = strings.TrimSuffix(u, "/")
	return func(context.Context) (string, error) { return u, nil }
}

// ResolveBaseURL returns the BaseURLFunc the go command's rule gives for db behind the
// upstream proxies (GOPROXY list entries; "direct", "off" and non-HTTP entries are
// skipped): the URL of the GOSUMDB value if given; else <proxy>/sumdb/<name> of the first
// upstream that answers 200 to <proxy>/sumdb/<name>/supported; else https://<name>.
// The answer is remembered for ttl (10 minutes when ttl is 0; at most a minute when the
// fallback was chosen because an upstream did not answer). Every probe is bounded by
// timeout (5s when 0) and the caller's context.
func ResolveBaseURL(db SumDB, upstreams []string, client *http.Client, timeout, ttl time.Duration) BaseURLFunc {
	if db.URL != "" {
		return FixedBaseURL(db.URL)
	}
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	if ttl <= 0 {
		ttl = 10 * time.Minute
	}
	if client == nil {
		client = http.DefaultClient
	}
	r := &baseResolver{db: db, upstreams: upstreams, client: client, timeout: timeout, ttl: ttl}
	return r.resolve
}

type baseResolver struct {
	db        SumDB
	upstreams []string
	client    *http.Client
	timeout   time.Duration
	ttl       time.Duration

	mu      sync.Mutex // held across a resolution so that concurrent callers share it
	base    string
	expires time.Time
}

func (r *baseResolver) resolve(ctx context.Context) (string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.base != "" && time.Now().Before(r.expires) {
		return r.base, nil
	}
	base := "https://" + r.db.Name
	ttl := r.ttl
	for _, u := range r.upstreams {
		if !strings.HasPrefix(u, "http://") && !strings.HasPrefix(u, "https://") {
			continue
		}
		candidate := strings.TrimSuffix(u, "/") + "/sumdb/" + r.db.Name
		if err := ctx.Err(); err != nil {
			return "", fmt.Errorf("resolving checksum database URL: %w", err)
		}
		ok, answered := r.supported(ctx, candidate)
		if ok {
			base = candidate
			break
		}
		if !answered {
			// An upstream that did not answer may support the database once it is back:
			// remember the fallback only briefly.
			ttl = min(ttl, time.Minute)
		}
	}
	r.base, r.expires = base, time.Now().Add(ttl)
	return base, nil
}

// supported probes candidate/supported; answered is false when no HTTP answer came.
func (r *baseResolver) supported(ctx context.Context, candidate string) (ok, answered bool) {
	ctx, cancel := context.WithTimeout(ctx, r.timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, candidate+"/supported", nil)
	if err != nil {
		return false, true
	}
	resp, err := r.client.Do(req)
	if err != nil {
		return false, false
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 4<<10))
	return resp.StatusCode == http.StatusOK, resp.StatusCode < 500
}
