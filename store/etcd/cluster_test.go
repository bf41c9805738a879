package etcdstore

import (
	"fmt"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
)

// cluster is etcd run in this process: one member or several, each with a
// directory of its own, on loopback ports.
type cluster struct {
	members   []*embed.Etcd
	endpoints []string
	dir       string
}

// startCluster starts a cluster of n members and waits until it serves,
// to clients over TLS when clientTLS names a certificate. Its members skip
// fsync: the tests check what a store reads back from a cluster that
// stays up, not what a disk keeps through a power loss.
func startCluster(n int, clientTLS transport.TLSInfo) (*cluster, error) {
	dir, err := os.MkdirTemp("", "etcdstore-")
	if err != nil {
		return nil, err
	}
	c := &cluster{dir: dir}
	ports, err := freePorts(2 * n)
	if err != nil {
		return nil, err
	}
	peer := func(i int) url.URL { return url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", ports[2*i])} }
	scheme := "http"
	if clientTLS.CertFile != "" {
		scheme = "https"
	}
	client := func(i int) url.URL { return url.URL{Scheme: scheme, Host: fmt.Sprintf("127.0.0.1:%d", ports[2*i+1])} }
	var initial []string
	for i := range n {
		u := peer(i)
		initial = append(initial, fmt.Sprintf("m%d=%s", i, u.String()))
	}
	for i := range n {
		cfg := embed.NewConfig()
		cfg.Name = fmt.Sprintf("m%d", i)
		cfg.Dir = filepath.Join(dir, cfg.Name)
		cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{peer(i)}, []url.URL{peer(i)}
		cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{client(i)}, []url.URL{client(i)}
		cfg.InitialCluster = strings.Join(initial, ",")
		cfg.InitialClusterToken = "navarch-test"
		cfg.ClientTLSInfo = clientTLS
		cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
		cfg.UnsafeNoFsync = true
		cfg.TickMs, cfg.ElectionMs = 50, 500
		e, err := embed.StartEtcd(cfg)
		if err != nil {
			c.stop()
			return nil, fmt.Errorf("start member %s: %w", cfg.Name, err)
		}
		c.members = append(c.members, e)
		u := client(i)
		c.endpoints = append(c.endpoints, u.String())
	}
	for _, e := range c.members {
		select {
		case <-e.Server.ReadyNotify():
		case err := <-e.Err():
			c.stop()
			return nil, fmt.Errorf("member failed: %w", err)
		case <-time.After(30 * time.Second):
			c.stop()
			return nil, fmt.Errorf("cluster of %d not ready after 30 s", n)
		}
	}
	return c, nil
}

func (c *cluster) stop() {
	for _, e := range c.members {
		e.Close()
	}
	_ = os.RemoveAll(c.dir)
}

// freePorts returns n loopback ports free a moment ago. A static cluster
// needs its peers' addresses before any member starts, so port 0 cannot
// do.
func freePorts(n int) ([]int, error) {
	var ls []net.Listener
	defer func() {
		for _, l := range ls {
			_ = l.Close()
		}
	}()
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		ls = append(ls, l)
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}

// shared is the single-member cluster the package's tests share, started
// by the first that needs it and stopped by TestMain.
var shared struct {
	once sync.Once
	c    *cluster
	err  error
}

func sharedCluster(t *testing.T) *cluster {
	t.Helper()
	shared.once.Do(func() { shared.c, shared.err = startCluster(1, transport.TLSInfo{}) })
	if shared.err != nil {
		t.Fatalf("start etcd: %v", shared.err)
	}
	return shared.c
}

func TestMain(m *testing.M) {
	code := m.Run()
	if shared.c != nil {
		shared.c.stop()
	}
	os.Exit(code)
}
