package trace

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/holoproxy/holoproxy/internal/goproxy"
	"github.com/holoproxy/holoproxy/internal/netobs"
	"github.com/holoproxy/holoproxy/internal/report"
)

// RecordOptions configure Record.
type RecordOptions struct {
	// Proxy is the list in GOPROXY syntax the command's requests go to. User info in its
	// URLs is never shown; Credentials sends it.
	Proxy string
	// Credentials, when set, go with the requests they are for.
	Credentials *goproxy.Credentials
	// Transport is the configuration of the transport the relay fetches through
	// (timeouts, CA file, TLS). Its Resolver and Sink are set by Record.
	Transport netobs.TransportConfig
	// DNS is the resolver backend (the --dns forms); empty means "system".
	DNS string
	// Command is the command to run and its arguments; Command[0] is looked up in PATH.
	Command []string
	// Dir is the command's working directory; empty means the current one.
	Dir string
	// Env is the command's environment, to which Record sets GOPROXY and GOMODCACHE;
	// nil means this process's.
	Env []string
	// ModCache is the command's module cache. Empty means one of its own in a temporary
	// directory that starts empty (a CI job without a cache) and is removed at the end.
	ModCache string
	// Output receives the command's stdout and stderr; nil discards them.
	Output io.Writer
}

// interruptGrace is how long a recorded command has, once trace is interrupted, to end on
// SIGINT before its process group is killed.
const interruptGrace = 5 * time.Second

// Record runs opt.Command with its GOPROXY pointed at a relay on the loopback interface
// that passes each request to the proxy of opt.Proxy it names, through the networking
// `serve` uses, and returns one Run with every upstream exchange the command caused, the
// command's wall time and how it ended. Each proxy of the list gets a relay URL of its own
// in the command's GOPROXY, with the list's separators, so the command walks the list
// itself, fall-throughs included; "direct" and "off" are passed on as they are (the
// command's own version control work is time outside upstream exchanges). Nothing is
// cached: every request goes upstream, as the command's own would.
//
// The command failing is not an error: its exit status is in the Run's Command. The
// error is for a record that could not run at all (bad list, no such command, cancelled).
func Record(ctx context.Context, opt RecordOptions) (report.Trace, error) {
	t := report.Trace{Title: "GOPROXY=" + goproxy.Redact(opt.Proxy)}
	if len(opt.Command) == 0 {
		return t, errors.New("no command to record")
	}
	if opt.Transport.CAFile != "" {
		conf, err := withCAFile(opt.Transport.TLSConfig, opt.Transport.CAFile)
		if err != nil {
			return t, err
		}
		opt.Transport.TLSConfig, opt.Transport.CAFile = conf, ""
	}
	col := &collector{}
	tr, err := newTransport(Options{Transport: opt.Transport}, Setup{DNS: opt.DNS}, col)
	if err != nil {
		return t, err
	}
	defer tr.CloseIdleConnections()
	chain, err := goproxy.ParseChain(opt.Proxy, Options{Credentials: opt.Credentials}.httpClient(tr))
	if err != nil {
		return t, err
	}
	rl := &relay{chain: chain}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return t, fmt.Errorf("relay: %w", err)
	}
	srv := &http.Server{Handler: rl, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: time.Minute}
	served := make(chan struct{})
	go func() {
		defer close(served)
		srv.Serve(ln) // returns http.ErrServerClosed at Close
	}()
	defer func() {
		srv.Close()
		<-served
	}()

	modCache := opt.ModCache
	if modCache == "" {
		dir, err := os.MkdirTemp("", "holoproxy-trace-modcache-")
		if err != nil {
			return t, fmt.Errorf("module cache: %w", err)
		}
		defer removeModCache(dir)
		modCache = dir
	}
	env := opt.Env
	if env == nil {
		env = os.Environ()
	}
	env = append(env[:len(env):len(env)], "GOPROXY="+rl.goproxy("http://"+ln.Addr().String()), "GOMODCACHE="+modCache)

	cmd := exec.CommandContext(ctx, opt.Command[0], opt.Command[1:]...)
	goproxy.SetProcessGroup(cmd) // its wait is InterruptProcessGroup's stop, whose cancel replaces its own
	// Cancelled (trace interrupted): SIGINT to the command and every process it started,
	// as Ctrl-C would send them (the go command then removes its work directory), SIGKILL
	// after the grace; stop then waits until none of them is left.
	stopKill := goproxy.InterruptProcessGroup(cmd, interruptGrace)
	defer stopKill()
	cmd.WaitDelay = 2 * interruptGrace
	cmd.Dir, cmd.Env = opt.Dir, env
	if opt.Output != nil {
		cmd.Stdout, cmd.Stderr = opt.Output, opt.Output
	}
	start := time.Now()
	if err := cmd.Start(); err != nil {
		return t, fmt.Errorf("%s: %w", opt.Command[0], err)
	}
	runErr := cmd.Wait()
	stopKill() // and what it started gone too before the module cache is removed
	wall := time.Since(start)
	if err := ctx.Err(); err != nil {
		return t, err
	}
	c := &report.Command{Args: opt.Command, ExitCode: cmd.ProcessState.ExitCode()}
	if runErr != nil {
		c.Error = runErr.Error()
	}
	srv.Close() // the command is gone: nothing more to relay
	<-served
	rl.wg.Wait()
	col.mu.Lock()
	defer col.mu.Unlock()
	rl.mu.Lock()
	defer rl.mu.Unlock()
	t.Runs = []report.Run{{
		Name: commandName(opt.Command), Samples: col.samples, Wall: wall, DNSQueries: col.dns,
		Requests: rl.requests, Failed: rl.failed, FallThroughs: rl.fallThroughs, Command: c,
	}}
	return t, nil
}

