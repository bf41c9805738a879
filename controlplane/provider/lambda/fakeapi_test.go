package lambda_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
)

// fakeLambda is a local Lambda Cloud API over TLS that speaks its JSON:
// answers in {"data": …}, refusals in {"error": {code, message,
// suggestion}}, a bearer API key on every request. The account has one
// SSH key, "ops".
type fakeLambda struct {
	t   *testing.T
	srv *httptest.Server
	key string

	mu sync.Mutex
	// types is testdata/instance-types.json's data, by instance type.
	types map[string]map[string]any
	// full regions answer launches with insufficient capacity, though
	// /instance-types may list them.
	full map[string]bool
	// throttle refuses the next n requests to a route ("POST
	// /instance-operations/launch") with 429.
	throttle map[string]int
	// quotaFrom has launches from this one on (counting from 1) refused
	// for quota; 0 never.
	quotaFrom int
	// echoKey has a refused key's message repeat the key presented.
	echoKey bool
	// hideOnce leaves an instance out of the next GET /instances.
	hideOnce map[string]bool
	// redirect answers every request with this HTTP status and a
	// Location at redirectTo, the same path; 0 never.
	redirect   int
	redirectTo string
	// hang answers no request until the caller gives up.
	hang bool

	instances []*fakeInstance
	launches  []fakeLaunch
	requests  []string // "METHOD /route" in order
	auths     []string // Authorization headers in order
}

type fakeTag struct {
	Key   string `json:"key"`
	Value string `json:"value"`
}

type fakeRegion struct {
	Name        string `json:"name"`
	Description string `json:"description"`
}

type fakeInstance struct {
	ID              string     `json:"id"`
	Name            string     `json:"name"`
	IP              string     `json:"ip"`
	PrivateIP       string     `json:"private_ip"`
	Status          string     `json:"status"`
	SSHKeyNames     []string   `json:"ssh_key_names"`
	FileSystemNames []string   `json:"file_system_names"`
	Region          fakeRegion `json:"region"`
	InstanceType    struct {
		Name        string `json:"name"`
		Description string `json:"description"`
	} `json:"instance_type"`
	Hostname string    `json:"hostname"`
	Tags     []fakeTag `json:"tags"`
}

// fakeLaunch is the launch body; the fields the real API takes besides
// these are accepted as they come, and any other is refused.
type fakeLaunch struct {
	RegionName       string          `json:"region_name"`
	InstanceTypeName string          `json:"instance_type_name"`
	SSHKeyNames      []string        `json:"ssh_key_names"`
	FileSystemNames  []string        `json:"file_system_names"`
	Quantity         int             `json:"quantity"`
	Name             string          `json:"name"`
	UserData         string          `json:"user_data"`
	Tags             []fakeTag       `json:"tags"`
	Hostname         json.RawMessage `json:"hostname"`
	Image            json.RawMessage `json:"image"`
	FirewallRulesets json.RawMessage `json:"firewall_rulesets"`
}

func newFake(t *testing.T, key string) *fakeLambda {
	t.Helper()
	raw, err := os.ReadFile("testdata/instance-types.json")
	if err != nil {
		t.Fatal(err)
	}
	var doc struct {
		Data map[string]map[string]any `json:"data"`
	}
	if err := json.Unmarshal(raw, &doc); err != nil {
		t.Fatalf("testdata/instance-types.json: %v", err)
	}
	f := &fakeLambda{t: t, key: key, types: doc.Data, full: map[string]bool{}, throttle: map[string]int{}, hideOnce: map[string]bool{}}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /api/v1/instance-types", f.instanceTypes)
	mux.HandleFunc("GET /api/v1/instances", f.list)
	mux.HandleFunc("GET /api/v1/instances/{id}", f.get)
	mux.HandleFunc("POST /api/v1/instance-operations/launch", f.launch)
	mux.HandleFunc("POST /api/v1/instance-operations/terminate", f.terminate)
	f.srv = httptest.NewTLSServer(f.gate(mux))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeLambda) endpoint() string { return f.srv.URL + "/api/v1" }

// gate records every request, then refuses a wrong key and throttled
// routes as the API does.
func (f *fakeLambda) gate(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		route := r.Method + " " + strings.TrimPrefix(r.URL.Path, "/api/v1")
		f.mu.Lock()
		f.requests = append(f.requests, route)
		f.auths = append(f.auths, r.Header.Get("Authorization"))
		throttled := f.throttle[route] > 0
		if throttled {
			f.throttle[route]--
		}
		echo, redirect, to, hang := f.echoKey, f.redirect, f.redirectTo, f.hang
		f.mu.Unlock()
		switch {
		case hang:
			// Once the request is read, the server sees the caller hang up,
			// and then answers nothing at all: a handler that returned
			// would send an empty 200.
			_, _ = io.Copy(io.Discard, r.Body)
			<-r.Context().Done()
			panic(http.ErrAbortHandler)
		case redirect != 0:
			w.Header().Set("Location", to+r.URL.Path)
			w.WriteHeader(redirect)
			return
		}
		if got := r.Header.Get("Authorization"); got != "Bearer "+f.key {
			msg := "API key was invalid, expired, or deleted."
			if echo {
				msg += " Presented: " + strings.TrimPrefix(got, "Bearer ")
			}
			writeError(w, http.StatusUnauthorized, "global/invalid-api-key", msg, "Check your API key or create a new one, then try again.")
			return
		}
		if throttled {
			writeError(w, http.StatusTooManyRequests, "global/too-many-requests", "Too many requests.", "Try again later.")
			return
		}
		next.ServeHTTP(w, r)
	})
}

