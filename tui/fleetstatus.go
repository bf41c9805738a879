package tui

import (
	"context"
	"time"

	tea "charm.land/bubbletea/v2"

	controlplanev1 "github.com/navarch/navarch/proto/navarch/controlplane/v1"
)

// The console asks GetFleetStatus for the control plane's providers and
// limits, whose token it calls with, and on etcd which control plane leads,
// when it starts and each time the stream connects, since the control plane
// may be a new one: after a failover the stream connects to the new leader,
// and its answer names it. A failed ask is asked again with the stream's
// backoff until it is answered or a newer ask replaces it; until then the
// dialogs leave the judging to the control plane, and the console offers
// every action, which the control plane refuses if the token's role does
// not allow it.

// fleetStatusMsg carries what GetFleetStatus says the console needs: the
// providers ProvisionNodes accepts, the bounds and defaults of operator
// requests, who the console calls as, and the control planes on etcd.
type fleetStatusMsg struct {
	providers     []string
	limits        *controlplanev1.OperatorLimits
	caller        *controlplanev1.Caller
	controlPlanes *controlplanev1.ControlPlanes
	ask           int // the ask this answers
}

// accessChangedMsg tells every view that the console became read-only, or
// stopped being, so that each binds its action keys again.
type accessChangedMsg struct{}

// fleetStatusFailedMsg says an ask of GetFleetStatus failed.
type fleetStatusFailedMsg struct{ ask int }

// fleetStatusRetryMsg asks again once a failed ask's backoff has passed.
type fleetStatusRetryMsg struct{ ask int }

// statusAsks numbers the console's asks of GetFleetStatus, so that only the
// latest is retried and an answer never replaces a newer one.
type statusAsks struct {
	latest   int // the ask under way
	answered int // the ask whose answer the console holds
	failures int // of the latest ask, in a row
}

// askFleetStatus starts a new ask, replacing any under way.
func (m *Model) askFleetStatus() tea.Cmd {
	if m.d.client == nil {
		return nil
	}
	m.asks.latest++
	m.asks.failures = 0
	return loadFleetStatus(m.d.client, m.asks.latest)
}

func (m *Model) onFleetStatus(msg fleetStatusMsg) tea.Cmd {
	if msg.ask < m.asks.answered {
		return nil
	}
	m.asks.answered = msg.ask
	wasReadOnly := m.d.readOnly()
	m.d.providers, m.d.limits, m.d.caller = msg.providers, msg.limits, msg.caller
	m.d.controlPlanes = msg.controlPlanes
	if m.d.readOnly() == wasReadOnly {
		return nil
	}
	m.palette.rebind()
	cmds := make([]tea.Cmd, 0, len(m.order))
	for _, name := range m.order {
		cmds = append(cmds, m.views[name].Update(accessChangedMsg{}))
	}
	return tea.Batch(cmds...)
}

func (m *Model) onFleetStatusFailed(msg fleetStatusFailedMsg) tea.Cmd {
	if msg.ask != m.asks.latest {
		return nil
	}
	m.asks.failures++
	return tea.Tick(reconnectDelay(m.asks.failures), func(time.Time) tea.Msg { return fleetStatusRetryMsg(msg) })
}

func (m *Model) onFleetStatusRetry(msg fleetStatusRetryMsg) tea.Cmd {
	if msg.ask != m.asks.latest {
		return nil
	}
	return loadFleetStatus(m.d.client, msg.ask)
}

// loadFleetStatus asks the control plane for its providers and limits.
func loadFleetStatus(client controlplanev1.ControlPlaneServiceClient, ask int) tea.Cmd {
	return func() tea.Msg {
		ctx, cancel := context.WithTimeout(context.Background(), actionTimeout)
		defer cancel()
		st, err := client.GetFleetStatus(ctx, &controlplanev1.GetFleetStatusRequest{})
		if err != nil {
			return fleetStatusFailedMsg{ask: ask}
		}
		var names []string
		for _, p := range st.GetProviders() {
			names = append(names, p.GetName())
		}
		return fleetStatusMsg{providers: names, limits: st.GetLimits(), caller: st.GetCaller(), controlPlanes: st.GetControlPlanes(), ask: ask}
	}
}
