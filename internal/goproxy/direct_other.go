//go:build !unix

package goproxy

import "os/exec"

// setProcessGroup leaves cmd as it is: only the go command itself is killed on cancel.
func setProcessGroup(*exec.Cmd) {}
