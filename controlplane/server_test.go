package controlplane

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	controlplanev1 "github.com/navarch/navarch/proto/navarch/controlplane/v1"

	"github.com/navarch/navarch/controlplane/api"
	"github.com/navarch/navarch/controlplane/fleet"
	"github.com/navarch/navarch/store"
	badgerstore "github.com/navarch/navarch/store/badger"
	"google.golang.org/grpc"
)

// closeCounter is a store that counts its Close calls.
type closeCounter struct {
	store.Store
	closed int
}

func (c *closeCounter) Close() error { c.closed++; return c.Store.Close() }

// TestNewOwnsTheStoreItIsGiven: a store given to New is closed when New
// fails, whatever step fails, so a caller never has to guess.
func TestNewOwnsTheStoreItIsGiven(t *testing.T) {
	tests := []struct {
		name string
		edit func(c *Config)
	}{
		{"bad-config", func(c *Config) { c.LogLevel = "loud" }},
		{"bad-policy-file", func(c *Config) { c.PolicyFile = filepath.Join(t.TempDir(), "missing.yaml") }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			st, err := badgerstore.Open(badgerstore.Options{Dir: t.TempDir()})
			if err != nil {
				t.Fatal(err)
			}
			cc := &closeCounter{Store: st}
			cfg := Defaults()
			cfg.DataDir = t.TempDir()
			tt.edit(&cfg)
			if _, err := New(context.Background(), Options{Config: cfg, Store: cc}); err == nil {
				t.Fatal("New succeeded")
			}
			if cc.closed != 1 {
				t.Fatalf("store closed %d times, want once", cc.closed)
			}
		})
	}
}

// TestFleetStatusCarriesTheLimits: clients read the bounds and defaults
// of operator requests from GetFleetStatus rather than knowing them.
func TestFleetStatusCarriesTheLimits(t *testing.T) {
	cfg := Defaults()
	cfg.DataDir = t.TempDir()
	s, err := New(context.Background(), Options{Config: cfg})
	if err != nil {
		t.Fatal(err)
	}
	defer func() { _ = s.Close() }()
	svc := &grpcCapture{}
	api.RegisterControlPlaneService(svc, api.ControlPlaneOptions{Fleet: s.Fleet()})
	resp, err := svc.ops.GetFleetStatus(context.Background(), &controlplanev1.GetFleetStatusRequest{})
	if err != nil {
		t.Fatal(err)
	}
	l := resp.GetLimits()
	if l.GetMaxDrainDeadline().AsDuration() != api.MaxDrainDeadline || l.GetDefaultDrainDeadline().AsDuration() != fleet.DefaultDrainDeadline ||
		l.GetDefaultTerminateDrainTimeout().AsDuration() != fleet.DefaultTerminateDrain || l.GetMinTerminateDrainTimeout().AsDuration() != time.Second ||
		l.GetMaxProvisionCount() != api.MaxProvision || l.GetMaxReasonBytes() != api.MaxReasonLen || l.GetMaxGpusPerNode() != api.MaxGPUs {
		t.Fatalf("limits %v", l)
	}
}

// grpcCapture registers a service and keeps it, to call it without a
// network.
type grpcCapture struct {
	ops controlplanev1.ControlPlaneServiceServer
}

func (g *grpcCapture) RegisterService(_ *grpc.ServiceDesc, impl any) {
	g.ops = impl.(controlplanev1.ControlPlaneServiceServer)
}
