package webhook

import (
	"encoding/json"
	"encoding/pem"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/navarch/navarch/internal/testutil"
	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
)

var secret = []byte("s3cret")

// delivery is one request a receiver got.
type delivery struct {
	header http.Header
	body   []byte
	event  Event
}

// receiver is a TLS endpoint that answers each request with the next of
// its statuses (200 once they run out) and keeps what it got.
type receiver struct {
	srv    *httptest.Server
	caFile string

	mu       sync.Mutex
	statuses []int
	got      []delivery
}

func newReceiver(t *testing.T, statuses ...int) *receiver {
	t.Helper()
	r := &receiver{statuses: statuses}
	r.srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		d := delivery{header: req.Header.Clone(), body: body}
		if err := json.Unmarshal(body, &d.event); err != nil {
			t.Errorf("body %q: %v", body, err)
		}
		r.mu.Lock()
		r.got = append(r.got, d)
		code := http.StatusOK
		if len(r.statuses) > 0 {
			code, r.statuses = r.statuses[0], r.statuses[1:]
		}
		r.mu.Unlock()
		w.WriteHeader(code)
	}))
	t.Cleanup(r.srv.Close)
	r.caFile = writeCA(t, r.srv)
	return r
}

// writeCA writes the certificate srv serves to a file, to be trusted as a
// CA.
func writeCA(t *testing.T, srv *httptest.Server) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "ca.pem")
	cert := pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: srv.Certificate().Raw})
	if err := os.WriteFile(p, cert, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func (r *receiver) deliveries() []delivery {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]delivery(nil), r.got...)
}

func (r *receiver) endpoint(events ...string) Endpoint {
	return Endpoint{URL: r.srv.URL + "/hook", Secret: secret, Events: events, CAFile: r.caFile}
}

func newDispatcher(t *testing.T, o Options) *Dispatcher {
	t.Helper()
	o.Backoff = cmpOr(o.Backoff, time.Millisecond)
	d, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(d.Close)
	return d
}

func node(lifecycle fleetv1.LifecycleState, health fleetv1.HealthStatus) *fleetv1.Node {
	return &fleetv1.Node{NodeId: "n1", Lifecycle: lifecycle, Health: health}
}

// checkSigned fails unless d carries the headers of a delivery and a
// signature that recomputes.
func checkSigned(t *testing.T, d delivery) {
	t.Helper()
	if got, want := d.header.Get(HeaderSignature), Sign(secret, d.body); got != want {
		t.Errorf("signature %q, want %q", got, want)
	}
	if got := d.header.Get("Content-Type"); got != "application/json" {
		t.Errorf("Content-Type %q", got)
	}
	if got := d.header.Get(HeaderEvent); got != d.event.Type {
		t.Errorf("%s %q, body type %q", HeaderEvent, got, d.event.Type)
	}
	if d.header.Get(HeaderDelivery) == "" || d.event.ID == "" {
		t.Errorf("no delivery id (%q) or event id (%q)", d.header.Get(HeaderDelivery), d.event.ID)
	}
}

