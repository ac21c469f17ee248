package server

import (
	"os"
	"slices"
	"sync"
	"time"
)

// reloadInterval is how often, at most, a reloader looks whether its files changed.
const reloadInterval = time.Second

// reloader holds a value parsed from files (a TLS pair, a password file) and parses them
// again when one changes (its size or modification time), looking at most once per
// reloadInterval: files rotated in place by a certificate manager or an operator are
// used without a restart. A version that does not parse (written half way, broken)
// leaves the last good value, and onFail hears of it once.
type reloader[T any] struct {
	files    []string
	parse    func() (T, error)
	onReload func(T)     // told of each new value
	onFail   func(error) // told once of each version that does not parse

	mu      sync.Mutex
	val     T
	loaded  []fileStamp // of the files val came from
	failed  []fileStamp // of the last version that did not parse
	checked time.Time
}

// fileStamp tells versions of a file apart.
type fileStamp struct {
	size int64
	mod  time.Time
}

func stamps(files []string) []fileStamp {
	out := make([]fileStamp, len(files))
	for i, f := range files {
		out[i] = fileStamp{size: -1}
		if fi, err := os.Stat(f); err == nil {
			out[i] = fileStamp{fi.Size(), fi.ModTime()}
		}
	}
	return out
}

// newReloader parses the files once; an error there is the caller's to report.
func newReloader[T any](parse func() (T, error), onReload func(T), onFail func(error), files ...string) (*reloader[T], error) {
	st := stamps(files)
	val, err := parse()
	if err != nil {
		return nil, err
	}
	return &reloader[T]{files: files, parse: parse, onReload: onReload, onFail: onFail,
		val: val, loaded: st, checked: time.Now()}, nil
}

// get returns the value, parsing the files again first when they changed.
func (r *reloader[T]) get() T {
	r.mu.Lock()
	defer r.mu.Unlock()
	if now := time.Now(); now.Sub(r.checked) >= reloadInterval {
		r.checked = now
		if st := stamps(r.files); !slices.Equal(st, r.loaded) && !slices.Equal(st, r.failed) {
			val, err := r.parse()
			if err != nil {
				r.failed = st
				r.onFail(err)
			} else {
				r.val, r.loaded = val, st
				r.onReload(val)
			}
		}
	}
	return r.val
}

// current returns the value without looking at the files.
func (r *reloader[T]) current() T {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.val
}

// lookNow makes the next get look at the files whatever the interval (tests).
func (r *reloader[T]) lookNow() {
	r.mu.Lock()
	r.checked = time.Time{}
	r.mu.Unlock()
}
