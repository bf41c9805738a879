package fleet

import (
	"context"
	"fmt"
	"slices"
	"sort"
	"strings"

	"github.com/navarch/navarch/internal/health"
	controlplanev1 "github.com/navarch/navarch/proto/navarch/controlplane/v1"
	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
	"github.com/navarch/navarch/store"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// NodeDetail is one node with its history.
func (f *Fleet) NodeDetail(ctx context.Context, id string, eventLimit int) (*controlplanev1.GetNodeResponse, error) {
	ns, err := f.mustGet(id)
	if err != nil {
		return nil, err
	}
	resp := &controlplanev1.GetNodeResponse{Node: ns.viewOf(ns.node.Load(), ns.reachability(), true)}
	if resp.Events, err = f.store.Events(ctx, store.EventQuery{NodeID: id, Limit: eventLimit}); err != nil {
		return nil, status.Error(codes.Unavailable, "health events could not be read")
	}
	if resp.Commands, err = f.store.Commands(ctx, id, 100); err != nil {
		return nil, status.Error(codes.Unavailable, "commands could not be read")
	}
	ns.live.mu.Lock()
	for i := range ns.live.history {
		resp.History = append(resp.History, ns.live.history[i].proto())
	}
	ns.live.mu.Unlock()
	sort.Slice(resp.History, func(i, j int) bool { return resp.History[i].GetGpuIndex() < resp.History[j].GetGpuIndex() })
	return resp, nil
}

// NodeFilter selects nodes for List.
type NodeFilter struct {
	Lifecycle    []fleetv1.LifecycleState
	Health       []fleetv1.HealthStatus
	Reachability []fleetv1.Reachability
	Labels       []LabelTerm
	Text         string
	// HeldBack keeps only nodes the breaker held back from an automatic
	// cordon.
	HeldBack bool
}

// empty reports whether the filter keeps every node.
func (nf *NodeFilter) empty() bool {
	return len(nf.Lifecycle) == 0 && len(nf.Health) == 0 && len(nf.Reachability) == 0 && len(nf.Labels) == 0 && nf.Text == "" && !nf.HeldBack
}

// LabelTerm is one term of a label selector; an empty Value with Any set
// matches any value.
type LabelTerm struct {
	Key, Value string
	Any        bool
}

// ParseLabelSelector reads "k=v,k2=v2,k3" into terms.
func ParseLabelSelector(s string) ([]LabelTerm, error) {
	var out []LabelTerm
	for part := range strings.SplitSeq(s, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		k, v, hasValue := strings.Cut(part, "=")
		k = strings.TrimSpace(k)
		if k == "" {
			return nil, fmt.Errorf("term %q has no key", part)
		}
		out = append(out, LabelTerm{Key: k, Value: strings.TrimSpace(v), Any: !hasValue})
	}
	return out, nil
}

// match says whether n, at reachability reach, passes the filter. q is
// the filter's text in lower case, lowered once for the whole fleet.
func (nf *NodeFilter) match(n *fleetv1.Node, reach fleetv1.Reachability, q string) bool {
	if len(nf.Lifecycle) > 0 && !slices.Contains(nf.Lifecycle, n.GetLifecycle()) {
		return false
	}
	if len(nf.Health) > 0 && !slices.Contains(nf.Health, n.GetHealth()) {
		return false
	}
	if len(nf.Reachability) > 0 && !slices.Contains(nf.Reachability, reach) {
		return false
	}
	if nf.HeldBack && n.GetCordonHeldBackAt() == nil {
		return false
	}
	for _, t := range nf.Labels {
		v, ok := n.GetLabels()[t.Key]
		if !ok || (!t.Any && v != t.Value) {
			return false
		}
	}
	if q != "" && !textHit(n, q) {
		return false
	}
	return true
}

// textHit says whether q, in lower case, is in n's id, hostname or one of
// its labels written k=v, ignoring case. strings.ToLower returns a string
// already in lower case as it is, so the usual ids and labels cost no
// allocation; a label is joined only when q has an '=' that may span it.
func textHit(n *fleetv1.Node, q string) bool {
	if strings.Contains(strings.ToLower(n.GetNodeId()), q) || strings.Contains(strings.ToLower(n.GetHostname()), q) {
		return true
	}
	joined := strings.Contains(q, "=")
	for k, v := range n.GetLabels() {
		if joined {
			if strings.Contains(strings.ToLower(k+"="+v), q) {
				return true
			}
		} else if strings.Contains(strings.ToLower(k), q) || strings.Contains(strings.ToLower(v), q) {
			return true
		}
	}
	return false
}

// List returns a page of the matching nodes ordered by id, starting after
// the node id after ("" for the first page); the id the next page starts
// after ("" when this page is the last); the number of matches; and the
// revision the page is at.
//
// Without a filter a page is read from the fleet's id index and costs
// its size. With one, a page costs one filter test per node, not a sort
// of the fleet: the candidates after the position are kept in a buffer of twice the page,
// and when it fills it is sorted and cut back to the page, whose last id
// then bounds the candidates still worth keeping. Each view is built from
// the state the node matched in.
func (f *Fleet) List(nf NodeFilter, pageSize int, after string) ([]*fleetv1.Node, string, int, uint64) {
	rev := f.hub.Revision()
	if nf.empty() {
		// Without a filter the fleet's id index gives the page directly.
		nodes, more, total := f.pageByID(pageSize, after)
		page := make([]*fleetv1.Node, len(nodes))
		for i, ns := range nodes {
			page[i] = ns.viewOf(ns.node.Load(), ns.reachability(), false)
		}
		next := ""
		if more && len(page) > 0 {
			next = page[len(page)-1].GetNodeId()
		}
		return page, next, total, rev
	}
	q := strings.ToLower(nf.Text)
	type candidate struct {
		ns    *nodeState
		node  *fleetv1.Node
		reach fleetv1.Reachability
	}
	byID := func(a, b candidate) int { return strings.Compare(a.node.GetNodeId(), b.node.GetNodeId()) }
	keep := make([]candidate, 0, 2*max(pageSize, 0))
	bound := "" // once the buffer was cut, only ids below it can be on the page
	total, rest := 0, 0
	for _, ns := range f.all() {
		n, reach := ns.node.Load(), ns.reachability()
		if !nf.match(n, reach, q) {
			continue
		}
		total++
		id := n.GetNodeId()
		if id <= after {
			continue
		}
		rest++
		if pageSize <= 0 || (bound != "" && id >= bound) {
			continue
		}
		keep = append(keep, candidate{ns: ns, node: n, reach: reach})
		if len(keep) == cap(keep) {
			slices.SortFunc(keep, byID)
			keep = keep[:pageSize]
			bound = keep[pageSize-1].node.GetNodeId()
		}
	}
	slices.SortFunc(keep, byID)
	keep = keep[:min(len(keep), max(pageSize, 0))]
	page := make([]*fleetv1.Node, len(keep))
	for i, c := range keep {
		page[i] = c.ns.viewOf(c.node, c.reach, false)
	}
	next := ""
	if rest > len(page) && len(page) > 0 {
		next = page[len(page)-1].GetNodeId()
	}
	return page, next, total, rev
}

// Events lists health events, newest first.
func (f *Fleet) Events(ctx context.Context, nodeID string, minHealth fleetv1.HealthStatus, text string, limit int) ([]*fleetv1.HealthEvent, error) {
	if nodeID != "" {
		if _, err := f.mustGet(nodeID); err != nil {
			return nil, err
		}
	}
	q := strings.ToLower(text)
	evs, err := f.store.Events(ctx, store.EventQuery{NodeID: nodeID, Limit: limit, Keep: func(e *fleetv1.HealthEvent) bool {
		if minHealth != fleetv1.HealthStatus_HEALTH_STATUS_UNSPECIFIED && health.Rank(e.GetHealth()) < health.Rank(minHealth) {
			return false
		}
		if q != "" && !strings.Contains(strings.ToLower(e.GetNodeId()+" "+e.GetCause()+" "+e.GetMessage()), q) {
			return false
		}
		return true
	}})
	if err != nil {
		return nil, status.Error(codes.Unavailable, "health events could not be read")
	}
	return evs, nil
}

// Status returns the fleet totals; the API adds the request limits.
func (f *Fleet) Status() *controlplanev1.GetFleetStatusResponse {
	return &controlplanev1.GetFleetStatusResponse{
		Summary:   f.summary(),
		Revision:  f.hub.Revision(),
		Providers: f.providers.Info(),
		Breaker:   f.breaker.status(f.clock.Now()),
		StartedAt: ts(f.started),
	}
}
