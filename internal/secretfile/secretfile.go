// Package secretfile reads the files that hold a secret the control plane
// starts with, such as a cloud key, an API key or a BMC's password. Such a
// file must be its owner's alone: a secret others may read is a secret
// others may have, and one others may change is one they may choose.
package secretfile

import (
	"fmt"
	"io"
	"os"
	"syscall"
)

// Read reads the secret in path, refusing a file that is not a regular
// file, that its group or others may read or write, or that holds more
// than limit bytes. It checks the file it opened and reads that same
// file, so that the path cannot be pointed elsewhere in between, and
// opens it without blocking, so that a FIFO is refused instead of holding
// up the start until something writes to it. Each error names path and
// says which check failed.
func Read(path string, limit int64) ([]byte, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, err
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s is not a regular file (mode %s)", path, fi.Mode())
	}
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return nil, fmt.Errorf("%s may be read or changed by its group or others (mode %04o); chmod 600 it", path, perm)
	}
	b, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > limit {
		return nil, fmt.Errorf("%s is too large: over %d bytes", path, limit)
	}
	return b, nil
}
