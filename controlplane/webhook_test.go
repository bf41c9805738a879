package controlplane_test

import (
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"

	"github.com/navarch/navarch/controlplane"
	"github.com/navarch/navarch/controlplane/webhook"
	"github.com/navarch/navarch/internal/testutil"
	controlplanev1 "github.com/navarch/navarch/proto/navarch/controlplane/v1"
)

// hookReceiver is a TLS webhook endpoint that answers 503 to the first
// request and keeps every event whose signature checks out.
type hookReceiver struct {
	srv    *httptest.Server
	caFile string
	secret []byte

	mu       sync.Mutex
	requests int
	events   []webhook.Event
}

func newHookReceiver(t *testing.T) *hookReceiver {
	t.Helper()
	r := &hookReceiver{secret: []byte("hook-secret")}
	r.srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		defer r.mu.Unlock()
		r.requests++
		if r.requests == 1 {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		if got, want := req.Header.Get(webhook.HeaderSignature), webhook.Sign(r.secret, body); got != want {
			t.Errorf("signature %q, want %q", got, want)
		}
		var e webhook.Event
		if err := json.Unmarshal(body, &e); err != nil {
			t.Errorf("body %q: %v", body, err)
		}
		r.events = append(r.events, e)
	}))
	t.Cleanup(r.srv.Close)
	dir := t.TempDir()
	r.caFile = filepath.Join(dir, "ca.pem")
	writeFile(t, r.caFile, string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: r.srv.Certificate().Raw})), 0o600)
	return r
}

func writeFile(t *testing.T, path, content string, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil {
		t.Fatal(err)
	}
}

// seen reports whether an event of typ for node went from → to.
func (r *hookReceiver) seen(typ, node, from, to string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, e := range r.events {
		if e.Type == typ && e.NodeID == node && e.From == from && e.To == to {
			return true
		}
	}
	return false
}

func (r *hookReceiver) trips() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, e := range r.events {
		if e.Type == webhook.TypeBreaker && e.Tripped != nil && *e.Tripped {
			n++
		}
	}
	return n
}

// TestWebhooksSeeSavedChanges: a cordon, a node going UNHEALTHY and a
// breaker trip each reach the endpoint, signed, after a first attempt the
// endpoint refused.
func TestWebhooksSeeSavedChanges(t *testing.T) {
	r := newHookReceiver(t)
	secretFile := filepath.Join(t.TempDir(), "hook.secret")
	writeFile(t, secretFile, string(r.secret)+"\n", 0o600)
	h := newHarness(t, withConfig(func(c *controlplane.Config) {
		c.Webhooks = []controlplane.WebhookConfig{{URL: r.srv.URL + "/hook", SecretFile: secretFile, CAFile: r.caFile}}
	}))
	ctx := ctxT(t)
	for i := range 4 {
		h.register(fmt.Sprintf("n%d", i), 1)
		h.healthyReport(fmt.Sprintf("n%d", i), 1)
	}
	if _, err := h.ops.CordonNode(ctx, &controlplanev1.CordonNodeRequest{NodeId: "n3", Reason: "ticket 7"}); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, "the cordon", func() bool { return r.seen(webhook.TypeLifecycle, "n3", "ACTIVE", "CORDONED") })

	// Half of four nodes may be cordoned automatically: the third trips
	// the breaker.
	for i := range 3 {
		h.xid(fmt.Sprintf("n%d", i), 0, 79)
	}
	testutil.Eventually(t, "n0 going UNHEALTHY", func() bool { return r.seen(webhook.TypeHealth, "n0", "HEALTHY", "UNHEALTHY") })
	testutil.Eventually(t, "n0's automatic cordon", func() bool {
		return r.seen(webhook.TypeLifecycle, "n0", "ACTIVE", "CORDONED")
	})
	testutil.Eventually(t, "the breaker trip", func() bool { return r.trips() == 1 })
	if r.seen(webhook.TypeLifecycle, "n2", "ACTIVE", "CORDONED") {
		t.Fatal("a cordon the breaker suppressed was sent")
	}
}

func TestWebhookConfigErrors(t *testing.T) {
	dir := t.TempDir()
	ownerOnly, worldReadable := filepath.Join(dir, "ok.secret"), filepath.Join(dir, "world.secret")
	writeFile(t, ownerOnly, "s", 0o600)
	writeFile(t, worldReadable, "s", 0o644)
	tests := []struct {
		name string
		hook controlplane.WebhookConfig
		want string
	}{
		{"http-remote", controlplane.WebhookConfig{URL: "http://hooks.example.com/x", SecretFile: ownerOnly}, "webhooks[0].url: http://hooks.example.com/x is plain http"},
		{"not-a-url", controlplane.WebhookConfig{URL: "hooks", SecretFile: ownerOnly}, "webhooks[0].url"},
		{"ftp", controlplane.WebhookConfig{URL: "ftp://hooks.example.com/", SecretFile: ownerOnly}, "is not https"},
		{"no-secret-file", controlplane.WebhookConfig{URL: "https://hooks.example.com/"}, "webhooks[0].secret_file: must be set"},
		{"unknown-event", controlplane.WebhookConfig{URL: "https://hooks.example.com/", SecretFile: ownerOnly, Events: []string{"cordon"}}, "webhooks[0].events[0]"},
		{"world-readable-secret", controlplane.WebhookConfig{URL: "https://hooks.example.com/", SecretFile: worldReadable}, "webhooks[0].secret_file: read webhook secret: " + worldReadable + " may be read or changed by its group or others (mode 0644)"},
		{"missing-secret", controlplane.WebhookConfig{URL: "https://hooks.example.com/", SecretFile: filepath.Join(dir, "none")}, "webhooks[0].secret_file: read webhook secret"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cfg := controlplane.Defaults()
			cfg.DataDir = t.TempDir()
			cfg.Webhooks = []controlplane.WebhookConfig{tt.hook}
			srv, err := controlplane.New(ctxT(t), controlplane.Options{Config: cfg})
			if err == nil {
				_ = srv.Close()
				t.Fatal("started")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("err %v, want one saying %q", err, tt.want)
			}
		})
	}
	t.Run("http-loopback", func(t *testing.T) {
		cfg := controlplane.Defaults()
		cfg.Webhooks = []controlplane.WebhookConfig{{URL: "http://127.0.0.1:9/hook", SecretFile: ownerOnly}}
		if err := cfg.Validate(); err != nil {
			t.Fatal(err)
		}
	})
}
