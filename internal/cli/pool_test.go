package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/navarch/navarch/controlplane/provider"
	"github.com/navarch/navarch/controlplane/provider/providertest"
	"github.com/navarch/navarch/internal/cptest"
	"github.com/navarch/navarch/internal/rpcclient"
	controlplanev1 "github.com/navarch/navarch/proto/navarch/controlplane/v1"
	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
	nodev1 "github.com/navarch/navarch/proto/navarch/node/v1"
)

func TestParsePoolSpec(t *testing.T) {
	full := &fleetv1.PoolSpec{
		Providers: []string{"aws", "gcp"}, InstanceType: "p5.48xlarge", Min: 1, Max: 8, MaxSurge: 2,
		Labels: map[string]string{"team": "ml"}, ReplaceUnhealthy: true, UnhealthyGrace: durationpb.New(10 * time.Minute),
		DrainTimeout: durationpb.New(90 * time.Second),
		Autoscaling: &fleetv1.Autoscaling{
			Utilization: &fleetv1.UtilizationScaling{ScaleUpAbove: 80, ScaleDownBelow: 20, Cooldown: durationpb.New(1500 * time.Millisecond)},
			Schedules:   []*fleetv1.ScheduledScaling{{Cron: "0 8 * * 1-5", Duration: durationpb.New(10 * time.Hour), Size: 6}},
		},
	}
	tests := []struct {
		name    string
		in      string
		want    *fleetv1.PoolSpec
		wantErr string
	}{
		{"yaml-api-names-operator-durations", `
providers: [aws, gcp]
instance_type: p5.48xlarge
min: 1
max: 8
max_surge: 2
labels: {team: ml}
replace_unhealthy: true
unhealthy_grace: 10m
drain_timeout: 1m30s
autoscaling:
  utilization: {scale_up_above: 80, scale_down_below: 20, cooldown: 1.5s}
  schedules:
    - cron: "0 8 * * 1-5"
      duration: 10h
      size: 6
`, full, ""},
		{"json-camel-case-proto-durations", `{"providers": ["aws", "gcp"], "instanceType": "p5.48xlarge", "min": 1, "max": 8, "maxSurge": 2,
"labels": {"team": "ml"}, "replaceUnhealthy": true, "unhealthyGrace": "600s", "drainTimeout": "90s",
"autoscaling": {"utilization": {"scaleUpAbove": 80, "scaleDownBelow": 20, "cooldown": "1.500s"},
"schedules": [{"cron": "0 8 * * 1-5", "duration": "36000s", "size": 6}]}}`, full, ""},
		{"unknown-field", "providers: [aws]\nmax: 2\nmaxx: 3\n", nil, `unknown field "maxx"`},
		{"bad-duration", "providers: [aws]\nautoscaling:\n  schedules:\n    - duration: soon\n", nil,
			`autoscaling.schedules[0].duration: "soon" is not a duration such as 90s, 30m, 2h or 9d`},
		{"wrong-type", "providers: aws\n", nil, "providers: is a list, such as [a, b]"},
		{"wrong-scalar", "providers: [aws]\nmin: two\n", nil, `invalid value for uint32 field min: "two"`},
		{"wrong-nesting", "providers: [aws]\nautoscaling:\n  utilization: 80\n", nil, "autoscaling.utilization: is a mapping of its fields"},
		{"not-a-mapping", "- aws\n- gcp\n", nil, "a pool spec is a mapping of its fields"},
		{"bad-yaml", "providers: [aws\n", nil, "not YAML"},
		{"bad-json", `{"providers": [}`, nil, "not JSON"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := parsePoolSpec([]byte(tt.in))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("error %v, want one with %q", err, tt.wantErr)
				}
				if strings.HasPrefix(err.Error(), "proto:") {
					t.Errorf("error %q keeps protojson's prefix", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !proto.Equal(got, tt.want) {
				t.Fatalf("got %v\nwant %v", got, tt.want)
			}
		})
	}
}

