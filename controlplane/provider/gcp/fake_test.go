package gcp

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"

	compute "google.golang.org/api/compute/v1"
)

// fakeGCE is a Compute Engine API on loopback. It speaks the REST JSON
// the real client sends and reads — instances insert, get, delete and
// aggregatedList, zone operations wait, Google's error JSON — and keeps
// instances in memory.
type fakeGCE struct {
	t       *testing.T
	srv     *httptest.Server
	project string

	mu        sync.Mutex
	instances map[string]*compute.Instance  // by zone/name
	ops       map[string]*compute.Operation // finished operations, by name
	byRequest map[string]*compute.Operation // operations by request id
	inserts   []insertCall                  // every insert served, retries included
	// insertZones are the zones of every insert received, refused ones
	// included.
	insertZones []string
	calls       map[string]int // by call: insert, get, delete, list, wait
	// capacity is how many more instances a zone takes; a zone not in it
	// takes any number.
	capacity map[string]int
	// exhaustCode is the operation error code of a full zone.
	exhaustCode string
	// fail holds, by call, errors to answer with before serving it.
	fail     map[string][]apiError
	pageSize int
	nextID   uint64
	// auth is the Authorization header every call must carry; empty
	// means any.
	auth string
	// nextToken, when set, makes a listing's next page token from the
	// token it was asked with, in place of the real one.
	nextToken func(token string) string
	// padding lengthens each listing's answer by that many bytes.
	padding int
	// unfinished keeps operations running: wait answers them unfinished.
	unfinished bool
	// hang holds each call until the client gives up on it.
	hang bool
}

type insertCall struct {
	zone      string
	requestID string
	body      *compute.Instance
}

// apiError is an error response in Google's JSON shape.
type apiError struct {
	code    int
	reason  string
	message string
}

// newFake serves the fake over TLS.
func newFake(t *testing.T) *fakeGCE { return startFake(t, true) }

// startFake serves the fake over TLS, or over plain HTTP for a client
// that must reach it with its own transport.
func startFake(t *testing.T, useTLS bool) *fakeGCE {
	f := &fakeGCE{
		t:           t,
		project:     "proj",
		instances:   make(map[string]*compute.Instance),
		ops:         make(map[string]*compute.Operation),
		byRequest:   make(map[string]*compute.Operation),
		calls:       make(map[string]int),
		capacity:    make(map[string]int),
		exhaustCode: "ZONE_RESOURCE_POOL_EXHAUSTED",
		fail:        make(map[string][]apiError),
		pageSize:    500,
	}
	mux := http.NewServeMux()
	const base = "/compute/v1/projects/{project}"
	mux.HandleFunc("POST "+base+"/zones/{zone}/instances", f.serve("insert", f.insert))
	mux.HandleFunc("GET "+base+"/zones/{zone}/instances/{name}", f.serve("get", f.get))
	mux.HandleFunc("DELETE "+base+"/zones/{zone}/instances/{name}", f.serve("delete", f.delete))
	mux.HandleFunc("GET "+base+"/aggregated/instances", f.serve("list", f.list))
	mux.HandleFunc("POST "+base+"/zones/{zone}/operations/{op}/wait", f.serve("wait", f.wait))
	if useTLS {
		f.srv = httptest.NewTLSServer(mux)
	} else {
		f.srv = httptest.NewServer(mux)
	}
	t.Cleanup(f.srv.Close)
	return f
}

// serve counts the call, checks the project and credentials, and answers
// with a queued error or the handler.
func (f *fakeGCE) serve(call string, h func(w http.ResponseWriter, r *http.Request)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.calls[call]++
		if call == "insert" {
			f.insertZones = append(f.insertZones, r.PathValue("zone"))
		}
		if r.PathValue("project") != f.project {
			writeError(w, apiError{http.StatusNotFound, "notFound", "The resource 'projects/" + r.PathValue("project") + "' was not found"})
			return
		}
		if f.auth != "" && r.Header.Get("Authorization") != f.auth {
			writeError(w, apiError{http.StatusUnauthorized, "authError", "Request had invalid authentication credentials."})
			return
		}
		if q := f.fail[call]; len(q) > 0 {
			f.fail[call] = q[1:]
			writeError(w, q[0])
			return
		}
		if f.hang {
			f.mu.Unlock()
			<-r.Context().Done()
			f.mu.Lock()
			// Answers nothing at all: a handler that returned would send
			// an empty 200.
			panic(http.ErrAbortHandler)
		}
		h(w, r)
	}
}