func TestDeliversSignedEvents(t *testing.T) {
	r := newReceiver(t)
	d := newDispatcher(t, Options{Endpoints: []Endpoint{r.endpoint()}})

	active := node(fleetv1.LifecycleState_LIFECYCLE_STATE_ACTIVE, fleetv1.HealthStatus_HEALTH_STATUS_HEALTHY)
	cordoned := node(fleetv1.LifecycleState_LIFECYCLE_STATE_CORDONED, fleetv1.HealthStatus_HEALTH_STATUS_HEALTHY)
	cordoned.LifecycleReason, cordoned.LifecycleBy = "maintenance", "alice"
	cordoned.LifecycleChangedAt = timestamppb.New(time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC))
	unhealthy := node(fleetv1.LifecycleState_LIFECYCLE_STATE_CORDONED, fleetv1.HealthStatus_HEALTH_STATUS_UNHEALTHY)
	unhealthy.HealthCause = "gpu0: XID 79"
	d.NodeChanged(active, cordoned)
	d.NodeChanged(cordoned, unhealthy)
	d.BreakerTripped(&fleetv1.BreakerStatus{Tripped: true, RecentAutoCordons: 2, WindowSeconds: 300})

	testutil.Eventually(t, "three deliveries", func() bool { return len(r.deliveries()) == 3 })
	got := r.deliveries()
	for _, g := range got {
		checkSigned(t, g)
	}
	tests := []struct {
		name string
		got  Event
		want Event
	}{
		{"lifecycle", got[0].event, Event{Type: TypeLifecycle, NodeID: "n1", From: "ACTIVE", To: "CORDONED", Reason: "maintenance", By: "alice", Time: cordoned.GetLifecycleChangedAt().AsTime()}},
		{"health", got[1].event, Event{Type: TypeHealth, NodeID: "n1", From: "HEALTHY", To: "UNHEALTHY", Reason: "gpu0: XID 79"}},
		{"breaker", got[2].event, Event{Type: TypeBreaker, Reason: "automatic cordons suspended"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			g := tt.got
			if g.Type != tt.want.Type || g.NodeID != tt.want.NodeID || g.From != tt.want.From || g.To != tt.want.To ||
				g.Reason != tt.want.Reason || g.By != tt.want.By {
				t.Errorf("got %+v, want %+v", g, tt.want)
			}
			if !tt.want.Time.IsZero() && !g.Time.Equal(tt.want.Time) {
				t.Errorf("time %s, want %s", g.Time, tt.want.Time)
			}
		})
	}
	b := got[2].event
	if b.Tripped == nil || !*b.Tripped || b.RecentAutoCordons == nil || *b.RecentAutoCordons != 2 || b.WindowSeconds == nil || *b.WindowSeconds != 300 {
		t.Errorf("breaker fields: %s", got[2].body)
	}
	if strings.Contains(string(got[0].body), "tripped") {
		t.Errorf("lifecycle event has breaker fields: %s", got[0].body)
	}
}

func TestRetries(t *testing.T) {
	tests := []struct {
		name     string
		statuses []int
		attempts int // how many requests the receiver sees
	}{
		{"503-then-ok", []int{503}, 2},
		{"429-then-ok", []int{429}, 2},
		{"400-not-retried", []int{400}, 1},
		{"404-not-retried", []int{404}, 1},
		{"gives-up", []int{500, 502, 504}, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := newReceiver(t, tt.statuses...)
			d := newDispatcher(t, Options{Endpoints: []Endpoint{r.endpoint()}, Attempts: 3})
			d.NodeChanged(nil, node(fleetv1.LifecycleState_LIFECYCLE_STATE_ACTIVE, 0))
			// A second event marks the end of the first one's attempts:
			// one endpoint's events go out in order.
			d.BreakerTripped(&fleetv1.BreakerStatus{Tripped: true})
			testutil.Eventually(t, "the marker event", func() bool {
				got := r.deliveries()
				return len(got) > 0 && got[len(got)-1].event.Type == TypeBreaker
			})
			got := r.deliveries()
			if n := len(got) - 1; n != tt.attempts {
				t.Fatalf("%d attempts, want %d", n, tt.attempts)
			}
			for _, g := range got[:len(got)-1] {
				checkSigned(t, g)
				if g.header.Get(HeaderDelivery) != got[0].header.Get(HeaderDelivery) || g.event.ID != got[0].event.ID {
					t.Errorf("a retry changed the delivery or event id")
				}
			}
		})
	}
}

func TestEndpointGetsOnlyItsTypes(t *testing.T) {
	health, all := newReceiver(t), newReceiver(t)
	d := newDispatcher(t, Options{Endpoints: []Endpoint{health.endpoint(TypeHealth), all.endpoint()}})
	d.NodeChanged(node(fleetv1.LifecycleState_LIFECYCLE_STATE_ACTIVE, fleetv1.HealthStatus_HEALTH_STATUS_HEALTHY),
		node(fleetv1.LifecycleState_LIFECYCLE_STATE_CORDONED, fleetv1.HealthStatus_HEALTH_STATUS_DEGRADED))
	testutil.Eventually(t, "both events at the catch-all", func() bool { return len(all.deliveries()) == 2 })
	testutil.Eventually(t, "the health event", func() bool { return len(health.deliveries()) == 1 })
	if got := health.deliveries()[0].event.Type; got != TypeHealth {
		t.Fatalf("health-only endpoint got %s", got)
	}
}

