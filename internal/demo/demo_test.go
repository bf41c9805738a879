package demo

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/navarch/navarch/internal/logging"
	"github.com/navarch/navarch/internal/rpcclient"
	controlplanev1 "github.com/navarch/navarch/proto/navarch/controlplane/v1"
	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
	"github.com/navarch/navarch/sim"
)

var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "navarch-demo-test")
	if err != nil {
		panic(err)
	}
	binDir = dir
	for _, cmd := range []string{"navarch-controlplane", "navarch-agent"} {
		out, err := exec.Command("go", "build", "-o", filepath.Join(dir, cmd), "github.com/navarch/navarch/cmd/"+cmd).CombinedOutput()
		if err != nil {
			fmt.Fprintf(os.Stderr, "build %s: %v\n%s", cmd, err, out)
			os.Exit(1)
		}
	}
	code := m.Run()
	_ = os.RemoveAll(dir)
	os.Exit(code)
}

// console stands in for the operator: it waits for the fleet, checks it,
// and quits.
func console(t *testing.T, want int, check func(*controlplanev1.ListNodesResponse)) func(context.Context, rpcclient.Target, string) error {
	return func(ctx context.Context, server rpcclient.Target, note string) error {
		if !strings.Contains(note, "--server "+server.Addr) {
			return fmt.Errorf("the console's note %q does not say how to reach %s", note, server.Addr)
		}
		conn, err := rpcclient.Dial(server)
		if err != nil {
			return err
		}
		defer conn.Close()
		ops := controlplanev1.NewControlPlaneServiceClient(conn)
		deadline := time.Now().Add(60 * time.Second)
		for time.Now().Before(deadline) {
			list, err := ops.ListNodes(ctx, &controlplanev1.ListNodesRequest{PageSize: 1000, Lifecycle: []fleetv1.LifecycleState{fleetv1.LifecycleState_LIFECYCLE_STATE_ACTIVE, fleetv1.LifecycleState_LIFECYCLE_STATE_CORDONED}})
			pools, perr := ops.ListPools(ctx, &controlplanev1.ListPoolsRequest{})
			// The demo's pool keeps nodes of its own besides the fleet's.
			if err == nil && perr == nil && len(pools.GetPools()) == 1 && pools.GetPools()[0].GetName() == "burst" &&
				int(list.GetTotalSize()) == want+int(pools.GetPools()[0].GetStatus().GetNodes()) && pools.GetPools()[0].GetStatus().GetNodes() >= 2 {
				check(list)
				return nil
			}
			time.Sleep(100 * time.Millisecond)
		}
		return fmt.Errorf("the demo fleet never reached %d nodes", want)
	}
}

func agentsRunning(t *testing.T) int {
	out, _ := exec.Command("pgrep", "-f", filepath.Join(binDir, "navarch-")).Output()
	return len(strings.Fields(string(out)))
}

// TestDemoRunsAndCleansUp runs the demo with real processes, lets the
// stand-in console see the fleet, quits, and checks nothing is left.
func TestDemoRunsAndCleansUp(t *testing.T) {
	dataDir := t.TempDir()
	var out bytes.Buffer
	o := Options{Nodes: 3, GPUs: 2, DataDir: dataDir, BinDir: binDir, FaultEvery: time.Second, Stdout: &out, Stderr: io.Discard,
		Log: logging.Flags{Level: "info", Format: "json"}}
	o.Console = console(t, 3, func(list *controlplanev1.ListNodesResponse) {
		for _, n := range list.GetNodes() {
			if n.GetPool() != "" {
				continue // the demo pool's own
			}
			if n.GetProvider() != "local" || len(n.GetGpus()) != 2 || n.GetLabels()["pool"] != "demo" {
				t.Errorf("demo node %v", n)
			}
		}
	})
	if err := Run(context.Background(), o); err != nil {
		t.Fatal(err)
	}
	checkProgress(t, out.String(), dataDir)
	if n := agentsRunning(t); n != 0 {
		t.Fatalf("%d demo processes left running", n)
	}
	if _, err := os.Stat(filepath.Join(dataDir, "store")); err != nil {
		t.Fatalf("no store: %v", err)
	}
	checkJSONLog(t, filepath.Join(dataDir, "controlplane.log"))
	o.Log = logging.Flags{}
	// A second run starts clean: the fleet is new, not resumed.
	o.Console = console(t, 3, func(*controlplanev1.ListNodesResponse) {})
	if err := Run(context.Background(), o); err != nil {
		t.Fatal(err)
	}
}