func TestProtoDuration(t *testing.T) {
	tests := []struct {
		name string
		in   time.Duration
		want string
	}{
		{"whole", 10 * time.Minute, "600s"},
		{"fraction", 1500 * time.Millisecond, "1.500000000s"},
		{"nanos", time.Nanosecond, "0.000000001s"},
		{"negative", -1500 * time.Millisecond, "-1.500000000s"},
		{"zero", 0, "0s"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := protoDuration(tt.in); got != tt.want {
				t.Errorf("%q, want %q", got, tt.want)
			}
		})
	}
}

// fixturePool is a pool one node short of its wanted size, autoscaled,
// with two decisions.
func fixturePool(now time.Time) *fleetv1.Pool {
	return &fleetv1.Pool{
		Name: "train", Wanted: 4, FromConfig: true, WantedChangedAt: timestamppb.New(now.Add(-5 * time.Minute)),
		Spec: &fleetv1.PoolSpec{Providers: []string{"aws", "gcp"}, Min: 2, Max: 8, ReplaceUnhealthy: true, Zones: []string{"a", "b"},
			Autoscaling: &fleetv1.Autoscaling{Utilization: &fleetv1.UtilizationScaling{ScaleUpAbove: 80, ScaleDownBelow: 20}}},
		Status: &fleetv1.PoolStatus{Nodes: 3, Provisioning: 1, Healthy: 2, Unhealthy: 1, Utilization: 67},
		Decisions: []*fleetv1.PoolDecision{
			{At: timestamppb.New(now.Add(-2 * time.Minute)), Action: fleetv1.PoolAction_POOL_ACTION_PROVISION, By: "reconciler",
				Reason: "1 node short of the wanted 4", NodeIds: []string{"gpu-a04"}},
			{At: timestamppb.New(now.Add(-5 * time.Minute)), Action: fleetv1.PoolAction_POOL_ACTION_SCALE, By: "ci", Reason: "scaled from 3 to 4"},
		},
	}
}

func TestWritePools(t *testing.T) {
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	spare := &fleetv1.Pool{Name: "spare", Spec: &fleetv1.PoolSpec{Providers: []string{"static"}, Max: 2}}
	var b bytes.Buffer
	if err := writePools(&b, []*fleetv1.Pool{spare, fixturePool(now)}, now); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(b.String()), "\n")
	want := [][]string{
		{"NAME", "PROVIDERS", "SIZE", "WANTED", "MIN", "MAX", "PROVISIONING", "UNHEALTHY", "AUTOSCALE", "LAST-DECISION"},
		{"spare", "static", "0", "0", "0", "2", "0", "0", "off", "-"},
		{"train", "aws,gcp", "3", "4", "2", "8", "1", "1", "on", "provision", "2m", "ago:", "1", "node", "short", "of", "the", "wanted", "4"},
	}
	if len(lines) != len(want) {
		t.Fatalf("%d lines:\n%s", len(lines), b.String())
	}
	for i, l := range lines {
		if got := strings.Fields(l); strings.Join(got, " ") != strings.Join(want[i], " ") {
			t.Errorf("line %d: %q, want %q", i, got, want[i])
		}
	}
}

func TestWritePool(t *testing.T) {
	now := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	var b bytes.Buffer
	if err := writePool(&b, fixturePool(now), now); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []*regexp.Regexp{
		regexp.MustCompile(`(?m)^Pool:\s+train$`),
		regexp.MustCompile(`(?m)^Defined in:\s+the configuration file: the API may scale it, not change or delete it$`),
		regexp.MustCompile(`(?m)^Providers:\s+aws, then gcp$`),
		regexp.MustCompile(`(?m)^Size:\s+3 nodes, 4 wanted \(min 2, max 8\); wanted since 5m ago$`),
		regexp.MustCompile(`(?m)^Nodes:\s+2 healthy, 0 degraded, 1 unhealthy; 1 provisioning, 0 offline, 0 removing$`),
		regexp.MustCompile(`(?m)^Utilisation:\s+67%$`),
		regexp.MustCompile(`(?m)^Instance type:\s+the provider's default$`),
		regexp.MustCompile(`(?m)^Zones:\s+a, then b$`),
		regexp.MustCompile(`(?m)^Replace:\s+nodes UNHEALTHY or OFFLINE past the control plane's default, drained first$`),
		regexp.MustCompile(`(?m)^Autoscaling:\s+utilisation: up above 80%, down below 20%, over the control plane's default`),
		regexp.MustCompile(`(?m)^  2m\s+PROVISION\s+reconciler\s+gpu-a04\s+1 node short of the wanted 4\n  5m\s+SCALE\s+ci\s+-\s+scaled from 3 to 4$`),
	} {
		if !want.MatchString(out) {
			t.Errorf("lacks %s:\n%s", want, out)
		}
	}
}

