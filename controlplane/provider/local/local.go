// Package local is the "local" provider: it provisions nodes by starting
// navarch-agent --simulate processes on the control plane's own machine,
// tracks them, stops them on TerminateNode, and stops them all when the
// control plane shuts down. It is for demos, development and tests.
package local

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/navarch/navarch/controlplane/provider"
)

// Options configures New.
type Options struct {
	// AgentBinary is the navarch-agent executable. Required.
	AgentBinary string
	// Server is the control plane address the agents dial. Required.
	Server string
	// CACert is the CA certificate the agents trust the control plane
	// with. Required unless Insecure.
	CACert string
	// Insecure has the agents dial in plaintext, a control plane started
	// with --insecure.
	Insecure bool
	// JoinToken returns the join token the agents join with, read as each
	// starts; required unless Insecure. The agents get it in their
	// environment, never on their command line, where any user could
	// read it.
	JoinToken func() (string, error)
	// LogDir receives one log file per agent. Required.
	LogDir string
	// MaxNodes caps the agents running at once; 0 means 200.
	MaxNodes int
	// StopGrace is how long an agent gets between TERM and KILL; 0 means 10s.
	StopGrace time.Duration
	// SimJobs starts the agents with --sim-jobs.
	SimJobs bool
	// SimControlDir starts the agents with --sim-control: a directory
	// they read to steer their simulated nodes. Empty means none.
	SimControlDir string
	// Logger receives the provider's logs.
	Logger *slog.Logger
}

// Provider runs simulated agents as child processes.
type Provider struct {
	o   Options
	log *slog.Logger

	mu     sync.Mutex
	procs  map[string]*proc // by instance id
	closed bool
	// starting counts the places reserved by Provision calls under way.
	starting int
}

type proc struct {
	inst    provider.Instance
	cmd     *exec.Cmd
	logPath string
	done    chan struct{} // closed when the process has exited
	stopped bool          // Terminate asked it to stop
}

// New checks the options and finds the agent binary.
func New(o Options) (*Provider, error) {
	if o.AgentBinary == "" || o.Server == "" || o.LogDir == "" {
		return nil, errors.New("local provider: agent binary, server and log directory are required")
	}
	if o.CACert == "" && !o.Insecure {
		return nil, errors.New("local provider: the agents need the control plane's CA certificate (local_provider.ca_cert)")
	}
	if o.JoinToken == nil && !o.Insecure {
		return nil, errors.New("local provider: the agents need a join token")
	}
	if _, err := os.Stat(o.AgentBinary); err != nil {
		return nil, fmt.Errorf("local provider: agent binary: %w", err)
	}
	if err := os.MkdirAll(o.LogDir, 0o755); err != nil {
		return nil, fmt.Errorf("local provider: log directory: %w", err)
	}
	if o.MaxNodes <= 0 {
		o.MaxNodes = 200
	}
	if o.StopGrace <= 0 {
		o.StopGrace = 10 * time.Second
	}
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	return &Provider{o: o, log: o.Logger.With("provider", "local"), procs: make(map[string]*proc)}, nil
}

// FindAgent looks for navarch-agent beside the running executable, then on
// $PATH.
func FindAgent() (string, error) {
	if self, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(self), "navarch-agent")
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	p, err := exec.LookPath("navarch-agent")
	if err != nil {
		return "", errors.New("navarch-agent is neither beside navarch-controlplane nor on $PATH")
	}
	return p, nil
}

// Name is "local".
func (p *Provider) Name() string { return "local" }

// Description says what the provider starts.
func (p *Provider) Description() string {
	return "simulated navarch-agent processes on the control plane's machine"
}