// checkProgress checks that the demo said, before the console opened, that
// the control plane came up and each agent registered, and how to reach it
// from elsewhere, also in a file that outlives the console's screen.
func checkProgress(t *testing.T, out, dataDir string) {
	t.Helper()
	before, _, opened := strings.Cut(out, "opening the console")
	if !opened {
		t.Fatalf("the demo never said it opened the console:\n%s", out)
	}
	for _, want := range []string{"starting the control plane on 127.0.0.1:", "control plane serving", "provisioned 3 nodes", "agents registered 3/3", "from another terminal: navarch --server 127.0.0.1:"} {
		if !strings.Contains(before, want) {
			t.Errorf("the demo's output before the console lacks %q:\n%s", want, out)
		}
	}
	note, err := os.ReadFile(filepath.Join(dataDir, ConnectFile))
	if err != nil {
		t.Fatal(err)
	}
	ca := filepath.Join(dataDir, "store", "pki", "ca.crt")
	token := filepath.Join(dataDir, "store", "admin.token")
	for _, want := range []string{"navarch --server 127.0.0.1:", "--ca-cert " + ca, token} {
		if !strings.Contains(string(note), want) {
			t.Errorf("%s = %q, lacks %q", ConnectFile, note, want)
		}
	}
	if !strings.Contains(out, strings.TrimSpace(string(note))) {
		t.Errorf("the demo printed a different way in than %s holds (%q):\n%s", ConnectFile, note, out)
	}
}

// checkJSONLog checks that the control plane wrote its log as JSON, with
// the demo's provisioning in its request log.
func checkJSONLog(t *testing.T, path string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	provisioned := false
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("%s: a line that is not JSON: %q", path, line)
		}
		method, _ := rec["method"].(string)
		provisioned = provisioned || (strings.HasSuffix(method, "/ProvisionNodes") && rec["level"] == "INFO" && rec["caller"] == "admin")
	}
	if !provisioned {
		t.Fatalf("%s logs no ProvisionNodes call by the admin:\n%s", path, b)
	}
}

func TestLargeDemoRunsInProcess(t *testing.T) {
	o := Options{Nodes: 40, GPUs: 2, DataDir: t.TempDir(), BinDir: binDir, Stdout: io.Discard, Stderr: io.Discard}
	o.InProcess = func(ctx context.Context, server rpcclient.Target, n, gpus int, faultEvery time.Duration) error {
		f, err := sim.New(sim.Options{Server: server, Nodes: n, GPUs: gpus})
		if err != nil {
			return err
		}
		defer f.Close()
		return f.Run(ctx)
	}
	o.Console = console(t, 40, func(*controlplanev1.ListNodesResponse) {})
	if err := Run(context.Background(), o); err != nil {
		t.Fatal(err)
	}
	if n := agentsRunning(t); n != 0 {
		t.Fatalf("%d demo processes left running", n)
	}
}

func TestParseArgs(t *testing.T) {
	var o Options
	if err := ParseArgs([]string{"--nodes", "500", "--keep", "--log-format", "json"}, &o); err != nil || o.Nodes != 500 || !o.Keep || o.Log.Format != "json" {
		t.Fatalf("%+v %v", o, err)
	}
	bad := []struct {
		args []string
		want string
	}{
		{[]string{"--nodes", "0"}, "--nodes"},
		{[]string{"--nodes", "5000"}, "--nodes"},
		{[]string{"--gpus", "99"}, "--gpus"},
		{[]string{"extra"}, "unexpected argument"},
		{[]string{"--bogus"}, "bogus"},
		{[]string{"--log-format", "xml"}, `--log-format: "xml" is not text or json`},
		{[]string{"--log-level", "loud"}, `--log-level: "loud"`},
	}
	for _, b := range bad {
		if err := ParseArgs(b.args, &Options{}); err == nil || !strings.Contains(err.Error(), b.want) {
			t.Errorf("%v: %v, want an error naming %s", b.args, err, b.want)
		}
	}
}

func TestDemoRequests(t *testing.T) {
	reqs := demoRequests(Options{Nodes: 12, GPUs: 8, FaultEvery: 5 * time.Second})
	if len(reqs) != 2 || reqs[0].GetCount()+reqs[1].GetCount() != 12 {
		t.Fatalf("requests %v", reqs)
	}
	for _, r := range reqs {
		if r.GetChaosInterval().AsDuration() != time.Minute || r.GetLabels()["pool"] != "demo" || r.GetGpusPerNode() != 8 {
			t.Fatalf("request %v", r)
		}
	}
	if got := reqs[1].GetSimFaults(); len(got) != 1 || got[0] != "xid=79@gpu3+40s" || reqs[1].GetCount() != 1 {
		t.Fatalf("early fault %v", reqs[1])
	}
	if got := demoRequests(Options{Nodes: 3, GPUs: 2, FaultEvery: time.Second})[1].GetSimFaults()[0]; got != "xid=79@gpu1+40s" {
		t.Fatalf("early fault on a 2-GPU node: %q", got)
	}
	quiet := demoRequests(Options{Nodes: 12, GPUs: 8})
	if len(quiet) != 1 || quiet[0].GetCount() != 12 || quiet[0].GetChaosInterval() != nil || len(quiet[0].GetSimFaults()) != 0 {
		t.Fatalf("without faults: %v", quiet)
	}
}
