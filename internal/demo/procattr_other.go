//go:build !linux

package demo

import "syscall"

// childAttr puts a child in its own process group. Only Linux can have a
// child signalled when its parent dies; elsewhere the demo's own stop is
// all there is.
func childAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
