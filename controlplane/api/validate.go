package api

import (
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"

	"google.golang.org/protobuf/types/known/durationpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/navarch/navarch/controlplane/fleet"
	"github.com/navarch/navarch/internal/apierr"
	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
	nodev1 "github.com/navarch/navarch/proto/navarch/node/v1"
)

// Size limits of the API. docs/api.md lists them; changing one here means
// changing it there.
const (
	MaxNodeIDLen      = 253
	MaxLabels         = 64
	MaxLabelKeyLen    = 63
	MaxLabelValueLen  = 253
	MaxGPUs           = 64
	MaxEventsPerCall  = 256
	MaxShortText      = 256   // hostnames, versions, GPU names, UUIDs
	MaxReasonLen      = 1024  // operator reasons
	MaxEventMessage   = 4096  // an event's detail
	MaxResultMessage  = 16384 // a command result
	MaxFilterLen      = 512
	MaxPageSize       = 1000
	MaxProvision      = 1000
	MaxSimFaults      = 32
	MaxDrainDeadline  = 7 * 24 * time.Hour
	minTerminateDrain = time.Second
	MaxRecvMsgBytes   = 4 << 20
	MaxUnsupported    = 32   // metric groups a GPU may lack
	MaxGPUProcesses   = 4096 // compute processes on one GPU
	defaultPageSize   = 100
	defaultEventLimit = 50
	maxEventLimit     = 1000
)

// Bounds of a heartbeat sample's readings, also in docs/api.md.
const (
	// MaxTemperatureCelsius is past any GPU's shutdown temperature and the
	// hottest a simulated fault may set; a reading above it is a bad one.
	MaxTemperatureCelsius = 200
	// MaxPowerMilliwatts is 10 kW, several times any GPU's board limit.
	MaxPowerMilliwatts = 10_000_000
)

func invalid(field, format string, args ...any) error {
	return apierr.Invalid(field, format, args...)
}

// checkNodeID enforces the node id grammar: 1–253 characters of letters,
// digits, '.', '-' and '_', starting with a letter or digit.
func checkNodeID(field, id string) error {
	if id == "" {
		return invalid(field, "is required")
	}
	if len(id) > MaxNodeIDLen {
		return invalid(field, "is %d bytes; the limit is %d", len(id), MaxNodeIDLen)
	}
	for i, r := range id {
		ok := r < unicode.MaxASCII && (unicode.IsLetter(r) || unicode.IsDigit(r) || (i > 0 && strings.ContainsRune(".-_", r)))
		if !ok {
			return invalid(field, "%q has %q at offset %d; use letters, digits, '.', '-' and '_', starting with a letter or digit", id, r, i)
		}
	}
	return nil
}

// checkText bounds free text and rejects control characters and bad UTF-8.
func checkText(field, s string, limit int, allowNewlines bool) error {
	if len(s) > limit {
		return invalid(field, "is %d bytes; the limit is %d", len(s), limit)
	}
	if !utf8.ValidString(s) {
		return invalid(field, "is not valid UTF-8")
	}
	for _, r := range s {
		if unicode.IsControl(r) && !(allowNewlines && (r == '\n' || r == '\t')) {
			return invalid(field, "contains control character %q", r)
		}
	}
	return nil
}

// checkLabels enforces label limits: keys of letters, digits, '.', '-', '_'
// and '/'; values without ',' or '=' (which selectors use).
func checkLabels(field string, labels map[string]string) error {
	if len(labels) > MaxLabels {
		return invalid(field, "has %d labels; the limit is %d", len(labels), MaxLabels)
	}
	for k, v := range labels {
		if k == "" {
			return invalid(field, "has an empty key")
		}
		if len(k) > MaxLabelKeyLen {
			return invalid(field+"["+k+"]", "key is %d bytes; the limit is %d", len(k), MaxLabelKeyLen)
		}
		for _, r := range k {
			if r >= unicode.MaxASCII || !(unicode.IsLetter(r) || unicode.IsDigit(r) || strings.ContainsRune(".-_/", r)) {
				return invalid(field+"["+k+"]", "key has %q; use letters, digits, '.', '-', '_' and '/'", r)
			}
		}
		if err := checkText(field+"["+k+"]", v, MaxLabelValueLen, false); err != nil {
			return err
		}
		if strings.ContainsAny(v, ",=") {
			return invalid(field+"["+k+"]", "value %q must not contain ',' or '='", v)
		}
	}
	return nil
}

func checkDuration(field string, d *durationpb.Duration, lo, hi time.Duration) error {
	if d == nil {
		return nil
	}
	if err := d.CheckValid(); err != nil {
		return invalid(field, "%v", err)
	}
	v := d.AsDuration()
	if v < lo || v > hi {
		return invalid(field, "%s is outside %s–%s", v, lo, hi)
	}
	return nil
}

