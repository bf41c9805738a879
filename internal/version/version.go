// Package version holds the build's version, set at link time with
// -ldflags "-X github.com/navarch/navarch/internal/version.Version=v1.2.3".
package version

import "runtime/debug"

// Version is the release version; "dev" for builds from a work tree.
var Version = "dev"

// String returns the version, with the VCS revision when the build has one.
func String() string {
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, s := range info.Settings {
			if s.Key == "vcs.revision" && len(s.Value) >= 12 {
				return Version + "+" + s.Value[:12]
			}
		}
	}
	return Version
}
