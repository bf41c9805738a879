package memlimit

import (
	"bufio"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"
)

// v1Unlimited: cgroup v1 writes "no limit" as the largest page-aligned
// int64 (9223372036854771712); anything this large is none.
const v1Unlimited = 1 << 62

// cgroupLimit is the memory limit of the process's cgroup: the smallest
// set on it or any cgroup above it, since each bounds it. Under cgroup v2
// it is memory.max ("max" is none); under v1, memory.limit_in_bytes of
// the memory controller. It says which version it read.
func cgroupLimit(root string) (int64, string, error) {
	f, err := os.Open(filepath.Join(root, "proc", "self", "cgroup"))
	if err != nil {
		return 0, "", fmt.Errorf("read cgroup: %w", err)
	}
	defer f.Close()
	var v1Path, v2Path string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// hierarchy-ID:controller-list:cgroup-path
		parts := strings.SplitN(sc.Text(), ":", 3)
		if len(parts) != 3 {
			continue
		}
		switch {
		case parts[0] == "0" && parts[1] == "":
			v2Path = parts[2]
		case containsWord(parts[1], "memory"):
			v1Path = parts[2]
		}
	}
	if err := sc.Err(); err != nil {
		return 0, "", fmt.Errorf("read cgroup: %w", err)
	}
	// On a hybrid system the memory controller is on v1, and v2 has none.
	if v1Path != "" {
		n, err := smallest(filepath.Join(root, "sys", "fs", "cgroup", "memory"), v1Path, "memory.limit_in_bytes")
		return n, "v1", err
	}
	if v2Path != "" {
		n, err := smallest(filepath.Join(root, "sys", "fs", "cgroup"), v2Path, "memory.max")
		return n, "v2", err
	}
	return 0, "", errors.New("no memory cgroup")
}

func containsWord(list, word string) bool {
	for w := range strings.SplitSeq(list, ",") {
		if w == word {
			return true
		}
	}
	return false
}

// smallest reads file in the cgroup at rel under mount and in each cgroup
// above it, and returns the smallest limit set. In a container with its
// own cgroup namespace the path is "/" and the mount is the container's
// cgroup; without one the path is the host's and may not exist under the
// mount, which then is the container's own.
func smallest(mount, rel, file string) (int64, error) {
	limit := int64(-1)
	for dir := path.Clean("/" + rel); ; dir = path.Dir(dir) {
		n, err := readLimit(filepath.Join(mount, filepath.FromSlash(dir), file))
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return 0, err
		}
		if err == nil && n > 0 && (limit < 0 || n < limit) {
			limit = n
		}
		if dir == "/" {
			break
		}
	}
	if limit < 0 {
		return 0, fmt.Errorf("no cgroup memory limit set (%s)", file)
	}
	return limit, nil
}

// readLimit reads one limit file: 0 means none.
func readLimit(p string) (int64, error) {
	b, err := os.ReadFile(p)
	if err != nil {
		return 0, err
	}
	s := strings.TrimSpace(string(b))
	if s == "max" {
		return 0, nil
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		return 0, fmt.Errorf("read %s: %q is not a number of bytes", p, s)
	}
	if n >= v1Unlimited {
		return 0, nil
	}
	return n, nil
}

// memTotal is the machine's memory, MemTotal in /proc/meminfo.
func memTotal(root string) (int64, error) {
	p := filepath.Join(root, "proc", "meminfo")
	b, err := os.ReadFile(p)
	if err != nil {
		return 0, fmt.Errorf("read meminfo: %w", err)
	}
	for line := range strings.Lines(string(b)) {
		rest, ok := strings.CutPrefix(line, "MemTotal:")
		if !ok {
			continue
		}
		fields := strings.Fields(rest)
		if len(fields) == 2 && fields[1] == "kB" {
			if n, err := strconv.ParseInt(fields[0], 10, 64); err == nil && n > 0 {
				return n << 10, nil
			}
		}
		return 0, fmt.Errorf("read meminfo: MemTotal %q is not a number of kB", strings.TrimSpace(rest))
	}
	return 0, fmt.Errorf("read meminfo: no MemTotal in %s", p)
}
