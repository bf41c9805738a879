package fleet

import (
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/navarch/navarch/internal/apierr"
	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
)

// TestTransitionsAreWhole walks every action from every state: an action
// either leads somewhere the machine knows, or is refused with
// FailedPrecondition and a detail naming the node, its state and the
// action. Every state is reachable, and only a stop, or a provider saying
// the instance is gone, ends in TERMINATED.
func TestTransitionsAreWhole(t *testing.T) {
	reached := map[fleetv1.LifecycleState]bool{}
	for act, row := range transitions {
		for v := range fleetv1.LifecycleState_name {
			from := fleetv1.LifecycleState(v)
			n := &fleetv1.Node{NodeId: "n1", Lifecycle: from}
			to, err := next(n, act)
			if _, listed := row[from]; !listed {
				info, ok := apierr.Info(err)
				if status.Code(err) != codes.FailedPrecondition || !ok || info.GetMetadata()["action"] != string(act) {
					t.Errorf("%s from %s: got %v, want a refusal naming the action", act, from, err)
				}
				continue
			}
			if err != nil {
				t.Errorf("%s from %s: %v", act, from, err)
			}
			if _, known := fleetv1.LifecycleState_name[int32(to)]; !known || to == unset {
				t.Errorf("%s from %s leads to %s", act, from, to)
			}
			if to != from {
				reached[to] = true
			}
			if to == terminated && from != terminated && act != actStopped && act != actInstanceGone {
				t.Errorf("%s makes a %s node TERMINATED; only a stop or a gone instance does", act, from)
			}
		}
	}
	for v := range fleetv1.LifecycleState_name {
		l := fleetv1.LifecycleState(v)
		if l != unset && !reached[l] {
			t.Errorf("no action leads to %s", l)
		}
	}
}

// TestOperatorActionsFollowTheTable drives each operator action from each
// state a node can be put in here and checks the fleet does what the table
// says.
func TestOperatorActionsFollowTheTable(t *testing.T) {
	actions := map[action]func(f *Fleet, id string) (*fleetv1.Node, error){
		actCordon:   func(f *Fleet, id string) (*fleetv1.Node, error) { return f.Cordon(t.Context(), id, "") },
		actUncordon: func(f *Fleet, id string) (*fleetv1.Node, error) { return f.Uncordon(t.Context(), id, "") },
		actDrain: func(f *Fleet, id string) (*fleetv1.Node, error) {
			n, _, err := f.Drain(t.Context(), id, "", f.clock.Now().Add(3600e9), false)
			return n, err
		},
		actTerminate: func(f *Fleet, id string) (*fleetv1.Node, error) { return f.Terminate(t.Context(), id, "", false, 0) },
	}
	setup := map[fleetv1.LifecycleState]func(f *Fleet, id string){
		active:   func(*Fleet, string) {},
		cordoned: func(f *Fleet, id string) { _, _ = f.Cordon(t.Context(), id, "") },
		draining: func(f *Fleet, id string) { _, _, _ = f.Drain(t.Context(), id, "", f.clock.Now().Add(3600e9), false) },
		terminating: func(f *Fleet, id string) {
			_, _ = f.Terminate(t.Context(), id, "", false, 0)
		},
	}
	for act, do := range actions {
		for from, prepare := range setup {
			t.Run(string(act)+"-from-"+from.String(), func(t *testing.T) {
				f := newFleet(t, Options{})
				register(t, f, "n1", 1)
				prepare(f, "n1")
				if got := f.get("n1").node.Load().GetLifecycle(); got != from {
					t.Fatalf("set-up reached %s, want %s", got, from)
				}
				n, err := do(f, "n1")
				want, allowed := transitions[act][from]
				switch {
				case !allowed && status.Code(err) != codes.FailedPrecondition:
					t.Fatalf("got %v, want FailedPrecondition", err)
				case allowed && err != nil:
					t.Fatalf("refused: %v", err)
				case allowed && n.GetLifecycle() != want:
					t.Fatalf("now %s, want %s", n.GetLifecycle(), want)
				}
			})
		}
	}
}
