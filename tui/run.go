package tui

import (
	"context"
	"errors"
	"fmt"
	"os"

	tea "charm.land/bubbletea/v2"
	"github.com/charmbracelet/x/term"

	"github.com/navarch/navarch/internal/rpcclient"
	controlplanev1 "github.com/navarch/navarch/proto/navarch/controlplane/v1"
)

// ErrNoTerminal is returned by Run when stdin or stdout is not a terminal.
var ErrNoTerminal = errors.New("the console needs a terminal, and stdin or stdout is not one; " +
	"for scripts use the subcommands (navarch get nodes, navarch get events, navarch get status, …), which print text or JSON")

// CheckTerminal reports ErrNoTerminal unless stdin and stdout are both
// terminals.
func CheckTerminal() error {
	if !term.IsTerminal(os.Stdin.Fd()) || !term.IsTerminal(os.Stdout.Fd()) {
		return ErrNoTerminal
	}
	return nil
}

// Run opens the console on the control plane at target until the operator
// quits or ctx ends.
func Run(ctx context.Context, target rpcclient.Target, readOnly bool) error {
	return RunNoted(ctx, target, readOnly, "")
}

// RunNoted is Run with a line the help view keeps in sight, such as how
// the demo is reached from another terminal.
func RunNoted(ctx context.Context, target rpcclient.Target, readOnly bool, note string) error {
	if err := CheckTerminal(); err != nil {
		return err
	}
	conn, err := rpcclient.Dial(target)
	if err != nil {
		return err
	}
	defer conn.Close()
	m := New(Options{Client: controlplanev1.NewControlPlaneServiceClient(conn), Server: target.Addr, Context: target.Context, ReadOnly: readOnly, Note: note})
	defer m.Close()
	p := tea.NewProgram(m, tea.WithContext(ctx))
	if _, err := p.Run(); err != nil && ctx.Err() == nil {
		return fmt.Errorf("console: %w", err)
	}
	return nil
}
