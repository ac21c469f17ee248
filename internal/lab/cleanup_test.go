package lab

import (
	"bufio"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"
)

// childEnv selects what TestLeakChild does in a re-executed test binary.
const childEnv = "HOLOPROXY_LAB_LEAK_CHILD"

// TestLeakChild is not a test of its own: TestNoLeftovers re-executes the test binary to run
// it with childEnv set. It brings up a lab with DNS, an origin and a process in a host that
// has a grandchild (which no signal from its parent reaches), prints what it made, and then
// fails ("fail") or exits without any cleanup ("crash").
func TestLeakChild(t *testing.T) {
	mode := os.Getenv(childEnv)
	if mode == "" {
		t.Skip("run by TestNoLeftovers")
	}
	var l *Lab
	if mode == "crash" {
		var err error
		if l, err = Start(Options{}); err != nil {
			t.Fatal(err)
		}
	} else {
		l = New(t, Options{})
	}
	for _, n := range []string{"a", "b", "c"} {
		l.MustAddHost(t, n)
	}
	if _, err := l.DNS(); err != nil {
		t.Fatal(err)
	}
	h := l.Host("a")
	if _, err := h.ServeOrigin(OriginConfig{Tree: t.TempDir()}); err != nil {
		t.Fatal(err)
	}
	if _, err := l.TmpfsDir("cache"); err != nil {
		t.Fatal(err)
	}
	cmd := h.Command(t.Context(), "sh", "-c", "sleep 300 & echo $!; wait")
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	fmt.Printf("LAB=%s GRANDCHILD=%s SWITCH=%d\n", l.Name(), strings.TrimSpace(line), l.sw.cmd.Process.Pid)
	if mode == "crash" {
		os.Exit(3)
	}
	t.Fatal("deliberate failure")
}

// leftovers lists what a lab called name left: namespaces, /etc/netns entries, files, mounts,
// and whether the processes pids still live.
func leftovers(name string, pids ...int) []string {
	var found []string
	for _, pat := range []string{
		filepath.Join(netnsDir, name+"-*"), filepath.Join(etcNetnsDir, name+"-*"),
		filepath.Join(os.TempDir(), name+"-*"), filepath.Join(shmDir, name+"-*"),
	} {
		m, _ := filepath.Glob(pat)
		found = append(found, m...)
	}
	if mi, err := os.ReadFile("/proc/self/mountinfo"); err == nil {
		for _, line := range strings.Split(string(mi), "\n") {
			if strings.Contains(line, name+"-") {
				found = append(found, "mount: "+line)
			}
		}
	}
	for _, pid := range pids {
		if st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil && !strings.Contains(string(st), ") Z ") {
			found = append(found, fmt.Sprintf("process %d", pid))
		}
	}
	return found
}

// runChild runs TestLeakChild in a new test binary process and returns the lab name and the
// pids it reported (the grandchild in a host, the switch).
func runChild(t *testing.T, mode string) (string, []int) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.CommandContext(t.Context(), exe, "-test.run=^TestLeakChild$", "-test.v")
	cmd.Env = append(os.Environ(), childEnv+"="+mode)
	out, err := cmd.CombinedOutput()
	if err == nil {
		t.Fatalf("child in mode %s passed; want it to fail\n%s", mode, out)
	}
	m := regexp.MustCompile(`LAB=(\S+) GRANDCHILD=(\d+) SWITCH=(\d+)`).FindSubmatch(out)
	if m == nil {
		t.Fatalf("child in mode %s did not report its lab:\n%s", mode, out)
	}
	if mode == "fail" && !strings.Contains(string(out), "deliberate failure") {
		t.Fatalf("child failed for another reason:\n%s", out)
	}
	grandchild, _ := strconv.Atoi(string(m[2]))
	sw, _ := strconv.Atoi(string(m[3]))
	return string(m[1]), []int{grandchild, sw}
}

// TestNoLeftovers proves that a failed test leaves no namespace, /etc/netns entry, temporary
// or tmpfs directory, mount or process behind, and that when a test binary dies without any
// cleanup, the sweep at the next lab's start removes all of it.
func TestNoLeftovers(t *testing.T) {
	Require(t)
	if os.Getenv(childEnv) != "" {
		t.Skip("inside a child")
	}

	name, pids := runChild(t, "fail")
	if left := leftovers(name, pids...); len(left) > 0 {
		t.Errorf("after a failed test, lab %s left: %v", name, left)
	}

	name, pids = runChild(t, "crash")
	left := leftovers(name, pids...)
	if len(left) == 0 {
		t.Fatalf("after a crash, lab %s left nothing: the sweep would have nothing to prove", name)
	}
	t.Logf("a crash left %d things: %v", len(left), left)
	l := New(t, Options{}) // sweeps at start
	_ = l
	deadline := time.Now().Add(2 * time.Second)
	for len(leftovers(name, pids...)) > 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if left := leftovers(name, pids...); len(left) > 0 {
		t.Errorf("after the sweep, lab %s still left: %v", name, left)
	}
}
