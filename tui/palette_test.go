package tui

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"

	tea "charm.land/bubbletea/v2"
	"github.com/charmbracelet/x/ansi"
	"google.golang.org/grpc"

	controlplanev1 "github.com/navarch/navarch/proto/navarch/controlplane/v1"
	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
)

// actionClient is a control plane that records the node actions asked of
// it and grants them.
type actionClient struct {
	controlplanev1.ControlPlaneServiceClient
	mu         sync.Mutex
	cordoned   []string
	uncordoned []string
	terminated []*controlplanev1.TerminateNodeRequest
	released   []string
}

func (c *actionClient) CordonNode(_ context.Context, req *controlplanev1.CordonNodeRequest, _ ...grpc.CallOption) (*controlplanev1.CordonNodeResponse, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.cordoned = append(c.cordoned, req.GetNodeId())
	return &controlplanev1.CordonNodeResponse{Node: &fleetv1.Node{NodeId: req.GetNodeId(), Lifecycle: fleetv1.LifecycleState_LIFECYCLE_STATE_CORDONED}}, nil
}

func (c *actionClient) UncordonNode(_ context.Context, req *controlplanev1.UncordonNodeRequest, _ ...grpc.CallOption) (*controlplanev1.UncordonNodeResponse, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.uncordoned = append(c.uncordoned, req.GetNodeId())
	return &controlplanev1.UncordonNodeResponse{Node: &fleetv1.Node{NodeId: req.GetNodeId(), Lifecycle: fleetv1.LifecycleState_LIFECYCLE_STATE_ACTIVE}}, nil
}

func (c *actionClient) TerminateNode(_ context.Context, req *controlplanev1.TerminateNodeRequest, _ ...grpc.CallOption) (*controlplanev1.TerminateNodeResponse, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.terminated = append(c.terminated, req)
	return &controlplanev1.TerminateNodeResponse{Node: &fleetv1.Node{NodeId: req.GetNodeId(), Lifecycle: fleetv1.LifecycleState_LIFECYCLE_STATE_TERMINATING}}, nil
}

func (c *actionClient) ReleaseNode(_ context.Context, req *controlplanev1.ReleaseNodeRequest, _ ...grpc.CallOption) (*controlplanev1.ReleaseNodeResponse, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.released = append(c.released, req.GetNodeId())
	return &controlplanev1.ReleaseNodeResponse{Node: &fleetv1.Node{NodeId: req.GetNodeId(), Lifecycle: fleetv1.LifecycleState_LIFECYCLE_STATE_ACTIVE}}, nil
}

// calls is what the client was asked, in one line: "cordon gpu-a01".
func (c *actionClient) calls() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []string
	for _, id := range c.cordoned {
		out = append(out, "cordon "+id)
	}
	for _, id := range c.uncordoned {
		out = append(out, "uncordon "+id)
	}
	for _, req := range c.terminated {
		out = append(out, "terminate "+req.GetNodeId())
	}
	for _, id := range c.released {
		out = append(out, "release "+id)
	}
	slices.Sort(out)
	return strings.Join(out, ", ")
}

// command types a : command and enters it, returning what it started.
func command(m *Model, line string) tea.Cmd {
	send(m, press(":"))
	send(m, typed(line)...)
	return send(m, press("enter"))
}

// finish runs the action cmd started and shows its outcome.
func finish(t *testing.T, m *Model, cmd tea.Cmd) {
	t.Helper()
	send(m, await[statusLineMsg](t, cmd))
}

