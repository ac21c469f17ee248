package netobs

import "time"

// idleWatch cuts response bodies that received no byte for the body idle timeout: a
// tickWatch of the bodies being read, which every Read stamps. A body is on its list from
// the response until it ends, so between requests nothing of the watch runs or is
// pending (see tickWatch).
type idleWatch struct {
	tickWatch[body]
}

func newIdleWatch(idle time.Duration) *idleWatch {
	w := &idleWatch{}
	w.init(idle, (*body).expire)
	return w
}

// watch starts watching b; its idle clock starts now.
func (w *idleWatch) watch(b *body) { w.list(b, &b.tickEntry) }

// unwatch stops watching b. It may be called more than once.
func (w *idleWatch) unwatch(b *body) { w.unlist(&b.tickEntry) }

// touch records that b just received bytes.
func (w *idleWatch) touch(b *body) { w.tickWatch.touch(&b.tickEntry) }
