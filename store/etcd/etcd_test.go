package etcdstore

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"

	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
	"github.com/navarch/navarch/store"
	"github.com/navarch/navarch/store/storetest"
)

// opener opens stores on the cluster at endpoints, each case's directory
// naming a namespace of its own under the prefix.
func opener(endpoints []string) storetest.Opener {
	return func(t *testing.T, dir string, l store.Limits) store.Store {
		t.Helper()
		s, err := Open(t.Context(), Options{Endpoints: endpoints, Prefix: "/navarch-test" + dir, Limits: l})
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
}

func TestConformance(t *testing.T) {
	t.Run("single-member", func(t *testing.T) {
		storetest.Run(t, opener(sharedCluster(t).Endpoints))
	})
	t.Run("three-member", func(t *testing.T) {
		c, err := startCluster(3, transport.TLSInfo{})
		if err != nil {
			t.Fatalf("start etcd: %v", err)
		}
		defer c.Stop()
		storetest.Run(t, opener(c.Endpoints))
	})
}

// openShared opens a store on the shared cluster in a namespace of the
// test's own.
func openShared(t *testing.T, opts Options) *Store {
	t.Helper()
	opts.Endpoints = sharedCluster(t).Endpoints
	opts.Prefix = "/navarch-test/" + t.Name()
	s, err := Open(t.Context(), opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func events(n int, node string) []*fleetv1.HealthEvent {
	out := make([]*fleetv1.HealthEvent, n)
	for i := range out {
		out[i] = &fleetv1.HealthEvent{Id: store.FormatSeq("ev", uint64(i+1)), NodeId: node, Xid: 79}
	}
	return out
}

// TestFence: a write whose fence no longer holds is refused with
// ErrNotLeader and stores nothing; under the current fence it goes
// through.
func TestFence(t *testing.T) {
	var fence atomic.Pointer[clientv3.Cmp]
	s := openShared(t, Options{Fence: func() clientv3.Cmp { return *fence.Load() }})
	ctx := t.Context()
	leaderKey := s.keys.named("", "leader")
	elect := func() {
		t.Helper()
		resp, err := s.client.Put(ctx, leaderKey, "me")
		if err != nil {
			t.Fatal(err)
		}
		cmp := clientv3.Compare(clientv3.CreateRevision(leaderKey), "=", resp.Header.Revision)
		fence.Store(&cmp)
	}
	elect()
	if err := s.Apply(ctx, store.Write{Nodes: []*fleetv1.Node{{NodeId: "kept"}}}); err != nil {
		t.Fatalf("write under the current fence: %v", err)
	}
	// Another process takes the lead: the key is made anew.
	stale := fence.Load()
	if _, err := s.client.Delete(ctx, leaderKey); err != nil {
		t.Fatal(err)
	}
	elect()
	current := fence.Load()
	fence.Store(stale)

	refused := []struct {
		name  string
		write func() error
	}{
		{"apply", func() error {
			return s.Apply(ctx, store.Write{
				Nodes:    []*fleetv1.Node{{NodeId: "late"}},
				Events:   events(3, "late"),
				Counters: map[string]uint64{"ids": 9},
				Audit:    []*store.AuditEntry{{ID: "au-9", NodeID: "late"}},
			})
		}},
		{"delete-node", func() error { return s.Apply(ctx, store.Write{DeleteNodes: []string{"kept"}}) }},
		{"save-last-seen", func() error {
			return s.SaveLastSeen(ctx, map[string]time.Time{"kept": time.Unix(1700000000, 0)})
		}},
	}
	for _, tt := range refused {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.write(); !errors.Is(err, store.ErrNotLeader) {
				t.Fatalf("got %v, want ErrNotLeader", err)
			}
			st, err := s.Load(ctx)
			if err != nil {
				t.Fatal(err)
			}
			if len(st.Nodes) != 1 || st.Nodes[0].GetNodeId() != "kept" || len(st.Counters) != 0 || len(st.LastSeen) != 0 {
				t.Errorf("a fenced-off write changed the state: nodes %v, counters %v, last seen %v", st.Nodes, st.Counters, st.LastSeen)
			}
			if es, _ := s.Events(ctx, store.EventQuery{}); len(es) != 0 {
				t.Errorf("a fenced-off write stored events %v", es)
			}
			if as, _ := s.Audit(ctx, store.AuditQuery{}); len(as) != 0 {
				t.Errorf("a fenced-off write stored audit entries %v", as)
			}
		})
	}

	fence.Store(current)
	if err := s.Apply(ctx, store.Write{Nodes: []*fleetv1.Node{{NodeId: "late"}}, DeleteNodes: []string{"kept"}}); err != nil {
		t.Fatalf("write under the new fence: %v", err)
	}
	st, err := s.Load(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Nodes) != 1 || st.Nodes[0].GetNodeId() != "late" {
		t.Errorf("nodes %v after the write under the new fence, want [late]", st.Nodes)
	}
}

// TestWriteLimits: a write above etcd's operations per transaction is
// nested into one atomic transaction; one above what nesting holds, or
// above the request size, is refused naming the limit and stores nothing.
func TestWriteLimits(t *testing.T) {
	tests := []struct {
		name    string
		opts    Options
		w       store.Write
		wantErr string // empty: stored
	}{
		{"a-report-of-256-events", Options{}, store.Write{Nodes: []*fleetv1.Node{{NodeId: "n"}}, Events: events(256, "n")}, ""},
		{"above-nesting", Options{}, store.Write{Nodes: []*fleetv1.Node{{NodeId: "n"}}, Events: events(2100, "n")}, "--max-txn-ops"},
		{"above-request-size", Options{}, store.Write{Nodes: []*fleetv1.Node{{NodeId: "n", Hostname: strings.Repeat("x", 2<<20)}}}, "--max-request-bytes"},
		{"above-the-server's-ops", Options{MaxTxnOps: 1000}, store.Write{Events: events(100, "n")}, "Options.MaxTxnOps"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := openShared(t, tt.opts)
			err := s.Apply(t.Context(), tt.w)
			es, rerr := s.Events(t.Context(), store.EventQuery{Limit: 1000})
			if rerr != nil {
				t.Fatal(rerr)
			}
			st, lerr := s.Load(t.Context())
			if lerr != nil {
				t.Fatal(lerr)
			}
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("apply: %v", err)
				}
				if len(es) != len(tt.w.Events) || len(st.Nodes) != len(tt.w.Nodes) {
					t.Errorf("stored %d events and %d nodes, want %d and %d", len(es), len(st.Nodes), len(tt.w.Events), len(tt.w.Nodes))
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("got %v, want an error naming %s", err, tt.wantErr)
			}
			if len(es) != 0 || len(st.Nodes) != 0 {
				t.Errorf("the refused write stored %d events and %d nodes", len(es), len(st.Nodes))
			}
		})
	}
}

