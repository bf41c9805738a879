package static_test

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"html"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jonboulle/clockwork"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/navarch/navarch/controlplane/provider"
	"github.com/navarch/navarch/controlplane/provider/static"
	"github.com/navarch/navarch/internal/apierr"
	controlplanev1 "github.com/navarch/navarch/proto/navarch/controlplane/v1"
)

var allResets = []string{"On", "ForceOff", "GracefulShutdown", "GracefulRestart", "ForceRestart", "PowerCycle", "Nmi"}

// newProvider makes a provider of the machines with short waits.
func newProvider(t *testing.T, o static.Options, machines ...static.Machine) *static.Provider {
	t.Helper()
	o.Machines = machines
	if o.PollInterval == 0 {
		o.PollInterval = 5 * time.Millisecond
	}
	if o.ShutdownTimeout == 0 {
		o.ShutdownTimeout = 2 * time.Second
	}
	if o.RequestTimeout == 0 {
		o.RequestTimeout = 5 * time.Second
	}
	if o.Backoff == nil {
		o.Backoff = func(int) time.Duration { return time.Millisecond }
	}
	p, err := static.New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = p.Close() })
	return p
}

// failures records what spec.Failed is told.
type failures struct {
	mu sync.Mutex
	by map[string]string
}

func (f *failures) record(id, reason string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.by == nil {
		f.by = make(map[string]string)
	}
	f.by[id] = reason
}

func (f *failures) get() map[string]string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.by
}

func spec(fails *failures, ids ...string) provider.Spec {
	return provider.Spec{Count: len(ids), NodeIDs: ids, Failed: fails.record}
}

func nodeIDs(insts []provider.Instance) []string {
	var out []string
	for _, i := range insts {
		out = append(out, i.NodeID)
	}
	slices.Sort(out)
	return out
}

func TestChoose(t *testing.T) {
	bmc := newFakeBMC(t,
		&fakeSystem{id: "a", power: "Off"},
		&fakeSystem{id: "b", power: "On"},
		&fakeSystem{id: "c", power: "Off"},
		&fakeSystem{id: "d", power: "Off"},
		&fakeSystem{id: "e", power: "PoweringOff"},
		&fakeSystem{id: "f", power: "Off"},
	)
	p := newProvider(t, static.Options{},
		bmc.machine("a", "a", ""), bmc.machine("b", "b", ""), bmc.machine("c", "c", "train"),
		bmc.machine("d", "d", ""), bmc.machine("e", "e", ""), bmc.machine("f", "f", ""))
	tests := []struct {
		name  string
		count int
		pool  string
		want  []string
	}{
		{"direct-off-only", 10, "", []string{"a", "d", "f"}},
		{"count-caps", 2, "", []string{"a", "d"}},
		{"pool", 10, "train", []string{"c"}},
		{"pool-none-listed", 3, "infer", nil},
		{"zero", 0, "", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := p.Choose(context.Background(), tt.count, tt.pool)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tt.want) {
				t.Errorf("Choose(%d, %q) = %v, want %v", tt.count, tt.pool, got, tt.want)
			}
		})
	}
}

func TestChoosePassesOverMachineJustPoweredOn(t *testing.T) {
	bmc := newFakeBMC(t, &fakeSystem{id: "a", power: "Off"}, &fakeSystem{id: "b", power: "Off"})
	clock := clockwork.NewFakeClock()
	p := newProvider(t, static.Options{Clock: clock}, bmc.machine("a", "a", ""), bmc.machine("b", "b", ""))
	if _, err := p.Provision(context.Background(), spec(&failures{}, "a")); err != nil {
		t.Fatal(err)
	}
	// The BMC is slow to say so: it still reports the machine off.
	bmc.do(func(f *fakeBMC) { f.find("a").power = "Off" })
	if got, _ := p.Choose(context.Background(), 2, ""); !slices.Equal(got, []string{"b"}) {
		t.Errorf("just after the power-on, Choose = %v, want [b]", got)
	}
	clock.Advance(5 * time.Minute)
	if got, _ := p.Choose(context.Background(), 2, ""); !slices.Equal(got, []string{"a", "b"}) {
		t.Errorf("minutes later, Choose = %v, want [a b]", got)
	}
}

