package tui

import (
	"context"
	"sync"
	"testing"
	"time"

	tea "charm.land/bubbletea/v2"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	controlplanev1 "github.com/navarch/navarch/proto/navarch/controlplane/v1"
)

// statusClient is a control plane that answers GetFleetStatus, after
// failing its first fail asks, as one that is still starting would.
type statusClient struct {
	controlplanev1.ControlPlaneServiceClient
	mu    sync.Mutex
	fail  int
	asked int
}

func (c *statusClient) GetFleetStatus(context.Context, *controlplanev1.GetFleetStatusRequest, ...grpc.CallOption) (*controlplanev1.GetFleetStatusResponse, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.asked++
	if c.asked <= c.fail {
		return nil, status.Error(codes.Unavailable, "control plane starting")
	}
	return &controlplanev1.GetFleetStatusResponse{
		Providers: []*controlplanev1.ProviderInfo{{Name: "aws"}, {Name: "local"}},
		Limits:    &controlplanev1.OperatorLimits{MaxGpusPerNode: 16},
	}, nil
}

// await runs cmd, and every command of a batch it gives, until one gives
// a message of type T, as the program would deliver it.
func await[T tea.Msg](t *testing.T, cmd tea.Cmd) T {
	t.Helper()
	if cmd == nil {
		var want T
		t.Fatalf("no command to give a %T", want)
	}
	found := make(chan T, 16)
	var run func(tea.Cmd)
	run = func(c tea.Cmd) {
		if c == nil {
			return
		}
		switch msg := c().(type) {
		case tea.BatchMsg:
			for _, sub := range msg {
				go run(sub)
			}
		case T:
			found <- msg
		}
	}
	go run(cmd)
	select {
	case msg := <-found:
		return msg
	case <-time.After(5 * time.Second):
		var want T
		t.Fatalf("no %T came", want)
		return want
	}
}

// TestFleetStatusIsAskedAtStartAndRetried: the console asks for the
// control plane's providers and limits as it starts, without waiting for
// the stream, and asks again after a failure until it is answered.
func TestFleetStatusIsAskedAtStartAndRetried(t *testing.T) {
	c := &statusClient{fail: 2}
	m := New(Options{Client: c, NoStream: true, Theme: NewTheme(true, false), Now: clock})
	send(m, tea.WindowSizeMsg{Width: 100, Height: 30})

	failed := await[fleetStatusFailedMsg](t, m.Init())
	retry := await[fleetStatusRetryMsg](t, send(m, failed))
	failed = await[fleetStatusFailedMsg](t, send(m, retry))
	retry = await[fleetStatusRetryMsg](t, send(m, failed))
	send(m, await[fleetStatusMsg](t, send(m, retry)))

	send(m, press("p"))
	mustContain(t, flat(m), "Provider local", "providers: aws, local")
	send(m, press("tab"), press("tab"))
	send(m, retype(1, "17")...)
	send(m, press("enter"))
	mustContain(t, flat(m), `GPUs per node "17" is not a whole number from 0 to 16`)
}

// TestFleetStatusRetryGivesWayToAReconnect: a connection asks afresh, and
// the retry of an ask it replaced asks nothing.
func TestFleetStatusRetryGivesWayToAReconnect(t *testing.T) {
	c := &statusClient{fail: 1}
	m := New(Options{Client: c, NoStream: true, Theme: NewTheme(true, false), Now: clock})
	retry := await[fleetStatusRetryMsg](t, send(m, await[fleetStatusFailedMsg](t, m.Init())))
	answer := await[fleetStatusMsg](t, send(m, connectedMsg{}))
	if cmd := send(m, retry); cmd != nil {
		t.Fatal("the retry of a replaced ask asked again")
	}
	send(m, answer)
	if got := m.d.providers; len(got) != 2 {
		t.Fatalf("providers %v after the reconnect's answer", got)
	}
	// An answer to an older ask, arriving late, does not replace it.
	send(m, fleetStatusMsg{ask: answer.ask - 1})
	if got := m.d.providers; len(got) != 2 {
		t.Fatalf("a late answer to an older ask replaced the providers with %v", got)
	}
}
