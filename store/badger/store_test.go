package badgerstore

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
	"github.com/navarch/navarch/store"
)

// TestCloseWhenTheDirectoryIsGone: a store whose directory was deleted
// under it closes, saying so, instead of retrying its flush for ever.
func TestCloseWhenTheDirectoryIsGone(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "data")
	s, err := Open(Options{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for i := range 50 {
		if err := s.Apply(ctx, store.Write{Nodes: []*fleetv1.Node{{NodeId: fmt.Sprintf("n%d", i), Hostname: strings.Repeat("x", 1000)}}}); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.Close() }()
	select {
	case err := <-done:
		if err != nil && !strings.Contains(err.Error(), "is gone") {
			t.Fatalf("close: %v", err)
		}
	case <-time.After(20 * time.Second):
		t.Fatal("Close still retrying 20 s after the directory was deleted")
	}
}