func TestQueueDropsOldest(t *testing.T) {
	s := &sender{size: 2, wake: make(chan struct{}, 1), log: slog.New(slog.DiscardHandler)}
	for _, id := range []string{"a", "b", "c", "d"} {
		s.enqueue(Event{ID: id})
	}
	if d := (&Dispatcher{senders: []*sender{s}}); s.dropped != 2 || d.Dropped() != 2 {
		t.Fatalf("dropped %d (the dispatcher says %d), want 2", s.dropped, d.Dropped())
	}
	var ids []string
	for e, ok := s.next(); ok; e, ok = s.next() {
		ids = append(ids, e.ID)
	}
	if strings.Join(ids, ",") != "c,d" {
		t.Fatalf("queue held %v, want the newest two", ids)
	}
	if s.dropping {
		t.Fatal("an emptied queue still counts as dropping")
	}
}

func TestCloseAbandonsAttempt(t *testing.T) {
	started := make(chan struct{}, 1)
	srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		// The server sees the client leave only once the body is read.
		_, _ = io.ReadAll(req.Body)
		select {
		case started <- struct{}{}:
		default:
		}
		<-req.Context().Done()
	}))
	defer srv.Close()
	d, err := New(Options{Endpoints: []Endpoint{{URL: srv.URL, Secret: secret, CAFile: writeCA(t, srv)}}, Timeout: time.Minute})
	if err != nil {
		t.Fatal(err)
	}
	d.BreakerTripped(&fleetv1.BreakerStatus{Tripped: true})
	<-started
	done := make(chan struct{})
	go func() { d.Close(); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Close waited for a hanging receiver")
	}
}

func TestNewRefuses(t *testing.T) {
	notPEM := filepath.Join(t.TempDir(), "ca.pem")
	if err := os.WriteFile(notPEM, []byte("nope"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name string
		e    Endpoint
		want string
	}{
		{"no-secret", Endpoint{URL: "https://x"}, "no secret"},
		{"unknown-type", Endpoint{URL: "https://x", Secret: secret, Events: []string{"cordon"}}, `"cordon" is not one of`},
		{"missing-ca", Endpoint{URL: "https://x", Secret: secret, CAFile: "/nonexistent/ca.pem"}, "read ca_file"},
		{"ca-not-pem", Endpoint{URL: "https://x", Secret: secret, CAFile: notPEM}, "no PEM certificate"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := New(Options{Endpoints: []Endpoint{tt.e}})
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err %v, want one saying %q", err, tt.want)
			}
		})
	}
}

func TestReadSecret(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string, mode os.FileMode) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(p, mode); err != nil {
			t.Fatal(err)
		}
		return p
	}
	tests := []struct {
		name    string
		path    string
		want    string
		wantErr string
	}{
		{"owner-only", write("ok", "abc\n", 0o600), "abc", ""},
		{"read-only", write("ro", "abc", 0o400), "abc", ""},
		{"world-readable", write("world", "abc", 0o604), "", "may be read or changed by its group or others"},
		{"group-readable", write("group", "abc", 0o640), "", "may be read or changed by its group or others"},
		{"empty", write("empty", " \n", 0o600), "", "holds no webhook secret"},
		{"too-large", write("large", strings.Repeat("a", 65<<10), 0o600), "", "too large"},
		{"directory", dir, "", "not a regular file"},
		{"missing", filepath.Join(dir, "none"), "", "read webhook secret"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ReadSecret(tt.path)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err %v, want one saying %q", err, tt.wantErr)
				}
				return
			}
			if err != nil || string(got) != tt.want {
				t.Fatalf("got %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}
