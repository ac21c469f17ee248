//go:build unix

package goproxy

import (
	"os/exec"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// SetProcessGroup runs cmd in a process group of its own, so that a cancelled command is
// killed with every process it started (git and its helpers), not the go command alone.
//
// Call the returned function once cmd.Wait (or Run) has returned. When the group was
// killed, it waits until every process of the group has exited, for at most cmd.WaitDelay
// (a second when unset): the go command's children are not ours to wait for, and when the
// go command has been reaped they may still be exiting, in the directories the caller is
// about to remove.
func SetProcessGroup(cmd *exec.Cmd) (waitGroup func()) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	setParentDeathSignal(cmd.SysProcAttr)
	var killed atomic.Bool
	cmd.Cancel = func() error {
		killed.Store(true)
		// The negative pid names the group; the go command's pid is the group's id.
		return syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	}
	return func() {
		if killed.Load() && cmd.Process != nil {
			waitGroupGone(cmd)
		}
	}
}

// waitGroupGone waits until no process of cmd's group is running, for at most
// cmd.WaitDelay (a second when unset).
func waitGroupGone(cmd *exec.Cmd) {
	bound := cmd.WaitDelay
	if bound <= 0 {
		bound = time.Second
	}
	for deadline := time.Now().Add(bound); groupRunning(cmd.Process.Pid) && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
}

// InterruptProcessGroup makes cmd, set up by SetProcessGroup, end on cancel as a terminal's
// Ctrl-C would end it: SIGINT to its whole group, so that the command cleans up (the go
// command removes its work directory), then SIGKILL to the group after grace. Call the
// returned stop (once or more) once cmd.Wait returned: after a cancel it kills what is
// left of the group (a process the command started that ignored SIGINT) and waits for it
// as SetProcessGroup's function does.
func InterruptProcessGroup(cmd *exec.Cmd, grace time.Duration) (stop func()) {
	var kill *time.Timer
	var cancelled atomic.Bool
	stopped := make(chan struct{})
	cmd.Cancel = func() error {
		cancelled.Store(true)
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
			if cancelled.Load() {
				// The group outlives its leader while a member lives, and its id is not
				// given to a new process meanwhile: killing it reaches only what is left.
				syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
				waitGroupGone(cmd)
			}
		})
	}
}