func checkTimestamp(field string, t *timestamppb.Timestamp) error {
	if t == nil {
		return nil
	}
	if err := t.CheckValid(); err != nil {
		return invalid(field, "%v", err)
	}
	return nil
}

func checkEnum[E ~int32](field string, v E, names map[int32]string, allowZero bool) error {
	if v == 0 && !allowZero {
		return invalid(field, "is required")
	}
	if _, ok := names[int32(v)]; !ok {
		return invalid(field, "%d is not a known value", v)
	}
	return nil
}

// checkInventory validates a registration's GPUs, those that answered and
// those that did not.
func checkInventory(gpus []*fleetv1.Gpu, unanswered []*nodev1.UnansweredGpu) error {
	if len(gpus)+len(unanswered) > MaxGPUs {
		return invalid("gpus", "has %d GPUs; the limit is %d", len(gpus)+len(unanswered), MaxGPUs)
	}
	indexes := make(map[uint32]bool)
	for i, g := range unanswered {
		f := fmt.Sprintf("unanswered_gpus[%d]", i)
		if g.GetIndex() >= MaxGPUs {
			return invalid(f+".index", "%d is not below %d", g.GetIndex(), MaxGPUs)
		}
		if indexes[g.GetIndex()] {
			return invalid(f+".index", "%d appears twice", g.GetIndex())
		}
		indexes[g.GetIndex()] = true
		if err := checkText(f+".reason", g.GetReason(), MaxShortText, false); err != nil {
			return err
		}
	}
	uuids := make(map[string]bool)
	for i, g := range gpus {
		f := fmt.Sprintf("gpus[%d]", i)
		if g.GetIndex() >= MaxGPUs {
			return invalid(f+".index", "%d is not below %d", g.GetIndex(), MaxGPUs)
		}
		if indexes[g.GetIndex()] {
			return invalid(f+".index", "%d appears twice", g.GetIndex())
		}
		indexes[g.GetIndex()] = true
		if g.GetUuid() == "" {
			return invalid(f+".uuid", "is required")
		}
		if strings.HasPrefix(g.GetUuid(), fleet.UnansweredPrefix) {
			return invalid(f+".uuid", "%q is reserved for GPUs that do not answer", g.GetUuid())
		}
		if uuids[g.GetUuid()] {
			return invalid(f+".uuid", "%q appears twice", g.GetUuid())
		}
		uuids[g.GetUuid()] = true
		for _, t := range []struct{ name, v string }{
			{".uuid", g.GetUuid()}, {".name", g.GetName()}, {".serial", g.GetSerial()}, {".pci_bus_id", g.GetPciBusId()},
		} {
			if err := checkText(f+t.name, t.v, MaxShortText, false); err != nil {
				return err
			}
		}
	}
	return nil
}

func checkEvent(field string, e *fleetv1.HealthEvent) error {
	if err := checkEnum(field+".kind", e.GetKind(), fleetv1.EventKind_name, false); err != nil {
		return err
	}
	if e.GetKind() == fleetv1.EventKind_EVENT_KIND_XID && e.GetXid() == 0 {
		return invalid(field+".xid", "is required for an XID event")
	}
	if e.GetGpuIndex() < -1 || e.GetGpuIndex() >= MaxGPUs {
		return invalid(field+".gpu_index", "%d is not -1 (whole node) or a GPU index below %d", e.GetGpuIndex(), MaxGPUs)
	}
	if err := checkTimestamp(field+".time", e.GetTime()); err != nil {
		return err
	}
	if err := checkText(field+".gpu_uuid", e.GetGpuUuid(), MaxShortText, false); err != nil {
		return err
	}
	if err := checkText(field+".cause", e.GetCause(), MaxShortText, false); err != nil {
		return err
	}
	return checkText(field+".message", e.GetMessage(), MaxEventMessage, true)
}

// entry names, in an error, a field of one GPU's entry of a health
// report: metrics[2].ecc, metric_changes[0].metrics.time. The name is
// built only for an error, so a valid report of 8 GPUs formats none (it
// formatted and joined about 30, 3 % of the control plane's CPU at
// 100 000 nodes).
type entry struct {
	list  string // "metrics" or "metric_changes"
	index int
	in    string // the GpuMetrics within the entry: "" or ".metrics"
}

// field is the full name of the entry's field name; of the entry itself
// when name is "".
func (e entry) field(name string) string {
	f := fmt.Sprintf("%s[%d]%s", e.list, e.index, e.in)
	if name != "" {
		f += "." + name
	}
	return f
}

// named runs a check of a field with no name and, only when it fails,
// again with the name it returns, for the error.
func named(check func(field string) error, name func() string) error {
	if check("") == nil {
		return nil
	}
	return check(name())
}

