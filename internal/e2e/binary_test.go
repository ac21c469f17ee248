package e2e

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/holoproxy/holoproxy/internal/lab"
)

var (
	binOnce sync.Once
	binDir  string
	binPath string
	binErr  error

	raceBinOnce sync.Once
	raceBinDir  string
	raceBinPath string
	raceBinErr  error
)

func TestMain(m *testing.M) {
	lab.NoForwardProxies()   // holoproxy and the go command honour HTTPS_PROXY
	lab.NoInstanceMetadata() // --shared-cache looks for an instance role
	code := m.Run()
	for _, dir := range []string{binDir, raceBinDir} {
		if dir != "" {
			os.RemoveAll(dir)
		}
	}
	os.Exit(code)
}

// holoproxyBinary builds cmd/holoproxy once per test process and returns its path.
func holoproxyBinary(t testing.TB) string {
	t.Helper()
	return buildOnce(t, &binOnce, &binDir, &binPath, &binErr)
}

// holoproxyRaceBinary returns, when the tests run with the race detector, cmd/holoproxy
// built with it too (once per test process), so that a race in the server fails the test
// that provoked it ("WARNING: DATA RACE" in its log); otherwise holoproxyBinary's.
func holoproxyRaceBinary(t testing.TB) string {
	t.Helper()
	if !raceEnabled {
		return holoproxyBinary(t)
	}
	return buildOnce(t, &raceBinOnce, &raceBinDir, &raceBinPath, &raceBinErr, "-race")
}

// buildOnce builds cmd/holoproxy with flags once, into a temporary *dir, and returns its
// path.
func buildOnce(t testing.TB, once *sync.Once, dir, path *string, buildErr *error, flags ...string) string {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Skip("no go command on PATH")
	}
	once.Do(func() {
		if *dir, *buildErr = os.MkdirTemp("", "holoproxy-e2e-*"); *buildErr != nil {
			return
		}
		*path = filepath.Join(*dir, "holoproxy")
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
		defer cancel()
		args := append(append([]string{"build"}, flags...), "-o", *path, "github.com/holoproxy/holoproxy/cmd/holoproxy")
		cmd := exec.CommandContext(ctx, goBin, args...)
		cmd.WaitDelay = 10 * time.Second
		if out, err := cmd.CombinedOutput(); err != nil {
			*buildErr = fmt.Errorf("go %s: %w\n%s", strings.Join(args, " "), err, out)
		}
	})
	if *buildErr != nil {
		t.Fatal(*buildErr)
	}
	return *path
}

// proc is a running holoproxy serve.
type proc struct {
	cmd  *exec.Cmd
	addr string // host:port it serves on
	log  *logBuffer
	done chan struct{} // closed when the process has exited and been waited for
	err  error         // Wait's error, valid after done
}

var servingRE = regexp.MustCompile(`msg=serving addr=(\S+)`)

// startHoloproxy runs `holoproxy serve` on a free loopback port with args appended and env
// added to the environment (with HOLOPROXY_SUMDB=off unless env or args say otherwise), and
// waits until it serves. The process is killed and waited for
// in t.Cleanup if the test has not ended it.
func startHoloproxy(t testing.TB, args, env []string) *proc {
	t.Helper()
	return startHoloproxyBinary(t, holoproxyBinary(t), args, env)
}

// startHoloproxyBinary is startHoloproxy with the holoproxy binary at bin.
func startHoloproxyBinary(t testing.TB, bin string, args, env []string) *proc {
	t.Helper()
	p := &proc{log: &logBuffer{}, done: make(chan struct{})}
	addrc := make(chan string, 1)
	p.cmd = exec.Command(bin, append([]string{"serve", "--listen=127.0.0.1:0"}, args...)...)
	// Checksum verification is off unless a test passes --sumdb (a flag wins over its twin):
	// the default, `go env GOSUMDB`, names a public database, and tests talk only to loopback.
	p.cmd.Env = append(append(os.Environ(), "HOLOPROXY_SUMDB=off"), env...)
	p.cmd.Stdout = p.log
	p.cmd.Stderr = &addrWatcher{w: p.log, found: addrc}
	p.cmd.WaitDelay = 10 * time.Second
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.kill(t)
		if t.Failed() {
			t.Logf("holoproxy (pid %d) log:\n%s", p.cmd.Process.Pid, p.log.String())
		}
	})
	select {
	case p.addr = <-addrc:
	case <-p.done:
		t.Fatalf("holoproxy exited before serving: %v\n%s", p.err, p.log.String())
	case <-time.After(60 * time.Second):
		t.Fatalf("holoproxy did not report its address within 60s\n%s", p.log.String())
	}
	return p
}

// kill ends the process with SIGKILL (if still running) and waits for it.
func (p *proc) kill(t testing.TB) {
	t.Helper()
	select {
	case <-p.done:
		return
	default:
	}
	p.cmd.Process.Signal(syscall.SIGKILL)
	p.wait(t)
}

// wait waits for the process to exit (60s at most).
func (p *proc) wait(t testing.TB) error {
	t.Helper()
	select {
	case <-p.done:
		return p.err
	case <-time.After(60 * time.Second):
		p.cmd.Process.Signal(syscall.SIGKILL)
		<-p.done
		t.Fatalf("holoproxy (pid %d) did not exit within 60s", p.cmd.Process.Pid)
		return nil
	}
}

// addrWatcher passes output through to w and sends the address of the first "serving"
// log line to found.
type addrWatcher struct {
	w     io.Writer
	found chan<- string
	buf   []byte
	sent  bool
}

func (a *addrWatcher) Write(p []byte) (int, error) {
	a.w.Write(p)
	if a.sent {
		return len(p), nil
	}
	a.buf = append(a.buf, p...)
	sc := bufio.NewScanner(bytes.NewReader(a.buf))
	for sc.Scan() {
		if m := servingRE.FindStringSubmatch(sc.Text()); m != nil {
			a.found <- m[1]
			a.sent, a.buf = true, nil
			break
		}
	}
	return len(p), nil
}
