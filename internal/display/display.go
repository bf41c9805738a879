// Package display names the API's states and values the way operators read
// them, for the console and the command line alike.
package display

import (
	"fmt"
	"slices"
	"strings"
	"time"

	controlplanev1 "github.com/navarch/navarch/proto/navarch/controlplane/v1"
	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
)

// Lifecycle is the short name of a lifecycle state, such as "CORDONED".
func Lifecycle(l fleetv1.LifecycleState) string {
	if l == fleetv1.LifecycleState_LIFECYCLE_STATE_UNSPECIFIED {
		return "-"
	}
	return strings.TrimPrefix(l.String(), "LIFECYCLE_STATE_")
}

// Health is the short name of a health state, such as "DEGRADED".
func Health(h fleetv1.HealthStatus) string {
	if h == fleetv1.HealthStatus_HEALTH_STATUS_UNSPECIFIED {
		return "-"
	}
	return strings.TrimPrefix(h.String(), "HEALTH_STATUS_")
}

// Reachability is the short name of a reachability, such as "STALE".
func Reachability(r fleetv1.Reachability) string {
	if r == fleetv1.Reachability_REACHABILITY_UNSPECIFIED {
		return "-"
	}
	return strings.TrimPrefix(r.String(), "REACHABILITY_")
}

// CommandType is the short name of a command type, such as "DRAIN".
func CommandType(t fleetv1.CommandType) string {
	return strings.TrimPrefix(t.String(), "COMMAND_TYPE_")
}

// CommandStatus is the short name of a command status, such as "SUCCEEDED".
func CommandStatus(s fleetv1.CommandStatus) string {
	return strings.TrimPrefix(s.String(), "COMMAND_STATUS_")
}

var remedies = map[fleetv1.Remedy]string{
	fleetv1.Remedy_REMEDY_UNSPECIFIED:         "",
	fleetv1.Remedy_REMEDY_NONE:                "none",
	fleetv1.Remedy_REMEDY_CHECK_APPLICATION:   "check the application",
	fleetv1.Remedy_REMEDY_RESTART_APPLICATION: "restart the application",
	fleetv1.Remedy_REMEDY_WATCH:               "watch",
	fleetv1.Remedy_REMEDY_RESET_GPU:           "drain, reset GPU",
	fleetv1.Remedy_REMEDY_REBOOT_NODE:         "drain, reboot node",
	fleetv1.Remedy_REMEDY_INSPECT_HARDWARE:    "inspect hardware",
	fleetv1.Remedy_REMEDY_REPLACE_GPU:         "replace GPU (RMA)",
	fleetv1.Remedy_REMEDY_CONTACT_SUPPORT:     "contact support",
	fleetv1.Remedy_REMEDY_RESTART_VM:          "restart VM",
	fleetv1.Remedy_REMEDY_CHECK_COOLING:       "check cooling",
	fleetv1.Remedy_REMEDY_CHECK_POWER:         "check power supply",
	fleetv1.Remedy_REMEDY_UPDATE_SOFTWARE:     "update driver and firmware",
}

var shortRemedies = map[fleetv1.Remedy]string{
	fleetv1.Remedy_REMEDY_UNSPECIFIED:         "",
	fleetv1.Remedy_REMEDY_NONE:                "none",
	fleetv1.Remedy_REMEDY_CHECK_APPLICATION:   "check app",
	fleetv1.Remedy_REMEDY_RESTART_APPLICATION: "restart app",
	fleetv1.Remedy_REMEDY_WATCH:               "watch",
	fleetv1.Remedy_REMEDY_RESET_GPU:           "reset GPU",
	fleetv1.Remedy_REMEDY_REBOOT_NODE:         "reboot",
	fleetv1.Remedy_REMEDY_INSPECT_HARDWARE:    "inspect HW",
	fleetv1.Remedy_REMEDY_REPLACE_GPU:         "RMA GPU",
	fleetv1.Remedy_REMEDY_CONTACT_SUPPORT:     "support",
	fleetv1.Remedy_REMEDY_RESTART_VM:          "restart VM",
	fleetv1.Remedy_REMEDY_CHECK_COOLING:       "cooling",
	fleetv1.Remedy_REMEDY_CHECK_POWER:         "power",
	fleetv1.Remedy_REMEDY_UPDATE_SOFTWARE:     "update SW",
}

