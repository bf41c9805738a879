// Command navarch is the operator's fleet console and its scriptable
// subcommands. Run it with no subcommand to open the console; see
// 'navarch help' for the rest.
package main

import (
	"context"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/navarch/navarch/internal/cli"
	"github.com/navarch/navarch/internal/demo"
	"github.com/navarch/navarch/internal/rpcclient"
	"github.com/navarch/navarch/sim"
	"github.com/navarch/navarch/tui"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	env := cli.Env{Stdout: os.Stdout, Stderr: os.Stderr, Stdin: os.Stdin, Console: tui.Run}
	env.Demo = func(ctx context.Context, args []string) error {
		o := demo.Options{Stdout: os.Stdout, Stderr: os.Stderr, InProcess: simulate,
			Console: func(ctx context.Context, target rpcclient.Target, note string) error {
				return tui.RunNoted(ctx, target, false, note)
			}}
		if err := demo.ParseArgs(args, &o); err != nil {
			return cli.Usage(err)
		}
		if tui.CheckTerminal() != nil {
			// No terminal for the console: the fleet runs on its own
			// until interrupted, for watching from elsewhere.
			fmt.Fprintln(os.Stderr, "navarch demo: no terminal for the console; running the fleet without it until interrupted")
			o.Console = nil
		}
		return demo.Run(ctx, o)
	}
	code := cli.Main(ctx, os.Args[1:], env)
	stop()
	os.Exit(code)
}

// simulate runs the large demo's fleet in this process.
func simulate(ctx context.Context, server rpcclient.Target, nodes, gpus int, faultEvery time.Duration) error {
	f, err := sim.New(sim.Options{
		Server: server, Nodes: nodes, GPUs: gpus, Prefix: "sim-",
		Labels:        map[string]string{"pool": "demo"},
		ChaosInterval: faultEvery * time.Duration(nodes),
	})
	if err != nil {
		return err
	}
	defer f.Close()
	return f.Run(ctx)
}
