package fleet

import (
	"context"
	"testing"
	"time"

	"github.com/navarch/navarch/internal/fleettest"
	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
	nodev1 "github.com/navarch/navarch/proto/navarch/node/v1"
	"github.com/navarch/navarch/store"
	badgerstore "github.com/navarch/navarch/store/badger"
)

// testConfig is the control plane's default configuration, as the fleet
// sees it.
func testConfig() Config {
	return Config{
		HeartbeatInterval:     10 * time.Second,
		HealthReportInterval:  30 * time.Second,
		CommandPollTimeout:    5 * time.Second,
		CommandDelivery:       nodev1.CommandDelivery_COMMAND_DELIVERY_LONG_POLL,
		StaleAfter:            30 * time.Second,
		OfflineAfter:          90 * time.Second,
		ProvisionTimeout:      5 * time.Minute,
		TerminatedRetention:   time.Hour,
		AutoCordon:            true,
		AutoCordonMaxFraction: 0.5,
		AutoCordonWindow:      5 * time.Minute,
		WatchBuffer:           65536,
		WatchReplay:           16384,
	}
}

// openStore opens a real Badger store in dir, closed when the test ends.
func openStore(t testing.TB, dir string) store.Store {
	t.Helper()
	st, err := badgerstore.Open(badgerstore.Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = st.Close() })
	return st
}

// newFleet loads a fleet with the test configuration and o's store, clock
// and providers; a nil store is a fresh Badger directory.
func newFleet(t testing.TB, o Options) *Fleet {
	t.Helper()
	if o.Store == nil {
		o.Store = openStore(t, t.TempDir())
	}
	if o.Config == (Config{}) {
		o.Config = testConfig()
	}
	f, err := New(context.Background(), o)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func ctxT(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func register(t testing.TB, f *Fleet, id string, n int) {
	t.Helper()
	if _, err := f.Register(ctxT(t), &nodev1.RegisterNodeRequest{NodeId: id, Hostname: id, Gpus: fleettest.GPUs(n), BootId: "boot-1"}); err != nil {
		t.Fatalf("register %s: %v", id, err)
	}
}

func xid(t testing.TB, f *Fleet, id string, gpu int32, code uint32) (*nodev1.ReportHealthResponse, error) {
	t.Helper()
	return f.ReportHealth(ctxT(t), &nodev1.ReportHealthRequest{NodeId: id, Events: []*fleetv1.HealthEvent{
		{Kind: fleetv1.EventKind_EVENT_KIND_XID, GpuIndex: gpu, Xid: code},
	}})
}
