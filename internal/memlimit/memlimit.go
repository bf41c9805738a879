// Package memlimit chooses and sets the Go runtime's soft memory limit for
// a daemon. With the default GOGC of 100 the heap may grow to twice what is
// live before a collection, so resident memory runs at about twice the live
// heap; a soft limit makes the collector work harder as the heap nears it
// instead of growing past what the machine or container can give.
//
// The operator's GOMEMLIMIT wins. Otherwise the configured setting is
// either a size, off, or auto: a share of the cgroup's memory limit when
// the process runs under one, else a share of the machine's memory.
package memlimit

import (
	"fmt"
	"math"
	"runtime/debug"
	"strconv"
	"strings"
)

// Auto and Off are the setting's words besides a size.
const (
	Auto = "auto"
	Off  = "off"
)

// Shares of the memory found that auto leaves to the Go heap. A cgroup's
// limit is this process's (its container's or its unit's) own budget, and
// what is left covers what the runtime does not count: Badger's mapped
// tables and the page cache charged to the cgroup. The machine's memory is
// shared with the system and other processes, so auto takes less of it.
const (
	cgroupPercent  = 90
	machinePercent = 80
)

// minimum is the smallest limit a setting may give: below it the collector
// would run all the time for an empty control plane.
const minimum = 64 << 20

// Setting is a parsed memory_limit value: Auto, Off, or a size in bytes.
type Setting struct {
	Auto  bool
	Bytes int64 // 0 with Auto false is off
}

// ParseSetting reads "auto", "off", "0", or a whole number of bytes with
// an optional unit B, KiB, MiB, GiB or TiB, as GOMEMLIMIT is written.
func ParseSetting(s string) (Setting, error) {
	switch strings.TrimSpace(s) {
	case Auto, "":
		return Setting{Auto: true}, nil
	case Off, "0":
		return Setting{}, nil
	}
	n, err := ParseSize(s)
	if err != nil {
		return Setting{}, err
	}
	if n < minimum {
		return Setting{}, fmt.Errorf("%q is below the minimum of %s; use off for no limit", s, FormatSize(minimum))
	}
	return Setting{Bytes: n}, nil
}

var units = []struct {
	suffix string
	shift  uint
}{{"TiB", 40}, {"GiB", 30}, {"MiB", 20}, {"KiB", 10}, {"B", 0}}

// ParseSize reads a whole number of bytes with an optional unit B, KiB,
// MiB, GiB or TiB ("2GiB", "1536MiB", "2147483648").
func ParseSize(s string) (int64, error) {
	num, shift := strings.TrimSpace(s), uint(0)
	for _, u := range units {
		if rest, ok := strings.CutSuffix(num, u.suffix); ok {
			num, shift = rest, u.shift
			break
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n < 0 || n > math.MaxInt64>>shift {
		return 0, fmt.Errorf("%q is not a size: use e.g. 2GiB or 1536MiB (units B, KiB, MiB, GiB, TiB), auto or off", s)
	}
	return n << shift, nil
}

// FormatSize writes n in the largest unit that keeps it whole, or, from
// 1 MiB up, in whole MiB rounded down: a log line need not count bytes.
func FormatSize(n int64) string {
	if n >= 1<<20 && n%(1<<20) != 0 {
		return strconv.FormatInt(n>>20, 10) + "MiB"
	}
	for _, u := range units {
		if n >= 1<<u.shift && n%(1<<u.shift) == 0 {
			return strconv.FormatInt(n>>u.shift, 10) + u.suffix
		}
	}
	return strconv.FormatInt(n, 10) + "B"
}

// Source says where the limit in effect came from.
type Source string

const (
	// FromEnv is the operator's GOMEMLIMIT, which the runtime applied.
	FromEnv Source = "GOMEMLIMIT"
	// FromConfig is a size given in the configuration.
	FromConfig Source = "config"
	// FromCgroup is auto's share of the cgroup's memory limit.
	FromCgroup Source = "cgroup"
	// FromMachine is auto's share of the machine's memory.
	FromMachine Source = "machine"
	// FromOff is a configuration that turned the limit off.
	FromOff Source = "off"
	// FromNothing is auto finding no memory size to take a share of.
	FromNothing Source = "none found"
)

// Limit is the soft memory limit chosen and where it came from.
type Limit struct {
	// Bytes is the limit; 0 is none.
	Bytes  int64
	Source Source
	// Basis says in words where the limit came from, for the log: for
	// auto, what it took its share of, or why it found nothing.
	Basis string
}

// String is the limit for a log line.
func (l Limit) String() string {
	if l.Bytes == 0 {
		return Off
	}
	return FormatSize(l.Bytes)
}

// System is where the process's surroundings are read: Root is the file
// system root ("/" in production) under which /proc and /sys/fs/cgroup are
// read, and Getenv reads the environment.
type System struct {
	Root   string
	Getenv func(string) string
}

// Decide chooses the limit for setting on sys. It does not fail: a file it
// cannot read means no limit of that kind.
func Decide(setting Setting, sys System) Limit {
	if env := sys.Getenv("GOMEMLIMIT"); env != "" {
		// The runtime refuses to start on a value it cannot read, so a
		// value that got here is one it took.
		n, _ := ParseSize(env)
		if n == math.MaxInt64 || env == Off {
			n = 0
		}
		return Limit{Bytes: n, Source: FromEnv, Basis: "set in the environment, which wins over the configuration"}
	}
	switch {
	case !setting.Auto && setting.Bytes == 0:
		return Limit{Source: FromOff, Basis: "turned off in the configuration"}
	case !setting.Auto:
		return Limit{Bytes: setting.Bytes, Source: FromConfig, Basis: "a size given in the configuration"}
	}
	machine, machineErr := memTotal(sys.Root)
	cg, version, cgErr := cgroupLimit(sys.Root)
	// A cgroup limit at or above the machine's memory limits nothing.
	if cgErr == nil && (machineErr != nil || cg < machine) {
		return Limit{Bytes: cg / 100 * cgroupPercent, Source: FromCgroup,
			Basis: fmt.Sprintf("%d%% of the cgroup %s limit %s", cgroupPercent, version, FormatSize(cg))}
	}
	if machineErr == nil {
		return Limit{Bytes: machine / 100 * machinePercent, Source: FromMachine,
			Basis: fmt.Sprintf("%d%% of MemTotal %s", machinePercent, FormatSize(machine))}
	}
	// Both failed: one line for the log says why.
	return Limit{Source: FromNothing, Basis: fmt.Sprintf("%v; %v", cgErr, machineErr)}
}

// Set decides the limit and sets it in the runtime, unless it came from
// GOMEMLIMIT, which the runtime has set itself; then it reports the
// runtime's own value.
func Set(setting Setting, sys System) Limit {
	l := Decide(setting, sys)
	if l.Source == FromEnv {
		if n := debug.SetMemoryLimit(-1); n != math.MaxInt64 {
			l.Bytes = n
		}
		return l
	}
	if l.Bytes > 0 {
		debug.SetMemoryLimit(l.Bytes)
	} else {
		debug.SetMemoryLimit(math.MaxInt64)
	}
	return l
}
