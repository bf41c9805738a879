package etcdtest

import (
	"fmt"
	"os"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	"go.etcd.io/etcd/server/v3/embed"
)

// Cluster is etcd run in this process.
type Cluster struct {
	// Endpoints are the members' client URLs.
	Endpoints []string
	members   []*embed.Etcd
	dir       string
}

// Start starts a cluster of n members in this process and waits until
// every member serves. Stop stops it and removes its data.
func Start(n int) (*Cluster, error) { return StartTLS(n, transport.TLSInfo{}) }

// StartTLS is Start with the members serving clients over TLS when
// clientTLS names a certificate.
func StartTLS(n int, clientTLS transport.TLSInfo) (*Cluster, error) {
	dir, err := os.MkdirTemp("", "etcdtest-")
	if err != nil {
		return nil, err
	}
	c := &Cluster{dir: dir}
	plan, err := plan(dir, n, clientTLS)
	if err != nil {
		c.Stop()
		return nil, err
	}
	for _, m := range plan {
		cfg, err := m.Config()
		if err != nil {
			c.Stop()
			return nil, err
		}
		e, err := embed.StartEtcd(cfg)
		if err != nil {
			c.Stop()
			return nil, fmt.Errorf("start member %s: %w", m.Name, err)
		}
		c.members = append(c.members, e)
		c.Endpoints = append(c.Endpoints, m.Client)
	}
	for _, e := range c.members {
		select {
		case <-e.Server.ReadyNotify():
		case err := <-e.Err():
			c.Stop()
			return nil, fmt.Errorf("member failed: %w", err)
		case <-time.After(30 * time.Second):
			c.Stop()
			return nil, fmt.Errorf("cluster of %d not ready after 30 s", n)
		}
	}
	return c, nil
}

// Stop stops every member and removes the cluster's data.
func (c *Cluster) Stop() {
	for _, e := range c.members {
		e.Close()
	}
	_ = os.RemoveAll(c.dir)
}