// TestPaletteActsOnNodes: the : commands act on the nodes they name as
// the action keys do on rows: one at once, several after asking, drains
// and terminations through their dialog; :node opens a node.
func TestPaletteActsOnNodes(t *testing.T) {
	tests := []struct {
		name      string
		line      string
		confirm   bool   // the action asks first
		overlay   string // the dialog it opens, by type
		wantCalls string
		wantFrame string
	}{
		{"cordon-one", "cordon gpu-a03", false, "", "cordon gpu-a03", "gpu-a03 CORDONED"},
		{"uncordon-one", "uncordon gpu-a02", false, "", "uncordon gpu-a02", "gpu-a02 ACTIVE"},
		{"cordon-several", "cordon gpu-a01 gpu-b01", true, "", "cordon gpu-a01, cordon gpu-b01", "cordoned 2 nodes"},
		{"named-twice", "cordon gpu-a01 gpu-b01 gpu-a01", true, "", "cordon gpu-a01, cordon gpu-b01", "cordoned 2 nodes"},
		{"drain-opens-its-dialog", "drain gpu-b01", false, "*tui.drainDialog", "", "Drain gpu-b01"},
		{"terminate-opens-its-dialog", "terminate gpu-a01 gpu-b02", false, "*tui.terminateDialog", "", "Terminate 2 nodes (gpu-a01, gpu-b02)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &actionClient{}
			m := newTestModel(t, Options{Client: c})
			cmd := command(m, tt.line)
			if tt.confirm {
				if cmd != nil {
					t.Fatal("a bulk action ran without asking")
				}
				mustContain(t, flat(m), "Cordon 2 nodes (gpu-a01, gpu-b01)?")
				cmd = send(m, press("y"))
			}
			if tt.overlay != "" {
				if got := fmt.Sprintf("%T", m.overlay); got != tt.overlay {
					t.Fatalf(":%s opened %s, want %s", tt.line, got, tt.overlay)
				}
			} else {
				finish(t, m, cmd)
			}
			if got := c.calls(); got != tt.wantCalls {
				t.Fatalf("calls %q, want %q", got, tt.wantCalls)
			}
			mustContain(t, flat(m), tt.wantFrame)
		})
	}

	t.Run("node-opens-the-node-view", func(t *testing.T) {
		m := newTestModel(t, Options{})
		command(m, "node gpu-b01")
		if m.active != nodeViewName || nodeOf(m).id != "gpu-b01" {
			t.Fatalf(":node gpu-b01 shows view %s on %q", m.active, nodeOf(m).id)
		}
	})

	t.Run("release-one", func(t *testing.T) {
		c := &actionClient{}
		m := newTestModel(t, Options{Client: c})
		send(m, heldBack())
		finish(t, m, command(m, "release gpu-a04"))
		if got := c.calls(); got != "release gpu-a04" {
			t.Fatalf("calls %q, want release gpu-a04", got)
		}
		mustContain(t, flat(m), "gpu-a04 released")
	})

	t.Run("held-lists-the-held-back-nodes", func(t *testing.T) {
		m := newTestModel(t, Options{})
		send(m, heldBack(), press("2"))
		command(m, "held")
		if m.active != fleetViewName {
			t.Fatalf(":held shows view %s, want the fleet", m.active)
		}
		if got := shownIDs(m); !slices.Equal(got, []string{"gpu-a04"}) {
			t.Fatalf(":held shows %v, want gpu-a04 alone", got)
		}
	})
}

