//go:build unix

package goproxy

import (
	"os/exec"
	"syscall"
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
