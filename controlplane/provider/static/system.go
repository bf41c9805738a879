package static

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
)

// What the provider relies on of Redfish (DMTF DSP0266 and the
// ComputerSystem schema): the service root, the Systems collection, a
// system's PowerState and its Reset action.
const (
	serviceRootPath = "/redfish/v1"
	systemsPath     = "/redfish/v1/Systems"

	powerOff         = "Off"
	powerPoweringOff = "PoweringOff"

	resetOn               = "On"
	resetForceOn          = "ForceOn"
	resetPushPowerButton  = "PushPowerButton"
	resetForceOff         = "ForceOff"
	resetGracefulShutdown = "GracefulShutdown"
	resetForceRestart     = "ForceRestart"
	resetPowerCycle       = "PowerCycle"
)

type computerSystem struct {
	PowerState string `json:"PowerState"`
	Actions    struct {
		Reset struct {
			Target     string   `json:"target"`
			Allowable  []string `json:"ResetType@Redfish.AllowableValues"`
			ActionInfo string   `json:"@Redfish.ActionInfo"`
		} `json:"#ComputerSystem.Reset"`
	} `json:"Actions"`
}

type actionInfo struct {
	Parameters []struct {
		Name            string   `json:"Name"`
		AllowableValues []string `json:"AllowableValues"`
	} `json:"Parameters"`
}

// system is one computer system on a BMC.
type system struct {
	bmc *bmc
	// path is the configured path; empty means the first member of the
	// Systems collection.
	path string

	mu       sync.Mutex
	resolved string
}

// systemPath is the system's path: the configured one, or the first
// member of the service root's Systems collection.
func (s *system) systemPath(ctx context.Context) (string, error) {
	s.mu.Lock()
	known := cmp.Or(s.path, s.resolved)
	s.mu.Unlock()
	if known != "" {
		return known, nil
	}
	b := s.bmc
	b.mu.Lock()
	root, err := b.serviceRoot(ctx)
	b.mu.Unlock()
	if err != nil {
		return "", err
	}
	var systems collection
	if err := b.call(ctx, http.MethodGet, cmp.Or(root.Systems.ID, systemsPath), nil, &systems); err != nil {
		return "", err
	}
	if len(systems.Members) == 0 || systems.Members[0].ID == "" {
		return "", errors.New("the BMC lists no systems")
	}
	s.mu.Lock()
	s.resolved = systems.Members[0].ID
	s.mu.Unlock()
	return systems.Members[0].ID, nil
}

// url is the system's URL where its path is known, else "".
func (s *system) url() string {
	s.mu.Lock()
	path := cmp.Or(s.path, s.resolved)
	s.mu.Unlock()
	if path == "" {
		return ""
	}
	u, err := s.bmc.resolve(path)
	if err != nil {
		return ""
	}
	return u.String()
}

// systemState is what the provider reads of a computer system.
type systemState struct {
	// url is the system's URL, the InstanceID of its node.
	url   string
	power string
	// target is the Reset action's URI.
	target string
	// allowable are the ResetType values the BMC takes; nil where it
	// does not say.
	allowable []string
}

// allows reports whether the BMC takes a reset type, or does not say.
func (s *systemState) allows(resetType string) bool {
	return s.allowable == nil || slices.Contains(s.allowable, resetType)
}

// first is the first of the reset types the BMC takes, or the first of
// all where it takes none of them.
func (s *systemState) first(resetTypes ...string) string {
	for _, t := range resetTypes {
		if s.allows(t) {
			return t
		}
	}
	return resetTypes[0]
}

// read reads the system: its power state and, with actions, its Reset
// action and the reset types it takes (inline, or from the action's
// ActionInfo).
func (s *system) read(ctx context.Context, actions bool) (*systemState, error) {
	b := s.bmc
	path, err := s.systemPath(ctx)
	if err != nil {
		return nil, err
	}
	var cs computerSystem
	if err := b.call(ctx, http.MethodGet, path, nil, &cs); err != nil {
		return nil, err
	}
	u, err := b.resolve(path)
	if err != nil {
		return nil, err
	}
	st := &systemState{url: u.String(), power: cs.PowerState}
	if st.power == "" {
		return nil, fmt.Errorf("GET %s: the system has no PowerState", path)
	}
	if !actions {
		return st, nil
	}
	reset := cs.Actions.Reset
	st.target = cmp.Or(reset.Target, strings.TrimSuffix(path, "/")+"/Actions/ComputerSystem.Reset")
	st.allowable = reset.Allowable
	if st.allowable == nil && reset.ActionInfo != "" {
		var info actionInfo
		if err := b.call(ctx, http.MethodGet, reset.ActionInfo, nil, &info); err != nil {
			return nil, err
		}
		for _, p := range info.Parameters {
			if p.Name == "ResetType" {
				st.allowable = p.AllowableValues
			}
		}
	}
	return st, nil
}

// reset posts the system's Reset action.
func (s *system) reset(ctx context.Context, st *systemState, resetType string) error {
	return s.bmc.call(ctx, http.MethodPost, st.target, map[string]string{"ResetType": resetType}, nil)
}
