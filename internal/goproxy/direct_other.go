//go:build !unix

package goproxy

import (
	"os/exec"
	"time"
)

// SetProcessGroup leaves cmd as it is: only the go command itself is killed on cancel.
func SetProcessGroup(*exec.Cmd) {}

// InterruptProcessGroup leaves cmd as it is: it is killed on cancel.
func InterruptProcessGroup(*exec.Cmd, time.Duration) (stop func()) { return func() {} }
