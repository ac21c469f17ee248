//go:build !unix

package goproxy

import (
	"os/exec"
	"time"
)

// SetProcessGroup leaves cmd as it is: only the go command itself is killed on cancel. The
// returned function, to call once cmd.Wait has returned, does nothing.
func SetProcessGroup(*exec.Cmd) (waitGroup func()) { return func() {} }

// InterruptProcessGroup leaves cmd as it is: it is killed on cancel.
func InterruptProcessGroup(*exec.Cmd, time.Duration) (stop func()) { return func() {} }
