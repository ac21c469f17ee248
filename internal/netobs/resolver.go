package netobs

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/sync/singleflight"
)

// DNS cache states carried by DNSQuery.Cache and Sample.DNSCache.
const (
	CacheMiss      = "miss"      // the backend was asked and answered
	CacheHit       = "hit"       // answered from a fresh cache entry
	CacheStale     = "stale"     // a refresh failed; an expired entry was served (RFC 8767)
	CacheCoalesced = "coalesced" // joined a query already in flight for the same name and type
)

// Rcodes carried by DNSQuery.Rcode and Sample.DNSRcode. They are the DNS response codes
// plus RcodeTimeout for a query that got no answer at all.
const (
	RcodeNoError  = "NOERROR"
	RcodeNXDomain = "NXDOMAIN"
	RcodeServFail = "SERVFAIL"
	RcodeRefused  = "REFUSED"
	RcodeTimeout  = "timeout"
)

// DNSQuery is the record of one lookup of one name and type, whether the backend was asked
// or the cache answered. Metrics and the trace report count them.
type DNSQuery struct {
	Backend string        // Backend.String() of the resolver
	Name    string        // the name asked, without trailing dot
	Type    string        // "A" or "AAAA"
	Rcode   string        // NOERROR, NXDOMAIN, SERVFAIL, REFUSED, timeout (of the refresh, for stale)
	Latency time.Duration // time spent waiting for this answer (zero for cache hits)
	TTL     time.Duration // remaining lifetime of the answer that was used
	Cache   string        // miss, hit, stale, coalesced
	Err     error         // the failure, if the lookup failed
}

// DNSObserver receives a DNSQuery for every lookup a Resolver answers. Implementations
// must be safe for concurrent use and must not block.
type DNSObserver interface {
	ObserveDNS(DNSQuery)
}

// DNSObservers fans one DNSQuery out to several observers in order.
type DNSObservers []DNSObserver

// ObserveDNS hands q to every observer.
func (os DNSObservers) ObserveDNS(q DNSQuery) {
	for _, o := range os {
		if o != nil {
			o.ObserveDNS(q)
		}
	}
}

// DNSError is the error of a failed name lookup. Its Rcode says how it failed; Class maps it
// to the package's error classes.
type DNSError struct {
	Name  string
	Type  string
	Rcode string // NXDOMAIN, SERVFAIL, REFUSED, timeout, or another DNS rcode name
	Err   error  // the transport error underneath, if any
}

// Error says the name, type and rcode, and the transport error if there was one.
func (e *DNSError) Error() string {
	s := "dns: " + e.Name + " " + e.Type + ": " + e.Rcode
	if e.Err != nil {
		s += ": " + e.Err.Error()
	}
	return s
}

// Unwrap returns the transport error underneath, if any.
func (e *DNSError) Unwrap() error { return e.Err }

// Class is the Sample error class of the failure.
func (e *DNSError) Class() string {
	switch e.Rcode {
	case RcodeNXDomain:
		return ClassDNSNXDomain
	case RcodeServFail:
		return ClassDNSServFail
	case RcodeRefused:
		return ClassDNSRefused
	case RcodeTimeout:
		return ClassDNSTimeout
	}
	return ClassDNSOther
}

// Lookup is the answer to Resolver.LookupIP: the addresses of a name and how they were found.
type Lookup struct {
	Addrs    []netip.Addr  // IPv6 and IPv4 addresses, in the order they should be tried
	Backend  string        // Backend.String() of the resolver
	Rcode    string        // NOERROR when any address was found, else the failure
	Cache    string        // miss, hit, stale or coalesced (the worst of the A and AAAA lookups)
	TTL      time.Duration // the shorter remaining lifetime of the A and AAAA answers
	Duration time.Duration // time spent in LookupIP
}

// Resolver is the DNS cache shared by every upstream. Its exported fields are its
// configuration: set them before the first lookup and do not change them after. The zero
// value is ready to use and resolves through the system resolver.
//
// Answers are cached per name and type for their TTL, clamped to [MinTTL, MaxTTL].
// Concurrent lookups of the same name and type are merged into one query. NXDOMAIN and
// empty answers are cached for NegativeTTL. When a refresh fails (SERVFAIL, REFUSED, no
// answer) and an expired answer is at most StaleFor old, that answer is served and marked
// stale, and the backend is not asked again for NegativeTTL (the RFC 8767 failure recheck).
//
// Lock order: Resolver.mu is a leaf; it is never held while a backend is asked.
type Resolver struct {
	// Backend answers the queries the cache cannot. Nil means System.
	Backend Backend

	// MinTTL is the floor on an answer's lifetime. Zero means 5 seconds.
	MinTTL time.Duration
	// MaxTTL is the ceiling on an answer's lifetime. Zero means 1 hour.
	MaxTTL time.Duration
	// NegativeTTL is how long NXDOMAIN and empty answers are cached, and how long a stale
	// answer is served before the backend is asked again. Zero means 5 seconds.
	NegativeTTL time.Duration
	// StaleFor is how long past its expiry an answer may still be served when a refresh
	// fails. Zero means 24 hours; a negative value disables serving stale answers.
	StaleFor time.Duration
	// Timeout bounds one query to the backend. Zero means 5 seconds.
	Timeout time.Duration

	// Observer, if set, receives a DNSQuery for every lookup.
	Observer DNSObserver

	// Now is the clock of the cache. Nil means time.Now. Tests inject a fake clock.
	Now func() time.Time

	sf singleflight.Group

	mu    sync.Mutex
	cache map[cacheKey]*cacheEntry // guarded by mu
}