// TestPoolCommandsCheckTheirInput: bad input is refused before the
// control plane is called, naming the flag or argument, with exit 2.
func TestPoolCommandsCheckTheirInput(t *testing.T) {
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("providers: [aws]\nmaxx: 3\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	rows := []struct {
		name string
		args []string
		want string
	}{
		{"scale-without-to", []string{"pool", "scale", "train"}, "pool scale needs --to N"},
		{"scale-bad-to", []string{"pool", "scale", "train", "--to", "many"}, `invalid value "many" for flag -to: not a number of nodes`},
		{"scale-negative-to", []string{"pool", "scale", "train", "--to", "-1"}, "-to"},
		{"scale-without-name", []string{"pool", "scale", "--to", "3"}, "pool scale needs exactly one pool name"},
		{"put-without-file", []string{"pool", "put", "train"}, "pool put needs -f FILE"},
		{"put-missing-file", []string{"pool", "put", "train", "-f", filepath.Join(dir, "none.yaml")}, "-f: open "},
		{"put-bad-spec", []string{"pool", "put", "train", "--file", bad}, `-f ` + bad + `: unknown field "maxx"`},
		{"put-no-stdin", []string{"pool", "put", "train", "-f", "-"}, "-f -: there is no standard input to read"},
		{"put-two-names", []string{"pool", "put", "a", "b", "-f", bad}, "pool put needs exactly one pool name"},
		{"delete-without-name", []string{"pool", "delete"}, "pool delete needs exactly one pool name"},
		{"unknown-action", []string{"pool", "grow", "train"}, `pool: unknown action "grow"`},
		{"get-pools-argument", []string{"get", "pools", "train"}, "did you mean 'get pool train'?"},
		{"get-pool-without-name", []string{"get", "pool"}, "get pool needs exactly one pool name"},
		{"get-pool-bad-output", []string{"get", "pool", "train", "-o", "yaml"}, "table or json"},
		{"power-cycle-without-id", []string{"power-cycle"}, "power-cycle needs exactly one node id"},
		{"power-cycle-bad-flag", []string{"power-cycle", "gpu-1", "--hard"}, "-hard"},
	}
	for _, row := range rows {
		t.Run(row.name, func(t *testing.T) {
			code, out, errOut := navarch(t, row.args...)
			if code != ExitUsage || out != "" || !strings.Contains(errOut, row.want) {
				t.Fatalf("exit %d (want %d), stdout %q, stderr %q (want %q)", code, ExitUsage, out, errOut, row.want)
			}
		})
	}
}

// powerCycler is the test provider with a BMC: it power-cycles what it
// started, and records which.
type powerCycler struct {
	*providertest.Recorder
	mu     sync.Mutex
	cycled []string
}

func (p *powerCycler) PowerCycle(_ context.Context, inst provider.Instance) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cycled = append(p.cycled, inst.NodeID)
	return nil
}

// poolServer is server's control plane, offering the test provider,
// which power-cycles machines.
func poolServer(t *testing.T) (*cptest.ControlPlane, *powerCycler) {
	t.Helper()
	pc := &powerCycler{Recorder: &providertest.Recorder{}}
	cp := cptest.Start(t, cptest.Options{Providers: func(rpcclient.Target) []provider.Provider { return []provider.Provider{pc} }})
	t.Setenv("XDG_STATE_HOME", t.TempDir())
	t.Setenv("XDG_CONFIG_HOME", t.TempDir())
	t.Setenv("NAVARCH_CA_CERT", cp.Server.CAFile())
	t.Setenv("NAVARCH_TOKEN", cp.Target().Token)
	return cp, pc
}

