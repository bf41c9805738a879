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

// Check refuses path unless it, what its links lead to, and every folder
// on the way to either are root's and writable by root alone. A folder
// others may write to but that has the sticky bit (/tmp) passes: others
// cannot rename or remove what root put there.
func Check(path string) error {
	abs, err := filepath.Abs(path)
	if err != nil {
		return err
	}
	real, err := filepath.EvalSymlinks(abs)
	if err != nil {
		return err
	}
	if err := check(real, false); err != nil {
		return err
	}
	seen := map[string]bool{}
	for _, p := range []string{abs, real} {
		for dir := filepath.Dir(p); !seen[dir]; dir = filepath.Dir(dir) {
			seen[dir] = true
			if err := check(dir, true); err != nil {
				return err
			}
		}
	}
	return nil
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