func TestChooseUnreachableBMC(t *testing.T) {
	good := newFakeBMC(t, &fakeSystem{id: "a", power: "Off"})
	gone := newFakeBMC(t, &fakeSystem{id: "x", power: "Off"})
	gone.srv.Close()
	p := newProvider(t, static.Options{RequestTimeout: time.Second}, gone.machine("x", "x", ""), good.machine("a", "a", ""))
	got, err := p.Choose(context.Background(), 2, "")
	if err != nil || !slices.Equal(got, []string{"a"}) {
		t.Errorf("Choose = %v, %v; want [a], passing over the machine whose BMC is gone", got, err)
	}
	only := newProvider(t, static.Options{RequestTimeout: time.Second}, gone.machine("x", "x", ""))
	if got, err := only.Choose(context.Background(), 1, ""); err == nil || !strings.Contains(err.Error(), "machine x") {
		t.Errorf("Choose with only an unreachable BMC = %v, %v; want an error naming the machine", got, err)
	}
}

func TestProvisionPowersOn(t *testing.T) {
	bmc := newFakeBMC(t, &fakeSystem{id: "a", power: "Off", allowable: allResets}, &fakeSystem{id: "b", power: "Off"})
	// A BMC with one system, named by the Systems collection.
	single := newFakeBMC(t, &fakeSystem{id: "1", power: "Off", actionInfo: true, allowable: []string{"ForceOn", "ForceOff"}})
	p := newProvider(t, static.Options{}, bmc.machine("a", "a", "train"), bmc.machine("b", "b", "train"), single.machine("c", "", "train"))
	fails := &failures{}
	s := spec(fails, "a", "b", "c")
	s.Pool = "train"
	insts, err := p.Provision(context.Background(), s)
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]provider.Instance{
		"a": {NodeID: "a", InstanceID: bmc.systemURL("a"), Pool: "train"},
		"b": {NodeID: "b", InstanceID: bmc.systemURL("b"), Pool: "train"},
		"c": {NodeID: "c", InstanceID: single.systemURL("1"), Pool: "train"},
	}
	if len(insts) != len(want) {
		t.Fatalf("Provision returned %v, want %v", insts, want)
	}
	for _, inst := range insts {
		if inst != want[inst.NodeID] {
			t.Errorf("instance %+v, want %+v", inst, want[inst.NodeID])
		}
	}
	for _, c := range []struct {
		bmc    *fakeBMC
		id     string
		resets []string
	}{{bmc, "a", []string{"On"}}, {bmc, "b", []string{"On"}}, {single, "1", []string{"ForceOn"}}} {
		if s := c.bmc.get(c.id); s.power != "On" || !slices.Equal(s.resets, c.resets) {
			t.Errorf("system %s is %s after resets %v, want On after %v", c.id, s.power, s.resets, c.resets)
		}
	}
	if got := fails.get(); len(got) != 0 {
		t.Errorf("failures reported: %v", got)
	}
}

func TestProvisionMachineAlreadyOn(t *testing.T) {
	bmc := newFakeBMC(t, &fakeSystem{id: "a", power: "Off"}, &fakeSystem{id: "b", power: "On"}, &fakeSystem{id: "c", power: "On"})
	p := newProvider(t, static.Options{}, bmc.machine("a", "a", ""), bmc.machine("b", "b", ""), bmc.machine("c", "c", ""))

	fails := &failures{}
	insts, err := p.Provision(context.Background(), spec(fails, "a", "b"))
	if err != nil {
		t.Fatal(err)
	}
	if got := nodeIDs(insts); !slices.Equal(got, []string{"a"}) {
		t.Errorf("started %v, want [a]", got)
	}
	if reason := fails.get()["b"]; !strings.Contains(reason, "machine b is not off") {
		t.Errorf("b's failure = %q, want it to say the machine is not off", reason)
	}
	if s := bmc.get("b"); len(s.resets) != 0 {
		t.Errorf("b, in use, was sent %v", s.resets)
	}

	fails = &failures{}
	_, err = p.Provision(context.Background(), spec(fails, "b", "c"))
	if status.Code(err) != codes.ResourceExhausted || !strings.Contains(err.Error(), "machine b") || !strings.Contains(err.Error(), "machine c") {
		t.Errorf("Provision of two machines in use = %v, want ResourceExhausted naming both", err)
	}
}

