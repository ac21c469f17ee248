package goproxy

import "syscall"

// setParentDeathSignal has the kernel kill the go command if holoproxy dies first.
func setParentDeathSignal(a *syscall.SysProcAttr) { a.Pdeathsig = syscall.SIGKILL }