// TestLoadPages: a Load of more records than one page reads them all, in
// order, at one revision.
func TestLoadPages(t *testing.T) {
	s := openShared(t, Options{})
	const n = 2*pageSize + 7
	var w store.Write
	seen := make(map[string]time.Time)
	for i := range n {
		id := fmt.Sprintf("node-%05d", i)
		w.Nodes = append(w.Nodes, &fleetv1.Node{NodeId: id})
		seen[id] = time.Unix(1700000000, int64(i))
	}
	if err := s.Apply(t.Context(), w); err != nil {
		t.Fatal(err)
	}
	if err := s.SaveLastSeen(t.Context(), seen); err != nil {
		t.Fatal(err)
	}
	st, err := s.Load(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if len(st.Nodes) != n || len(st.LastSeen) != n {
		t.Fatalf("loaded %d nodes and %d last-seen times, want %d", len(st.Nodes), len(st.LastSeen), n)
	}
	for i, node := range st.Nodes {
		if want := fmt.Sprintf("node-%05d", i); node.GetNodeId() != want {
			t.Fatalf("node %d is %s, want %s", i, node.GetNodeId(), want)
		}
	}
}

// TestSharedClient: a store given a client leaves it open when it closes,
// for the election that shares it.
func TestSharedClient(t *testing.T) {
	c, err := clientv3.New(clientv3.Config{Endpoints: sharedCluster(t).Endpoints, DialTimeout: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	s := openShared(t, Options{Client: c})
	if err := s.Apply(t.Context(), store.Write{Counters: map[string]uint64{"ids": 1}}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Get(t.Context(), s.keys.named(tableCounter, "ids")); err != nil {
		t.Errorf("the shared client after the store closed: %v", err)
	}
}

func TestTLSConfig(t *testing.T) {
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(notPEM, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		files   TLSFiles
		wantErr string // empty: no error
	}{
		{"none", TLSFiles{}, ""},
		{"missing-ca", TLSFiles{CAFile: filepath.Join(dir, "none.pem")}, "read etcd CA"},
		{"ca-not-pem", TLSFiles{CAFile: notPEM}, "no PEM certificate"},
		{"cert-without-key", TLSFiles{CertFile: notPEM}, "needs a key file"},
		{"key-without-cert", TLSFiles{KeyFile: notPEM}, "needs a key file"},
		{"bad-pair", TLSFiles{CertFile: notPEM, KeyFile: notPEM}, "client certificate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tc, err := tlsConfig(tt.files)
			if tt.wantErr == "" {
				if err != nil || tc != nil {
					t.Fatalf("got %v, %v; want no TLS", tc, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("got %v, want an error saying %q", err, tt.wantErr)
			}
		})
	}
}

// TestLeaseLost: a write whose history lease is gone (revoked by hand, or
// lost by the cluster) is written under a new one.
func TestLeaseLost(t *testing.T) {
	s := openShared(t, Options{})
	ctx := t.Context()
	if err := s.Apply(ctx, store.Write{Events: events(1, "n")}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.client.Revoke(ctx, s.events.id); err != nil {
		t.Fatalf("revoke: %v", err)
	}
	w := store.Write{Events: []*fleetv1.HealthEvent{{Id: "ev-2", NodeId: "n"}}}
	if err := s.Apply(ctx, w); err != nil {
		t.Fatalf("apply after the lease was revoked: %v", err)
	}
	es, err := s.Events(ctx, store.EventQuery{NodeID: "n"})
	if err != nil {
		t.Fatal(err)
	}
	if len(es) != 1 || es[0].GetId() != "ev-2" {
		t.Errorf("events %v, want [ev-2]: the revoked lease took ev-1", es)
	}
}
