// Package rootfile checks that a file a root process runs, or takes its
// settings from, can be changed by root alone: whoever else could change
// it, or a folder it is reached through, could run anything as root.
package rootfile

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
)

// Check resolves path's links and returns the file it names, refusing it
// unless that file and every folder on the way to it are root's and
// writable by root alone. The caller reads or runs the path returned,
// never path: a link on the way, in a folder someone else may change,
// could be pointed elsewhere after the check. A folder others may write
// to but that has the sticky bit (/tmp) passes: others cannot rename or
// remove what root put there.
func Check(path string) (string, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", err
	}
	real, err := filepath.EvalSymlinks(abs)
	if err != nil {
		return "", err
	}
	if err := check(real, false); err != nil {
		return "", err
	}
	for dir := filepath.Dir(real); ; dir = filepath.Dir(dir) {
		if err := check(dir, true); err != nil {
			return "", err
		}
		if dir == filepath.Dir(dir) {
			return real, nil
		}
	}
}

func check(path string, folder bool) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok {
		return fmt.Errorf("%s: cannot tell its owner", path)
	}
	writable := fi.Mode().Perm()&0o022 != 0
	if folder && fi.Mode()&os.ModeSticky != 0 && st.Uid == 0 {
		writable = false
	}
	if st.Uid != 0 || writable {
		return fmt.Errorf("%s is owned by uid %d with mode %04o: it must be root's and writable by root alone", path, st.Uid, fi.Mode().Perm())
	}
	return nil
}
