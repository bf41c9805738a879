// Command etcdmember runs one etcd member for tests that kill it as a
// failing machine would (see etcdtest.Processes): it serves until it is
// signalled, printing "ready" once it does.
package main

import (
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"go.etcd.io/etcd/server/v3/embed"

	"github.com/navarch/navarch/internal/etcdtest"
)

func main() {
	var m etcdtest.Member
	flag.StringVar(&m.Name, "name", "", "member `NAME`")
	flag.StringVar(&m.Dir, "dir", "", "data `DIR`")
	flag.StringVar(&m.Peer, "peer", "", "peer `URL`")
	flag.StringVar(&m.Client, "client", "", "client `URL`")
	flag.StringVar(&m.Initial, "initial", "", "the cluster, `NAME=PEER,…`")
	flag.BoolVar(&m.Existing, "existing", false, "start from the member's data")
	flag.Parse()
	cfg, err := m.Config()
	if err != nil {
		fmt.Fprintln(os.Stderr, "etcdmember:", err)
		os.Exit(2)
	}
	e, err := embed.StartEtcd(cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "etcdmember:", err)
		os.Exit(1)
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	select {
	case <-e.Server.ReadyNotify():
		fmt.Println("ready")
	case err := <-e.Err():
		fmt.Fprintln(os.Stderr, "etcdmember:", err)
		os.Exit(1)
	case <-sig:
		e.Close()
		return
	}
	select {
	case err := <-e.Err():
		fmt.Fprintln(os.Stderr, "etcdmember:", err)
		e.Close()
		os.Exit(1)
	case <-sig:
		e.Close()
	}
}
