package cli

import (
	"bytes"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"text/tabwriter"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/navarch/navarch/controlplane"
	"github.com/navarch/navarch/internal/cptest"
	"github.com/navarch/navarch/internal/etcdtest"
	"github.com/navarch/navarch/internal/testutil"
	controlplanev1 "github.com/navarch/navarch/proto/navarch/controlplane/v1"
)

// TestWriteControlPlanes: the leader comes first, then each standby,
// then the last failover, with ages as the rest of the CLI writes them.
func TestWriteControlPlanes(t *testing.T) {
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	at := func(ago time.Duration) *timestamppb.Timestamp { return timestamppb.New(now.Add(-ago)) }
	tests := []struct {
		name string
		cps  *controlplanev1.ControlPlanes
		want string
	}{
		{"alone", &controlplanev1.ControlPlanes{
			Leader:  "cp-1:50051",
			Members: []*controlplanev1.ControlPlaneMember{{Address: "cp-1:50051", Version: "v0.9.0", Since: at(3 * time.Hour), Leader: true}},
		}, `
Leader:         cp-1:50051  v0.9.0  joined 3h ago
Standby:        none: nothing takes over if the leader stops
Last failover:  none
`},
		{"standbys-and-failover", &controlplanev1.ControlPlanes{
			Leader: "cp-2:50051",
			Members: []*controlplanev1.ControlPlaneMember{
				{Address: "cp-1:50051", Version: "v0.9.0", Since: at(10 * time.Minute)},
				{Address: "cp-2:50051", Version: "v0.9.0", Since: at(2 * time.Hour), Leader: true},
				{Address: "cp-3:50051", Version: "v0.9.1", Since: at(30 * time.Second)},
			},
			LastFailover: &controlplanev1.Failover{From: "cp-1:50051", To: "cp-2:50051", At: at(5 * time.Minute)},
		}, `
Leader:         cp-2:50051  v0.9.0  joined 2h ago
Standby:        cp-1:50051  v0.9.0  joined 10m ago
Standby:        cp-3:50051  v0.9.1  joined 30s ago
Last failover:  cp-1:50051 → cp-2:50051, 5m ago
`},
		{"leader-not-listed", &controlplanev1.ControlPlanes{
			Leader:  "cp-1:50051",
			Members: []*controlplanev1.ControlPlaneMember{{Address: "cp-2:50051", Version: "v0.9.0", Since: at(time.Minute)}},
		}, `
Leader:         cp-1:50051  -       -
Standby:        cp-2:50051  v0.9.0  joined 1m ago
Last failover:  none
`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var out bytes.Buffer
			tw := tabwriter.NewWriter(&out, 0, 0, 2, ' ', 0)
			writeControlPlanes(tw, tt.cps, now)
			if err := tw.Flush(); err != nil {
				t.Fatal(err)
			}
			if got, want := out.String(), strings.TrimPrefix(tt.want, "\n"); got != want {
				t.Fatalf("got\n%s\nwant\n%s", got, want)
			}
		})
	}
}

// TestGetStatusWithoutControlPlanes: a lone control plane (store badger)
// has no election, and get status says nothing of one.
func TestGetStatusWithoutControlPlanes(t *testing.T) {
	addr := server(t)
	code, out, errOut := navarch(t, "--server", addr, "get", "status")
	if code != ExitOK || !strings.Contains(out, "Version:") {
		t.Fatalf("get status: %d\n%s%s", code, out, errOut)
	}
	for _, word := range []string{"Leader:", "Standby:", "Last failover:"} {
		if strings.Contains(out, word) {
			t.Fatalf("a lone control plane's status shows %q:\n%s", word, out)
		}
	}
	code, out, _ = navarch(t, "--server", addr, "get", "status", "-o", "json")
	if code != ExitOK || strings.Contains(out, "controlPlanes") {
		t.Fatalf("get status -o json: %d\n%s", code, out)
	}
}