func checkMetrics(e entry, m *fleetv1.GpuMetrics) error {
	if m.GetGpuIndex() >= MaxGPUs {
		return invalid(e.field("gpu_index"), "%d is not below %d", m.GetGpuIndex(), MaxGPUs)
	}
	if m.GetUtilizationGpuPercent() > 100 {
		return invalid(e.field("utilization_gpu_percent"), "%d is above 100", m.GetUtilizationGpuPercent())
	}
	if m.GetUtilizationMemoryPercent() > 100 {
		return invalid(e.field("utilization_memory_percent"), "%d is above 100", m.GetUtilizationMemoryPercent())
	}
	if len(m.GetProcesses()) > MaxGPUProcesses {
		return invalid(e.field("processes"), "has %d entries; the limit is %d", len(m.GetProcesses()), MaxGPUProcesses)
	}
	if len(m.GetNvlinks()) > 64 {
		return invalid(e.field("nvlinks"), "has %d entries; the limit is 64", len(m.GetNvlinks()))
	}
	var links uint64
	for i, l := range m.GetNvlinks() {
		if l.GetLink() >= 64 {
			return invalid(e.field(fmt.Sprintf("nvlinks[%d].link", i)), "%d is not below 64", l.GetLink())
		}
		if links&(1<<l.GetLink()) != 0 {
			return invalid(e.field(fmt.Sprintf("nvlinks[%d].link", i)), "link %d appears twice", l.GetLink())
		}
		links |= 1 << l.GetLink()
	}
	if len(m.GetUnsupported()) > MaxUnsupported {
		return invalid(e.field("unsupported"), "has %d entries; the limit is %d", len(m.GetUnsupported()), MaxUnsupported)
	}
	for i, u := range m.GetUnsupported() {
		if err := named(func(f string) error { return checkText(f, u, 64, false) },
			func() string { return e.field(fmt.Sprintf("unsupported[%d]", i)) }); err != nil {
			return err
		}
	}
	for i, p := range m.GetProcesses() {
		if err := named(func(f string) error { return checkText(f, p.GetName(), MaxShortText, false) },
			func() string { return e.field(fmt.Sprintf("processes[%d].name", i)) }); err != nil {
			return err
		}
	}
	return named(func(f string) error { return checkTimestamp(f, m.GetTime()) }, func() string { return e.field("time") })
}

// checkReportMetrics checks a health report's metrics: a full snapshot or
// a delta, one entry per GPU, each in range. Whether a delta fits the
// snapshot it names as its base is the fleet's to say.
func checkReportMetrics(req *nodev1.ReportHealthRequest) error {
	full, changes := req.GetMetrics(), req.GetMetricChanges()
	if len(full) > 0 && len(changes) > 0 {
		return invalid("metric_changes", "is set with metrics; a report carries a full snapshot or a delta, not both")
	}
	if len(full) > MaxGPUs {
		return invalid("metrics", "has %d entries; the limit is %d", len(full), MaxGPUs)
	}
	if len(changes) > MaxGPUs {
		return invalid("metric_changes", "has %d entries; the limit is %d", len(changes), MaxGPUs)
	}
	var seen uint64
	for i, m := range full {
		e := entry{list: "metrics", index: i}
		if err := checkMetrics(e, m); err != nil {
			return err
		}
		if seen&(1<<m.GetGpuIndex()) != 0 {
			return invalid(e.field("gpu_index"), "GPU %d appears twice", m.GetGpuIndex())
		}
		seen |= 1 << m.GetGpuIndex()
	}
	switch {
	case len(changes) == 0 && req.GetBaseSequence() != 0:
		return invalid("base_sequence", "is set without metric_changes")
	case len(changes) == 0:
		return nil
	case req.GetBaseSequence() == 0:
		return invalid("base_sequence", "is required with metric_changes")
	case req.GetSequence() <= req.GetBaseSequence():
		return invalid("sequence", "%d is not above base_sequence %d", req.GetSequence(), req.GetBaseSequence())
	}
	for i, c := range changes {
		e := entry{list: "metric_changes", index: i}
		m := c.GetMetrics()
		if m == nil {
			return invalid(e.field("metrics"), "is required")
		}
		if err := checkMetrics(entry{list: e.list, index: i, in: ".metrics"}, m); err != nil {
			return err
		}
		if seen&(1<<m.GetGpuIndex()) != 0 {
			return invalid(e.field("metrics.gpu_index"), "GPU %d appears twice", m.GetGpuIndex())
		}
		seen |= 1 << m.GetGpuIndex()
		for j, p := range c.GetReplaced() {
			if err := named(func(f string) error { return checkEnum(f, p, nodev1.GpuMetricsPart_name, false) },
				func() string { return e.field(fmt.Sprintf("replaced[%d]", j)) }); err != nil {
				return err
			}
		}
		if err := checkUnnamedParts(e, c); err != nil {
			return err
		}
	}
	return nil
}

