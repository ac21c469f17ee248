package lab

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// netnsDir is where `ip netns add` pins named namespaces (a bind mount per name).
const netnsDir = "/run/netns"

// etcNetnsDir holds per-namespace files that `ip netns exec` bind-mounts over /etc.
const etcNetnsDir = "/etc/netns"

// ipTimeout bounds every run of the ip and tc commands.
const ipTimeout = 10 * time.Second

// run runs an iproute2 command (ip or tc) and returns its error with its output.
func run(ctx context.Context, stdin string, name string, args ...string) error {
	ctx, cancel := context.WithTimeout(ctx, ipTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	if stdin != "" {
		cmd.Stdin = strings.NewReader(stdin)
	}
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, strings.TrimSpace(out.String()))
	}
	return nil
}

// inNetns runs fn on an OS thread that has joined the named network namespace. Sockets fn
// creates stay in that namespace for their whole life, so servers and dialers built this
// way work from any goroutine afterwards. The thread returns to its own namespace before it
// is released; if it cannot, the thread is left locked and dies with its goroutine.
func inNetns(ns string, fn func() error) error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		orig, err := os.Open("/proc/thread-self/ns/net")
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("open own netns: %w", err)
			return
		}
		defer orig.Close()
		target, err := os.Open(filepath.Join(netnsDir, ns))
		if err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("open netns %s: %w", ns, err)
			return
		}
		defer target.Close()
		if err := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); err != nil {
			runtime.UnlockOSThread()
			errc <- fmt.Errorf("setns %s: %w", ns, err)
			return
		}
		ferr := fn()
		if err := unix.Setns(int(orig.Fd()), unix.CLONE_NEWNET); err != nil {
			// Leave the thread locked: the runtime destroys it when this goroutine ends.
			errc <- fmt.Errorf("setns back from %s: %w", ns, err)
			return
		}
		runtime.UnlockOSThread()
		errc <- ferr
	}()
	return <-errc
}

// sysctlNetns writes net sysctls (paths under /proc/sys/net) inside a namespace.
func sysctlNetns(ns string, kv map[string]string) error {
	return inNetns(ns, func() error {
		for k, v := range kv {
			if err := os.WriteFile(filepath.Join("/proc/sys/net", k), []byte(v), 0o644); err != nil {
				return fmt.Errorf("sysctl %s in %s: %w", k, ns, err)
			}
		}
		return nil
	})
}

// nsPids returns the ids of the processes whose network namespace is ns.
func nsPids(ns string) []int {
	var st unix.Stat_t
	if err := unix.Stat(filepath.Join(netnsDir, ns), &st); err != nil {
		return nil
	}
	ents, err := os.ReadDir("/proc")
	if err != nil {
		return nil
	}
	var pids []int
	for _, e := range ents {
		var pid int
		if _, err := fmt.Sscanf(e.Name(), "%d", &pid); err != nil || pid == os.Getpid() {
			continue
		}
		var pst unix.Stat_t
		if unix.Stat(filepath.Join("/proc", e.Name(), "ns/net"), &pst) == nil && pst.Ino == st.Ino && pst.Dev == st.Dev {
			pids = append(pids, pid)
		}
	}
	return pids
}

// killNetns kills every process in ns, waiting up to a second for them to go.
func killNetns(ns string) {
	deadline := time.Now().Add(time.Second)
	for {
		pids := nsPids(ns)
		if len(pids) == 0 || time.Now().After(deadline) {
			return
		}
		for _, p := range pids {
			_ = unix.Kill(p, unix.SIGKILL)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// deleteNetns kills the processes of ns, deletes it and its /etc/netns directory.
func deleteNetns(ns string) error {
	killNetns(ns)
	_ = os.RemoveAll(filepath.Join(etcNetnsDir, ns))
	if _, err := os.Stat(filepath.Join(netnsDir, ns)); err != nil {
		return nil
	}
	return run(context.Background(), "", "ip", "netns", "delete", ns)
}
