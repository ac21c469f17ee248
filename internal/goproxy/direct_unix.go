//go:build unix

package goproxy

import (
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// SetProcessGroup runs cmd in a process group of its own, so that a cancelled command is
// killed with every process it started (git and its helpers), not the go command alone.
func SetProcessGroup(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	setParentDeathSignal(cmd.SysProcAttr)
	cmd.Cancel = func() error {
		// The negative pid names the group; the go command's pid is the group's id.
		return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
}

// InterruptProcessGroup makes cmd, set up by SetProcessGroup, end on cancel as a terminal's
// Ctrl-C would end it: SIGINT to its whole group, so that the command cleans up (the go
// command removes its work directory), then SIGKILL to the group after grace. Call the
// returned stop (once or more) once cmd.Wait returned.
func InterruptProcessGroup(cmd *exec.Cmd, grace time.Duration) (stop func()) {
	var kill *time.Timer
	stopped := make(chan struct{})
	cmd.Cancel = func() error {
		pid := cmd.Process.Pid
		kill = time.AfterFunc(grace, func() {
			select {
			case <-stopped: // waited for: the group's id may be another's by now
			default:
				syscall.Kill(-pid, syscall.SIGKILL)
			}
		})
		return syscall.Kill(-pid, syscall.SIGINT)
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			close(stopped)
			if kill != nil {
				kill.Stop()
			}
		})
	}
}
