// Package cli is the navarch command line: the console (when no subcommand
// is given) and the scriptable subcommands, all over ControlPlaneService.
//
// Exit codes, which scripts can rely on:
//
//	0  success
//	1  the control plane could not be reached, or failed
//	2  bad usage: an unknown flag, a missing argument, a malformed value
//	3  not found: the node, pool, token or context does not exist
//	4  refused: the node's state forbids the action, or the control plane
//	   rejected a value
//	5  not allowed: no valid token, or the token's role does not allow the
//	   command
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

	"github.com/navarch/navarch/internal/display"
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
	ExitDenied   = 5
)

// Env is what a command needs from the outside world.
type Env struct {
	Stdout, Stderr io.Writer
	Stdin          io.Reader
	// Console runs the full-screen console; nil when the binary has none.
	Console func(ctx context.Context, target rpcclient.Target, readOnly bool) error
	// Demo runs the demo; nil when the binary has none.
	Demo func(ctx context.Context, args []string) error
}

// usageError is bad usage: exit 2 with the message and a hint.
type usageError struct {
	msg string
	// cmd is the command whose usage the hint points to; "" for the
	// top-level usage.
	cmd string
}

func (e usageError) Error() string { return e.msg }

func usagef(format string, a ...any) error { return usageError{msg: fmt.Sprintf(format, a...)} }

// Usage marks err as bad usage, so it exits with code 2. A request for
// help (flag.ErrHelp) stays one, so that the command's usage is printed.
func Usage(err error) error {
	if errors.Is(err, flag.ErrHelp) {
		return flag.ErrHelp
	}
	return usageError{msg: err.Error()}
}

// within points the hint of a usage error at cmd's usage.
func within(cmd string, err error) error {
	var ue usageError
	if errors.As(err, &ue) && ue.cmd == "" {
		ue.cmd = cmd
		return ue
	}
	return err
}

// helpError is a request for help: text goes to stdout and the exit code
// is 0.
type helpError struct{ text string }

func (helpError) Error() string { return "help requested" }

