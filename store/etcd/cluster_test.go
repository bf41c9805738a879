package etcdstore

import (
	"os"
	"sync"
	"testing"

	"go.etcd.io/etcd/client/pkg/v3/transport"

	"github.com/navarch/navarch/internal/etcdtest"
)

// startCluster starts a cluster of n members in this process (see
// etcdtest), serving clients over TLS when clientTLS names a certificate.
func startCluster(n int, clientTLS transport.TLSInfo) (*etcdtest.Cluster, error) {
	return etcdtest.StartTLS(n, clientTLS)
}

// shared is the single-member cluster the package's tests share, started
// by the first that needs it and stopped by TestMain.
var shared struct {
	once sync.Once
	c    *etcdtest.Cluster
	err  error
}

func sharedCluster(t *testing.T) *etcdtest.Cluster {
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
		shared.c.Stop()
	}
	os.Exit(code)
}
