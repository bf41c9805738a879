package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"google.golang.org/grpc/health/grpc_health_v1"

	"github.com/navarch/navarch/internal/rpcclient"
	controlplanev1 "github.com/navarch/navarch/proto/navarch/controlplane/v1"
)

// controlPlane is the real binary under test.
type controlPlane struct {
	cmd  *exec.Cmd
	addr string
	dir  string
	log  *os.File
}

// config is the control plane's configuration for a run in dir at addr:
// its defaults but for what the suite needs. delivery is the
// command_delivery to set, "" to leave the default; etcd, when set, is the
// endpoint of the etcd store to use instead of Badger.
func (b *bench) config(dir, addr, delivery, etcd string) string {
	// The fleet simulator multiplexes thousands of nodes, each with its
	// command stream or long poll, on a few connections.
	body := fmt.Sprintf("listen: %s\ndata_dir: %s\nlog_level: warn\nmax_streams_per_connection: 100000\nagent_identities: false\nlocal_provider:\n  enabled: false\n", addr, filepath.Join(dir, "store"))
	if delivery != "" {
		body += "command_delivery: " + delivery + "\n"
	}
	if b.plaintext {
		body += "insecure: true\n"
	}
	if etcd != "" {
		body += "store: etcd\netcd:\n  endpoints: [" + etcd + "]\n"
	}
	if b.pprof != "" && !strings.Contains(dir, "standby") {
		body += "pprof_listen: " + b.pprof + "\n"
	}
	return body
}

func (b *bench) start(ctx context.Context, dir, addr, delivery, etcd string) (*controlPlane, time.Duration, error) {
	cfg := filepath.Join(dir, "bench.yaml")
	if err := os.WriteFile(cfg, []byte(b.config(dir, addr, delivery, etcd)), 0o644); err != nil {
		return nil, 0, err
	}
	if err := b.markPlaintext(dir); err != nil {
		return nil, 0, err
	}
	began := time.Now()
	cp, err := b.launch(dir, addr, cfg)
	if err != nil {
		return nil, 0, err
	}
	if err := waitServing(ctx, dir, addr); err != nil {
		cp.kill()
		return nil, 0, err
	}
	return cp, time.Since(began), nil
}

// launch starts the control plane in dir with the configuration file cfg.
func (b *bench) launch(dir, addr, cfg string) (*controlPlane, error) {
	logf, err := os.OpenFile(filepath.Join(dir, "controlplane.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(filepath.Join(b.bin, "navarch-controlplane"), "--config", cfg)
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	if err := cmd.Start(); err != nil {
		_ = logf.Close()
		return nil, err
	}
	return &controlPlane{cmd: cmd, addr: addr, dir: dir, log: logf}, nil
}

func (cp *controlPlane) stop() {
	_ = cp.cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan struct{})
	go func() { _ = cp.cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		cp.kill()
	}
	_ = cp.log.Close()
}

func (cp *controlPlane) kill() {
	_ = cp.cmd.Process.Kill()
	_ = cp.cmd.Wait()
}

// plaintextMark is the file in a server's directory that says it serves
// without TLS, for target to dial it so.
const plaintextMark = "plaintext"

// markPlaintext marks dir as a server's that serves without TLS when the
// suite runs so.
func (b *bench) markPlaintext(dir string) error {
	if !b.plaintext {
		return nil
	}
	return os.WriteFile(filepath.Join(dir, plaintextMark), nil, 0o644)
}

// target is the control plane the bench runs in dir at addr, trusted
// through the CA it creates in its data directory (or dialled without TLS
// when dir is marked plaintext), as the admin it makes there on first
// start.
func target(dir, addr string) rpcclient.Target {
	t := rpcclient.Target{Addr: addr, CACert: filepath.Join(dir, "store", "pki", "ca.crt")}
	if exists(filepath.Join(dir, plaintextMark)) {
		t.CACert, t.Insecure = "", true
	}
	if b, err := os.ReadFile(filepath.Join(dir, "store", "admin.token")); err == nil {
		t.Token = strings.TrimSpace(string(b))
	}
	return t
}

// waitServing waits until the control plane has written its CA and admin
// token and answers its health check and a listing, which means its state
// is loaded. On etcd the token comes after the CA: the leader writes it
// once elected.
func waitServing(ctx context.Context, dir, addr string) error {
	deadline := time.Now().Add(2 * time.Minute)
	plain := exists(filepath.Join(dir, plaintextMark))
	for time.Now().Before(deadline) && !((plain || exists(filepath.Join(dir, "store", "pki", "ca.crt"))) && exists(filepath.Join(dir, "store", "admin.token"))) {
		time.Sleep(5 * time.Millisecond)
	}
	conn, err := rpcclient.Dial(target(dir, addr))
	if err != nil {
		return err
	}
	defer conn.Close()
	hc := grpc_health_v1.NewHealthClient(conn)
	ops := controlplanev1.NewControlPlaneServiceClient(conn)
	for time.Now().Before(deadline) {
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		resp, err := hc.Check(cctx, &grpc_health_v1.HealthCheckRequest{})
		if err == nil && resp.GetStatus() != grpc_health_v1.HealthCheckResponse_SERVING {
			// A standby answers, NOT_SERVING.
			err = errors.New(resp.GetStatus().String())
		}
		if err == nil {
			_, err = ops.ListNodes(cctx, &controlplanev1.ListNodesRequest{PageSize: 1})
		}
		cancel()
		if err == nil {
			return nil
		}
		time.Sleep(5 * time.Millisecond)
	}
	return errors.New("control plane did not serve within 2 minutes")
}

func freeAddr() string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	defer l.Close()
	return l.Addr().String()
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}
