// Package etcdtest runs etcd clusters for tests: in this process
// (embed.Etcd members, for a store's conformance suite) or each member in
// a process of its own (etcdmember), which a test can kill -9 and start
// again as a failing machine would. Members listen on loopback ports and
// keep their data in directories of their own.
package etcdtest

import (
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"strings"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
)

// Member is how one member of a static cluster is started.
type Member struct {
	// Name names the member in the cluster.
	Name string
	// Dir holds its data.
	Dir string
	// Peer and Client are its peer and client URLs.
	Peer, Client string
	// Initial is the whole cluster, NAME=PEER,…
	Initial string
	// Existing starts a member that already joined, from its data.
	Existing bool
	// ClientTLS, when it names a certificate, serves clients over TLS
	// (Client is then an https URL).
	ClientTLS transport.TLSInfo
}

// Config is the member's embed configuration. Members skip fsync: tests
// check what survives a process dying, which the page cache keeps, not a
// power loss. Ticks are short, so that a lost member's successor is
// elected within a second.
func (m Member) Config() (*embed.Config, error) {
	peer, err := url.Parse(m.Peer)
	if err != nil {
		return nil, fmt.Errorf("member %s: peer URL: %w", m.Name, err)
	}
	client, err := url.Parse(m.Client)
	if err != nil {
		return nil, fmt.Errorf("member %s: client URL: %w", m.Name, err)
	}
	cfg := embed.NewConfig()
	cfg.Name = m.Name
	cfg.Dir = m.Dir
	cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{*peer}, []url.URL{*peer}
	cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{*client}, []url.URL{*client}
	cfg.InitialCluster = m.Initial
	cfg.InitialClusterToken = "navarch-test"
	cfg.ClientTLSInfo = m.ClientTLS
	if m.Existing {
		cfg.ClusterState = embed.ClusterStateFlagExisting
	}
	cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
	cfg.UnsafeNoFsync = true
	cfg.TickMs, cfg.ElectionMs = 50, 500
	return cfg, nil
}

// plan names n members under dir on free loopback ports, serving clients
// over TLS when clientTLS names a certificate.
func plan(dir string, n int, clientTLS transport.TLSInfo) ([]Member, error) {
	ports, err := freePorts(2 * n)
	if err != nil {
		return nil, err
	}
	scheme := "http"
	if clientTLS.CertFile != "" {
		scheme = "https"
	}
	members := make([]Member, n)
	var initial []string
	for i := range members {
		members[i] = Member{
			Name:      fmt.Sprintf("m%d", i),
			Peer:      fmt.Sprintf("http://127.0.0.1:%d", ports[2*i]),
			Client:    fmt.Sprintf("%s://127.0.0.1:%d", scheme, ports[2*i+1]),
			ClientTLS: clientTLS,
		}
		members[i].Dir = filepath.Join(dir, members[i].Name)
		initial = append(initial, members[i].Name+"="+members[i].Peer)
	}
	for i := range members {
		members[i].Initial = strings.Join(initial, ",")
	}
	return members, nil
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
	ports := make([]int, 0, n)
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
