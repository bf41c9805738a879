package tui

import (
	"context"
	"errors"
	"regexp"
	"strings"
	"testing"

	tea "charm.land/bubbletea/v2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	controlplanev1 "github.com/navarch/navarch/proto/navarch/controlplane/v1"
)

// statusAs is the fixture's GetFleetStatus answer, called as name with
// role.
func statusAs(name string, role controlplanev1.Role) fleetStatusMsg {
	st := fixtureStatus()
	st.caller = &controlplanev1.Caller{Name: name, Role: role}
	return st
}

// TestHeaderShowsCaller: the header's first line ends with who the
// console calls as, and whether it is read-only, at every width down to
// the smallest supported; with no caller known it shows neither.
func TestHeaderShowsCaller(t *testing.T) {
	long := strings.Repeat("x", 63)
	tests := []struct {
		name   string
		o      Options
		status []tea.Msg
		want   string
	}{
		{"none-yet", Options{}, nil, "rev 40"},
		{"admin", Options{}, []tea.Msg{statusAs("admin", controlplanev1.Role_ROLE_ADMIN)}, " admin (admin)"},
		{"operator-read-only", Options{ReadOnly: true}, []tea.Msg{statusAs("ci", controlplanev1.Role_ROLE_OPERATOR)}, "ci (operator)  [READ-ONLY]"},
		{"viewer", Options{}, []tea.Msg{statusAs("dash", controlplanev1.Role_ROLE_VIEWER)}, "dash (viewer)  [READ-ONLY]"},
		{"long-name", Options{}, []tea.Msg{statusAs(long, controlplanev1.Role_ROLE_VIEWER)}, "xx… (viewer)  [READ-ONLY]"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := newTestModel(t, tt.o)
			send(m, tt.status...)
			for _, width := range []int{100, 80} {
				send(m, tea.WindowSizeMsg{Width: width, Height: 24})
				head, _, _ := strings.Cut(plain(m), "\n")
				if !strings.HasSuffix(strings.TrimRight(head, " "), tt.want) || len([]rune(head)) != width {
					t.Errorf("width %d: header %q, want it to end %q", width, head, tt.want)
				}
			}
		})
	}
}

// TestHeaderShowsContext: the client context the console was opened with
// comes first in the header's right end, before who it calls as; a long
// token name is cut before the context is, and the role and the mode
// always show.
func TestHeaderShowsContext(t *testing.T) {
	long := strings.Repeat("x", 63)
	tests := []struct {
		name   string
		o      Options
		status []tea.Msg
		want   *regexp.Regexp
	}{
		{"before-the-caller-is-known", Options{Context: "prod"}, nil, regexp.MustCompile(`rev 40 +prod$`)},
		{"with-the-caller", Options{Context: "prod"}, []tea.Msg{statusAs("admin", controlplanev1.Role_ROLE_ADMIN)},
			regexp.MustCompile(`rev 40 +prod · admin \(admin\)$`)},
		{"read-only", Options{Context: "lab", ReadOnly: true}, []tea.Msg{statusAs("ci", controlplanev1.Role_ROLE_OPERATOR)},
			regexp.MustCompile(`rev 40 +lab · ci \(operator\)  \[READ-ONLY\]$`)},
		{"long-token-name", Options{Context: "prod"}, []tea.Msg{statusAs(long, controlplanev1.Role_ROLE_VIEWER)},
			regexp.MustCompile(`rev 40 prod · x+… \(viewer\)  \[READ-ONLY\]$`)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := newTestModel(t, tt.o)
			send(m, tt.status...)
			for _, width := range []int{100, 80} {
				send(m, tea.WindowSizeMsg{Width: width, Height: 24})
				head, _, _ := strings.Cut(plain(m), "\n")
				if !tt.want.MatchString(strings.TrimRight(head, " ")) || len([]rune(head)) != width {
					t.Errorf("width %d: header %q, want it to match %s", width, head, tt.want)
				}
			}
		})
	}
}