func TestProvisionRefuses(t *testing.T) {
	bmc := newFakeBMC(t, &fakeSystem{id: "a", power: "Off"})
	m := bmc.machine("a", "a", "")
	m.Labels = map[string]string{"gpu": "h100"}
	p := newProvider(t, static.Options{}, m)
	tests := []struct {
		name  string
		edit  func(*provider.Spec)
		field string
	}{
		{"unlisted", func(s *provider.Spec) { s.NodeIDs = []string{"a", "zz"} }, "node_ids"},
		{"twice", func(s *provider.Spec) { s.NodeIDs = []string{"a", "a"} }, "node_ids"},
		{"other-pool", func(s *provider.Spec) { s.Pool = "train" }, "pool"},
		{"instance-type", func(s *provider.Spec) { s.InstanceType = "p5.48xlarge" }, "instance_type"},
		{"gpus", func(s *provider.Spec) { s.GPUsPerNode = 8 }, "gpus_per_node"},
		{"zones", func(s *provider.Spec) { s.Zones = []string{"a"} }, "region"},
		{"label-missing", func(s *provider.Spec) { s.Labels = map[string]string{"team": "ml"} }, "labels[team]"},
		{"label-differs", func(s *provider.Spec) { s.Labels = map[string]string{"gpu": "a100"} }, "labels[gpu]"},
		{"sim-faults", func(s *provider.Spec) {
			s.Request = &controlplanev1.ProvisionNodesRequest{SimFaults: []string{"xid-79@gpu0"}}
		}, "sim_faults"},
		{"chaos", func(s *provider.Spec) {
			s.Request = &controlplanev1.ProvisionNodesRequest{ChaosInterval: durationpb.New(time.Minute)}
		}, "chaos_interval"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := spec(&failures{}, "a")
			tt.edit(&s)
			_, err := p.Provision(context.Background(), s)
			if field, _ := apierr.Field(err); status.Code(err) != codes.InvalidArgument || field != tt.field {
				t.Errorf("Provision = %v, want InvalidArgument on %s", err, tt.field)
			}
		})
	}
	if s := bmc.get("a"); len(s.resets) != 0 || s.power != "Off" {
		t.Errorf("a refused request still reached the BMC: %v", s.resets)
	}
	s := spec(&failures{}, "a")
	s.Labels = map[string]string{"gpu": "h100"}
	if _, err := p.Provision(context.Background(), s); err != nil {
		t.Errorf("Provision asking for a label the machine carries = %v", err)
	}
}

func TestAuthentication(t *testing.T) {
	tests := []struct {
		name       string
		noSessions bool
		password   string
		wantLogins int
	}{
		{"session", false, "", 1},
		{"basic", true, "", 0},
		{"session-refused", false, "wrong", 1},
		{"basic-refused", true, "wrong", 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bmc := newFakeBMC(t, &fakeSystem{id: "a", power: "Off"}, &fakeSystem{id: "b", power: "Off"})
			bmc.do(func(f *fakeBMC) { f.noSessions = tt.noSessions })
			ma, mb := bmc.machine("a", "a", ""), bmc.machine("b", "b", "")
			if tt.password != "" {
				ma.Credentials.Password, mb.Credentials.Password = tt.password, tt.password
			}
			p := newProvider(t, static.Options{}, ma, mb)
			_, err := p.Provision(context.Background(), spec(&failures{}, "a", "b"))
			if tt.password == "" {
				if err != nil {
					t.Fatal(err)
				}
			} else if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), "static: BMC of a refused the credentials") {
				t.Errorf("Provision with a wrong password = %v, want FailedPrecondition saying the BMC refused the credentials", err)
			}
			var logins int
			bmc.do(func(f *fakeBMC) { logins = f.logins })
			if logins != tt.wantLogins {
				t.Errorf("%d logins, want %d: one session for the BMC, and no retry of refused credentials", logins, tt.wantLogins)
			}
		})
	}
}

