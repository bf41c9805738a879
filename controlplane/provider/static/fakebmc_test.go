package static_test

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/navarch/navarch/controlplane/provider/static"
)

// fakeSystem is one computer system a fakeBMC manages.
type fakeSystem struct {
	id    string
	power string
	// allowable are the ResetType values it takes; nil leaves them out
	// of the action, as some BMCs do.
	allowable []string
	// actionInfo gives allowable through @Redfish.ActionInfo instead of
	// inline, as OpenBMC does.
	actionInfo bool
	// ignoreGraceful accepts a GracefulShutdown and stays on, as a
	// machine whose operating system hangs does.
	ignoreGraceful bool
	// refuseGraceful answers a GracefulShutdown 409, as a BMC does
	// that cannot reach the operating system.
	refuseGraceful bool
	// resets are the ResetType values it was sent.
	resets []string
}

// fakeBMC is a Redfish service over TLS on loopback: the service root,
// sessions (or only basic authentication), the Systems collection, each
// system's PowerState and Reset action, and Redfish error bodies.
type fakeBMC struct {
	srv        *httptest.Server
	user, pass string

	mu         sync.Mutex
	systems    []*fakeSystem
	noSessions bool
	sessions   map[string]string // token → session id
	logins     int
	busy       int // the next requests are answered 503
	busyAnswer int // how many were
	foreign    bool
	// answer, when set, is asked first about every request, and answers
	// those it returns true for.
	answer func(w http.ResponseWriter, r *http.Request) bool
}

func newFakeBMC(t *testing.T, systems ...*fakeSystem) *fakeBMC {
	t.Helper()
	f := &fakeBMC{user: "navarch", pass: "pa:ss word", systems: systems, sessions: make(map[string]string)}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /redfish/v1", f.root)
	mux.HandleFunc("GET /redfish/v1/", f.root)
	mux.HandleFunc("POST /redfish/v1/SessionService/Sessions", f.login)
	mux.HandleFunc("DELETE /redfish/v1/SessionService/Sessions/{id}", f.authed(f.logout))
	mux.HandleFunc("GET /redfish/v1/Systems", f.authed(f.collection))
	mux.HandleFunc("GET /redfish/v1/Systems/{id}", f.authed(f.system))
	mux.HandleFunc("GET /redfish/v1/Systems/{id}/ResetActionInfo", f.authed(f.actionInfo))
	mux.HandleFunc("POST /redfish/v1/Systems/{id}/Actions/ComputerSystem.Reset", f.authed(f.reset))
	f.srv = httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		defer f.mu.Unlock()
		if f.busy > 0 {
			f.busy--
			f.busyAnswer++
			w.Header().Set("Retry-After", "0")
			redfishError(w, http.StatusServiceUnavailable, "ServiceTemporarilyUnavailable", "The service is temporarily unavailable.")
			return
		}
		if f.answer != nil && f.answer(w, r) {
			return
		}
		mux.ServeHTTP(w, r)
	}))
	t.Cleanup(f.srv.Close)
	return f
}

// machine is a static.Machine on this BMC: system "" leaves the path to
// be found in the Systems collection.
func (f *fakeBMC) machine(nodeID, system, pool string) static.Machine {
	m := static.Machine{
		NodeID: nodeID, BMC: f.srv.URL, Pool: pool,
		Credentials: static.Credentials{Username: f.user, Password: f.pass},
		HTTPClient:  f.srv.Client(),
	}
	if system != "" {
		m.System = "/redfish/v1/Systems/" + system
	}
	return m
}

func (f *fakeBMC) systemURL(id string) string { return f.srv.URL + "/redfish/v1/Systems/" + id }

