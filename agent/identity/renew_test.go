package identity

import (
	"bytes"
	"context"
	"log/slog"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// joinedWithRenewal joins node-1 to f and runs RenewLoop on f's fake
// clock until the test ends; it returns once the loop waits.
func joinedWithRenewal(t *testing.T, f *fakeCP, logs *bytes.Buffer) *Identity {
	t.Helper()
	id, _ := Open(t.TempDir())
	if err := id.Join(t.Context(), f.joinClient(t), "node-1", goodToken); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		id.RenewLoop(ctx, f.nodeClient(t, id), f.clock, slog.New(slog.NewTextHandler(logs, nil)))
	}()
	t.Cleanup(func() { cancel(); <-done })
	f.waitForTimer(t)
	return id
}

// waitForTimer returns once RenewLoop waits on the fake clock again, its
// last renewal done.
func (f *fakeCP) waitForTimer(t *testing.T) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	if err := f.clock.BlockUntilContext(ctx, 1); err != nil {
		t.Fatal("the renewal loop never waited")
	}
}

func serialOf(t *testing.T, id *Identity) string {
	t.Helper()
	c, err := id.Certificate()
	if err != nil {
		t.Fatal(err)
	}
	return c.Leaf.SerialNumber.String()
}

func TestRenewalAtTwoThirdsOfLife(t *testing.T) {
	f := newFakeCP(t)
	var logs bytes.Buffer
	id := joinedWithRenewal(t, f, &logs)
	first := serialOf(t, id)
	before, _ := id.Certificate()
	old := f.nodeClient(t, id)
	if err := heartbeat(t, old, "node-1"); err != nil {
		t.Fatal(err)
	}

	due := before.Leaf.NotBefore.Add(60 * 24 * time.Hour)
	f.clock.Advance(due.Add(-time.Second).Sub(f.clock.Now()))
	f.waitForTimer(t) // had the timer fired, this would wait for the renewal
	if _, renews, _ := f.state(); renews != 0 || serialOf(t, id) != first {
		t.Fatalf("renewed %d times a second before two thirds of its life", renews)
	}
	f.clock.Advance(time.Second)
	f.waitForTimer(t)
	if _, renews, _ := f.state(); renews != 1 {
		t.Fatalf("%d renewals at two thirds of its life, want 1", renews)
	}
	renewed := serialOf(t, id)
	if renewed == first {
		t.Fatal("the certificate in use is still the first")
	}
	onDisk := pemCertificate(t, filepath.Join(id.Dir(), "cert.pem"))
	if onDisk.SerialNumber.String() != renewed || !onDisk.NotBefore.Equal(due.Truncate(time.Second)) {
		t.Fatalf("cert.pem holds serial %s from %v, want %s from %v", onDisk.SerialNumber, onDisk.NotBefore, renewed, due)
	}
	if reopened, err := Open(id.Dir()); err != nil || serialOf(t, reopened) != renewed {
		t.Fatalf("a restart after the renewal: %v", err)
	}

	// The connection made with the first certificate keeps working; a
	// new one presents the renewed certificate.
	if err := heartbeat(t, old, "node-1"); err != nil {
		t.Fatalf("the open connection after the renewal: %v", err)
	}
	if err := heartbeat(t, f.nodeClient(t, id), "node-1"); err != nil {
		t.Fatalf("a new connection after the renewal: %v", err)
	}
	_, _, seen := f.state()
	if got := []string{seen[0].String(), seen[1].String(), seen[2].String()}; got[0] != first || got[1] != first || got[2] != renewed {
		t.Fatalf("heartbeats came with %v, want %s, %s, %s", got, first, first, renewed)
	}

	// The renewed certificate is renewed in its turn, two thirds into its
	// own life.
	f.clock.Advance(60*24*time.Hour - time.Second)
	f.waitForTimer(t)
	if _, renews, _ := f.state(); renews != 1 {
		t.Fatal("the renewed certificate was renewed early")
	}
	f.clock.Advance(time.Second)
	f.waitForTimer(t)
	if _, renews, _ := f.state(); renews != 2 {
		t.Fatalf("%d renewals after two lives, want 2", renews)
	}
	if !strings.Contains(logs.String(), "node certificate renewed") {
		t.Fatalf("logs: %s", logs.String())
	}
}

func TestFailedRenewalIsRetried(t *testing.T) {
	f := newFakeCP(t)
	f.failRenewals = 2
	var logs bytes.Buffer
	id := joinedWithRenewal(t, f, &logs)
	first := serialOf(t, id)

	f.clock.Advance(60 * 24 * time.Hour)
	f.waitForTimer(t)
	if _, renews, _ := f.state(); renews != 1 || serialOf(t, id) != first {
		t.Fatalf("%d renewals, want one that failed", renews)
	}
	f.clock.Advance(firstRetry - time.Second)
	f.waitForTimer(t)
	if _, renews, _ := f.state(); renews != 1 {
		t.Fatal("retried before the backoff")
	}
	f.clock.Advance(time.Second)
	f.waitForTimer(t)
	f.clock.Advance(2*firstRetry - time.Second)
	f.waitForTimer(t)
	if _, renews, _ := f.state(); renews != 2 {
		t.Fatalf("%d renewals: the second retry did not wait twice as long", renews)
	}
	f.clock.Advance(time.Second)
	f.waitForTimer(t)
	if _, renews, _ := f.state(); renews != 3 || serialOf(t, id) == first {
		t.Fatalf("%d renewals, want two failures and a success", renews)
	}
	if got := strings.Count(logs.String(), "not renewed; retrying"); got != 2 {
		t.Fatalf("%d retry warnings, want 2: %s", got, logs.String())
	}
}

// TestShortLivedRenewalIsNotRepeatedAtOnce: a control plane that hands out
// a certificate already due (its CA near its own end) is asked again only
// after maxRetry, not in a tight loop.
func TestShortLivedRenewalIsNotRepeatedAtOnce(t *testing.T) {
	f := newFakeCP(t)
	f.renewLife = time.Minute
	var logs bytes.Buffer
	joinedWithRenewal(t, f, &logs)
	f.clock.Advance(60 * 24 * time.Hour)
	f.waitForTimer(t)
	f.clock.Advance(maxRetry - time.Second)
	f.waitForTimer(t)
	if _, renews, _ := f.state(); renews != 1 {
		t.Fatalf("%d renewals within %s of the first", renews, maxRetry)
	}
	f.clock.Advance(time.Second)
	f.waitForTimer(t)
	if _, renews, _ := f.state(); renews != 2 {
		t.Fatalf("%d renewals after %s, want 2", renews, maxRetry)
	}
}
