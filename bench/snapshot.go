package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"syscall"
	"time"

	"github.com/navarch/navarch/internal/rpcclient"
)

// snapshotCommand is the suite's own binary run as a WatchFleet client in a
// process of its own, as the console is: the simulator's heap and its
// collections are not the client's.
const snapshotCommand = "snapshot-client"

// snapshotTokenEnv carries the operator token to the client process, kept
// out of its command line.
const snapshotTokenEnv = "NAVARCH_BENCH_TOKEN"

// snapshotInProcess times a WatchFleet snapshot of the control plane at t
// from a client process of its own, and returns the CPU that process used
// besides: on shared cores the wait is the client's work and its wait for
// a core, and the CPU tells them apart.
func snapshotInProcess(ctx context.Context, t rpcclient.Target) (wait, cpu time.Duration, err error) {
	self, err := os.Executable()
	if err != nil {
		return 0, 0, fmt.Errorf("snapshot: find this binary: %w", err)
	}
	args := []string{snapshotCommand, "--addr", t.Addr, "--ca-cert", t.CACert}
	if t.Insecure {
		args = []string{snapshotCommand, "--addr", t.Addr, "--insecure"}
	}
	cmd := exec.CommandContext(ctx, self, args...)
	cmd.Env = append(os.Environ(), snapshotTokenEnv+"="+t.Token)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return 0, 0, fmt.Errorf("snapshot client: %w: %s", err, strings.TrimSpace(stderr.String()))
	}
	wait, err = time.ParseDuration(strings.TrimSpace(string(out)))
	if err != nil {
		return 0, 0, fmt.Errorf("snapshot client: %q is not a duration", out)
	}
	return wait, cmd.ProcessState.UserTime() + cmd.ProcessState.SystemTime(), nil
}

// snapshotMain is the client process: it times one snapshot and prints it.
func snapshotMain(args []string) error {
	fs := flag.NewFlagSet(snapshotCommand, flag.ContinueOnError)
	addr := fs.String("addr", "", "control plane `HOST:PORT`")
	ca := fs.String("ca-cert", "", "the control plane's CA `FILE`")
	insecure := fs.Bool("insecure", false, "dial without TLS")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *addr == "" || (*ca == "") == !*insecure {
		return errors.New("snapshot-client needs --addr and one of --ca-cert or --insecure")
	}
	d, err := snapshotTime(context.Background(), rpcclient.Target{Addr: *addr, CACert: *ca, Insecure: *insecure, Token: os.Getenv(snapshotTokenEnv)})
	if err != nil {
		return err
	}
	fmt.Println(d)
	return nil
}
