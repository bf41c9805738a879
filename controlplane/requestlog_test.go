package controlplane_test

import (
	"context"
	"encoding/json"
	"log/slog"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/navarch/navarch/controlplane"
	"github.com/navarch/navarch/internal/cptest"
	"github.com/navarch/navarch/internal/fleettest"
	"github.com/navarch/navarch/internal/logging"
	"github.com/navarch/navarch/internal/testutil"
	controlplanev1 "github.com/navarch/navarch/proto/navarch/controlplane/v1"
	nodev1 "github.com/navarch/navarch/proto/navarch/node/v1"
)

// requestLines are the request log's lines a control plane wrote as JSON.
func requestLines(t *testing.T, logs *testutil.SyncBuffer) []map[string]any {
	t.Helper()
	var out []map[string]any
	for _, line := range strings.Split(strings.TrimSpace(logs.String()), "\n") {
		var rec map[string]any
		if err := json.Unmarshal([]byte(line), &rec); err != nil {
			t.Fatalf("a line that is not JSON: %q: %v", line, err)
		}
		if rec["msg"] == "rpc" || rec["msg"] == "rpc failed" {
			out = append(out, rec)
		}
	}
	return out
}

// TestRequestLog: every call gets one line with its method, the node its
// request names, who called, how long it took and its code; the fleet's
// own traffic at debug, changes at info, failures at warn with their
// message; and no token, certificate or request body.
func TestRequestLog(t *testing.T) {
	var logs testutil.SyncBuffer
	cp := cptest.Start(t, cptest.Options{
		Config: func(c *controlplane.Config) { c.AgentIdentities = true },
		Logger: logging.New(&logs, slog.LevelDebug, logging.JSON),
	})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	joinTok, err := cp.Ops.CreateToken(ctx, &controlplanev1.CreateTokenRequest{Name: "rack-a", Role: controlplanev1.Role_ROLE_AGENT})
	if err != nil {
		t.Fatal(err)
	}
	agent := newMachine(t, cp)
	const wrongToken = "rack-a.wrong-secret-Zq81"
	if err := agent.join("gpu-1", wrongToken); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("a wrong join token: %v", err)
	}
	if err := agent.join("gpu-1", joinTok.GetToken()); err != nil {
		t.Fatal(err)
	}
	if err := agent.register("gpu-1"); err != nil {
		t.Fatal(err)
	}
	if _, err := agent.nodes().Heartbeat(ctx, &nodev1.HeartbeatRequest{NodeId: "gpu-1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := cp.Ops.CordonNode(ctx, &controlplanev1.CordonNodeRequest{NodeId: "gpu-1", Reason: "fan noise"}); err != nil {
		t.Fatal(err)
	}
	if _, err := cp.Ops.DrainNode(ctx, &controlplanev1.DrainNodeRequest{NodeId: "gpu-9"}); status.Code(err) != codes.NotFound {
		t.Fatalf("draining a node that does not exist: %v", err)
	}
	if _, err := cp.Ops.GetNode(ctx, &controlplanev1.GetNodeRequest{NodeId: "gpu-1"}); err != nil {
		t.Fatal(err)
	}
	wctx, stopWatch := context.WithCancel(ctx)
	watch, err := cp.Ops.WatchFleet(wctx, &controlplanev1.WatchFleetRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := watch.Recv(); err != nil {
		t.Fatal(err)
	}
	stopWatch()
	watchMethod := "/navarch.controlplane.v1.ControlPlaneService/WatchFleet"
	testutil.Eventually(t, "the ended watch logged", func() bool { return strings.Contains(logs.String(), watchMethod) })

	lines := requestLines(t, &logs)
	byMethod := map[string][]map[string]any{}
	for _, rec := range lines {
		method, _ := rec["method"].(string)
		short := method[strings.LastIndex(method, "/")+1:]
		byMethod[short] = append(byMethod[short], rec)
	}
	tests := []struct {
		name   string
		method string
		// nth picks the method's line, in the order the calls were made.
		nth  int
		want map[string]any
		// absent are attributes the line must not have.
		absent []string
	}{
		{"cordon-at-info", "CordonNode", 0, map[string]any{
			"level": "INFO", "msg": "rpc", "method": "/navarch.controlplane.v1.ControlPlaneService/CordonNode",
			"node_id": "gpu-1", "caller": "admin", "role": "admin", "code": "OK"}, []string{"err", "reason"}},
		{"heartbeat-at-debug", "Heartbeat", 0, map[string]any{
			"level": "DEBUG", "msg": "rpc", "method": "/navarch.node.v1.NodeService/Heartbeat",
			"node_id": "gpu-1", "caller": "gpu-1", "role": "agent", "code": "OK"}, []string{"err"}},
		{"read-at-debug", "GetNode", 0, map[string]any{
			"level": "DEBUG", "node_id": "gpu-1", "caller": "admin", "role": "admin", "code": "OK"}, nil},
		{"token-change-at-info", "CreateToken", 0, map[string]any{
			"level": "INFO", "caller": "admin", "role": "admin", "code": "OK"}, []string{"node_id"}},
		{"failed-change-at-warn", "DrainNode", 0, map[string]any{
			"level": "WARN", "msg": "rpc failed", "node_id": "gpu-9", "caller": "admin", "code": "NotFound",
			"err": `node_id: no node "gpu-9"`}, nil},
		{"failed-join-at-warn-without-caller", "JoinNode", 0, map[string]any{
			"level": "WARN", "msg": "rpc failed", "node_id": "gpu-1", "code": "Unauthenticated"}, []string{"caller", "role"}},
		{"join-at-debug", "JoinNode", 1, map[string]any{
			"level": "DEBUG", "node_id": "gpu-1", "code": "OK"}, []string{"caller"}},
		{"stream-ended-by-its-caller", "WatchFleet", 0, map[string]any{
			"level": "DEBUG", "msg": "rpc", "caller": "admin", "code": "Canceled"}, []string{"node_id"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			recs := byMethod[tt.method]
			if len(recs) <= tt.nth {
				t.Fatalf("%d lines for %s, want more than %d:\n%s", len(recs), tt.method, tt.nth, logs.String())
			}
			rec := recs[tt.nth]
			for k, v := range tt.want {
				if rec[k] != v {
					t.Errorf("%s = %v, want %v (line %v)", k, rec[k], v, rec)
				}
			}
			for _, k := range tt.absent {
				if _, ok := rec[k]; ok {
					t.Errorf("the line has %s: %v", k, rec)
				}
			}
			if d, ok := rec["duration"].(float64); !ok || d <= 0 {
				t.Errorf("duration %v, want a positive number of nanoseconds", rec["duration"])
			}
		})
	}
	if n := len(byMethod["CordonNode"]); n != 1 {
		t.Errorf("%d lines for one cordon", n)
	}
	for what, secret := range map[string]string{
		"the admin token":         cp.AdminToken(),
		"the join token":          joinTok.GetToken(),
		"the wrong join token":    wrongToken,
		"a certificate":           "CERTIFICATE",
		"the cordon's reason":     "fan noise",
		"the token's secret half": strings.SplitN(joinTok.GetToken(), ".", 2)[1],
	} {
		if strings.Contains(logs.String(), secret) {
			t.Errorf("the log holds %s:\n%s", what, logs.String())
		}
	}
}

// TestRequestLogAtInfo: at info, the fleet's traffic writes nothing and a
// change writes its line.
func TestRequestLogAtInfo(t *testing.T) {
	var logs testutil.SyncBuffer
	cp := cptest.Start(t, cptest.Options{Logger: logging.New(&logs, slog.LevelInfo, logging.JSON)})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, err := cp.Nodes.RegisterNode(ctx, &nodev1.RegisterNodeRequest{NodeId: "gpu-1", Gpus: fleettest.GPUs(1)}); err != nil {
		t.Fatal(err)
	}
	if _, err := cp.Nodes.Heartbeat(ctx, &nodev1.HeartbeatRequest{NodeId: "gpu-1"}); err != nil {
		t.Fatal(err)
	}
	if _, err := cp.Ops.CordonNode(ctx, &controlplanev1.CordonNodeRequest{NodeId: "gpu-1"}); err != nil {
		t.Fatal(err)
	}
	lines := requestLines(t, &logs)
	if len(lines) != 1 || !strings.HasSuffix(lines[0]["method"].(string), "/CordonNode") {
		t.Fatalf("request lines at info: %v", lines)
	}
	if strings.Contains(logs.String(), "Heartbeat") || strings.Contains(logs.String(), "RegisterNode") {
		t.Fatalf("the fleet's traffic at info:\n%s", logs.String())
	}
}