// checkUnnamedParts refuses a delta entry that sets a part its replaced
// list does not name: the control plane keeps the base's part then, so the
// value sent would be lost without a word.
func checkUnnamedParts(e entry, c *nodev1.GpuMetricsDelta) error {
	m := c.GetMetrics()
	sent := []struct {
		name string
		set  bool
		part nodev1.GpuMetricsPart
	}{
		{"ecc", m.GetEcc() != nil, nodev1.GpuMetricsPart_GPU_METRICS_PART_ECC},
		{"row_remap", m.GetRowRemap() != nil, nodev1.GpuMetricsPart_GPU_METRICS_PART_ROW_REMAP},
		{"retired_pages", m.GetRetiredPages() != nil, nodev1.GpuMetricsPart_GPU_METRICS_PART_RETIRED_PAGES},
		{"processes", len(m.GetProcesses()) > 0, nodev1.GpuMetricsPart_GPU_METRICS_PART_PROCESSES},
		{"unsupported", len(m.GetUnsupported()) > 0, nodev1.GpuMetricsPart_GPU_METRICS_PART_UNSUPPORTED},
	}
	for _, s := range sent {
		if s.set && !slices.Contains(c.GetReplaced(), s.part) {
			return invalid(e.field("metrics."+s.name), "is set but replaced does not name %s", s.part)
		}
	}
	return nil
}

// A heartbeat's GPUs are told apart in a uint64 bitmask, so MaxGPUs must
// not pass 64; the constant overflows and the build fails if it does.
const _ = uint64(1) << (MaxGPUs - 1)

// checkSamples checks a heartbeat's samples: one per GPU, each value in
// range, so the fleet keeps every accepted value as it came. It allocates
// nothing for a valid heartbeat; the fleet checks the indexes against the
// node's inventory.
func checkSamples(samples []*fleetv1.GpuSample) error {
	if len(samples) > MaxGPUs {
		return invalid("samples", "has %d entries; the limit is %d", len(samples), MaxGPUs)
	}
	var seen uint64
	for i, s := range samples {
		if err := checkSample(i, s); err != nil {
			return err
		}
		bit := uint64(1) << s.GetGpuIndex()
		if seen&bit != 0 {
			return invalid(fmt.Sprintf("samples[%d].gpu_index", i), "GPU %d appears twice", s.GetGpuIndex())
		}
		seen |= bit
	}
	return nil
}

// checkSample checks one sample's values; the field's path is built only
// for an error, so a valid sample costs no allocation.
func checkSample(i int, s *fleetv1.GpuSample) error {
	field := func(name string) string { return fmt.Sprintf("samples[%d].%s", i, name) }
	switch {
	case s.GetGpuIndex() >= MaxGPUs:
		return invalid(field("gpu_index"), "%d is not below %d", s.GetGpuIndex(), MaxGPUs)
	case s.GetUtilizationGpuPercent() > 100:
		return invalid(field("utilization_gpu_percent"), "%d is above 100", s.GetUtilizationGpuPercent())
	case s.GetTemperatureCelsius() > MaxTemperatureCelsius:
		return invalid(field("temperature_celsius"), "%d is above %d", s.GetTemperatureCelsius(), MaxTemperatureCelsius)
	case s.GetPowerUsageMilliwatts() > MaxPowerMilliwatts:
		return invalid(field("power_usage_milliwatts"), "%d is above %d", s.GetPowerUsageMilliwatts(), MaxPowerMilliwatts)
	case s.GetProcessCount() > MaxGPUProcesses:
		return invalid(field("process_count"), "%d is above %d", s.GetProcessCount(), MaxGPUProcesses)
	}
	return nil
}

// checkScheduler bounds what an agent says of its node's scheduler state;
// nil is no scheduler.
func checkScheduler(field string, s *fleetv1.SchedulerState) error {
	if s == nil {
		return nil
	}
	if s.GetScheduler() == "" {
		return invalid(field+".scheduler", "is required")
	}
	for _, t := range []struct {
		name, v string
		limit   int
	}{
		{"scheduler", s.GetScheduler(), MaxShortText}, {"node_name", s.GetNodeName(), MaxShortText},
		{"state", s.GetState(), MaxShortText}, {"reason", s.GetReason(), MaxReasonLen}, {"error", s.GetError(), MaxEventMessage},
	} {
		if err := checkText(field+"."+t.name, t.v, t.limit, false); err != nil {
			return err
		}
	}
	return nil
}
