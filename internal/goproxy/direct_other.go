//go:build !unix

package goproxy

import "os/exec"

// SetProcessGroup leaves cmd as it is: only the go command itself is killed on cancel.
func SetProcessGroup(*exec.Cmd) {}
