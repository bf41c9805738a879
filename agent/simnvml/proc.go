package simnvml

import (
	"bytes"
	"os"
	"strconv"
	"syscall"
)

// zombie reports whether pid has exited and waits to be reaped: such a
// process still answers kill(pid, 0) but runs nothing on any GPU.
func zombie(pid uint32) bool {
	b, err := os.ReadFile("/proc/" + strconv.FormatUint(uint64(pid), 10) + "/stat")
	if err != nil {
		return false
	}
	// The state follows the command name, which is in parentheses and may
	// itself contain spaces or parentheses.
	i := bytes.LastIndexByte(b, ')')
	return i >= 0 && i+2 < len(b) && b[i+2] == 'Z'
}

// alive reports whether pid runs: it exists and has not exited.
func alive(pid uint32) bool {
	err := syscall.Kill(int(pid), 0)
	return (err == nil || err == syscall.EPERM) && !zombie(pid)
}

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