// TestPoolCommands: a pool is created from a YAML file, listed, shown,
// scaled within its bounds and deleted, against a real control plane;
// each refusal exits with its code.
func TestPoolCommands(t *testing.T) {
	cp, _ := poolServer(t)
	addr := cp.Addr
	spec := filepath.Join(t.TempDir(), "batch.yaml")
	if err := os.WriteFile(spec, []byte("providers: [test]\nmin: 0\nmax: 3\nunhealthy_grace: 15m\nlabels: {team: ml}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	viewer := newToken(t, addr, "dash", "viewer")
	steps := []struct {
		name string
		args []string
		code int
		out  *regexp.Regexp
		err  string
	}{
		{"put-creates", []string{"pool", "put", "batch", "-f", spec}, ExitOK, regexp.MustCompile(`^pool batch created: wanted 0 \(min 0, max 3\)\n$`), ""},
		{"put-replaces", []string{"pool", "put", "batch", "-f", spec}, ExitOK, regexp.MustCompile(`^pool batch updated: wanted 0 \(min 0, max 3\)\n$`), ""},
		{"get-pools", []string{"get", "pools"}, ExitOK,
			regexp.MustCompile(`(?m)^NAME\s+PROVIDERS\s+SIZE\s+WANTED\s+MIN\s+MAX\s+PROVISIONING\s+UNHEALTHY\s+AUTOSCALE\s+LAST-DECISION\nbatch\s+test\s+0\s+0\s+0\s+3\s+0\s+0\s+off\s+spec \S+ ago: pool spec replaced`), ""},
		{"get-pool", []string{"get", "pool", "batch"}, ExitOK,
			regexp.MustCompile(`(?ms)^Pool:\s+batch$.*^Defined in:\s+the API.*^Labels:\s+team=ml$.*^Replace:\s+off$.*^Decisions \(newest first\):`), ""},
		{"scale", []string{"pool", "scale", "batch", "--to", "2", "--reason", "nightly run"}, ExitOK,
			regexp.MustCompile(`^pool batch: wanted 2 \(min 0, max 3\); \d+ nodes now\n$`), ""},
		{"scale-past-max", []string{"pool", "scale", "batch", "--to", "4"}, ExitRefused, nil, "wanted: 4 is outside the pool's min 0 and max 3"},
		{"scale-unknown", []string{"pool", "scale", "nope", "--to", "1"}, ExitNotFound, nil, `no pool "nope"`},
		{"viewer-cannot-scale", []string{"--token", viewer, "pool", "scale", "batch", "--to", "1"}, ExitDenied, nil,
			"permission denied: this token's role is viewer; pool scale needs operator"},
		{"get-unknown", []string{"get", "pool", "nope"}, ExitNotFound, nil, `no pool "nope" ('navarch get pools' lists them)`},
		{"put-unknown-provider", []string{"pool", "put", "other", "-f", writeSpec(t, "providers: [cloud9]\nmax: 1\n")}, ExitRefused, nil, `provider "cloud9" is not offered here`},
		{"delete", []string{"pool", "delete", "batch"}, ExitOK, regexp.MustCompile(`^pool batch deleted; its nodes stay, kept by no pool`), ""},
		{"delete-again", []string{"pool", "delete", "batch"}, ExitNotFound, nil, `no pool "batch"`},
	}
	for _, s := range steps {
		code, out, errOut := navarch(t, append([]string{"--server", addr}, s.args...)...)
		if code != s.code || (s.out != nil && !s.out.MatchString(out)) || !strings.Contains(errOut, s.err) {
			t.Fatalf("%s: exit %d (want %d)\nstdout %q (want %v)\nstderr %q (want %q)", s.name, code, s.code, out, s.out, errOut, s.err)
		}
	}

	code, out, errOut := navarch(t, "--server", addr, "get", "pools", "-o", "json")
	var list struct {
		Pools []json.RawMessage `json:"pools"`
	}
	if err := json.Unmarshal([]byte(out), &list); code != ExitOK || err != nil || len(list.Pools) != 0 {
		t.Fatalf("get pools -o json after the delete: exit %d, %v, %q\n%s", code, err, errOut, out)
	}
}

// TestPoolPutReadsStdin: -f - reads the spec from stdin, here as JSON.
func TestPoolPutReadsStdin(t *testing.T) {
	cp, _ := poolServer(t)
	var out, errOut bytes.Buffer
	env := Env{Stdout: &out, Stderr: &errOut, Stdin: strings.NewReader(`{"providers": ["test"], "min": 1, "max": 2, "maxSurge": 1}`)}
	if code := Main(context.Background(), []string{"--server", cp.Addr, "pool", "put", "piped", "-f", "-"}, env); code != ExitOK {
		t.Fatalf("exit %d: %s", code, errOut.String())
	}
	if got := out.String(); got != "pool piped created: wanted 1 (min 1, max 2)\n" {
		t.Fatalf("stdout %q", got)
	}
	resp, err := cp.Ops.ListPools(context.Background(), &controlplanev1.ListPoolsRequest{})
	if err != nil || len(resp.GetPools()) != 1 || resp.GetPools()[0].GetSpec().GetMaxSurge() != 1 {
		t.Fatalf("pools %v, %v", resp.GetPools(), err)
	}
}

func writeSpec(t *testing.T, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "spec.yaml")
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// TestPowerCycle: a node whose agent never came up is power-cycled
// through its provider; an ONLINE one only with --force; an unknown node
// and a node whose provider cannot are refused with their codes.
func TestPowerCycle(t *testing.T) {
	cp, pc := poolServer(t)
	ctx := context.Background()
	resp, err := cp.Ops.ProvisionNodes(ctx, &controlplanev1.ProvisionNodesRequest{Provider: "test", Count: 2})
	if err != nil {
		t.Fatal(err)
	}
	silent, online := resp.GetNodes()[0].GetNodeId(), resp.GetNodes()[1].GetNodeId()
	for _, id := range []string{online, "gpu-9"} {
		if _, err := cp.Nodes.RegisterNode(ctx, &nodev1.RegisterNodeRequest{NodeId: id, Gpus: []*fleetv1.Gpu{{Index: 0, Uuid: "GPU-" + id}}}); err != nil {
			t.Fatal(err)
		}
	}
	rows := []struct {
		name string
		args []string
		code int
		out  string
		err  string
	}{
		{"silent", []string{"power-cycle", silent, "--reason", "hung"}, ExitOK, silent + ": power cycle asked of its provider; it is PROVISIONING", ""},
		{"online", []string{"power-cycle", online}, ExitRefused, "", "agent is ONLINE, not OFFLINE: it may be running work; power-cycle it with force"},
		{"online-forced", []string{"power-cycle", online, "--force"}, ExitOK, online + ": power cycle asked of its provider; it is ACTIVE, ONLINE", ""},
		{"unknown", []string{"power-cycle", "nope"}, ExitNotFound, "", "nope: no such node"},
		{"no-power-cycler", []string{"power-cycle", "gpu-9", "--force"}, ExitRefused, "", "cannot power-cycle machines"},
		{"bad-id", []string{"power-cycle", "bad/id"}, ExitRefused, "", "node_id"},
	}
	for _, row := range rows {
		t.Run(row.name, func(t *testing.T) {
			code, out, errOut := navarch(t, append([]string{"--server", cp.Addr}, row.args...)...)
			if code != row.code || !strings.HasPrefix(out, row.out) || !strings.Contains(errOut, row.err) {
				t.Fatalf("exit %d (want %d), stdout %q (want %q), stderr %q (want %q)", code, row.code, out, row.out, errOut, row.err)
			}
		})
	}
	pc.mu.Lock()
	defer pc.mu.Unlock()
	if want := []string{silent, online}; strings.Join(pc.cycled, " ") != strings.Join(want, " ") {
		t.Fatalf("power-cycled %v, want %v", pc.cycled, want)
	}
}