// TestOperatorMayAct: an operator's console keeps its actions.
func TestOperatorMayAct(t *testing.T) {
	m := newTestModel(t, Options{})
	send(m, statusAs("ci", controlplanev1.Role_ROLE_OPERATOR))
	if strings.Contains(plain(m), "[READ-ONLY]") {
		t.Fatal("an operator's console is read-only")
	}
	if cmd := send(m, press("c")); cmd == nil {
		t.Fatal("c did nothing in an operator's console")
	}
}

// TestViewerTokenClearsMarks: marks made before the control plane said the
// token is a viewer's are dropped with the actions they were for.
func TestViewerTokenClearsMarks(t *testing.T) {
	m := newTestModel(t, Options{})
	send(m, press("space"), press("space"))
	if n := len(fleetOf(m).marks); n != 2 {
		t.Fatalf("%d marks, want 2", n)
	}
	send(m, statusAs("dash", controlplanev1.Role_ROLE_VIEWER))
	if n := len(fleetOf(m).marks); n != 0 {
		t.Fatalf("%d marks left in a read-only console", n)
	}
	mustContain(t, m.Frame(), "5 of 5 nodes · sorted")
}

// TestEmptyFleetOffersWhatTheConsoleAllows: an empty fleet suggests
// provisioning only to a console that may.
func TestEmptyFleetOffersWhatTheConsoleAllows(t *testing.T) {
	tests := []struct {
		name   string
		o      Options
		status []tea.Msg
		want   string
	}{
		{"operator", Options{}, []tea.Msg{statusAs("ci", controlplanev1.Role_ROLE_OPERATOR)}, "no nodes yet: provision some with p, or start"},
		{"viewer", Options{}, []tea.Msg{statusAs("dash", controlplanev1.Role_ROLE_VIEWER)}, "no nodes yet: start navarch-agent"},
		{"read-only", Options{ReadOnly: true}, nil, "no nodes yet: start navarch-agent"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.o.NoStream, tt.o.Now, tt.o.Theme = true, clock, NewTheme(true, false)
			m := New(tt.o)
			send(m, tea.WindowSizeMsg{Width: 100, Height: 30}, connectedMsg{})
			send(m, tt.status...)
			m.Apply(snapshot(1, nil, nil))
			mustContain(t, m.Frame(), tt.want)
		})
	}
}

// callerClient answers GetFleetStatus as the control plane does, naming
// the caller.
type callerClient struct {
	controlplanev1.ControlPlaneServiceClient
	caller *controlplanev1.Caller
}

func (c *callerClient) GetFleetStatus(context.Context, *controlplanev1.GetFleetStatusRequest, ...grpc.CallOption) (*controlplanev1.GetFleetStatusResponse, error) {
	return &controlplanev1.GetFleetStatusResponse{Caller: c.caller}, nil
}

// TestCallerComesFromGetFleetStatus: the console learns whose token it
// calls with from the answer it asks for as it starts.
func TestCallerComesFromGetFleetStatus(t *testing.T) {
	c := &callerClient{caller: &controlplanev1.Caller{Name: "dash", Role: controlplanev1.Role_ROLE_VIEWER}}
	m := New(Options{Client: c, NoStream: true, Theme: NewTheme(true, false), Now: clock})
	send(m, tea.WindowSizeMsg{Width: 100, Height: 30})
	send(m, await[fleetStatusMsg](t, m.Init()))
	if !m.d.readOnly() || m.d.caller.GetName() != "dash" {
		t.Fatalf("caller %v, read-only %t", m.d.caller, m.d.readOnly())
	}
	mustContain(t, m.Frame(), "dash (viewer)  [READ-ONLY]")
}

func TestBrokenBecause(t *testing.T) {
	tests := []struct {
		name string
		err  error
		want string
	}{
		{"refused-token", status.Error(codes.Unauthenticated, "token is unknown, revoked or expired"),
			"not authenticated: token is unknown, revoked or expired"},
		{"unavailable", status.Error(codes.Unavailable, "connection refused"), "connection refused"},
		{"not-a-status", errors.New("EOF"), "EOF"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := brokenBecause(tt.err); got != tt.want {
				t.Errorf("%q, want %q", got, tt.want)
			}
		})
	}
}