// TestPaletteRefuses: unknown ids are named and nothing is done; a
// read-only console refuses the actions but still opens nodes.
func TestPaletteRefuses(t *testing.T) {
	tests := []struct {
		name     string
		readOnly bool
		line     string
		want     string
	}{
		{"unknown-id", false, "cordon gpu-z09", "no node gpu-z09 in the fleet; nothing done"},
		{"unknown-among-known", false, "uncordon gpu-a01 gpu-z09 gpu-z08", "no nodes gpu-z09, gpu-z08 in the fleet; nothing done"},
		{"unknown-node-to-open", false, "node gpu-z09", "no node gpu-z09 in the fleet"},
		{"no-id", false, "drain", ":drain needs one or more node ids: :drain ID…"},
		{"node-takes-one", false, "node gpu-a01 gpu-a02", ":node opens one node: :node ID"},
		{"read-only-cordon", true, "cordon gpu-a01", "read-only: actions are disabled"},
		{"read-only-terminate", true, "terminate gpu-a01", "read-only: actions are disabled"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := &actionClient{}
			m := newTestModel(t, Options{Client: c, ReadOnly: tt.readOnly})
			if cmd := command(m, tt.line); cmd != nil {
				t.Fatalf(":%s started something", tt.line)
			}
			if m.overlay != nil || m.active != fleetViewName {
				t.Fatalf(":%s opened %T, view %s", tt.line, m.overlay, m.active)
			}
			if got := c.calls(); got != "" {
				t.Fatalf(":%s called %s", tt.line, got)
			}
			mustContain(t, m.Frame(), tt.want)
		})
	}

	t.Run("read-only-opens-nodes", func(t *testing.T) {
		m := newTestModel(t, Options{ReadOnly: true})
		command(m, "node gpu-a02")
		if m.active != nodeViewName || nodeOf(m).id != "gpu-a02" {
			t.Fatalf(":node in a read-only console shows view %s on %q", m.active, nodeOf(m).id)
		}
	})
}

// TestPaletteCompletes: tab completes the command, then the node id from
// the console's fleet; ctrl+n offers the next id that fits.
func TestPaletteCompletes(t *testing.T) {
	tests := []struct {
		name     string
		readOnly bool
		keys     []tea.Msg
		want     string
	}{
		{"command", false, slices.Concat(typed("cor"), keysOf("tab")), "cordon "},
		{"command-then-id", false, slices.Concat(typed("cor"), keysOf("tab"), typed("gpu-b"), keysOf("tab")), "cordon gpu-b01"},
		{"first-id-in-order", false, slices.Concat(typed("cordon gpu-"), keysOf("tab")), "cordon gpu-a01"},
		{"next-match", false, slices.Concat(typed("cordon gpu-a"), []tea.Msg{tea.KeyPressMsg{Code: 'n', Mod: tea.ModCtrl}}, keysOf("tab")), "cordon gpu-a02"},
		{"skips-named", false, slices.Concat(typed("cordon gpu-a01 gpu-a"), keysOf("tab")), "cordon gpu-a01 gpu-a02"},
		{"only-the-id-typed", false, slices.Concat(typed("terminate gpu-a03 gpu-b02x"), keysOf("tab")), "terminate gpu-a03 gpu-b02x"},
		{"node", false, slices.Concat(typed("node gpu-b0"), keysOf("tab")), "node gpu-b01"},
		{"node-takes-one", false, slices.Concat(typed("node gpu-b01 gpu-"), keysOf("tab")), "node gpu-b01 gpu-"},
		{"read-only-offers-no-action", true, slices.Concat(typed("cor"), keysOf("tab")), "cor"},
		{"read-only-completes-node", true, slices.Concat(typed("node gp"), keysOf("tab")), "node gpu-a01"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := newTestModel(t, Options{ReadOnly: tt.readOnly})
			send(m, press(":"))
			send(m, tt.keys...)
			if got := m.palette.input.Value(); got != tt.want {
				t.Fatalf("completed to %q, want %q", got, tt.want)
			}
		})
	}

	t.Run("says-how-many-fit", func(t *testing.T) {
		m := newTestModel(t, Options{})
		send(m, press(":"))
		send(m, typed("cordon gpu-a")...)
		mustContain(t, m.Frame(), ":cordon gpu-a01", "3 nodes match · tab complete · ctrl+n/ctrl+p others")
	})

	// The offered id is drawn after what is typed; the note after it ends
	// inside the terminal, whole, or gives way where they would not both
	// fit.
	t.Run("note-fits-beside-the-offered-id", func(t *testing.T) {
		const note = "4 nodes match · tab complete · ctrl+n/ctrl+p others"
		for _, width := range []int{100, 80, 74} {
			m := newTestModel(t, Options{})
			send(m, tea.WindowSizeMsg{Width: width, Height: 30}, press(":"))
			send(m, typed("cordon gpu-a01 gp")...)
			lines := strings.Split(m.Frame(), "\n")
			prompt := lines[len(lines)-2]
			if w := ansi.StringWidth(prompt); w != width {
				t.Fatalf("at %d columns the prompt line is %d wide:\n%s", width, w, ansi.Strip(prompt))
			}
			mustContain(t, prompt, ":cordon gpu-a01 gpu-a02")
			if shown := strings.Contains(ansi.Strip(prompt), note); shown != (width >= 80) {
				t.Fatalf("at %d columns the note shows: %v\n%s", width, shown, ansi.Strip(prompt))
			}
		}
	})

	t.Run("history", func(t *testing.T) {
		c := &actionClient{}
		m := newTestModel(t, Options{Client: c})
		finish(t, m, command(m, "cordon gpu-a03"))
		send(m, press(":"), press("up"))
		if got := m.palette.input.Value(); got != "cordon gpu-a03" {
			t.Fatalf("history gave %q", got)
		}
	})
}