// do runs fn holding the BMC's lock, to set it up or read it.
func (f *fakeBMC) do(fn func(f *fakeBMC)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

func (f *fakeBMC) get(id string) fakeSystem {
	f.mu.Lock()
	defer f.mu.Unlock()
	s := *f.find(id)
	s.resets = slices.Clone(s.resets)
	return s
}

func (f *fakeBMC) find(id string) *fakeSystem {
	for _, s := range f.systems {
		if s.id == id {
			return s
		}
	}
	return nil
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("OData-Version", "4.0")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

// redfishError answers with a Redfish error body (DSP0266, "Error
// responses"), a message from the Base registry in its extended info.
func redfishError(w http.ResponseWriter, status int, messageID, message string) {
	writeJSON(w, status, map[string]any{"error": map[string]any{
		"code":    "Base.1.8.GeneralError",
		"message": "A general error has occurred. See ExtendedInfo for more information.",
		"@Message.ExtendedInfo": []map[string]any{{
			"@odata.type": "#Message.v1_1_1.Message",
			"MessageId":   "Base.1.8." + messageID,
			"Message":     message,
			"Severity":    "Critical",
			"Resolution":  "None.",
		}},
	}})
}

func (f *fakeBMC) root(w http.ResponseWriter, r *http.Request) {
	if p := strings.TrimSuffix(r.URL.Path, "/"); p != "/redfish/v1" {
		redfishError(w, http.StatusNotFound, "ResourceMissingAtURI", "The resource at the URI "+r.URL.Path+" was not found.")
		return
	}
	root := map[string]any{
		"@odata.id":      "/redfish/v1",
		"@odata.type":    "#ServiceRoot.v1_15_0.ServiceRoot",
		"Id":             "RootService",
		"Name":           "Root Service",
		"RedfishVersion": "1.17.0",
		"Systems":        map[string]string{"@odata.id": "/redfish/v1/Systems"},
	}
	if !f.noSessions {
		root["SessionService"] = map[string]string{"@odata.id": "/redfish/v1/SessionService"}
		root["Links"] = map[string]any{"Sessions": map[string]string{"@odata.id": "/redfish/v1/SessionService/Sessions"}}
	}
	writeJSON(w, http.StatusOK, root)
}

func (f *fakeBMC) login(w http.ResponseWriter, r *http.Request) {
	if f.noSessions {
		redfishError(w, http.StatusMethodNotAllowed, "OperationNotAllowed", "The HTTP method is not allowed on this resource.")
		return
	}
	f.logins++
	var body struct{ UserName, Password string }
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil || body.UserName != f.user || body.Password != f.pass {
		redfishError(w, http.StatusUnauthorized, "NoValidSession", "There is no valid session established with the implementation.")
		return
	}
	id := fmt.Sprint(f.logins)
	token := "token-" + id
	f.sessions[token] = id
	w.Header().Set("X-Auth-Token", token)
	w.Header().Set("Location", "/redfish/v1/SessionService/Sessions/"+id)
	writeJSON(w, http.StatusCreated, map[string]any{
		"@odata.id":   "/redfish/v1/SessionService/Sessions/" + id,
		"@odata.type": "#Session.v1_7_0.Session",
		"Id":          id,
		"UserName":    body.UserName,
	})
}

// authed lets a request with a session token or, where the BMC has no
// sessions, basic credentials through.
func (f *fakeBMC) authed(h http.HandlerFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ok := false
		if f.noSessions {
			user, pass, basic := r.BasicAuth()
			ok = basic && user == f.user && pass == f.pass
		} else {
			_, ok = f.sessions[r.Header.Get("X-Auth-Token")]
		}
		if !ok {
			redfishError(w, http.StatusUnauthorized, "NoValidSession", "There is no valid session established with the implementation.")
			return
		}
		h(w, r)
	}
}

func (f *fakeBMC) logout(w http.ResponseWriter, r *http.Request) {
	for token, id := range f.sessions {
		if id == r.PathValue("id") {
			delete(f.sessions, token)
		}
	}
	w.WriteHeader(http.StatusNoContent)
}

func (f *fakeBMC) collection(w http.ResponseWriter, _ *http.Request) {
	var members []map[string]string
	for _, s := range f.systems {
		id := "/redfish/v1/Systems/" + s.id
		if f.foreign {
			id = "https://elsewhere.example" + id
		}
		members = append(members, map[string]string{"@odata.id": id})
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"@odata.id":           "/redfish/v1/Systems",
		"@odata.type":         "#ComputerSystemCollection.ComputerSystemCollection",
		"Name":                "Computer System Collection",
		"Members@odata.count": len(members),
		"Members":             members,
	})
}