// A BMC's words go into errors that are logged and returned to API
// callers; what it echoes of the credentials must not.
func TestBMCErrorsCarryNoCredentials(t *testing.T) {
	const (
		user = "navarch"
		pass = `p<a"ss w&rd:1`
	)
	basic := base64.StdEncoding.EncodeToString([]byte(user + ":" + pass))
	tests := []struct {
		name       string
		noSessions bool
		route      string // the request answered, as "METHOD PATH"
		answer     func(w http.ResponseWriter)
		want       string // a piece of the error
		wantNot    string // a piece the error must not have besides the credentials
	}{
		{
			name:  "login-quotes-password",
			route: "POST /redfish/v1/SessionService/Sessions",
			answer: func(w http.ResponseWriter) {
				redfishError(w, http.StatusBadRequest, "PropertyValueFormatError",
					"The value '"+pass+"' for the property Password of "+user+" is of a different format than the property can accept.")
			},
			want: "The value '[redacted]' for the property Password of [redacted] is of a different format",
		},
		{
			name:  "login-raw-body",
			route: "POST /redfish/v1/SessionService/Sessions",
			answer: func(w http.ResponseWriter) {
				w.Header().Set("Content-Type", "text/html")
				w.WriteHeader(http.StatusBadRequest)
				_, _ = w.Write([]byte("<html><body>Login failed for " + user + " with password " + pass[:3] + "…</body></html>"))
			},
			want:    "POST /redfish/v1/SessionService/Sessions: 400 Bad Request",
			wantNot: "Login failed",
		},
		{
			name:       "escaped-in-raw-body",
			noSessions: true,
			route:      "GET /redfish/v1/Systems/a",
			answer: func(w http.ResponseWriter) {
				w.Header().Set("Content-Type", "text/plain")
				w.WriteHeader(http.StatusInternalServerError)
				js, _ := json.Marshal(pass)
				_, _ = w.Write([]byte("Authorization: Basic " + basic + "; form: password=" + url.QueryEscape(pass) +
					"; html: " + html.EscapeString(pass) + "; json: " + string(js)))
			},
			want: `500 Internal Server Error: Authorization: Basic [redacted]; form: password=[redacted]; html: [redacted]; json: "[redacted]"`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bmc := newFakeBMC(t, &fakeSystem{id: "a", power: "Off"})
			bmc.do(func(f *fakeBMC) {
				f.user, f.pass, f.noSessions = user, pass, tt.noSessions
				f.answer = func(w http.ResponseWriter, r *http.Request) bool {
					if r.Method+" "+r.URL.Path != tt.route {
						return false
					}
					tt.answer(w)
					return true
				}
			})
			p := newProvider(t, static.Options{}, bmc.machine("a", "a", ""))
			_, err := p.Choose(context.Background(), 1, "")
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Choose error = %v, want it to say %q", err, tt.want)
			}
			for _, secret := range []string{pass, user, basic, url.QueryEscape(pass), html.EscapeString(pass), "p<a", tt.wantNot} {
				if secret != "" && strings.Contains(err.Error(), secret) {
					t.Errorf("the error %q holds %q", err, secret)
				}
			}
		})
	}
}

func TestSessionRenewedAndClosed(t *testing.T) {
	bmc := newFakeBMC(t, &fakeSystem{id: "a", power: "Off"})
	p := newProvider(t, static.Options{}, bmc.machine("a", "a", ""))
	if _, err := p.Choose(context.Background(), 1, ""); err != nil {
		t.Fatal(err)
	}
	// The BMC ends the session, as BMCs do after a while.
	bmc.do(func(f *fakeBMC) { clear(f.sessions) })
	if got, err := p.Choose(context.Background(), 1, ""); err != nil || len(got) != 1 {
		t.Fatalf("Choose after the BMC ended the session = %v, %v", got, err)
	}
	bmc.do(func(f *fakeBMC) {
		if f.logins != 2 || len(f.sessions) != 1 {
			t.Errorf("%d logins and %d sessions open, want 2 and 1", f.logins, len(f.sessions))
		}
	})
	if err := p.Close(); err != nil {
		t.Fatal(err)
	}
	bmc.do(func(f *fakeBMC) {
		if len(f.sessions) != 0 {
			t.Errorf("Close left %d sessions open", len(f.sessions))
		}
	})
}