// TestCompleteIDsIsBounded: completion keeps the first ids in order, at
// most the limit, and counts every id that fits, whether the fleet is in
// id order (found by binary search) or in another (looked through).
func TestCompleteIDsIsBounded(t *testing.T) {
	byID := largeFleet(1000)
	byID.setSort(colNode, false)
	byUtil := largeFleet(1000)
	byUtil.setSort(colUtil, false)
	backwards := largeFleet(1000)
	backwards.setSort(colNode, true)
	tests := []struct {
		name      string
		prefix    string
		named     []string
		want      []string
		wantTotal int
	}{
		{"all", "", nil, []string{"node-0", "node-1", "node-10", "node-100"}, 1000},
		{"prefix", "node-99", nil, []string{"node-99", "node-990", "node-991", "node-992"}, 11},
		{"skips-named", "node-99", []string{"node-99", "node-991", "node-991", "node-5"}, []string{"node-990", "node-992", "node-993", "node-994"}, 9},
		{"one", "node-999", nil, []string{"node-999"}, 1},
		{"past-the-last", "node-9999", nil, nil, 0},
		{"before-the-first", "gpu-", nil, nil, 0},
		{"after-the-last", "zz", nil, nil, 0},
	}
	for _, order := range []struct {
		name string
		f    *fleet
	}{{"by-id", byID}, {"by-util", byUtil}, {"by-id-backwards", backwards}} {
		for _, tt := range tests {
			t.Run(order.name+"/"+tt.name, func(t *testing.T) {
				got, total := completeIDs(order.f, tt.prefix, tt.named, 4)
				if !slices.Equal(got, tt.want) || total != tt.wantTotal {
					t.Fatalf("got %v of %d, want %v of %d", got, total, tt.want, tt.wantTotal)
				}
			})
		}
	}
}

// largeFleet is a fleet of n rows, node-0 to node-(n-1), as completion
// sees it.
func largeFleet(n int) *fleet {
	f := newFleet()
	for i := range n {
		id := fmt.Sprintf("node-%d", i)
		f.rows[id] = &row{id: id}
	}
	f.loaded, f.stale = true, true
	return f
}

// BenchmarkPaletteKeystroke is one key typed into a node id at the :
// prompt, with its completion and the redraw, on a fleet sorted by id (a
// binary search) and by utilisation (a pass over every id).
func BenchmarkPaletteKeystroke(b *testing.B) {
	for _, n := range sizes {
		for _, sortBy := range []column{colNode, colUtil} {
			b.Run(fmt.Sprintf("nodes=%d/by=%s", n, strings.ToLower(columnNames[sortBy])), func(b *testing.B) {
				m := benchModel(b, n)
				m.d.fleet.setSort(sortBy, false)
				send(m, press(":"))
				send(m, typed("cordon gpu-0001")...)
				alternate(b, m, press("2"), press("backspace"))
			})
		}
	}
}