// Main runs the command line and returns the exit code.
func Main(ctx context.Context, args []string, env Env) int {
	err := run(ctx, args, env)
	if err == nil {
		return ExitOK
	}
	var ue usageError
	var he helpError
	switch {
	case errors.As(err, &he):
		fmt.Fprint(env.Stdout, he.text)
		return ExitOK
	case errors.As(err, &ue):
		hint := "navarch help"
		if ue.cmd != "" {
			hint = "navarch " + ue.cmd + " -h"
		}
		fmt.Fprintf(env.Stderr, "navarch: %s\nRun '%s' for usage.\n", ue.msg, hint)
		return ExitUsage
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
	if errors.As(err, new(notFoundError)) {
		return ExitNotFound
	}
	st, ok := status.FromError(err)
	if !ok {
		return ExitFailure
	}
	switch st.Code() {
	case codes.NotFound:
		return ExitNotFound
	case codes.FailedPrecondition, codes.InvalidArgument, codes.AlreadyExists:
		return ExitRefused
	case codes.Unauthenticated, codes.PermissionDenied:
		return ExitDenied
	}
	return ExitFailure
}

func run(ctx context.Context, args []string, env Env) error {
	fs := flag.NewFlagSet("navarch", flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var cf connFlags
	cf.register(fs)
	readOnly := fs.Bool("read-only", false, "")
	// --version as the daemons take it, beside `navarch version`.
	showVersion := fs.Bool("version", false, "")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return helpError{topUsage()}
		}
		return usagef("%v", err)
	}
	rest := fs.Args()
	if *showVersion {
		if len(rest) > 0 {
			return usagef("--version takes no command")
		}
		fmt.Fprintln(env.Stdout, version.Long("navarch"))
		return nil
	}
	if len(rest) == 0 {
		if env.Console == nil {
			return usagef("this build has no console")
		}
		target, err := cf.target()
		if err != nil {
			return err
		}
		return env.Console(ctx, target, *readOnly)
	}
	cmd, cargs := rest[0], rest[1:]
	if *readOnly && cmd != "get" && cmd != "help" {
		return usagef("--read-only only applies to the console and 'get'")
	}
	switch cmd {
	case "help":
		if len(cargs) == 0 || strings.HasPrefix(cargs[0], "-") {
			return helpError{topUsage()}
		}
		return run(ctx, append(append([]string{}, cargs...), "-h"), env)
	case "version":
		fs := flag.NewFlagSet("version", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		pos, err := parse(fs, cargs)
		if err != nil {
			return within(cmd, err)
		}
		if len(pos) > 0 {
			return within(cmd, usagef("version takes no arguments"))
		}
		fmt.Fprintln(env.Stdout, version.Long("navarch"))
		return nil
	case "completion":
		fs := flag.NewFlagSet("completion", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		pos, err := parse(fs, cargs)
		if err != nil {
			return within(cmd, err)
		}
		if len(pos) != 1 {
			return within(cmd, usagef("completion takes one shell: bash, zsh or fish"))
		}
		script, err := completionScript(pos[0])
		if err != nil {
			return within(cmd, err)
		}
		fmt.Fprint(env.Stdout, script)
		return nil
	case "demo":
		if env.Demo == nil {
			return usagef("this build has no demo")
		}
		err := env.Demo(ctx, cargs)
		if errors.Is(err, flag.ErrHelp) {
			return helpError{commandUsage("demo", nil)}
		}
		return within(cmd, err)
	case "get":
		return denial(&cf, commandName(cmd, cargs), runGet(ctx, &cf, cargs, env))
	case "cordon", "uncordon", "drain", "terminate", "diagnose":
		return denial(&cf, cmd, within(cmd, runAction(ctx, &cf, cmd, cargs, env)))
	case "reset-gpu", "reboot":
		return denial(&cf, cmd, within(cmd, runRemedy(ctx, &cf, cmd, cargs, env)))
	case "release":
		return denial(&cf, cmd, within(cmd, runRelease(ctx, &cf, cargs, env)))
	case "reset-identity":
		return denial(&cf, cmd, within(cmd, runResetIdentity(ctx, &cf, cargs, env)))
	case "power-cycle":
		return denial(&cf, cmd, within(cmd, runPowerCycle(ctx, &cf, cargs, env)))
	case "pool":
		return denial(&cf, commandName(cmd, cargs), runPool(ctx, &cf, cargs, env))
	case "provision":
		return denial(&cf, cmd, within(cmd, runProvision(ctx, &cf, cargs, env)))
	case "token":
		return denial(&cf, commandName(cmd, cargs), runToken(ctx, &cf, cargs, env))
	case "config":
		if f := setConnFlag(fs); f != "" {
			return usagef("--%s does not apply to 'config', which never reaches the control plane", f)
		}
		return runConfig(cargs, env)
	}
	return usagef("unknown command %q", cmd)
}

// connFlags are how a command reaches the control plane. They may come
// before the command or among its flags.
type connFlags struct {
	server, caCert, token, context string
	insecure                       bool
}

func (c *connFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&c.server, "server", c.server, "`HOST:PORT` the control plane, or several joined by commas (a leader and its standbys: calls go to whichever leads); else $NAVARCH_SERVER, else the context's, else 127.0.0.1:50051")
	fs.StringVar(&c.caCert, "ca-cert", c.caCert, "`FILE` the control plane's CA certificate (its DATA_DIR/pki/ca.crt); else $NAVARCH_CA_CERT, else the context's, else this machine's default control plane's")
	fs.BoolVar(&c.insecure, "insecure", c.insecure, "plaintext, to a control plane started with --insecure")
	fs.StringVar(&c.token, "token", c.token, "`TOKEN` the operator token to call with; else $NAVARCH_TOKEN, else the context's, else, for a control plane on loopback, this machine's default control plane's admin token where this user can read it")
	fs.StringVar(&c.context, "context", c.context, "`NAME` the context of the client configuration (navarch config) whose settings fill in what the flags and environment leave open; else its current context")
}

// setConnFlag is the name of a connection flag set in fs, or "".
func setConnFlag(fs *flag.FlagSet) string {
	name := ""
	fs.Visit(func(f *flag.Flag) {
		if name == "" && connFlag(f.Name) {
			name = f.Name
		}
	})
	return name
}

// client dials the control plane for one command.
func client(cf *connFlags) (controlplanev1.ControlPlaneServiceClient, func(), error) {
	target, err := cf.target()
	if err != nil {
		return nil, nil, err
	}
	conn, err := rpcclient.Dial(target)
	if err != nil {
		return nil, nil, usagef("%v", err)
	}
	return controlplanev1.NewControlPlaneServiceClient(conn), func() { _ = conn.Close() }, nil
}

// call dials the control plane and runs fn with a context bounded by
// timeout.
func call(ctx context.Context, cf *connFlags, timeout time.Duration, fn func(context.Context, controlplanev1.ControlPlaneServiceClient) error) error {
	c, closeConn, err := client(cf)
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

// flagSet makes a subcommand's flag set; the connection flags are
// accepted on every subcommand too.
func flagSet(name string, cf *connFlags) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	cf.register(fs)
	return fs
}

// parse parses flags that may come before or after the positional
// arguments, as in "navarch drain node-1 --force".
func parse(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, helpError{commandUsage(fs.Name(), fs)}
			}
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

// optionalDuration is a duration flag that may be left unset, so that the
// control plane applies its own default. It takes days too ("9d"): the
// spans it holds (a drain deadline, a token's lifetime) run to days.
type optionalDuration struct {
	d   time.Duration
	set bool
}

func (o *optionalDuration) String() string {
	if !o.set {
		return ""
	}
	return display.Duration(o.d)
}

func (o *optionalDuration) Set(v string) error {
	d, err := display.ParseDuration(v)
	if err != nil {
		return err
	}
	o.d, o.set = d, true
	return nil
}

func outputFlag(fs *flag.FlagSet) *string {
	const text = "`table|json` output format"
	o := fs.String("o", "table", text)
	fs.StringVar(o, "output", "table", text)
	return o
}

func checkOutput(o string) error {
	if o != "table" && o != "json" {
		return usagef("-o: %q is not table or json", o)
	}
	return nil
}
