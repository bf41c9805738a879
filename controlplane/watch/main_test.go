package watch

import (
	"os"
	"testing"
)

// TestMain runs the test binary as BenchmarkIdleWatchers' client when that
// benchmark starts it so, and as the tests otherwise.
func TestMain(m *testing.M) {
	if addr := os.Getenv(watchClientAddrEnv); addr != "" {
		os.Exit(runWatchClient(addr))
	}
	os.Exit(m.Run())
}