func TestBusyBMCRetried(t *testing.T) {
	tests := []struct {
		name     string
		busy     int
		attempts int
		wantErr  bool
		wantBusy int
	}{
		{"recovers", 2, 4, false, 2},
		{"gives-up", 10, 3, true, 3},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			bmc := newFakeBMC(t, &fakeSystem{id: "a", power: "Off"})
			bmc.do(func(f *fakeBMC) { f.busy = tt.busy })
			p := newProvider(t, static.Options{Attempts: tt.attempts}, bmc.machine("a", "a", ""))
			_, err := p.Provision(context.Background(), spec(&failures{}, "a"))
			if tt.wantErr != (err != nil) {
				t.Fatalf("Provision = %v, want error %t", err, tt.wantErr)
			}
			if err != nil && (!strings.Contains(err.Error(), "503") || status.Code(err) == codes.FailedPrecondition) {
				t.Errorf("error %v should tell of the 503", err)
			}
			bmc.do(func(f *fakeBMC) {
				if f.busyAnswer != tt.wantBusy {
					t.Errorf("BMC answered 503 %d times, want %d", f.busyAnswer, tt.wantBusy)
				}
			})
			if want := map[bool]string{false: "On", true: "Off"}[tt.wantErr]; bmc.get("a").power != want {
				t.Errorf("machine is %s, want %s", bmc.get("a").power, want)
			}
		})
	}
}

func TestTerminate(t *testing.T) {
	const short = 50 * time.Millisecond
	tests := []struct {
		name      string
		sys       fakeSystem
		forceOff  bool
		timeout   time.Duration // the shutdown timeout
		wantReset []string
	}{
		{"graceful", fakeSystem{power: "On", allowable: allResets}, false, short, []string{"GracefulShutdown"}},
		{"graceful-not-offered", fakeSystem{power: "On", allowable: []string{"On", "ForceOff"}}, false, short, []string{"ForceOff"}},
		{"force-configured", fakeSystem{power: "On"}, true, short, []string{"ForceOff"}},
		{"already-off", fakeSystem{power: "Off"}, false, short, nil},
		{"graceful-ignored", fakeSystem{power: "On", ignoreGraceful: true}, false, short, []string{"GracefulShutdown", "ForceOff"}},
		// Not waited for: the shutdown never began.
		{"graceful-refused", fakeSystem{power: "On", refuseGraceful: true}, false, time.Hour, []string{"ForceOff"}},
		{"powering-off", fakeSystem{power: "PoweringOff"}, false, short, []string{"ForceOff"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sys := tt.sys
			sys.id = "a"
			bmc := newFakeBMC(t, &sys)
			p := newProvider(t, static.Options{ForceOff: tt.forceOff, ShutdownTimeout: tt.timeout}, bmc.machine("a", "a", ""))
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := p.Terminate(ctx, provider.Instance{NodeID: "a", InstanceID: bmc.systemURL("a")}); err != nil {
				t.Fatal(err)
			}
			if s := bmc.get("a"); s.power != "Off" || !slices.Equal(s.resets, tt.wantReset) {
				t.Errorf("machine is %s after %v, want Off after %v", s.power, s.resets, tt.wantReset)
			}
		})
	}
}

