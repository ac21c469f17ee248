package e2e

import (
	"bytes"
	"io/fs"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/holoproxy/holoproxy/internal/lab/modtree"
)

// origin is a GOPROXY server over a modtree tree on disk, counting the requests it gets.
type origin struct {
	*httptest.Server
	dir string

	// zipChunk and zipPause throttle .zip answers: zipChunk bytes, then a pause. Zero
	// zipChunk sends them at once.
	zipChunk int
	zipPause time.Duration
	// zipHold, when set, stops every .zip answer half way until it is closed.
	zipHold chan struct{}
	// zipsActive counts .zip answers being written right now.
	zipsActive atomic.Int64
	// zipStarted receives (without blocking) the path of each .zip answer as it begins.
	zipStarted chan string

	// user and password, when user is set, are the basic credentials every request must
	// carry, else it is answered 401. Set them with requireAuth (under mu: a request may
	// come at any time, a stray probe of an earlier test's server on a reused port too).
	user, password string

	mu     sync.Mutex
	hits   map[string]int
	agents map[string]int // requests by User-Agent
}

// newOrigin serves the tree of mods written under a new temporary directory.
func newOrigin(t *testing.T, mods []modtree.Module) *origin {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "tree")
	if err := modtree.Write(dir, mods); err != nil {
		t.Fatal(err)
	}
	o := &origin{dir: dir, hits: map[string]int{}, agents: map[string]int{}, zipStarted: make(chan string, 1024)}
	o.Server = httptest.NewServer(o)
	t.Cleanup(o.Close)
	return o
}

// requireAuth makes every request need the basic credentials user and password.
func (o *origin) requireAuth(user, password string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	o.user, o.password = user, password
}

func (o *origin) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	o.mu.Lock()
	user, password := o.user, o.password
	o.mu.Unlock()
	if user != "" {
		if u, pw, ok := r.BasicAuth(); !ok || u != user || pw != password {
			w.Header().Set("WWW-Authenticate", `Basic realm="origin"`)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
	}
	p := strings.TrimPrefix(r.URL.Path, "/")
	o.mu.Lock()
	o.hits[p]++
	o.agents[r.UserAgent()]++
	o.mu.Unlock()
	data, err := o.file(p)
	if err != nil {
		http.Error(w, "not found: "+p, http.StatusNotFound)
		return
	}
	w.Header().Set("Content-Length", strconv.Itoa(len(data)))
	if !strings.HasSuffix(p, ".zip") || o.zipChunk == 0 {
		w.Write(data)
		return
	}
	o.zipsActive.Add(1)
	defer o.zipsActive.Add(-1)
	select {
	case o.zipStarted <- p:
	default:
	}
	flusher, _ := w.(http.Flusher)
	half := len(data) / 2
	for len(data) > 0 {
		if o.zipHold != nil && len(data) <= half {
			select {
			case <-r.Context().Done():
				return
			case <-o.zipHold:
			}
		}
		n := min(o.zipChunk, len(data))
		if _, err := w.Write(data[:n]); err != nil {
			return
		}
		if flusher != nil {
			flusher.Flush()
		}
		data = data[n:]
		select {
		case <-r.Context().Done():
			return
		case <-time.After(o.zipPause):
		}
	}
}

// file returns the bytes of the tree file at the slash path p (a GOPROXY request path).
func (o *origin) file(p string) ([]byte, error) {
	if p == "" || strings.Contains(p, "..") {
		return nil, fs.ErrNotExist
	}
	name := filepath.Join(o.dir, filepath.FromSlash(p))
	st, err := os.Stat(name)
	if err != nil {
		return nil, err
	}
	if !st.Mode().IsRegular() {
		return nil, fs.ErrNotExist
	}
	return os.ReadFile(name)
}

// counts returns a copy of the request counts by path.
func (o *origin) counts() map[string]int {
	o.mu.Lock()
	defer o.mu.Unlock()
	out := make(map[string]int, len(o.hits))
	for k, v := range o.hits {
		out[k] = v
	}
	return out
}

// logBuffer collects log output safely from many goroutines.
type logBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// userAgents returns, and forgets, how many requests came with each User-Agent.
func (o *origin) userAgents() map[string]int {
	o.mu.Lock()
	defer o.mu.Unlock()
	a := o.agents
	o.agents = map[string]int{}
	return a
}
