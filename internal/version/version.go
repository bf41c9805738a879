// Package version holds the build's version, commit and date. The build
// task sets them at link time:
//
//	-ldflags "-X github.com/navarch/navarch/internal/version.Version=v1.2.3
//	          -X github.com/navarch/navarch/internal/version.Date=2026-11-29T16:00:00Z"
//
// A plain `go build` in a checkout still knows its commit from Go's VCS
// stamp, and takes the commit's time for the date.
package version

import (
	"fmt"
	"runtime"
	"runtime/debug"
)

// Version is the release version, from the git tag; "dev" for builds that
// are not of a tag.
var Version = "dev"

// Date is when the binary was built (RFC 3339); empty leaves the commit's
// time.
var Date = ""

// Info is what a build knows of itself.
type Info struct {
	Version string
	// Commit is the VCS revision, with "-dirty" when the work tree had
	// changes; empty when the build has no VCS stamp.
	Commit string
	// Date is the build date, or the commit's when the build set none.
	Date string
}

// Get returns the build's version, commit and date.
func Get() Info {
	i := Info{Version: Version, Date: Date}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return i
	}
	dirty := false
	var commitTime string
	for _, s := range info.Settings {
		switch s.Key {
		case "vcs.revision":
			i.Commit = s.Value
		case "vcs.modified":
			dirty = s.Value == "true"
		case "vcs.time":
			commitTime = s.Value
		}
	}
	if dirty && i.Commit != "" {
		i.Commit += "-dirty"
	}
	if i.Date == "" {
		i.Date = commitTime
	}
	return i
}

// String returns the version, with the short VCS revision when the build
// has one: what agents report and logs carry.
func String() string {
	i := Get()
	if len(i.Commit) >= 12 {
		return i.Version + "+" + i.Commit[:12]
	}
	return i.Version
}

// Long is what `--version` prints: the program's name, version, commit,
// date, Go version and platform.
func Long(program string) string {
	i := Get()
	commit, date := i.Commit, i.Date
	if commit == "" {
		commit = "unknown"
	}
	if date == "" {
		date = "unknown"
	}
	return fmt.Sprintf("%s %s (commit %s, built %s, %s %s/%s)", program, i.Version, commit, date, runtime.Version(), runtime.GOOS, runtime.GOARCH)
}
