package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/navarch/navarch/internal/apierr"
	"github.com/navarch/navarch/internal/rpcclient"
	controlplanev1 "github.com/navarch/navarch/proto/navarch/controlplane/v1"
)

// startStandby starts a second control plane on the etcd at endpoint,
// given the leader's CA (as docs/ha.md says; there is none without TLS)
// and, for the suite's client, its admin token, and waits until it answers
// as a standby naming the leader.
func (b *bench) startStandby(ctx context.Context, leaderDir, endpoint string) (*controlPlane, error) {
	dir, err := os.MkdirTemp("", "navarch-bench-standby-")
	if err != nil {
		return nil, err
	}
	files := []string{"pki/ca.crt", "pki/ca.key", "admin.token"}
	if b.plaintext {
		// A control plane without TLS makes no CA.
		files = files[2:]
	}
	for _, f := range files {
		data, err := os.ReadFile(filepath.Join(leaderDir, "store", f))
		if err != nil {
			return nil, err
		}
		if err := os.MkdirAll(filepath.Join(dir, "store", "pki"), 0o700); err != nil {
			return nil, err
		}
		if err := os.WriteFile(filepath.Join(dir, "store", f), data, 0o600); err != nil {
			return nil, err
		}
	}
	addr := freeAddr()
	cfg := filepath.Join(dir, "bench.yaml")
	// At info, the standby logs when it leads and when it serves, which
	// split the failover into the lease running out and the takeover.
	body := strings.Replace(b.config(dir, addr, "", endpoint), "log_level: warn", "log_level: info", 1)
	if err := os.WriteFile(cfg, []byte(body), 0o644); err != nil {
		return nil, err
	}
	if err := b.markPlaintext(dir); err != nil {
		return nil, err
	}
	cp, err := b.launch(dir, addr, cfg)
	if err != nil {
		return nil, err
	}
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if leader, err := standbyOf(ctx, cp); err == nil && leader != "" {
			return cp, nil
		}
	}
	cp.kill()
	return nil, fmt.Errorf("the standby at %s did not answer as one within a minute", addr)
}

// standbyOf is the leader cp names, answering as a standby; an error
// when it does not answer so.
func standbyOf(ctx context.Context, cp *controlPlane) (string, error) {
	conn, err := rpcclient.Dial(target(cp.dir, cp.addr))
	if err != nil {
		return "", err
	}
	defer conn.Close()
	cctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	_, err = controlplanev1.NewControlPlaneServiceClient(conn).GetFleetStatus(cctx, &controlplanev1.GetFleetStatusRequest{})
	if leader, standby := apierr.Leader(err); standby {
		return leader, nil
	}
	return "", fmt.Errorf("%s does not answer as a standby: %v", cp.addr, err)
}

// failover kills the leader with SIGKILL, as a machine that dies, and
// times until the standby serves the fleet: its lease on etcd has to run
// out first (etcd.lease_ttl, 5 s by default), then it loads the fleet.
func failover(ctx context.Context, leader, standby *controlPlane) (time.Duration, error) {
	if named, err := standbyOf(ctx, standby); err != nil || named != leader.addr {
		return 0, fmt.Errorf("failover: before the leader was killed, the standby named %q as leader (%v), not %s", named, err, leader.addr)
	}
	leader.kill()
	began := time.Now()
	if err := waitServing(ctx, standby.dir, standby.addr); err != nil {
		return 0, fmt.Errorf("failover: %w", err)
	}
	took := time.Since(began)
	if led, served, ok := takeover(filepath.Join(standby.dir, "controlplane.log")); ok {
		fmt.Fprintf(os.Stderr, "bench: failover in %s: the standby led %s after the kill and served %s later\n",
			took.Round(time.Millisecond), (took - time.Since(led)).Round(time.Millisecond), served.Sub(led).Round(time.Millisecond))
	}
	return took, nil
}

// takeover reads from a standby's log when it won the election and when
// it served.
func takeover(logFile string) (led, served time.Time, ok bool) {
	b, err := os.ReadFile(logFile)
	if err != nil {
		return led, served, false
	}
	for line := range strings.Lines(string(b)) {
		ts, rest, found := strings.Cut(strings.TrimPrefix(line, "time="), " ")
		if !found {
			continue
		}
		t, err := time.Parse(time.RFC3339Nano, ts)
		if err != nil {
			continue
		}
		switch {
		case strings.Contains(rest, `msg="this control plane leads"`):
			led = t
		case strings.Contains(rest, `msg="control plane serving"`):
			served = t
		}
	}
	return led, served, !led.IsZero() && !served.IsZero()
}