func TestTerminateForcesOffAfterTimeout(t *testing.T) {
	bmc := newFakeBMC(t, &fakeSystem{id: "a", power: "On", ignoreGraceful: true})
	clock := clockwork.NewFakeClock()
	p := newProvider(t, static.Options{Clock: clock, ShutdownTimeout: 3 * time.Minute, PollInterval: time.Minute}, bmc.machine("a", "a", ""))
	done := make(chan error, 1)
	go func() { done <- p.Terminate(context.Background(), provider.Instance{NodeID: "a"}) }()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for range 2 {
		if err := clock.BlockUntilContext(ctx, 1); err != nil {
			t.Fatal("Terminate did not wait for the shutdown:", err)
		}
		if s := bmc.get("a"); !slices.Equal(s.resets, []string{"GracefulShutdown"}) {
			t.Fatalf("while the shutdown may still finish, the machine was sent %v", s.resets)
		}
		clock.Advance(time.Minute)
	}
	if err := clock.BlockUntilContext(ctx, 1); err != nil {
		t.Fatal(err)
	}
	clock.Advance(time.Minute) // the shutdown timeout has passed
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if s := bmc.get("a"); s.power != "Off" || !slices.Equal(s.resets, []string{"GracefulShutdown", "ForceOff"}) {
		t.Errorf("machine is %s after %v, want Off after GracefulShutdown and ForceOff", s.power, s.resets)
	}
}

func TestPowerCycle(t *testing.T) {
	tests := []struct {
		name      string
		sys       fakeSystem
		wantReset []string
	}{
		{"power-cycle-offered", fakeSystem{power: "On", allowable: allResets}, []string{"PowerCycle"}},
		{"force-restart-offered", fakeSystem{power: "On", allowable: []string{"On", "ForceOff", "ForceRestart"}}, []string{"ForceRestart"}},
		{"action-info", fakeSystem{power: "On", actionInfo: true, allowable: []string{"On", "ForceOff", "PowerCycle"}}, []string{"PowerCycle"}},
		{"not-said", fakeSystem{power: "On"}, []string{"ForceRestart"}},
		{"neither-offered", fakeSystem{power: "On", allowable: []string{"On", "ForceOff", "GracefulShutdown"}}, []string{"ForceOff", "On"}},
		{"off", fakeSystem{power: "Off", allowable: allResets}, []string{"On"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			sys := tt.sys
			sys.id = "a"
			bmc := newFakeBMC(t, &sys)
			p := newProvider(t, static.Options{}, bmc.machine("a", "a", ""))
			if err := p.PowerCycle(context.Background(), provider.Instance{NodeID: "a"}); err != nil {
				t.Fatal(err)
			}
			if s := bmc.get("a"); s.power != "On" || !slices.Equal(s.resets, tt.wantReset) {
				t.Errorf("machine is %s after %v, want On after %v", s.power, s.resets, tt.wantReset)
			}
		})
	}
}

func TestList(t *testing.T) {
	bmc := newFakeBMC(t, &fakeSystem{id: "a", power: "On"}, &fakeSystem{id: "b", power: "Off"}, &fakeSystem{id: "c", power: "PoweringOn"})
	p := newProvider(t, static.Options{}, bmc.machine("a", "a", ""), bmc.machine("b", "b", ""), bmc.machine("c", "c", "train"))
	got, err := p.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	want := []provider.Instance{
		{NodeID: "a", InstanceID: bmc.systemURL("a")},
		{NodeID: "c", InstanceID: bmc.systemURL("c"), Pool: "train"},
	}
	if !slices.Equal(got, want) {
		t.Errorf("List = %+v, want %+v", got, want)
	}

	gone := newFakeBMC(t, &fakeSystem{id: "x", power: "On"})
	gone.srv.Close()
	p = newProvider(t, static.Options{RequestTimeout: time.Second}, bmc.machine("a", "a", ""), gone.machine("x", "x", ""))
	if got, err := p.List(context.Background()); err == nil || !strings.Contains(err.Error(), "machine x") {
		t.Errorf("List with a BMC unreachable = %v, %v; want an error naming it, not a list without it", got, err)
	}
}

func TestLinksToOtherHostsRefused(t *testing.T) {
	bmc := newFakeBMC(t, &fakeSystem{id: "1", power: "Off"})
	bmc.do(func(f *fakeBMC) { f.foreign = true })
	p := newProvider(t, static.Options{}, bmc.machine("a", "", ""))
	if _, err := p.List(context.Background()); err == nil || !strings.Contains(err.Error(), "elsewhere.example") {
		t.Errorf("List with a Systems member on another host = %v, want it refused", err)
	}
}
