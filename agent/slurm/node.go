package slurm

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/navarch/navarch/internal/display"
)

// ReasonPrefix starts the reason of every drain Navarch sets; a drain
// whose reason does not start with it is someone else's.
const ReasonPrefix = "navarch: "

// maxReason caps a reason Navarch sets, prefix included, in bytes: an
// operator's free text is shown in one line of sinfo and scontrol.
const maxReason = 256

// ErrNotOurs is what Resume returns, wrapped, for a node drained by
// someone other than Navarch.
var ErrNotOurs = errors.New("drain not set by Navarch")

// Node is this node as Slurm shows it.
type Node struct {
	// State is Slurm's state as scontrol prints it, such as "IDLE+DRAIN",
	// "MIXED" or "DOWN+NOT_RESPONDING".
	State string
	// Reason is the reason of a drained or down node, without the
	// " [user@time]" scontrol adds; "" when none.
	Reason string
	// ReasonUser is who set Reason, as Slurm names them; ReasonTime is
	// when. Zero when Slurm says none.
	ReasonUser string
	ReasonTime time.Time
	// Drain is Slurm's DRAIN flag: the node is draining or drained.
	Drain bool
	// Drained is Slurm's DRAINED: Drain, and no job left on the node.
	Drained bool
	// Ours is a Drain that Navarch set: its Reason starts with
	// ReasonPrefix.
	Ours bool
}

// Node reads this node's state from scontrol.
//
// sinfo would print just the fields asked for, but lists only the nodes
// of a partition; scontrol prints every node, the state with all its
// flags, and says plainly when a node does not exist.
func (c *Client) Node(ctx context.Context) (Node, error) {
	out, err := c.run(ctx, c.scontrol, "--oneliner", "show", "node", c.node)
	if err != nil {
		return Node{}, err
	}
	return parseNode(out, c.node)
}

// Drain drains the node in Slurm: Slurm starts no new job on it, and it is
// Drained once its jobs have ended. The reason is cleaned of control
// characters, prefixed with ReasonPrefix unless it starts with it, and cut
// to a line. A drain someone else set is left as it is, reason and all, so
// that Resume leaves it too.
func (c *Client) Drain(ctx context.Context, reason string) error {
	n, err := c.Node(ctx)
	if err != nil {
		return fmt.Errorf("drain: %w", err)
	}
	if n.Drain && !n.Ours {
		return nil
	}
	r := drainReason(reason)
	if n.Ours && n.Reason == r {
		return nil
	}
	// scontrol strips one double quote from each end of a reason, so one
	// around it keeps a reason that ends in a quote whole.
	if _, err := c.run(ctx, c.scontrol, "update", "nodename="+c.node, "state=drain", `reason="`+r+`"`); err != nil {
		return fmt.Errorf("drain: %w", err)
	}
	return nil
}

// Resume resumes the node in Slurm if Navarch drained it. A node drained
// by anyone else is left drained, with an error that matches ErrNotOurs
// and says who drained it and why; a node not drained is left as it is.
//
// Slurm 22.05 marks a resumed node NOT_RESPONDING until its slurmd
// registers again, about a second later; it takes no job until then.
func (c *Client) Resume(ctx context.Context) error {
	n, err := c.Node(ctx)
	if err != nil {
		return fmt.Errorf("resume: %w", err)
	}
	if !n.Drain {
		return nil
	}
	if !n.Ours {
		return fmt.Errorf("resume slurm node %s: %w: %s", c.node, ErrNotOurs, n.drainedBy())
	}
	// undrain clears the drain alone; resume would also bring back a
	// node Slurm itself has marked DOWN since.
	if _, err := c.run(ctx, c.scontrol, "update", "nodename="+c.node, "state=undrain"); err != nil {
		return fmt.Errorf("resume: %w", err)
	}
	return nil
}

// drainedBy says who drained the node, when and why, for an operator.
func (n Node) drainedBy() string {
	who := "drained"
	if n.ReasonUser != "" {
		who += " by " + n.ReasonUser
	}
	if !n.ReasonTime.IsZero() {
		who += " at " + n.ReasonTime.Format(time.DateTime)
	}
	return fmt.Sprintf("%s, reason %q", who, n.Reason)
}

// drainReason is the reason Navarch gives Slurm for a drain: one line of
// printable text starting with ReasonPrefix, at most maxReason bytes.
func drainReason(reason string) string {
	r := display.OneLine(reason, maxReason)
	if r == "" {
		r = "no reason given"
	}
	if !strings.HasPrefix(r, ReasonPrefix) {
		r = ReasonPrefix + r
	}
	return display.Cut(r, maxReason, "…")
}

var (
	stateField = regexp.MustCompile(`(?:^|\s)State=(\S+)`)
	// reasonStamp is what scontrol adds after the first line of a reason:
	// who set it and when, in SLURM_TIME_FORMAT=standard.
	reasonStamp = regexp.MustCompile(` \[([^\s\[\]@]+)@(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)\]`)
)

// parseNode reads node name's line of `scontrol --oneliner show node`.
//
// The line is key=value pairs, but values are free text: OS= holds spaces,
// and Reason= runs on to the " [user@time]" stamp, past any '=', quote or
// space in it. After the stamp come the reason's further lines, if any,
// then the optional Comment= and Extra=. State= comes before Reason= and
// has no spaces.
func parseNode(out, name string) (Node, error) {
	var line string
	for l := range strings.Lines(out) {
		if strings.HasPrefix(l, "NodeName="+name+" ") {
			line = strings.TrimRight(l, "\n")
			break
		}
	}
	if line == "" {
		return Node{}, fmt.Errorf("scontrol printed no node %s: %q", name, display.Cut(out, 200, "…"))
	}
	m := stateField.FindStringSubmatchIndex(line)
	if m == nil {
		return Node{}, fmt.Errorf("scontrol printed no State for node %s: %q", name, display.Cut(line, 200, "…"))
	}
	n := Node{State: line[m[2]:m[3]]}
	if _, reason, ok := strings.Cut(line[m[1]:], " Reason="); ok {
		if s := reasonStamp.FindStringSubmatchIndex(reason); s != nil {
			n.ReasonUser = reason[s[2]:s[3]]
			n.ReasonTime, _ = time.ParseInLocation("2006-01-02T15:04:05", reason[s[4]:s[5]], time.Local)
			reason = reason[:s[0]]
		}
		n.Reason = reason
	}
	// The state is a base state and its flags: IDLE+DRAIN, MIXED+DRAIN,
	// IDLE+COMPLETING+DRAIN, DOWN+DRAIN+NOT_RESPONDING. Slurm calls a
	// DRAIN node DRAINING while a job holds it (ALLOCATED, MIXED or the
	// COMPLETING flag) and DRAINED otherwise (node_state_string).
	parts := strings.Split(n.State, "+")
	base, flags := parts[0], parts[1:]
	n.Drain = slices.Contains(flags, "DRAIN")
	busy := base == "ALLOCATED" || base == "MIXED" || slices.Contains(flags, "COMPLETING")
	n.Drained = n.Drain && !busy
	n.Ours = n.Drain && strings.HasPrefix(n.Reason, ReasonPrefix)
	return n, nil
}
