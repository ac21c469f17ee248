package server

import (
	"sync"
	"time"
)

// negativeCache remembers not-found answers by key until they expire, with the message
// that explained them. It holds at most max entries; past that the one expiring first goes.
type negativeCache struct {
	max int
	mu  sync.Mutex
	m   map[string]negEntry
}

type negEntry struct {
	msg     string
	expires time.Time
}

func newNegativeCache(max int) *negativeCache {
	return &negativeCache{max: max, m: map[string]negEntry{}}
}

// get returns the message of a not-found answer for key that has not expired at now.
func (c *negativeCache) get(key string, now time.Time) (string, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.m[key]
	if !ok {
		return "", false
	}
	if !now.Before(e.expires) {
		delete(c.m, key)
		return "", false
	}
	return e.msg, true
}

// put remembers a not-found answer for key until expires; now is the current time.
func (c *negativeCache) put(key, msg string, now, expires time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.m[key]; !ok && len(c.m) >= c.max {
		c.evict(now)
	}
	c.m[key] = negEntry{msg: msg, expires: expires}
}

// evict drops the entries expired at now, or when none has, the one expiring first. The scan
// is linear but happens only when the cache is full.
func (c *negativeCache) evict(now time.Time) {
	var first string
	var firstExp time.Time
	for k, e := range c.m {
		if !now.Before(e.expires) {
			delete(c.m, k)
			continue
		}
		if first == "" || e.expires.Before(firstExp) {
			first, firstExp = k, e.expires
		}
	}
	if len(c.m) >= c.max {
		delete(c.m, first)
	}
}
