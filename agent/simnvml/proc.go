package simnvml

import (
	"bytes"
	"errors"
	"io/fs"
	"os"
	"strconv"
	"syscall"
)

// alive reports whether pid runs: it exists and has not exited. A process
// that has exited but waits to be reaped (a zombie) still answers
// kill(pid, 0) but runs nothing on any GPU. Its state is read first: a
// process reaped between a successful kill(pid, 0) and the read would
// otherwise look alive for want of a state to show it exited.
//
// Pid 0 and pids that read as negative name no one process: to kill(2)
// they are a process group or every process, and the signal check alone
// answers for them, so that a test can have a GPU list them, as a
// misbehaving driver might, and see the agent refuse to signal them.
func alive(pid uint32) bool {
	if pid == 0 || int32(pid) < 0 {
		err := syscall.Kill(int(int32(pid)), 0)
		return err == nil || err == syscall.EPERM
	}
	b, err := os.ReadFile("/proc/" + strconv.FormatUint(uint64(pid), 10) + "/stat")
	if err == nil {
		// The state follows the command name, which is in parentheses and
		// may itself contain spaces or parentheses.
		i := bytes.LastIndexByte(b, ')')
		if i < 0 || i+2 >= len(b) {
			return false
		}
		state := b[i+2]
		return state != 'Z' && state != 'X' && state != 'x'
	}
	if errors.Is(err, fs.ErrNotExist) && procStates {
		return false
	}
	// No /proc to read: the signal check alone.
	err = syscall.Kill(int(pid), 0)
	return err == nil || err == syscall.EPERM
}

// procStates reports whether /proc shows processes' states, as on Linux.
var procStates = func() bool {
	_, err := os.Stat("/proc/self/stat")
	return err == nil
}()

func (d *Device) livePIDs() []uint32 {
	kept := d.pids[:0]
	for _, pid := range d.pids {
		if alive(pid) {
			kept = append(kept, pid)
		}
	}
	d.pids = kept
	return kept
}
