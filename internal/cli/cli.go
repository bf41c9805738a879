// Package cli is the navarch command line: the console (when no subcommand
// is given) and the scriptable subcommands, all over ControlPlaneService.
//
// Exit codes, which scripts can rely on:
//
//	0  success
//	1  the control plane could not be reached, or failed
//	2  bad usage: an unknown flag, a missing argument, a malformed value
//	3  not found: the node does not exist
//	4  refused: the node's state forbids the action, or the control plane
//	   rejected a value
package cli

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/navarch/navarch/internal/rpcclient"
	"github.com/navarch/navarch/internal/version"
	controlplanev1 "github.com/navarch/navarch/proto/navarch/controlplane/v1"
)

// Exit codes.
const (
	ExitOK       = 0
	ExitFailure  = 1
	ExitUsage    = 2
	ExitNotFound = 3
	ExitRefused  = 4
)

// Env is what a command needs from the outside world.
type Env struct {
	Stdout, Stderr io.Writer
	Stdin          io.Reader
	// Console runs the full-screen console; nil when the binary has none.
	Console func(ctx context.Context, server string, readOnly bool) error
	// Demo runs the demo; nil when the binary has none.
	Demo func(ctx context.Context, args []string) error
}

// usageError is bad usage: exit 2 with the message and a hint.
type usageError struct{ msg string }

func (e usageError) Error() string { return e.msg }

func usagef(format string, a ...any) error { return usageError{fmt.Sprintf(format, a...)} }

// Usage marks err as bad usage, so it exits with code 2.
func Usage(err error) error { return usageError{err.Error()} }

const usage = `Usage:
  navarch [--server HOST:PORT] [--read-only]     open the fleet console
  navarch get nodes [-o table|json] [filters]     list nodes
  navarch get node ID [-o table|json]             show one node in detail
  navarch get events [--node ID] [-o table|json]  list health events, newest first
  navarch get status [-o table|json]              fleet totals
  navarch cordon ID [--reason TEXT]               stop new work landing on a node
  navarch uncordon ID [--reason TEXT]             return a node to service
  navarch drain ID [--reason TEXT] [--deadline DURATION] [--force]
  navarch terminate ID [--reason TEXT] [--force] [--drain-timeout DURATION]
  navarch diagnose ID [--wait DURATION]           run an NVML self-check on a node
  navarch provision --count N [--provider NAME] [--gpus N] [--label K=V]... [--sim-fault SPEC]... [--chaos DURATION]
  navarch demo [--nodes N] [--fresh]              run a simulated fleet and open the console
  navarch version

The server is --server, else $NAVARCH_SERVER, else 127.0.0.1:50051.
Exit codes: 0 ok, 1 failure, 2 bad usage, 3 node not found, 4 refused.
`

// Main runs the command line and returns the exit code.
func Main(ctx context.Context, args []string, env Env) int {
	err := run(ctx, args, env)
	if err == nil {
		return ExitOK
	}
	var ue usageError
	switch {
	case errors.As(err, &ue):
		fmt.Fprintf(env.Stderr, "navarch: %s\nRun 'navarch help' for usage.\n", ue.msg)
		return ExitUsage
	case errors.Is(err, flag.ErrHelp):
		return ExitOK
	}
	fmt.Fprintf(env.Stderr, "navarch: %s\n", message(err))
	return exitCode(err)
}

// message renders an error; a gRPC status shows its message alone.
func message(err error) string {
	if st, ok := status.FromError(err); ok {
		switch st.Code() {
		case codes.Unavailable:
			return "control plane unavailable: " + st.Message()
		case codes.DeadlineExceeded:
			return "control plane did not answer in time"
		}
		return st.Message()
	}
	return err.Error()
}

func exitCode(err error) int {
	st, ok := status.FromError(err)
	if !ok {
		return ExitFailure
	}
	switch st.Code() {
	case codes.NotFound:
		return ExitNotFound
	case codes.FailedPrecondition, codes.InvalidArgument, codes.AlreadyExists, codes.PermissionDenied:
		return ExitRefused
	}
	return ExitFailure
}

func run(ctx context.Context, args []string, env Env) error {
	fs := flag.NewFlagSet("navarch", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	server := fs.String("server", "", "")
	readOnly := fs.Bool("read-only", false, "")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fmt.Fprint(env.Stdout, usage)
			return flag.ErrHelp
		}
		return usagef("%v", err)
	}
	rest := fs.Args()
	if len(rest) == 0 {
		if env.Console == nil {
			return usagef("this build has no console")
		}
		return env.Console(ctx, rpcclient.ServerFromEnv(*server), *readOnly)
	}
	cmd, cargs := rest[0], rest[1:]
	if *readOnly && cmd != "get" {
		return usagef("--read-only only applies to the console and 'get'")
	}
	switch cmd {
	case "help", "-h", "--help":
		fmt.Fprint(env.Stdout, usage)
		return nil
	case "version":
		fmt.Fprintln(env.Stdout, version.String())
		return nil
	case "demo":
		if env.Demo == nil {
			return usagef("this build has no demo")
		}
		return env.Demo(ctx, cargs)
	case "get":
		return runGet(ctx, *server, cargs, env)
	case "cordon", "uncordon", "drain", "terminate", "diagnose":
		return runAction(ctx, *server, cmd, cargs, env)
	case "provision":
		return runProvision(ctx, *server, cargs, env)
	}
	return usagef("unknown command %q", cmd)
}

// client dials the control plane for one command.
func client(server string) (controlplanev1.ControlPlaneServiceClient, func(), error) {
	conn, err := rpcclient.Dial(rpcclient.ServerFromEnv(server))
	if err != nil {
		return nil, nil, usagef("--server: %v", err)
	}
	return controlplanev1.NewControlPlaneServiceClient(conn), func() { _ = conn.Close() }, nil
}

// call dials the control plane and runs fn with a context bounded by
// timeout.
func call(ctx context.Context, server string, timeout time.Duration, fn func(context.Context, controlplanev1.ControlPlaneServiceClient) error) error {
	c, closeConn, err := client(server)
	if err != nil {
		return err
	}
	defer closeConn()
	cctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	return fn(cctx, c)
}

// callTimeout bounds one scripted call.
const callTimeout = 15 * time.Second

// flagSet makes a subcommand's flag set; --server is accepted on every
// subcommand too.
func flagSet(name string, server *string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.StringVar(server, "server", *server, "")
	return fs
}

// parse parses flags that may come before or after the positional
// arguments, as in "navarch drain node-1 --force".
func parse(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			return nil, usagef("%s: %v", fs.Name(), err)
		}
		args = fs.Args()
		if len(args) == 0 {
			return pos, nil
		}
		pos = append(pos, args[0])
		args = args[1:]
	}
}

// listFlag collects a repeatable flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(v string) error { *l = append(*l, v); return nil }

func outputFlag(fs *flag.FlagSet) *string {
	o := fs.String("o", "table", "")
	fs.StringVar(o, "output", "table", "")
	return o
}

func checkOutput(o string) error {
	if o != "table" && o != "json" {
		return usagef("-o: %q is not table or json", o)
	}
	return nil
}