func (f *fakeBMC) system(w http.ResponseWriter, r *http.Request) {
	s := f.find(r.PathValue("id"))
	if s == nil {
		redfishError(w, http.StatusNotFound, "ResourceMissingAtURI", "The resource at the URI "+r.URL.Path+" was not found.")
		return
	}
	path := "/redfish/v1/Systems/" + s.id
	reset := map[string]any{"target": path + "/Actions/ComputerSystem.Reset"}
	switch {
	case s.actionInfo:
		reset["@Redfish.ActionInfo"] = path + "/ResetActionInfo"
	case s.allowable != nil:
		reset["ResetType@Redfish.AllowableValues"] = s.allowable
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"@odata.id":   path,
		"@odata.type": "#ComputerSystem.v1_20_0.ComputerSystem",
		"Id":          s.id,
		"Name":        "System " + s.id,
		"SystemType":  "Physical",
		"PowerState":  s.power,
		"Status":      map[string]string{"State": "Enabled", "Health": "OK"},
		"Actions":     map[string]any{"#ComputerSystem.Reset": reset},
	})
}

func (f *fakeBMC) actionInfo(w http.ResponseWriter, r *http.Request) {
	s := f.find(r.PathValue("id"))
	if s == nil || !s.actionInfo {
		redfishError(w, http.StatusNotFound, "ResourceMissingAtURI", "The resource at the URI "+r.URL.Path+" was not found.")
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"@odata.id":   r.URL.Path,
		"@odata.type": "#ActionInfo.v1_1_2.ActionInfo",
		"Id":          "ResetActionInfo",
		"Parameters": []map[string]any{{
			"Name": "ResetType", "Required": true, "DataType": "String", "AllowableValues": s.allowable,
		}},
	})
}

func (f *fakeBMC) reset(w http.ResponseWriter, r *http.Request) {
	s := f.find(r.PathValue("id"))
	if s == nil {
		redfishError(w, http.StatusNotFound, "ResourceMissingAtURI", "The resource at the URI "+r.URL.Path+" was not found.")
		return
	}
	var body struct{ ResetType string }
	if err := json.NewDecoder(r.Body).Decode(&body); err != nil || body.ResetType == "" {
		redfishError(w, http.StatusBadRequest, "ActionParameterMissing", "The action ComputerSystem.Reset requires the parameter ResetType to be present in the request body.")
		return
	}
	if s.allowable != nil && !slices.Contains(s.allowable, body.ResetType) {
		redfishError(w, http.StatusBadRequest, "ActionParameterValueNotInList",
			"The value '"+body.ResetType+"' for the parameter ResetType in the action ComputerSystem.Reset is not in the list of acceptable values.")
		return
	}
	s.resets = append(s.resets, body.ResetType)
	switch body.ResetType {
	case "On", "ForceOn", "PushPowerButton", "PowerCycle":
		s.power = "On"
	case "ForceOff":
		s.power = "Off"
	case "GracefulShutdown":
		if s.refuseGraceful {
			s.resets = s.resets[:len(s.resets)-1]
			redfishError(w, http.StatusConflict, "ResourceInUse", "The change to the requested resource failed because the resource is in use or in transition.")
			return
		}
		if !s.ignoreGraceful {
			s.power = "Off"
		}
	case "ForceRestart", "GracefulRestart":
	default:
		redfishError(w, http.StatusBadRequest, "ActionParameterNotSupported", "The parameter ResetType for the action ComputerSystem.Reset is not supported on the target resource.")
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
