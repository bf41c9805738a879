// Command navarch-agent runs on every GPU node. It reads the GPUs through
// NVML and reports to the control plane, which it dials; the control plane
// never dials a node.
//
//	navarch-agent --server HOST:PORT [--node-id ID] [--join-token TOKEN] [--ca-cert FILE | --ca-hash sha256:HEX] [--simulate [--gpus N] [--sim-fault SPEC]…]
//
// A node joins once with an operator's join token: it makes its own key,
// gets a certificate for its node id, keeps both in its state directory,
// and calls with that certificate from then on, renewing it before it
// expires. A restart needs no token.
package main

import (
	"cmp"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/jonboulle/clockwork"

	"github.com/navarch/navarch/agent"
	"github.com/navarch/navarch/agent/identity"
	"github.com/navarch/navarch/agent/simnvml"
	"github.com/navarch/navarch/agent/slurm"
	"github.com/navarch/navarch/internal/faultspec"
	"github.com/navarch/navarch/internal/logging"
	"github.com/navarch/navarch/internal/rpcclient"
	"github.com/navarch/navarch/internal/statedir"
	"github.com/navarch/navarch/internal/version"
	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
	nodev1 "github.com/navarch/navarch/proto/navarch/node/v1"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// listFlag collects a repeatable flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("navarch-agent", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var servers listFlag
	fs.Var(&servers, "server", "control plane address `HOST:PORT`; several control planes, a leader and its standbys, joined by commas or given as repeated flags, and the agent calls whichever leads (default $NAVARCH_SERVER or "+rpcclient.DefaultServer+")")
	caCert := fs.String("ca-cert", "", "`FILE` the control plane's CA certificate, its DATA_DIR/pki/ca.crt (default $NAVARCH_CA_CERT, else this machine's default control plane's)")
	caHash := fs.String("ca-hash", "", "`sha256:HEX` trust the control plane's CA by the SHA-256 of its public key instead of --ca-cert, as kubeadm's --discovery-token-ca-cert-hash")
	joinToken := fs.String("join-token", "", "`TOKEN` to join with, made by 'navarch token create NAME --role agent' (default $NAVARCH_JOIN_TOKEN); needed only until the node has joined")
	stateDir := fs.String("state-dir", "", "`DIR` keeping this node's key and certificate (default "+statedir.Agent("NODE_ID")+")")
	plaintext := fs.Bool("insecure", false, "plaintext, to a control plane started with --insecure; no identity")
	nodeID := fs.String("node-id", "", "node `ID` (default: the hostname)")
	simulate := fs.Bool("simulate", false, "use simulated GPUs instead of the NVIDIA driver")
	gpus := fs.Int("gpus", 8, "number of simulated GPUs (with --simulate)")
	var faults, labels listFlag
	fs.Var(&faults, "sim-fault", "inject a simulated fault `SPEC` ("+faultspec.Grammar+"); repeatable")
	chaos := fs.Duration("sim-chaos", 0, "mean `INTERVAL` between random simulated faults, such as 30s (with --simulate)")
	idle := fs.Bool("sim-idle", false, "keep simulated GPUs idle instead of running a simulated workload")
	jobs := fs.Bool("sim-jobs", false, "run a real process for each simulated job, so drains wait for it (with --simulate)")
	simControl := fs.String("sim-control", "", "`DIR` read every second to steer the simulated node (with --simulate): DIR/"+simnvml.UtilizationFile+" holds a GPU utilisation 0–100 every simulated GPU heads for instead of its workload's phases (none while the file is absent); DIR/NODE_ID"+simnvml.FaultsSuffix+" holds faults in the --sim-fault grammar, one per line, each applied once as its line appears")
	simSeed := fs.Uint64("sim-seed", 0, "simulation seed `N`: the simulated GPUs' UUIDs follow the node id and N, and the workload and chaos repeat (default: a random workload; with --simulate)")
	fs.Var(&labels, "label", "node label `KEY=VALUE`; repeatable")
	instanceID := fs.String("instance-id", "", "provider's instance `ID` for this node")
	poll := fs.Duration("poll-interval", 5*time.Second, "how often the GPUs are read")
	kernelLogPath := fs.String("kernel-log", "/dev/kmsg", "`PATH` of the kernel log, read as /dev/kmsg for the NVIDIA driver's XID lines (a simulated node reads its own); empty reads none, and XIDs come from NVML alone")
	nvidiaSMI := fs.String("nvidia-smi", "nvidia-smi", "`PATH` of the driver's tool that resets a GPU (nvidia-smi --gpu-reset -i N)")
	rebootCommand := fs.String("reboot-command", "systemctl reboot", "`COMMAND` that reboots the node when an operator asks")
	noRemedies := fs.Bool("no-remedies", false, "refuse every GPU reset and reboot an operator asks for")
	metricsListen := fs.String("metrics-listen", "", "`ADDR` to serve Prometheus metrics (each GPU under dcgm-exporter's names) and /healthz on, such as :9400, from before the node joins; plain HTTP unless --metrics-web-config says otherwise (default: off)")
	metricsWebConfig := fs.String("metrics-web-config", "", "`FILE` in Prometheus' web-config format: TLS and basic authentication for --metrics-listen")
	var logFlags logging.Flags
	logFlags.Register(fs)
	scheduler := fs.String("scheduler", "", "workload `SCHEDULER` told of every cordon, drain and uncordon: slurm (scontrol drains and resumes the node; a drain ends when Slurm shows it DRAINED; a forced drain cancels its jobs with scancel); empty for none")
	slurmNodeName := fs.String("slurm-node-name", "", "this node's `NAME` in Slurm (default: the host's short name)")
	slurmBin := fs.String("slurm-bin", "", "`DIR` holding scontrol, squeue and scancel (default: found in $PATH); Slurm's own SLURM_CONF is honoured")
	schedulerInterval := fs.Duration("scheduler-interval", 30*time.Second, "how often the scheduler's state is read and brought in line with the node's lifecycle")
	configFile := fs.String("config", "", "YAML `FILE` of settings named as these flags, such as `scheduler: slurm`; flags on the command line win")
	showVersion := fs.Bool("version", false, "print the version and exit")
	fs.Usage = func() {
		fmt.Fprintf(stderr, "Usage: navarch-agent --server HOST:PORT[,HOST:PORT...] [--node-id ID] [--join-token TOKEN] [--ca-cert FILE | --ca-hash sha256:HEX] [--simulate [--gpus N] [--sim-fault SPEC]...]\n\nFlags:\n")
		fs.PrintDefaults()
	}
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	fail := func(format string, a ...any) int {
		fmt.Fprintf(stderr, "navarch-agent: "+format+"\n", a...)
		return 2
	}
	if fs.NArg() > 0 {
		return fail("unexpected argument %q", fs.Arg(0))
	}
	if *showVersion {
		fmt.Fprintln(stdout, version.Long("navarch-agent"))
		return 0
	}
	if *configFile != "" {
		if err := applyConfig(fs, *configFile); err != nil {
			return fail("%v", err)
		}
	}
	log, err := logFlags.Logger(stderr)
	if err != nil {
		return fail("%v", err)
	}
	if !*simulate && (len(faults) > 0 || *chaos > 0 || *idle || *jobs || *simSeed != 0 || *simControl != "") {
		return fail("--sim-fault, --sim-chaos, --sim-idle, --sim-jobs, --sim-seed and --sim-control need --simulate")
	}
	if *gpus < 1 || *gpus > 64 {
		return fail("--gpus: %d is not within 1–64", *gpus)
	}
	if *caCert != "" && *caHash != "" {
		return fail("give --ca-cert or --ca-hash, not both")
	}
	if *caHash != "" {
		if err := rpcclient.CheckPin(*caHash); err != nil {
			return fail("--ca-hash: %v", err)
		}
	}
	if *metricsWebConfig != "" && *metricsListen == "" {
		return fail("--metrics-web-config needs --metrics-listen")
	}
	if *poll < 100*time.Millisecond {
		return fail("--poll-interval: %s is below 100ms", *poll)
	}
	if strings.TrimSpace(*nvidiaSMI) == "" {
		return fail("--nvidia-smi: the path is empty")
	}
	if len(strings.Fields(*rebootCommand)) == 0 {
		return fail("--reboot-command: the command is empty")
	}
	var specs []faultspec.Spec
	for _, f := range faults {
		s, err := faultspec.Parse(f)
		if err != nil {
			return fail("--sim-fault: %v", err)
		}
		if s.GPU >= *gpus {
			return fail("--sim-fault %q: GPU %d does not exist on a node with %d GPUs", f, s.GPU, *gpus)
		}
		specs = append(specs, s)
	}
	lbls, err := agent.Labels(labels)
	if err != nil {
		return fail("--label: %v", err)
	}
	var sched agent.Scheduler
	switch *scheduler {
	case "":
		if *slurmNodeName != "" || *slurmBin != "" {
			return fail("--slurm-node-name and --slurm-bin need --scheduler slurm")
		}
	case "slurm":
		c, err := slurm.New(slurm.Options{NodeName: *slurmNodeName, Bin: *slurmBin})
		if err != nil {
			return fail("--scheduler slurm: %v", err)
		}
		sched = c
	default:
		return fail("--scheduler: %q is not a scheduler this agent knows; it knows slurm", *scheduler)
	}
	if *schedulerInterval < time.Second {
		return fail("--scheduler-interval: %s is below 1s", *schedulerInterval)
	}
	host, _ := os.Hostname()
	if *nodeID == "" {
		*nodeID = host
	}
	if *nodeID == "" {
		return fail("--node-id is required: the hostname is unknown")
	}
	if *stateDir == "" {
		if strings.ContainsRune(*nodeID, os.PathSeparator) || *nodeID == "." || *nodeID == ".." {
			return fail("--node-id %q cannot name a state directory: give --state-dir", *nodeID)
		}
		*stateDir = statedir.Agent(*nodeID)
	}
	addr := rpcclient.ServerFromEnv(servers.String())
	if _, err := rpcclient.ParseAddrs(addr); err != nil {
		return fail("--server: %v", err)
	}
	// The metrics listener starts before the node joins: a bad web-config
	// or a taken address is a usage error found before a join token is
	// spent, and the process is watched while it waits for the control
	// plane.
	var metrics *metricsListener
	if *metricsListen != "" {
		metrics, err = startMetrics(*metricsListen, *metricsWebConfig, log)
		if err != nil {
			return fail("%v", err)
		}
		defer metrics.close()
		log.Info("serving metrics", "url", metrics.srv.URL())
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()

	target := rpcclient.Target{Addr: addr, Insecure: true}
	var id *identity.Identity
	var tr trust
	if !*plaintext {
		tr = trust{addr: addr, nodeID: *nodeID, stateDir: *stateDir, token: joinTokenFromEnv(*joinToken), caPin: *caHash}
		if *caHash == "" {
			tr.caCert = cmp.Or(*caCert, os.Getenv("NAVARCH_CA_CERT"))
		}
		id, target, err = identify(ctx, log, tr)
		switch {
		case ctx.Err() != nil:
			log.Info("agent stopped")
			return 0
		case errors.Is(err, errNotJoined):
			return fail("%v", err)
		case err != nil:
			fmt.Fprintf(stderr, "navarch-agent: %v\n", err)
			return 1
		}
	}
	conn, err := dialRedial(target)
	if err != nil {
		return fail("%v", err)
	}
	defer conn.Close()
	var rejoin func(context.Context) error
	if id != nil {
		rejoin = (&rejoiner{log: log, id: id, tr: tr, conn: conn}).rejoin
	}
	ctx, cancel := context.WithCancel(ctx)
	var renewing sync.WaitGroup
	defer renewing.Wait()
	defer cancel()
	if id != nil {
		renewing.Go(func() { id.RenewLoop(ctx, nodev1.NewNodeServiceClient(conn), clockwork.NewRealClock(), log) })
	}

	var lib nvml.Interface
	var onLifecycle func(fleetv1.LifecycleState)
	var kernelLog func() (io.ReadCloser, error)
	var kernelBoot func() (time.Time, error)
	resetGPU := agent.NvidiaSMIReset(*nvidiaSMI)
	reboot := agent.CommandReboot(strings.Fields(*rebootCommand))
	bootID := readBootID()
	if *simulate {
		sim := simnvml.New(simnvml.Options{
			GPUs: *gpus, Faults: specs, ChaosInterval: *chaos, Idle: *idle, Jobs: *jobs,
			NodeID: *nodeID, Seed: *simSeed, StateDir: *stateDir,
			ControlDir: *simControl, Logger: log,
		})
		defer sim.Stop()
		lib = sim
		onLifecycle = func(l fleetv1.LifecycleState) {
			sim.SetSchedulable(l == fleetv1.LifecycleState_LIFECYCLE_STATE_ACTIVE)
		}
		// The simulated node's boot outlasts agent restarts until a
		// simulated reboot, as a real node's does.
		bootID = sim.BootID()
		if err := sim.StateError(); err != nil {
			log.Warn("the simulated boot is not kept across agent restarts", "err", err)
		}
		hooks := sim.Hooks(log)
		resetGPU, reboot = hooks.ResetGPU, hooks.Reboot
		if *kernelLogPath != "" {
			kernelLog, kernelBoot = hooks.KernelLog, hooks.KernelBoot
		}
	} else {
		lib = nvml.New()
		if *kernelLogPath != "" {
			kernelLog = func() (io.ReadCloser, error) { return os.Open(*kernelLogPath) }
		}
	}
	a, err := agent.New(agent.Options{
		NodeID:            *nodeID,
		Hostname:          host,
		Labels:            lbls,
		InstanceID:        *instanceID,
		BootID:            bootID,
		Simulated:         *simulate,
		Version:           version.String(),
		Conn:              conn,
		NVML:              lib,
		Logger:            log,
		PollInterval:      *poll,
		OnLifecycle:       onLifecycle,
		KernelLog:         kernelLog,
		KernelBoot:        kernelBoot,
		Rejoin:            rejoin,
		ResetGPU:          resetGPU,
		Reboot:            reboot,
		RemediesDisabled:  *noRemedies,
		Scheduler:         sched,
		SchedulerInterval: *schedulerInterval,
	})
	if err != nil {
		return fail("%v", err)
	}
	if metrics != nil {
		metrics.serve(a)
	}
	log.Info("agent starting", "node", *nodeID, "server", addr, "simulate", *simulate, "scheduler", *scheduler, "version", version.String())
	if err := a.Run(ctx); err != nil {
		fmt.Fprintf(stderr, "navarch-agent: %v\n", err)
		return 1
	}
	log.Info("agent stopped")
	return 0
}

func readBootID() string {
	b, err := os.ReadFile("/proc/sys/kernel/random/boot_id")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}