// ShortRemedyWidth fits every ShortRemedy name.
const ShortRemedyWidth = 11

// ShortRemedy names the suggested action in at most ShortRemedyWidth
// characters, for narrow screens.
func ShortRemedy(r fleetv1.Remedy) string {
	if s, ok := shortRemedies[r]; ok {
		return s
	}
	s := Remedy(r)
	if len(s) > ShortRemedyWidth {
		s = s[:ShortRemedyWidth]
	}
	return s
}

// Remedy says the suggested action in words.
func Remedy(r fleetv1.Remedy) string {
	if s, ok := remedies[r]; ok {
		return s
	}
	return strings.ToLower(strings.TrimPrefix(r.String(), "REMEDY_"))
}

// EventKind names what an event came from, with the XID code for XIDs.
func EventKind(e *fleetv1.HealthEvent) string {
	if e.GetKind() == fleetv1.EventKind_EVENT_KIND_XID {
		return fmt.Sprintf("XID %d", e.GetXid())
	}
	return strings.ReplaceAll(strings.ToLower(strings.TrimPrefix(e.GetKind().String(), "EVENT_KIND_")), "_", "-")
}

// GPU names the GPU an event concerns: "gpu3", or "node" for node-wide.
func GPU(index int32) string {
	if index < 0 {
		return "node"
	}
	return fmt.Sprintf("gpu%d", index)
}

// Age renders how long ago t was, compactly: "4s", "12m", "3h", "2d"; "-"
// for the zero time.
func Age(t, now time.Time) string {
	// An unset protobuf timestamp reads as the Unix epoch: never.
	if t.IsZero() || t.Unix() == 0 {
		return "-"
	}
	d := now.Sub(t)
	switch {
	case d < 0:
		return "0s"
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d.Hours()))
	}
	return fmt.Sprintf("%dd", int(d.Hours()/24))
}

// Duration renders a duration as an operator writes one: "1h", "10m",
// "168h", "1m30s", rather than "1h0m0s".
func Duration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// Bytes renders a size in binary units: "80.0 GiB".
func Bytes(b uint64) string {
	const unit = 1024
	if b < unit {
		return fmt.Sprintf("%d B", b)
	}
	div, exp := uint64(unit), 0
	for n := b / unit; n >= unit; n /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(b)/float64(div), "KMGTPE"[exp])
}

// Labels renders labels as "k=v,k2=v2" in key order.
func Labels(labels map[string]string) string {
	keys := make([]string, 0, len(labels))
	for k := range labels {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	kv := make([]string, 0, 2*len(keys))
	for _, k := range keys {
		kv = append(kv, k, labels[k])
	}
	return LabelPairs(kv)
}

// LabelPairs renders labels given as key, value, key, value, … in key
// order, as Labels does.
func LabelPairs(kv []string) string {
	var b strings.Builder
	for i := 0; i+1 < len(kv); i += 2 {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(kv[i])
		b.WriteByte('=')
		b.WriteString(kv[i+1])
	}
	return b.String()
}

// Utilization is the mean GPU utilization of a node's latest samples, and
// whether there are any.
func Utilization(samples []*fleetv1.GpuSample) (uint32, bool) {
	if len(samples) == 0 {
		return 0, false
	}
	var sum uint32
	for _, s := range samples {
		sum += s.GetUtilizationGpuPercent()
	}
	return sum / uint32(len(samples)), true
}

// Hottest is the highest GPU temperature of a node's latest samples.
func Hottest(samples []*fleetv1.GpuSample) (uint32, bool) {
	var hot uint32
	for _, s := range samples {
		hot = max(hot, s.GetTemperatureCelsius())
	}
	return hot, len(samples) > 0
}

// ParseLifecycle reads a lifecycle name such as "cordoned".
func ParseLifecycle(s string) (fleetv1.LifecycleState, bool) {
	v, ok := fleetv1.LifecycleState_value["LIFECYCLE_STATE_"+strings.ToUpper(strings.ReplaceAll(s, "-", "_"))]
	return fleetv1.LifecycleState(v), ok && v != 0
}

// ParseHealth reads a health name such as "unhealthy".
func ParseHealth(s string) (fleetv1.HealthStatus, bool) {
	v, ok := fleetv1.HealthStatus_value["HEALTH_STATUS_"+strings.ToUpper(s)]
	return fleetv1.HealthStatus(v), ok && v != 0
}

// ParseReachability reads a reachability name such as "offline".
func ParseReachability(s string) (fleetv1.Reachability, bool) {
	v, ok := fleetv1.Reachability_value["REACHABILITY_"+strings.ToUpper(s)]
	return fleetv1.Reachability(v), ok && v != 0
}

// OrDash is s, or "-" where s is empty.
func OrDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// FirstLine is s up to its first line break.
func FirstLine(s string) string {
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		return s[:i]
	}
	return s
}