func writeError(w http.ResponseWriter, e apiError) {
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	w.WriteHeader(e.code)
	_ = json.NewEncoder(w).Encode(map[string]any{"error": map[string]any{
		"code":    e.code,
		"message": e.message,
		"errors":  []map[string]string{{"message": e.message, "domain": "global", "reason": e.reason}},
	}})
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json; charset=UTF-8")
	_ = json.NewEncoder(w).Encode(v)
}

func (f *fakeGCE) zoneURL(zone string) string {
	return "https://www.googleapis.com/compute/v1/projects/" + f.project + "/zones/" + zone
}

// operation records a finished operation and returns it as the API does
// right after the call: still running, so the client must wait for it.
func (f *fakeGCE) operation(zone, kind, target string, opErr *compute.OperationError) *compute.Operation {
	f.nextID++
	done := &compute.Operation{
		Kind:          "compute#operation",
		Name:          fmt.Sprintf("operation-%d", f.nextID),
		Zone:          f.zoneURL(zone),
		OperationType: kind,
		TargetLink:    f.zoneURL(zone) + "/instances/" + target,
		Status:        "DONE",
		Progress:      100,
		Error:         opErr,
	}
	if opErr != nil {
		done.HttpErrorStatusCode = http.StatusServiceUnavailable
		done.HttpErrorMessage = "SERVICE UNAVAILABLE"
	}
	f.ops[done.Name] = done
	running := *done
	running.Status, running.Progress, running.Error = "RUNNING", 0, nil
	running.HttpErrorStatusCode, running.HttpErrorMessage = 0, ""
	return &running
}

func (f *fakeGCE) insert(w http.ResponseWriter, r *http.Request) {
	zone := r.PathValue("zone")
	var body compute.Instance
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil {
		writeError(w, apiError{http.StatusBadRequest, "parseError", "Parse Error: " + err.Error()})
		return
	}
	reqID := r.URL.Query().Get("requestId")
	f.inserts = append(f.inserts, insertCall{zone: zone, requestID: reqID, body: &body})
	if op, ok := f.byRequest[reqID]; ok && reqID != "" {
		writeJSON(w, op)
		return
	}
	k := zone + "/" + body.Name
	if _, ok := f.instances[k]; ok {
		writeError(w, apiError{http.StatusConflict, "alreadyExists", "The resource '" + k + "' already exists"})
		return
	}
	var opErr *compute.OperationError
	if left, limited := f.capacity[zone]; limited && left == 0 {
		opErr = &compute.OperationError{Errors: []*compute.OperationErrorErrors{{
			Code:    f.exhaustCode,
			Message: "The zone '" + f.zoneURL(zone) + "' does not have enough resources available to fulfill the request.  Try a different zone, or try again later.",
		}}}
	} else {
		if limited {
			f.capacity[zone] = left - 1
		}
		f.nextID++
		inst := body
		inst.Id = f.nextID
		inst.Kind = "compute#instance"
		inst.Zone = f.zoneURL(zone)
		inst.Status = "RUNNING"
		inst.SelfLink = f.zoneURL(zone) + "/instances/" + body.Name
		f.instances[k] = &inst
	}
	op := f.operation(zone, "insert", body.Name, opErr)
	if reqID != "" {
		f.byRequest[reqID] = op
	}
	writeJSON(w, op)
}

func (f *fakeGCE) wait(w http.ResponseWriter, r *http.Request) {
	op, ok := f.ops[r.PathValue("op")]
	if !ok {
		writeError(w, apiError{http.StatusNotFound, "notFound", "The resource 'operations/" + r.PathValue("op") + "' was not found"})
		return
	}
	if f.unfinished {
		running := *op
		running.Status, running.Progress, running.Error = "RUNNING", 50, nil
		op = &running
	}
	writeJSON(w, op)
}

