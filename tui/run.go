package tui

import (
	"context"
	"fmt"

	tea "charm.land/bubbletea/v2"

	"github.com/navarch/navarch/internal/rpcclient"
	controlplanev1 "github.com/navarch/navarch/proto/navarch/controlplane/v1"
)

// Run opens the console on the control plane at server until the operator
// quits or ctx ends.
func Run(ctx context.Context, server string, readOnly bool) error {
	conn, err := rpcclient.Dial(server)
	if err != nil {
		return err
	}
	defer conn.Close()
	m := New(Options{Client: controlplanev1.NewControlPlaneServiceClient(conn), Server: server, ReadOnly: readOnly})
	defer m.Close()
	p := tea.NewProgram(m, tea.WithContext(ctx))
	if _, err := p.Run(); err != nil && ctx.Err() == nil {
		return fmt.Errorf("console: %w", err)
	}
	return nil
}
