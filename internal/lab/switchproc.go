package lab

import (
	"bufio"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// The switch runs in a child process of its own: the running binary re-executed in the
// router namespace, with SwitchEnv set, dispatched by this package's init before main or
// TestMain runs (so no TestMain line is needed for it). Its own process keeps frame timing
// independent of what the test process does (garbage collection, CPU-bound code under test
// holding every P), and it runs at nice -10 so that a loaded machine delays it less. The lab
// drives it with one-line commands on its stdin and reads one-line answers on its stdout;
// when its stdin closes, or its parent dies, it exits.

// SwitchEnv is the environment variable that makes a binary importing this package run the
// lab's link emulator instead of its main function.
const SwitchEnv = "HOLOPROXY_LAB_SWITCH"

func init() {
	if os.Getenv(SwitchEnv) == "1" {
		os.Exit(serveSwitch(os.Stdin, os.Stdout))
	}
}

// serveSwitch runs the switch of the namespace it is in, obeying the commands of r:
//
//	add <ifname> <mac> <seed>              attach a port
//	link <ifname> <delay> <jitter> <loss>  set a port's link (durations in ns)
//	stats <ifname>                         answer "ok <forwarded> <dropped> <delayed> <late-sum-ns> <late-max-ns>"
//
// It answers every command with "ok ..." or "err <message>", and stops at the end of r.
func serveSwitch(r io.Reader, w io.Writer) int {
	sw := newSwitch()
	defer sw.close()
	ports := map[string]*swPort{}
	in := bufio.NewScanner(r)
	out := bufio.NewWriter(w)
	for in.Scan() {
		f := strings.Fields(in.Text())
		reply := "ok"
		err := func() error {
			if len(f) < 2 {
				return errors.New("short command")
			}
			p := ports[f[1]]
			if f[0] != "add" && p == nil {
				return fmt.Errorf("no port %s", f[1])
			}
			switch {
			case f[0] == "add" && len(f) == 4:
				mac, err := net.ParseMAC(f[2])
				if err != nil {
					return err
				}
				seed, err := strconv.ParseUint(f[3], 10, 64)
				if err != nil {
					return err
				}
				file, err := openPacketSocket(f[1])
				if err != nil {
					return err
				}
				ports[f[1]] = sw.addPort(f[1], file, mac, seed)
			case f[0] == "link" && len(f) == 5:
				var l Link
				d, err1 := strconv.ParseInt(f[2], 10, 64)
				j, err2 := strconv.ParseInt(f[3], 10, 64)
				loss, err3 := strconv.ParseFloat(f[4], 64)
				if err := errors.Join(err1, err2, err3); err != nil {
					return err
				}
				l.Delay, l.Jitter, l.Loss = time.Duration(d), time.Duration(j), loss
				p.link.Store(&l)
			case f[0] == "stats":
				reply = fmt.Sprintf("ok %d %d %d %d %d", p.fwd.Load(), p.dropped.Load(), p.delayed.Load(), p.lateSum.Load(), p.lateMax.Load())
			default:
				return fmt.Errorf("unknown command %q", in.Text())
			}
			return nil
		}()
		if err != nil {
			reply = "err " + strings.ReplaceAll(err.Error(), "\n", " ")
		}
		fmt.Fprintln(out, reply)
		if out.Flush() != nil {
			return 1
		}
	}
	return 0
}

// switchProc is the lab's handle on its switch process.
type switchProc struct {
	mu     sync.Mutex // one command at a time
	cmd    *exec.Cmd
	in     io.WriteCloser
	out    *bufio.Reader
	done   chan struct{}
	err    error // of Wait, once done is closed
	stder  strings.Builder
	broken bool // a command went unanswered: answers may be out of step
}

// startSwitch starts the switch process in namespace ns.
func startSwitch(ns string) (*switchProc, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("lab switch: %w", err)
	}
	args := []string{"netns", "exec", ns, exe}
	name := "ip"
	if nice, err := exec.LookPath("nice"); err == nil {
		name, args = nice, append([]string{"-n", "-10", "ip"}, args...)
	}
	s := &switchProc{cmd: exec.Command(name, args...), done: make(chan struct{})}
	s.cmd.Env = append(os.Environ(), SwitchEnv+"=1")
	s.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	s.cmd.Stderr = &s.stder
	if s.in, err = s.cmd.StdinPipe(); err != nil {
		return nil, fmt.Errorf("lab switch: %w", err)
	}
	stdout, err := s.cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("lab switch: %w", err)
	}
	s.out = bufio.NewReader(stdout)
	if err := s.cmd.Start(); err != nil {
		return nil, fmt.Errorf("lab switch: %w", err)
	}
	go func() {
		s.err = s.cmd.Wait()
		close(s.done)
	}()
	return s, nil
}

// do sends one command and returns the answer after "ok".
func (s *switchProc) do(format string, args ...any) (string, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	cmd := fmt.Sprintf(format, args...)
	if s.broken {
		return "", fmt.Errorf("lab switch: %q: an earlier command went unanswered", cmd)
	}
	type answer struct {
		line string
		err  error
	}
	ch := make(chan answer, 1)
	go func() {
		if _, err := fmt.Fprintln(s.in, cmd); err != nil {
			ch <- answer{err: err}
			return
		}
		line, err := s.out.ReadString('\n')
		ch <- answer{line, err}
	}()
	var a answer
	select {
	case a = <-ch:
	case <-time.After(10 * time.Second):
		s.broken = true
		// The reader goroutine ends when close kills the process and its pipes close.
		return "", fmt.Errorf("lab switch: no answer to %q", cmd)
	}
	if a.err != nil {
		return "", fmt.Errorf("lab switch: %q: %w (%s)", cmd, a.err, strings.TrimSpace(s.stder.String()))
	}
	line := strings.TrimSpace(a.line)
	if rest, ok := strings.CutPrefix(line, "err "); ok {
		return "", fmt.Errorf("lab switch: %s: %s", cmd, rest)
	}
	return strings.TrimSpace(strings.TrimPrefix(line, "ok")), nil
}

func (s *switchProc) addPort(ifname string, mac net.HardwareAddr, seed uint64) error {
	_, err := s.do("add %s %s %d", ifname, mac, seed)
	return err
}

func (s *switchProc) setLink(ifname string, l Link) error {
	_, err := s.do("link %s %d %d %g", ifname, int64(l.Delay), int64(l.Jitter), l.Loss)
	return err
}

func (s *switchProc) stats(ifname string) (LinkStats, error) {
	ans, err := s.do("stats %s", ifname)
	if err != nil {
		return LinkStats{}, err
	}
	var st LinkStats
	var sum, mx int64
	if _, err := fmt.Sscan(ans, &st.Forwarded, &st.Dropped, &st.Delayed, &sum, &mx); err != nil {
		return LinkStats{}, fmt.Errorf("lab switch: stats %q: %w", ans, err)
	}
	if st.Delayed > 0 {
		st.MeanLate = time.Duration(sum / st.Delayed)
	}
	st.MaxLate = time.Duration(mx)
	return st, nil
}

// close ends the switch process: end of input first, then SIGKILL if it lingers.
func (s *switchProc) close() {
	_ = s.in.Close()
	select {
	case <-s.done:
		return
	case <-time.After(time.Second):
	}
	_ = syscall.Kill(-s.cmd.Process.Pid, syscall.SIGKILL)
	<-s.done
}