// TestGetStatusShowsTheControlPlanes runs two control planes on one etcd:
// get status, through the standby, shows the leader that answered and the
// standby, and after the leader stops, the other leads and the failover
// from the first shows; -o json carries the same.
func TestGetStatusShowsTheControlPlanes(t *testing.T) {
	cluster, err := etcdtest.Start(1)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(cluster.Stop)
	t.Setenv("XDG_STATE_HOME", t.TempDir())
	t.Setenv("XDG_CONFIG_HOME", t.TempDir())
	dirA, dirB := t.TempDir(), t.TempDir()
	a := cptest.StartElected(t, cluster.Endpoints, "/status-test/", dirA)
	a.AwaitLead(t, 20*time.Second)
	tok, err := os.ReadFile(filepath.Join(dirA, "admin.token"))
	if err != nil {
		t.Fatal(err)
	}
	t.Setenv("NAVARCH_TOKEN", strings.TrimSpace(string(tok)))
	t.Setenv("NAVARCH_CA_CERT", filepath.Join(dirA, "pki", "ca.crt"))
	for _, f := range []string{"ca.crt", "ca.key"} {
		b, err := os.ReadFile(filepath.Join(dirA, "pki", f))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Join(dirB, "pki"), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dirB, "pki", f), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	b := cptest.StartElected(t, cluster.Endpoints, "/status-test/", dirB)
	servers := b.Addr + "," + a.Addr

	// The standby joins the election as it starts; until then the
	// leader is alone.
	var out string
	testutil.EventuallyWithin(t, 20*time.Second, "the standby to join the election", func() bool {
		var code int
		var errOut string
		code, out, errOut = navarch(t, "--server", servers, "get", "status")
		if code != ExitOK {
			t.Fatalf("get status: %d\n%s%s", code, out, errOut)
		}
		return strings.Contains(out, "Standby:        "+b.Addr)
	})
	for _, want := range []string{"Leader:         " + a.Addr + "  ", "joined ", "Standby:        " + b.Addr + "  ", "Last failover:  none"} {
		if !strings.Contains(out, want) {
			t.Fatalf("get status before a failover lacks %q:\n%s", want, out)
		}
	}

	if err := a.Stop(); err != nil && !errors.Is(err, controlplane.ErrLostLead) {
		t.Fatalf("the first control plane ended: %v", err)
	}
	b.AwaitLead(t, 20*time.Second)
	code, out, errOut := navarch(t, "--server", servers, "get", "status")
	if code != ExitOK {
		t.Fatalf("get status after the failover: %d\n%s%s", code, out, errOut)
	}
	for _, want := range []string{"Leader:         " + b.Addr + "  ", "Standby:        none", "Last failover:  " + a.Addr + " → " + b.Addr + ", "} {
		if !strings.Contains(out, want) {
			t.Fatalf("get status after the failover lacks %q:\n%s", want, out)
		}
	}
	code, out, errOut = navarch(t, "--server", servers, "get", "status", "-o", "json")
	var st struct {
		ControlPlanes struct {
			Leader  string `json:"leader"`
			Members []struct {
				Address string `json:"address"`
				Leader  bool   `json:"leader"`
			} `json:"members"`
			LastFailover struct {
				From string `json:"from"`
				To   string `json:"to"`
				At   string `json:"at"`
			} `json:"lastFailover"`
		} `json:"controlPlanes"`
	}
	if err := json.Unmarshal([]byte(out), &st); err != nil || code != ExitOK {
		t.Fatalf("get status -o json: %d %v\n%s%s", code, err, out, errOut)
	}
	cps := st.ControlPlanes
	if cps.Leader != b.Addr || len(cps.Members) != 1 || !cps.Members[0].Leader || cps.LastFailover.From != a.Addr || cps.LastFailover.To != b.Addr || cps.LastFailover.At == "" {
		t.Fatalf("controlPlanes in JSON: %+v", cps)
	}
}