func (f *fakeGCE) get(w http.ResponseWriter, r *http.Request) {
	k := r.PathValue("zone") + "/" + r.PathValue("name")
	inst, ok := f.instances[k]
	if !ok {
		writeError(w, apiError{http.StatusNotFound, "notFound", "The resource 'projects/" + f.project + "/zones/" + k + "' was not found"})
		return
	}
	writeJSON(w, inst)
}

func (f *fakeGCE) delete(w http.ResponseWriter, r *http.Request) {
	zone, name := r.PathValue("zone"), r.PathValue("name")
	if _, ok := f.instances[zone+"/"+name]; !ok {
		writeError(w, apiError{http.StatusNotFound, "notFound", "The resource 'projects/" + f.project + "/zones/" + zone + "/instances/" + name + "' was not found"})
		return
	}
	delete(f.instances, zone+"/"+name)
	writeJSON(w, f.operation(zone, "delete", name, nil))
}

var filterRE = regexp.MustCompile(`^labels\.([a-z][a-z0-9_-]*) = "([a-z0-9_-]*)"$`)

// list serves aggregatedList: instances grouped by zone, pageSize at a
// time, filtered by one label as the client asks.
func (f *fakeGCE) list(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	var key, value string
	if filter := q.Get("filter"); filter != "" {
		m := filterRE.FindStringSubmatch(filter)
		if m == nil {
			writeError(w, apiError{http.StatusBadRequest, "invalid", "Invalid value for field 'filter': '" + filter + "'. Invalid list filter expression."})
			return
		}
		key, value = m[1], m[2]
	}
	keys := make([]string, 0, len(f.instances))
	for k, inst := range f.instances {
		if key == "" || inst.Labels[key] == value {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	start, _ := strconv.Atoi(q.Get("pageToken"))
	start = min(start, len(keys))
	end := min(start+f.pageSize, len(keys))
	out := compute.InstanceAggregatedList{Kind: "compute#instanceAggregatedList", Items: map[string]compute.InstancesScopedList{}}
	for _, k := range keys[start:end] {
		zone := k[:strings.Index(k, "/")]
		scoped := out.Items["zones/"+zone]
		scoped.Instances = append(scoped.Instances, f.instances[k])
		out.Items["zones/"+zone] = scoped
	}
	// A zone with nothing to show is listed with a warning, as the API does.
	out.Items["zones/us-east1-b"] = compute.InstancesScopedList{Warning: &compute.InstancesScopedListWarning{
		Code: "NO_RESULTS_ON_PAGE", Message: "There are no results for scope 'zones/us-east1-b' on this page.",
	}}
	if end < len(keys) {
		out.NextPageToken = strconv.Itoa(end)
	}
	if f.nextToken != nil {
		out.NextPageToken = f.nextToken(q.Get("pageToken"))
	}
	out.SelfLink = strings.Repeat("x", f.padding)
	writeJSON(w, out)
}

// add puts an instance there as if something had started it.
func (f *fakeGCE) add(zone, name, status string, labels map[string]string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.nextID++
	f.instances[zone+"/"+name] = &compute.Instance{
		Kind: "compute#instance", Id: f.nextID, Name: name, Zone: f.zoneURL(zone), Status: status, Labels: labels,
	}
}

// setStatus changes an instance's status; "" removes it.
func (f *fakeGCE) setStatus(zone, name, status string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if status == "" {
		delete(f.instances, zone+"/"+name)
		return
	}
	f.instances[zone+"/"+name].Status = status
}

func (f *fakeGCE) count(call string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[call]
}

func (f *fakeGCE) failWith(call string, errs ...apiError) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.fail[call] = append(f.fail[call], errs...)
}

func (f *fakeGCE) insertCalls() []insertCall {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]insertCall(nil), f.inserts...)
}

func (f *fakeGCE) triedZones() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.insertZones...)
}

func (f *fakeGCE) names() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for k := range f.instances {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
