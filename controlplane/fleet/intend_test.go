package fleet

import (
	"testing"

	"github.com/navarch/navarch/controlplane/provider"
	"github.com/navarch/navarch/controlplane/provider/providertest"
)

// TestNoProviderActionWithoutARecord: a stray instance is stopped only
// once the decision is recorded, so a control plane whose writes are
// refused (a leader on etcd that lost its lease, fenced off) asks the
// provider for nothing.
func TestNoProviderActionWithoutARecord(t *testing.T) {
	ctx := ctxT(t)
	cloud := &providertest.Recorder{}
	if _, err := cloud.Provision(ctx, provider.Spec{NodeIDs: []string{"stray"}}); err != nil {
		t.Fatal(err)
	}
	fs := &flakyStore{Store: openStore(t, t.TempDir())}
	f := newFleet(t, Options{Store: fs, Providers: provider.NewRegistry(cloud)})
	fs.failing.Store(true)
	f.Reconcile(ctx, UnknownStop)
	if got := cloud.Stopped(); len(got) != 0 {
		t.Fatalf("a control plane whose writes are refused stopped %v", got)
	}
	fs.failing.Store(false)
	f.Reconcile(ctx, UnknownStop)
	if got := cloud.Stopped(); len(got) != 1 || got[0].NodeID != "stray" {
		t.Fatalf("stopped %v once the decision could be recorded, want the stray instance", got)
	}
}