// Headline is the first line of a message shown on one line, with " …"
// where more lines follow.
func Headline(s string) string {
	if first := FirstLine(s); first != s {
		return first + " …"
	}
	return s
}

// Role is the short name of an operator role, such as "viewer", as the
// command line takes it.
func Role(r controlplanev1.Role) string {
	if r == controlplanev1.Role_ROLE_UNSPECIFIED {
		return "-"
	}
	return strings.ToLower(strings.TrimPrefix(r.String(), "ROLE_"))
}

// The names the API gives, in Node.lifecycle_by and Command.issued_by,
// to changes no operator's token made: the fault policy's, and the
// control plane's own steps.
const (
	ByPolicy       = "policy"
	ByControlPlane = "control plane"
)

// LifecycleBy names who set a node's lifecycle state when a person or the
// policy did: "oncall", "policy". It is empty for the control plane's own
// steps (registration, a drain's end), which would only be noise, and for
// a state set before the control plane recorded who.
func LifecycleBy(n *fleetv1.Node) string {
	switch by := n.GetLifecycleBy(); {
	case by == ByControlPlane:
		return ""
	case by != "":
		return by
	case n.GetCordonedByPolicy():
		return ByPolicy
	}
	return ""
}

// Scheduler says in one line what the node's workload scheduler shows, such
// as "slurm gpu7: MIXED+DRAIN · draining by Navarch, 2 jobs left · reason:
// navarch: xid 79"; "" when the node's agent works with none. A drain set
// outside Navarch is "by hand": Navarch never resumes it.
func Scheduler(s *fleetv1.SchedulerState) string {
	if s == nil {
		return ""
	}
	parts := []string{fmt.Sprintf("%s %s: %s", s.GetScheduler(), OrDash(s.GetNodeName()), OrDash(s.GetState()))}
	jobs := "1 job"
	if s.GetJobs() != 1 {
		jobs = fmt.Sprintf("%d jobs", s.GetJobs())
	}
	by := " by hand (Navarch won't resume)"
	if s.GetByNavarch() {
		by = " by Navarch"
	}
	switch {
	case s.GetDrained():
		parts = append(parts, "drained"+by)
	case s.GetDrain():
		parts = append(parts, "draining"+by+", "+jobs+" left")
	case s.GetJobs() > 0:
		parts = append(parts, jobs)
	}
	if r := s.GetReason(); r != "" {
		parts = append(parts, "reason: "+r)
	}
	if e := s.GetError(); e != "" {
		parts = append(parts, "cannot reach it: "+e)
	}
	return strings.Join(parts, " · ")
}

// PoolAction names what a pool decision did: SCALE, REPLACE, HOLD; "-"
// for none.
func PoolAction(a fleetv1.PoolAction) string {
	if a == fleetv1.PoolAction_POOL_ACTION_UNSPECIFIED {
		return "-"
	}
	return strings.TrimPrefix(a.String(), "POOL_ACTION_")
}