// commandName is the command line as a Run's name, clipped.
func commandName(args []string) string {
	s := strings.Join(args, " ")
	if len(s) > 60 {
		s = s[:57] + "..."
	}
	return s
}

// removeModCache removes a module cache the go command made, whose files and directories
// it leaves read-only.
func removeModCache(dir string) error {
	filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.IsDir() {
			os.Chmod(p, 0o755)
		}
		return nil
	})
	return os.RemoveAll(dir)
}

// relay passes the recorded command's requests on: /<i>/<path> to the chain's entry i.
type relay struct {
	chain *goproxy.Chain
	wg    sync.WaitGroup // requests being answered

	mu                             sync.Mutex
	requests, failed, fallThroughs int
}

// goproxy returns the GOPROXY list for the command: the chain with each proxy replaced by
// its relay URL below base.
func (rl *relay) goproxy(base string) string {
	var b strings.Builder
	for i, e := range rl.chain.Entries {
		if e.Client != nil && !e.Direct {
			b.WriteString(base + "/" + strconv.Itoa(i))
		} else {
			b.WriteString(e.Name())
		}
		if i < len(rl.chain.Entries)-1 {
			if e.FallbackOnError {
				b.WriteByte('|')
			} else {
				b.WriteByte(',')
			}
		}
	}
	return b.String()
}

// count records one request of the command and how its entry answered it.
func (rl *relay) count(entry, status int) {
	rl.mu.Lock()
	defer rl.mu.Unlock()
	rl.requests++
	switch {
	case status == http.StatusOK:
	case status == http.StatusNotFound || status == http.StatusGone:
		// The command moves on when an entry follows that is not off.
		if entry+1 < len(rl.chain.Entries) && !rl.chain.Entries[entry+1].Off {
			rl.fallThroughs++
		}
	default:
		rl.failed++
	}
}

func (rl *relay) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rl.wg.Add(1)
	defer rl.wg.Done()
	idx, rest, _ := strings.Cut(strings.TrimPrefix(r.URL.EscapedPath(), "/"), "/")
	i, err := strconv.Atoi(idx)
	if err != nil || i < 0 || i >= len(rl.chain.Entries) || rl.chain.Entries[i].Client == nil || rl.chain.Entries[i].Direct {
		http.Error(w, "holoproxy trace: no proxy at "+r.URL.Path, http.StatusNotFound)
		return
	}
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		http.Error(w, "holoproxy trace: only GET and HEAD are relayed", http.StatusMethodNotAllowed)
		return
	}
	c := rl.chain.Entries[i].Client
	var resp *http.Response
	if req, perr := goproxy.ParseRequest(rest); perr == nil {
		resp, err = c.Fetch(r.Context(), req)
	} else {
		kind := "other"
		if strings.HasPrefix(rest, "sumdb/") {
			kind = "sumdb"
		}
		resp, err = c.FetchPath(r.Context(), rest, kind, goproxy.MaxModSize)
	}
	if err != nil {
		status := http.StatusBadGateway
		var se *goproxy.StatusError
		if errors.As(err, &se) {
			status = se.Status
		}
		rl.count(i, status)
		http.Error(w, strings.ReplaceAll(err.Error(), "\n", " "), status)
		return
	}
	defer resp.Body.Close()
	rl.count(i, http.StatusOK)
	h := w.Header()
	for _, k := range []string{"Content-Type", "Content-Length", "Last-Modified", "Cache-Control"} {
		if v := resp.Header.Get(k); v != "" {
			h.Set(k, v)
		}
	}
	if resp.ContentLength >= 0 {
		h.Set("Content-Length", strconv.FormatInt(resp.ContentLength, 10))
	}
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodGet {
		io.Copy(w, resp.Body) // read to its end: the exchange's Sample ends with its body
	} else {
		io.Copy(io.Discard, resp.Body)
	}
}
