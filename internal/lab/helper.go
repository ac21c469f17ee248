package lab

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// HelperEnv is the environment variable that makes a test binary run a registered helper
// instead of its tests (see Main and Host.HelperCommand).
const HelperEnv = "HOLOPROXY_LAB_HELPER"

var (
	helpersMu sync.Mutex
	helpers   = map[string]func(args []string) int{}
)

// RegisterHelper registers fn as the helper called name: a function the test binary runs,
// re-executed in a lab host by Host.HelperCommand, with the command's arguments; its result
// is the process's exit code. Register helpers from init functions or TestMain before Main.
func RegisterHelper(name string, fn func(args []string) int) {
	helpersMu.Lock()
	defer helpersMu.Unlock()
	helpers[name] = fn
}

// Main is the body of a TestMain for packages whose tests use the lab:
//
//	func TestMain(m *testing.M) { lab.Main(m) }
//
// In a process started by Host.HelperCommand it runs the helper and exits. Otherwise it runs
// the tests, then closes any lab a test left open, and exits with the tests' code.
func Main(m *testing.M) {
	if name := os.Getenv(HelperEnv); name != "" {
		os.Exit(RunHelper(name, os.Args[1:]))
	}
	os.Exit(runTests(m))
}

// runTests runs the tests, then closes any lab a test left open, and returns the tests' exit
// code, 1 if they passed but left lab artefacts behind.
func runTests(m *testing.M) int {
	code := m.Run()
	closeAll()
	if left := Leftovers(os.Getpid()); len(left) > 0 {
		fmt.Fprintf(os.Stderr, "lab: the tests left behind: %v\n", left)
		if code == 0 {
			code = 1
		}
	}
	return code
}

// Leftovers lists what labs of process pid have left: namespaces (their /run/netns mounts),
// /etc/netns directories, lab directories in the temporary and tmpfs directories, and
// processes still in those namespaces. Main checks it for its own process after the tests.
func Leftovers(pid int) []string {
	prefix := fmt.Sprintf("%s%d-", Prefix, pid)
	var found []string
	for _, dir := range []string{netnsDir, etcNetnsDir, os.TempDir(), shmDir} {
		ents, _ := os.ReadDir(dir)
		for _, e := range ents {
			if strings.HasPrefix(e.Name(), prefix) {
				found = append(found, filepath.Join(dir, e.Name()))
				if dir == netnsDir {
					for _, p := range nsPids(e.Name()) {
						found = append(found, fmt.Sprintf("process %d in %s", p, e.Name()))
					}
				}
			}
		}
	}
	return found
}

// RunHelper runs the registered helper name with args and returns its exit code (2 when no
// helper has that name).
func RunHelper(name string, args []string) int {
	helpersMu.Lock()
	fn := helpers[name]
	helpersMu.Unlock()
	if fn == nil {
		fmt.Fprintf(os.Stderr, "lab: no helper named %q\n", name)
		return 2
	}
	return fn(args)
}

// HelperCommand returns a command that re-executes the running binary (the test binary) in
// the host's namespace to run the helper name (see RegisterHelper and Main) with args.
func (h *Host) HelperCommand(ctx context.Context, name string, args ...string) (*exec.Cmd, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("lab: helper %s: %w", name, err)
	}
	cmd := h.Command(ctx, exe, args...)
	cmd.Env = append(cmd.Env, HelperEnv+"="+name)
	return cmd, nil
}

// ProcessesUnder lists ("pid: command line") the processes whose working directory is dir
// or below it: what a test checks to find children a program left behind (Linux; none
// elsewhere).
func ProcessesUnder(dir string) []string {
	var out []string
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		cwd, err := os.Readlink(filepath.Join("/proc", e.Name(), "cwd"))
		if err != nil || (cwd != dir && !strings.HasPrefix(cwd, dir+string(filepath.Separator))) {
			continue
		}
		cmdline, _ := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		out = append(out, e.Name()+": "+strings.TrimSpace(strings.ReplaceAll(string(cmdline), "\x00", " ")))
	}
	return out
}

// WaitForProcessUnder waits until a process working under dir (ProcessesUnder) has a
// command line containing sub, and fails tb if none has after timeout.
func WaitForProcessUnder(tb testing.TB, dir, sub string, timeout time.Duration) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for !slices.ContainsFunc(ProcessesUnder(dir), func(s string) bool { return strings.Contains(s, sub) }) {
		if time.Now().After(deadline) {
			tb.Fatalf("no %q process started under %s within %s: %q", sub, dir, timeout, ProcessesUnder(dir))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// WaitNoProcessUnder waits until no process works under dir, and fails tb with those left
// after timeout: a killed process's children take a moment to go.
func WaitNoProcessUnder(tb testing.TB, dir string, timeout time.Duration) {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for left := ProcessesUnder(dir); len(left) > 0; left = ProcessesUnder(dir) {
		if time.Now().After(deadline) {
			tb.Fatalf("processes left under %s after %s: %q", dir, timeout, left)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
