package controlplane_test

import (
	"os"
	"testing"
)

// TestMain runs the test binary as BenchmarkCommandWaits' agents when that
// benchmark starts it so, and as the tests otherwise.
func TestMain(m *testing.M) {
	if addr := os.Getenv(waitClientAddrEnv); addr != "" {
		os.Exit(runWaitClient(addr))
	}
	os.Exit(m.Run())
}