type cacheKey struct {
	name  string
	qtype uint16
}

// cacheEntry is one cached answer. Entries are replaced, never mutated, except for
// retryAt which is guarded by Resolver.mu.
type cacheEntry struct {
	addrs   []netip.Addr
	rcode   string    // NOERROR or NXDOMAIN
	expires time.Time // end of the answer's (clamped) TTL
	retryAt time.Time // while serving stale: do not ask the backend before this
}

func durOr(d, def time.Duration) time.Duration {
	if d == 0 {
		return def
	}
	return d
}

func (r *Resolver) now() time.Time {
	if r.Now != nil {
		return r.Now()
	}
	return time.Now()
}

func (r *Resolver) backend() Backend {
	if r.Backend == nil {
		return System
	}
	return r.Backend
}

// LookupIP returns the addresses of host (A and AAAA, asked in parallel), from the cache
// when it can. IP literals are returned as they are without a lookup (Cache and Rcode are
// empty). The error is a *DNSError when no address was found.
func (r *Resolver) LookupIP(ctx context.Context, host string) (Lookup, error) {
	host = strings.TrimSuffix(host, ".")
	if ip, err := netip.ParseAddr(host); err == nil {
		return Lookup{Addrs: []netip.Addr{ip.Unmap()}}, nil
	}
	start := time.Now()
	b := r.backend()
	if bs, ok := b.(bootstrapper); ok && strings.EqualFold(bs.serverHost(), host) {
		// The name of the DNS server itself: asking it would recurse.
		b = System
	}
	type res struct {
		addrs []netip.Addr
		q     DNSQuery
		err   error
	}
	var v6 res
	done := make(chan struct{})
	go func() {
		defer close(done)
		v6.addrs, v6.q, v6.err = r.lookupType(ctx, b, host, dns.TypeAAAA)
	}()
	var v4 res
	v4.addrs, v4.q, v4.err = r.lookupType(ctx, b, host, dns.TypeA)
	<-done

	l := Lookup{
		Addrs:    append(append([]netip.Addr(nil), v6.addrs...), v4.addrs...),
		Backend:  b.String(),
		Cache:    worseCache(v4.q.Cache, v6.q.Cache),
		TTL:      min(v4.q.TTL, v6.q.TTL),
		Duration: time.Since(start),
	}
	if len(l.Addrs) > 0 {
		l.Rcode = RcodeNoError
		return l, nil
	}
	// No address: report the more telling failure (the A query's, unless it merely had no
	// records while AAAA failed).
	err := v4.err
	l.Rcode = v4.q.Rcode
	if err == nil || (v6.err != nil && v4.q.Rcode == RcodeNoError) {
		err, l.Rcode = v6.err, v6.q.Rcode
	}
	if err == nil {
		// Both answered NOERROR with no records: the name has no addresses.
		err = &DNSError{Name: host, Type: "A/AAAA", Rcode: RcodeNoError, Err: errors.New("no addresses")}
	}
	return l, err
}

func worseCache(a, b string) string {
	rank := map[string]int{"": 0, CacheHit: 1, CacheCoalesced: 2, CacheMiss: 3, CacheStale: 4}
	if rank[a] >= rank[b] {
		return a
	}
	return b
}

// flight is the result of one query shared by every caller merged into it.
type flight struct {
	entry   *cacheEntry
	stale   bool // entry is an expired one served because the refresh failed
	rcode   string
	latency time.Duration
	err     error
}