func newID() string {
	b := make([]byte, 3)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// Provision starts an agent for each of spec.NodeIDs. Each is PROVISIONING until it
// registers; one that exits first is reported through spec.Failed.
func (p *Provider) Provision(ctx context.Context, spec provider.Spec) ([]provider.Instance, error) {
	// The places are reserved under the lock, so requests at the same
	// time cannot together pass the limit.
	p.mu.Lock()
	running := len(p.procs) + p.starting
	if p.closed {
		p.mu.Unlock()
		return nil, errors.New("provider is shutting down")
	}
	if running+len(spec.NodeIDs) > p.o.MaxNodes {
		p.mu.Unlock()
		return nil, fmt.Errorf("%d agents run already; %d more would pass the limit of %d", running, len(spec.NodeIDs), p.o.MaxNodes)
	}
	p.starting += len(spec.NodeIDs)
	p.mu.Unlock()
	left := len(spec.NodeIDs) // places still reserved
	defer func() {
		p.mu.Lock()
		p.starting -= left
		p.mu.Unlock()
	}()
	var out []provider.Instance
	for _, nodeID := range spec.NodeIDs {
		if err := ctx.Err(); err != nil {
			return out, err
		}
		inst := provider.Instance{NodeID: nodeID, InstanceID: "proc-" + newID(), Pool: spec.Pool}
		err := p.start(inst, spec)
		p.mu.Lock()
		p.starting-- // started (now in procs) or failed
		left--
		p.mu.Unlock()
		if err != nil {
			if len(out) == 0 {
				return nil, err
			}
			spec.Failed(inst.NodeID, err.Error())
		}
		out = append(out, inst)
	}
	return out, nil
}

func (p *Provider) start(inst provider.Instance, spec provider.Spec) error {
	gpus := spec.GPUsPerNode
	if gpus == 0 {
		gpus = 8
	}
	args := []string{"--server", p.o.Server, "--node-id", inst.NodeID, "--instance-id", inst.InstanceID}
	var env []string
	if p.o.Insecure {
		args = append(args, "--insecure")
	} else {
		token, err := p.o.JoinToken()
		if err != nil {
			return fmt.Errorf("join token: %w", err)
		}
		// Each agent keeps its identity beside its log.
		args = append(args, "--ca-cert", p.o.CACert, "--state-dir", filepath.Join(p.o.LogDir, inst.NodeID+".identity"))
		env = append(os.Environ(), "NAVARCH_JOIN_TOKEN="+token)
	}
	args = append(args, "--simulate", "--gpus", strconv.Itoa(gpus), "--log-level", "info")
	keys := make([]string, 0, len(spec.Labels))
	for k := range spec.Labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		args = append(args, "--label", k+"="+spec.Labels[k])
	}
	for _, f := range spec.Request.GetSimFaults() {
		args = append(args, "--sim-fault", f)
	}
	if chaos := spec.Request.GetChaosInterval().AsDuration(); chaos > 0 {
		args = append(args, "--sim-chaos", chaos.String())
	}
	if p.o.SimJobs {
		args = append(args, "--sim-jobs")
	}
	if p.o.SimControlDir != "" {
		args = append(args, "--sim-control", p.o.SimControlDir)
	}
	logPath := filepath.Join(p.o.LogDir, inst.NodeID+".log")
	logFile, err := os.Create(logPath)
	if err != nil {
		return fmt.Errorf("agent log: %w", err)
	}
	cmd := exec.Command(p.o.AgentBinary, args...)
	cmd.Env = env
	cmd.Stdout, cmd.Stderr = logFile, logFile
	// The agents die with the control plane even if it is killed.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGTERM, Setpgid: true}
	if err := cmd.Start(); err != nil {
		_ = logFile.Close()
		return fmt.Errorf("start %s: %w", p.o.AgentBinary, err)
	}
	pr := &proc{inst: inst, cmd: cmd, logPath: logPath, done: make(chan struct{})}
	p.mu.Lock()
	p.procs[inst.InstanceID] = pr
	p.mu.Unlock()
	p.log.Info("agent started", "node", inst.NodeID, "pid", cmd.Process.Pid, "log", logPath)
	go func() {
		err := cmd.Wait()
		_ = logFile.Close()
		close(pr.done)
		p.mu.Lock()
		delete(p.procs, inst.InstanceID)
		stopped := pr.stopped || p.closed
		p.mu.Unlock()
		if stopped {
			return
		}
		reason := fmt.Sprintf("agent exited (%v)", exitText(err))
		if last := lastLine(logPath); last != "" {
			reason += ": " + last
		}
		p.log.Warn("agent exited on its own", "node", inst.NodeID, "reason", reason)
		if spec.Failed != nil {
			spec.Failed(inst.NodeID, reason)
		}
	}()
	return nil
}

func exitText(err error) string {
	if err == nil {
		return "status 0"
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ProcessState.String()
	}
	return err.Error()
}

// lastLine returns the last non-empty line of a log file, shortened.
func lastLine(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	last := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if t := strings.TrimSpace(sc.Text()); t != "" {
			last = t
		}
	}
	if len(last) > 300 {
		last = last[:300] + "…"
	}
	return last
}

// Terminate stops an agent: TERM, then KILL after the grace. An instance
// that is already gone is fine.
func (p *Provider) Terminate(ctx context.Context, inst provider.Instance) error {
	p.mu.Lock()
	pr := p.procs[inst.InstanceID]
	if pr != nil {
		pr.stopped = true
	}
	p.mu.Unlock()
	if pr == nil {
		return nil
	}
	return p.stop(ctx, pr)
}

func (p *Provider) stop(ctx context.Context, pr *proc) error {
	_ = pr.cmd.Process.Signal(syscall.SIGTERM)
	t := time.NewTimer(p.o.StopGrace)
	defer t.Stop()
	select {
	case <-pr.done:
		return nil
	case <-t.C:
	case <-ctx.Done():
	}
	_ = pr.cmd.Process.Kill()
	select {
	case <-pr.done:
		return nil
	case <-time.After(5 * time.Second):
		return fmt.Errorf("agent %s (pid %d) did not exit after KILL", pr.inst.NodeID, pr.cmd.Process.Pid)
	}
}

// List lists the agents it runs now, by node id. They are its children,
// so a control plane that restarted finds none from before.
func (p *Provider) List(context.Context) ([]provider.Instance, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]provider.Instance, 0, len(p.procs))
	for _, pr := range p.procs {
		out = append(out, pr.inst)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].NodeID < out[j].NodeID })
	return out, nil
}

// Close stops every agent; the control plane calls it as it shuts down.
func (p *Provider) Close() error {
	p.mu.Lock()
	p.closed = true
	procs := make([]*proc, 0, len(p.procs))
	for _, pr := range p.procs {
		pr.stopped = true
		procs = append(procs, pr)
	}
	p.mu.Unlock()
	var wg sync.WaitGroup
	errs := make([]error, len(procs))
	for i, pr := range procs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = p.stop(context.Background(), pr)
		}()
	}
	wg.Wait()
	if len(procs) > 0 {
		p.log.Info("stopped local agents", "count", len(procs))
	}
	return errors.Join(errs...)
}
