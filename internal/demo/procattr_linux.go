package demo

import "syscall"

// childAttr puts a child in its own process group and, on Linux, has the
// kernel TERM it should the demo die without stopping it.
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM, Setpgid: true}
}
