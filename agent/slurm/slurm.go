// Package slurm is the agent's side of Slurm: it reads and sets its own
// node's state in Slurm (drain, resume) and finds and cancels the node's
// jobs, by running Slurm's own commands (scontrol, squeue, scancel) as an
// operator would. A drain Navarch sets carries ReasonPrefix in its reason;
// Navarch resumes only those, never a drain someone else set.
package slurm

import (
	"bytes"
	"cmp"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"time"

	"github.com/navarch/navarch/internal/display"
	"github.com/navarch/navarch/internal/rootfile"
)

// defaultTimeout bounds each command when Options.Timeout is 0. A Slurm
// command waits MessageTimeout (10 s by default, 30–60 s at many sites)
// for a controller that does not answer, and may retry once.
const defaultTimeout = time.Minute

// Options configure a Client.
type Options struct {
	// NodeName is Slurm's name for this node; "" is the host's short name
	// (its name up to the first dot), Slurm's default.
	NodeName string
	// Bin is the folder holding scontrol, squeue and scancel; "" looks
	// them up in $PATH.
	Bin string
	// Env is environment for the commands, such as
	// SLURM_CONF=/etc/slurm/slurm.conf. Of the agent's own environment
	// they get PATH and SLURM_CONF alone: it may hold the join token.
	Env []string
	// Timeout bounds each command; 0 is a minute.
	Timeout time.Duration
}

// Client runs Slurm's commands about one node. It holds no state of its
// own between calls, so one Client may serve several goroutines.
type Client struct {
	node     string
	scontrol string
	squeue   string
	scancel  string
	env      []string
	timeout  time.Duration
}

// nodeNamePattern is the node names a Client accepts: a host name. Slurm's
// commands read a name with brackets or commas as a list of nodes, and one
// that starts with '-' as an option.
var nodeNamePattern = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*$`)

// New checks the options and finds Slurm's commands.
func New(o Options) (*Client, error) {
	if o.Timeout < 0 {
		return nil, fmt.Errorf("timeout %s is negative", o.Timeout)
	}
	c := &Client{node: o.NodeName, timeout: o.Timeout}
	if c.timeout == 0 {
		c.timeout = defaultTimeout
	}
	if c.node == "" {
		host, err := os.Hostname()
		if err != nil {
			return nil, fmt.Errorf("node name from the hostname: %w", err)
		}
		c.node, _, _ = strings.Cut(host, ".")
	}
	if !nodeNamePattern.MatchString(c.node) {
		return nil, fmt.Errorf("node name %q is not a host name (give one with --slurm-node-name)", c.node)
	}
	for _, cmd := range []struct {
		name string
		path *string
	}{{"scontrol", &c.scontrol}, {"squeue", &c.squeue}, {"scancel", &c.scancel}} {
		p, err := findCommand(o.Bin, cmd.name)
		if err != nil {
			return nil, err
		}
		*cmd.path = p
	}
	c.env = []string{"PATH=" + cmp.Or(os.Getenv("PATH"), "/usr/sbin:/usr/bin:/sbin:/bin")}
	if conf, ok := os.LookupEnv("SLURM_CONF"); ok {
		c.env = append(c.env, "SLURM_CONF="+conf)
	}
	// Slurm prints times as SLURM_TIME_FORMAT says; the parse below reads
	// the standard one whatever the options say.
	c.env = append(append(c.env, o.Env...), "SLURM_TIME_FORMAT=standard")
	return c, nil
}

func findCommand(bin, name string) (string, error) {
	path := name
	if bin != "" {
		path = filepath.Join(bin, name)
	}
	p, err := exec.LookPath(path)
	if err != nil {
		return "", fmt.Errorf("find Slurm's %s (package slurm-client): %w", name, err)
	}
	if os.Geteuid() == 0 {
		// The agent runs it as root, by the path checked.
		real, err := rootfile.Check(p)
		if err != nil {
			return "", fmt.Errorf("slurm's %s: the agent runs it as root: %w", name, err)
		}
		p = real
	}
	return p, nil
}

// NodeName is Slurm's name for this node.
func (c *Client) NodeName() string { return c.node }

// run runs one command and returns what it printed. Its error names the
// command and gives the first line of what it printed about the failure.
func (c *Client) run(ctx context.Context, path string, args ...string) (string, error) {
	cmdCtx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	cmd := exec.CommandContext(cmdCtx, path, args...)
	cmd.Env = c.env
	// A command that leaves a child holding its output must not hold
	// the agent past its timeout.
	cmd.WaitDelay = time.Second
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err == nil {
		return stdout.String(), nil
	}
	line := filepath.Base(path) + " " + strings.Join(args, " ")
	if err := ctx.Err(); err != nil {
		return "", fmt.Errorf("%s: %w", line, err)
	}
	if err := cmdCtx.Err(); err != nil {
		return "", fmt.Errorf("%s: no answer within %s: %w", line, c.timeout, err)
	}
	// scontrol says "Node x not found" on stdout; the others use stderr.
	msg := display.FirstLine(strings.TrimSpace(stderr.String()))
	if msg == "" {
		msg = display.FirstLine(strings.TrimSpace(stdout.String()))
	}
	if msg == "" {
		return "", fmt.Errorf("%s: %w", line, err)
	}
	return "", fmt.Errorf("%s: %w: %s", line, err, display.Cut(display.CleanText(msg, ""), 200, "…"))
}