func writeError(w http.ResponseWriter, status int, code, message, suggestion string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]any{"error": map[string]any{"code": code, "message": message, "suggestion": suggestion}})
}

func writeData(w http.ResponseWriter, data any) {
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"data": data})
}

func (f *fakeLambda) instanceTypes(w http.ResponseWriter, _ *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	writeData(w, f.types)
}

// setCapacity sets the regions /instance-types says have capacity for typ.
func (f *fakeLambda) setCapacity(typ string, regions ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	list := []any{}
	for _, r := range regions {
		list = append(list, map[string]any{"name": r, "description": "region " + r})
	}
	f.types[typ]["regions_with_capacity_available"] = list
}

func (f *fakeLambda) launch(w http.ResponseWriter, r *http.Request) {
	dec := json.NewDecoder(r.Body)
	dec.DisallowUnknownFields()
	var req fakeLaunch
	if err := dec.Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, "global/invalid-parameters", "Invalid request body: "+err.Error(), "")
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.launches = append(f.launches, req)
	typ, ok := f.types[req.InstanceTypeName]
	switch {
	case req.RegionName == "" || len(req.SSHKeyNames) != 1 || req.Quantity < 1 || !ok || len(req.UserData) > 1<<20:
		writeError(w, http.StatusBadRequest, "global/invalid-parameters", "Invalid launch parameters.", "")
		return
	case req.SSHKeyNames[0] != "ops":
		writeError(w, http.StatusBadRequest, "global/invalid-parameters", "SSH key "+req.SSHKeyNames[0]+" does not exist.", "")
		return
	case f.quotaFrom > 0 && len(f.launches) >= f.quotaFrom:
		writeError(w, http.StatusBadRequest, "global/quota-exceeded", "Quota exceeded for "+req.InstanceTypeName+".", "Contact Lambda to raise your quota.")
		return
	case f.full[req.RegionName]:
		writeError(w, http.StatusBadRequest, "instance-operations/launch/insufficient-capacity", "Not enough capacity to fulfill launch request.", "Choose an instance type with more availability, or try again later.")
		return
	}
	var ids []string
	for range req.Quantity {
		inst := &fakeInstance{
			ID: fmt.Sprintf("%032x", len(f.instances)+1), Name: req.Name, Status: "booting",
			SSHKeyNames: req.SSHKeyNames, FileSystemNames: req.FileSystemNames,
			Region: fakeRegion{Name: req.RegionName, Description: "region " + req.RegionName},
			Tags:   req.Tags,
		}
		inst.InstanceType.Name = req.InstanceTypeName
		inst.InstanceType.Description = typ["instance_type"].(map[string]any)["description"].(string)
		f.instances = append(f.instances, inst)
		ids = append(ids, inst.ID)
	}
	writeData(w, map[string]any{"instance_ids": ids})
}

func (f *fakeLambda) list(w http.ResponseWriter, _ *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	out := []*fakeInstance{}
	for _, i := range f.instances {
		if f.hideOnce[i.ID] {
			delete(f.hideOnce, i.ID)
			continue
		}
		out = append(out, i)
	}
	writeData(w, out)
}

func (f *fakeLambda) find(id string) *fakeInstance {
	for _, i := range f.instances {
		if i.ID == id {
			return i
		}
	}
	return nil
}

func (f *fakeLambda) get(w http.ResponseWriter, r *http.Request) {
	f.mu.Lock()
	defer f.mu.Unlock()
	i := f.find(r.PathValue("id"))
	if i == nil {
		writeError(w, http.StatusNotFound, "global/object-does-not-exist", "Specified instance does not exist.", "")
		return
	}
	writeData(w, i)
}

func (f *fakeLambda) terminate(w http.ResponseWriter, r *http.Request) {
	var req struct {
		InstanceIDs []string `json:"instance_ids"`
	}
	if err := json.NewDecoder(r.Body).Decode(&req); err != nil {
		writeError(w, http.StatusBadRequest, "global/invalid-parameters", "Invalid request body.", "")
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	var done []*fakeInstance
	for _, id := range req.InstanceIDs {
		i := f.find(id)
		if i == nil {
			writeError(w, http.StatusNotFound, "global/object-does-not-exist", "Specified instance does not exist.", "")
			return
		}
		if i.Status == "terminated" {
			writeError(w, http.StatusBadRequest, "global/invalid-parameters", "Instance "+id+" is already terminated.", "")
			return
		}
		done = append(done, i)
	}
	for _, i := range done {
		i.Status = "terminated"
	}
	writeData(w, map[string]any{"terminated_instances": done})
}

// set changes the fake's behaviour under its lock, as its handlers run
// on goroutines of their own.
func (f *fakeLambda) set(change func(f *fakeLambda)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	change(f)
}

// add puts an instance in the account, as if launched elsewhere.
func (f *fakeLambda) add(i *fakeInstance) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.instances = append(f.instances, i)
}

func (f *fakeLambda) setStatus(id, status string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.find(id).Status = status
}

func (f *fakeLambda) remove(id string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.instances = slices.DeleteFunc(f.instances, func(i *fakeInstance) bool { return i.ID == id })
}

func (f *fakeLambda) status(id string) string {
	f.mu.Lock()
	defer f.mu.Unlock()
	if i := f.find(id); i != nil {
		return i.Status
	}
	return ""
}

func (f *fakeLambda) launched() []fakeLaunch {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.launches)
}

func (f *fakeLambda) seen() (requests, auths []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.requests), slices.Clone(f.auths)
}

func (f *fakeLambda) count(route string) int {
	reqs, _ := f.seen()
	n := 0
	for _, r := range reqs {
		if r == route {
			n++
		}
	}
	return n
}
