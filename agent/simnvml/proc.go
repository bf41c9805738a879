package simnvml

import (
	"bytes"
	"os"
	"strconv"
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