// lookupType answers one name and type from the cache or the backend and reports it to
// the Observer.
func (r *Resolver) lookupType(ctx context.Context, b Backend, name string, qtype uint16) ([]netip.Addr, DNSQuery, error) {
	key := cacheKey{name: strings.ToLower(name), qtype: qtype}
	q := DNSQuery{Backend: b.String(), Name: name, Type: dns.TypeToString[qtype]}
	now := r.now()

	r.mu.Lock()
	e := r.cache[key]
	r.mu.Unlock()
	if e != nil && (now.Before(e.expires) || now.Before(e.retryAt)) {
		q.Cache = CacheHit
		if now.Before(e.expires) {
			q.TTL = e.expires.Sub(now)
		} else {
			q.Cache = CacheStale
		}
		return r.answer(q, e, nil)
	}

	led := false
	ch := r.sf.DoChan(fmt.Sprintf("%d/%s", qtype, key.name), func() (any, error) {
		led = true
		return r.refresh(ctx, b, key, name, qtype), nil
	})
	var f *flight
	select {
	case res := <-ch:
		f = res.Val.(*flight)
	case <-ctx.Done():
		q.Rcode, q.Cache = RcodeTimeout, CacheCoalesced
		q.Err = &DNSError{Name: name, Type: q.Type, Rcode: RcodeTimeout, Err: context.Cause(ctx)}
		r.observe(q)
		return nil, q, q.Err
	}
	q.Latency = f.latency
	q.Cache = CacheMiss
	if !led {
		q.Cache = CacheCoalesced
	}
	if f.stale {
		q.Cache = CacheStale
		q.Rcode = f.rcode // the failed refresh's rcode
	}
	if f.err != nil {
		q.Rcode = f.rcode
		q.Err = f.err
		r.observe(q)
		return nil, q, f.err
	}
	if !f.stale {
		q.TTL = max(f.entry.expires.Sub(r.now()), 0)
	}
	return r.answer(q, f.entry, nil)
}

func (r *Resolver) answer(q DNSQuery, e *cacheEntry, _ error) ([]netip.Addr, DNSQuery, error) {
	if q.Rcode == "" {
		q.Rcode = e.rcode
	}
	if e.rcode == RcodeNXDomain {
		q.Err = &DNSError{Name: q.Name, Type: q.Type, Rcode: RcodeNXDomain}
		r.observe(q)
		return nil, q, q.Err
	}
	r.observe(q)
	return e.addrs, q, nil
}

func (r *Resolver) observe(q DNSQuery) {
	if r.Observer != nil {
		r.Observer.ObserveDNS(q)
	}
}

// refresh asks the backend and updates the cache. It runs once per merged flight. The
// backend query is bounded by Timeout and detached from the cancellation of the caller who
// happened to lead the flight, so one impatient caller does not fail the others.
func (r *Resolver) refresh(ctx context.Context, b Backend, key cacheKey, name string, qtype uint16) *flight {
	qctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), durOr(r.Timeout, 5*time.Second))
	defer cancel()
	start := time.Now()
	ans, err := b.Exchange(qctx, name, qtype)
	f := &flight{latency: time.Since(start), rcode: ans.Rcode}
	if err != nil && f.rcode == "" {
		f.rcode = RcodeTimeout
		if !isTimeout(err) {
			f.rcode = RcodeServFail
		}
	}
	now := r.now()
	switch {
	case err == nil && ans.Rcode == RcodeNoError:
		ttl := min(max(ans.TTL, durOr(r.MinTTL, 5*time.Second)), durOr(r.MaxTTL, time.Hour))
		if len(ans.Addrs) == 0 {
			ttl = durOr(r.NegativeTTL, 5*time.Second)
			if ans.TTL > 0 {
				ttl = min(ans.TTL, ttl)
			}
		}
		f.entry = &cacheEntry{addrs: ans.Addrs, rcode: RcodeNoError, expires: now.Add(ttl)}
		r.store(key, f.entry)
		return f
	case err == nil && ans.Rcode == RcodeNXDomain:
		ttl := durOr(r.NegativeTTL, 5*time.Second)
		if ans.TTL > 0 {
			ttl = min(ans.TTL, ttl)
		}
		f.entry = &cacheEntry{rcode: RcodeNXDomain, expires: now.Add(ttl)}
		r.store(key, f.entry)
		return f
	}
	// The refresh failed: serve the last good answer if it is not too old.
	dnsErr := &DNSError{Name: name, Type: dns.TypeToString[qtype], Rcode: f.rcode, Err: err}
	staleFor := durOr(r.StaleFor, 24*time.Hour)
	r.mu.Lock()
	old := r.cache[key]
	if old != nil && old.rcode == RcodeNoError && len(old.addrs) > 0 && staleFor > 0 && now.Before(old.expires.Add(staleFor)) {
		// Replace rather than mutate: readers hold entries without the lock.
		e := &cacheEntry{addrs: old.addrs, rcode: old.rcode, expires: old.expires,
			retryAt: now.Add(durOr(r.NegativeTTL, 5*time.Second))}
		r.cache[key] = e
		r.mu.Unlock()
		f.entry, f.stale = e, true
		return f
	}
	r.mu.Unlock()
	f.err = dnsErr
	return f
}

func (r *Resolver) store(key cacheKey, e *cacheEntry) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cache == nil {
		r.cache = make(map[cacheKey]*cacheEntry)
	}
	r.cache[key] = e
}

// Flush empties the cache, for tests and for an operator who changed DNS.
func (r *Resolver) Flush() {
	r.mu.Lock()
	r.cache = nil
	r.mu.Unlock()
}
