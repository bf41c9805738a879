package cli

import (
	"path/filepath"
	"strings"
	"testing"

	"google.golang.org/grpc/credentials"

	"github.com/navarch/navarch/internal/rpcclient/standbytest"
)

// TestCommandsFollowTheLeader: given a standby and an address where
// nothing listens, by --server, $NAVARCH_SERVER or a context, a command
// is answered by the leader the standby names.
func TestCommandsFollowTheLeader(t *testing.T) {
	cp := fleetServer(t)
	pki := filepath.Join(cp.Config.DataDir, "pki")
	creds, err := credentials.NewServerTLSFromFile(filepath.Join(pki, "server.crt"), filepath.Join(pki, "server.key"))
	if err != nil {
		t.Fatal(err)
	}
	standby := standbytest.Start(t, standbytest.Options{Creds: creds, Leader: cp.Addr})
	list := standby.Addr + "," + standbytest.DeadAddr(t)
	getNodes := func(t *testing.T, args ...string) {
		t.Helper()
		before := standby.Calls()
		code, out, errOut := navarch(t, append(args, "get", "nodes")...)
		if code != ExitOK || !strings.Contains(out, "gpu-1") {
			t.Fatalf("exit %d, stdout %q, stderr %q", code, out, errOut)
		}
		if standby.Calls() == before {
			t.Fatal("the standby listed first was not called: the test shows nothing")
		}
	}
	t.Run("flag", func(t *testing.T) { getNodes(t, "--server", list) })
	t.Run("environment", func(t *testing.T) {
		t.Setenv("NAVARCH_SERVER", list)
		getNodes(t)
	})
	t.Run("context", func(t *testing.T) {
		if code, _, errOut := navarch(t, "config", "set-context", "ha", "--server", list); code != ExitOK {
			t.Fatalf("set-context: %d %s", code, errOut)
		}
		getNodes(t, "--context", "ha")
	})
	t.Run("bad-address", func(t *testing.T) {
		if code, _, errOut := navarch(t, "--server", list+",nowhere", "get", "nodes"); code != ExitUsage || !strings.Contains(errOut, `"nowhere" is not HOST:PORT`) {
			t.Fatalf("exit %d, stderr %q", code, errOut)
		}
	})
}
