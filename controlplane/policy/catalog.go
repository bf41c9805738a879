package policy

import (
	"fmt"
	"regexp"
	"slices"
	"strconv"
	"strings"

	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
)

// bucket is one of the immediate actions ("resolution buckets") of
// NVIDIA's XID catalog, and the health and remedy an XID in it gets.
// docs/fault-policy.md prints this table, and a test holds every default
// XID rule to its bucket's row.
type bucket struct {
	name   string
	health fleetv1.HealthStatus
	remedy fleetv1.Remedy
	// means is what the catalog asks, in words.
	means string
}

var buckets = []bucket{
	{"RESTART_APP", healthy, fleetv1.Remedy_REMEDY_RESTART_APPLICATION, "restart the application; the GPU needs no reset"},
	{"IGNORE", healthy, fleetv1.Remedy_REMEDY_NONE, "no action"},
	{"WORKFLOW_XID_45", healthy, fleetv1.Remedy_REMEDY_NONE, "follow the XID it accompanies (seen alone: restart the fabric manager)"},
	{"XID_154", healthy, fleetv1.Remedy_REMEDY_NONE, "follow the recovery action the line states (decoded below); the code alone asks nothing"},
	{"CHECK_UVM", healthy, fleetv1.Remedy_REMEDY_NONE, "reset the GPU if UVM or vGPU is in use, else no action; override it where they are"},
	{"UPDATE_SWFW", degraded, fleetv1.Remedy_REMEDY_UPDATE_SOFTWARE, "update the driver and firmware"},
	{"RESET_GPU", unhealthy, fleetv1.Remedy_REMEDY_RESET_GPU, "stop the GPU's processes and reset it"},
	{"WORKFLOW_XID_48", unhealthy, fleetv1.Remedy_REMEDY_RESET_GPU, "reset the GPU (with XID 63 or 64: drain, then reset)"},
	{"WORKFLOW_NVLINK_ERR", unhealthy, fleetv1.Remedy_REMEDY_RESET_GPU, "reset the GPU; inspect the link if it comes back"},
	{"WORKFLOW_NVLINK5_ERR", unhealthy, fleetv1.Remedy_REMEDY_RESET_GPU, "decode the line (below); a code alone is taken as fatal"},
	{"RESTART_BM", unhealthy, fleetv1.Remedy_REMEDY_REBOOT_NODE, "reboot the machine"},
	{"RESTART_VM", unhealthy, fleetv1.Remedy_REMEDY_RESTART_VM, "restart the virtual machine"},
	{"CHECK_MECHANICALS", unhealthy, fleetv1.Remedy_REMEDY_INSPECT_HARDWARE, "check the GPU's seating and connections"},
	{"CONTACT_SUPPORT", unhealthy, fleetv1.Remedy_REMEDY_CONTACT_SUPPORT, "contact support"},
	{"NONE_GIVEN", fleetv1.HealthStatus_HEALTH_STATUS_UNSPECIFIED, fleetv1.Remedy_REMEDY_UNSPECIFIED, "the catalog names no bucket: judged from its trigger conditions, row by row"},
}

func bucketNamed(name string) *bucket {
	if i := slices.IndexFunc(buckets, func(b bucket) bool { return b.name == name }); i >= 0 {
		return &buckets[i]
	}
	return nil
}

func bucketNames() []string {
	names := make([]string, len(buckets))
	for i, b := range buckets {
		names[i] = b.name
	}
	return names
}

// decoded is what an XID's kernel-log line says beyond its code.
type decoded struct {
	health fleetv1.HealthStatus
	remedy fleetv1.Remedy
	// cause replaces the rule's meaning.
	cause string
	// clears is true when the line says an earlier fault of the code is
	// over: XID 154 changing the recovery action to none.
	clears bool
}

// decodeXID reads the driver's text of XIDs 144-150 and 154, as the XID
// catalog describes them. The text is what follows the code on the
// kernel-log line; an event NVML delivered has none, and a line that does
// not read as the catalog says is judged by the code's rule.
func decodeXID(code uint32, meaning, text string) (decoded, bool) {
	switch {
	case code >= 144 && code <= 150:
		return decodeNVLink5(meaning, text)
	case code == 154:
		return decodeRecoveryAction(text)
	}
	return decoded{}, false
}

// nvlink5Line is the NVLink5 XID line after its code: the unit, the
// severity, and in parentheses the interrupt info and the error status,
// then more registers ("NETIR_LINK_EVT Fatal XC0 i0 Link 02 (0x004505c6
// 0x00000000 ...)"). The driver may put "pid=…, name=…," first.
var nvlink5Line = regexp.MustCompile(`^(?:pid=[^,]*,\s*name=[^,]*,\s*)?([A-Z][A-Z0-9_/]*)(?:\s+(\S+))?[^(]*\(\s*(0x[0-9a-fA-F]+)\s+(0x[0-9a-fA-F]+)`)

// nvlink5Action is the catalog's "XID 144-150 Decode" table: for each
// unit, the immediate action by error status. Units are named as drivers
// from R575 on write them, with older names beside them.
var nvlink5Action = map[string]map[uint32]string{
	"SAW_MVB":          {0x1: "IGNORE", 0x2: "RESET_GPU", 0x4: "IGNORE", 0x8: "IGNORE", 0x10: "RESET_GPU", 0x20: "IGNORE"},
	"RLW_CTRL":         {0x80000000: "IGNORE"},
	"RLW_REMAP":        {0x1: "XID_154_EVAL", 0x2: "XID_154_EVAL", 0x4: "XID_154_EVAL", 0x8: "XID_154_EVAL", 0x10: "XID_154_EVAL", 0x20: "XID_154_EVAL", 0x40: "RESET_GPU", 0x80: "RESET_GPU", 0x100: "IGNORE", 0x200: "IGNORE", 0x80000000: "IGNORE"},
	"RLW_RSPCOL":       {0x1: "IGNORE", 0x2: "RESET_GPU", 0x80000000: "IGNORE"},
	"RLW_RXPIPE":       {0x1: "IGNORE", 0x2: "IGNORE", 0x4: "IGNORE", 0x8: "IGNORE", 0x80000000: "IGNORE"},
	"RLW_SRC_TRACK":    {0x1: "RESET_GPU", 0x2: "IGNORE", 0x4: "XID_154_EVAL", 0x8: "XID_154_EVAL", 0x10: "RESET_GPU", 0x20: "RESET_GPU", 0x80000000: "IGNORE"},
	"RLW_TAGSTATE":     {0x1: "IGNORE", 0x2: "RESET_GPU", 0x10000: "IGNORE", 0x20000: "RESET_GPU", 0x100000: "RESET_GPU", 0x80000000: "IGNORE"},
	"TLW_CTRL":         tlwAction,
	"TLW_RX":           tlwAction,
	"TLW_RX_PIPE0":     tlwAction,
	"TLW_RX_PIPE1":     tlwAction,
	"TLW_TX":           tlwAction,
	"TLW_TX_PIPE0":     tlwAction,
	"TLW_TX_PIPE1":     tlwAction,
	"NETIR_MFDE_EVENT": {0x1: "RESET_GPU", 0x3: "IGNORE", 0x4: "RESET_GPU", 0x5: "RESET_GPU", 0x7: "RESET_GPU"},
}

var tlwAction = map[uint32]string{0x1: "IGNORE", 0x2: "IGNORE", 0x4: "RESET_GPU", 0x80000000: "IGNORE"}

// nvlink5Whole is the action of the units whose every status has one.
var nvlink5Whole = map[string]string{
	"TREX": "IGNORE", "NVLPW": "IGNORE", "NVLPW_CTRL": "IGNORE",
	"NETIR": "RESET_GPU", "NETIR_INT": "RESET_GPU", "NETIR_LINK_EVT": "RESET_GPU", "NETIR_LINK_DOWN": "RESET_GPU",
	"NETIR_BER_EVENT": "IGNORE", "MSE": "RESET_GPU", "MSE_WATCHDOG": "RESET_GPU",
}

func decodeNVLink5(meaning, text string) (decoded, bool) {
	m := nvlink5Line.FindStringSubmatch(strings.TrimSpace(text))
	if m == nil {
		return decoded{}, false
	}
	unit, severity := m[1], m[2]
	// "MSE Degraded" and the V1/V2 pairs ("TLW_RX/TLW_RX_PIPE0") name one
	// unit; the first name is enough.
	unit, _, _ = strings.Cut(unit, "/")
	status, err := strconv.ParseUint(strings.TrimPrefix(m[4], "0x"), 16, 32)
	if err != nil {
		return decoded{}, false
	}
	action, known := nvlink5Whole[unit]
	if !known {
		action, known = nvlink5Action[unit][uint32(status)]
	}
	if !known {
		// A unit or status the catalog does not list: the line's own
		// severity decides, as the catalog's severity column does.
		switch strings.ToLower(severity) {
		case "fatal":
			action = "RESET_GPU"
		case "nonfatal", "non-fatal":
			action = "IGNORE"
		default:
			return decoded{}, false
		}
	}
	d := decoded{cause: fmt.Sprintf("%s: %s %s, status 0x%x", meaning, unit, strings.ToLower(severity), status)}
	switch action {
	case "RESET_GPU":
		d.health, d.remedy = unhealthy, fleetv1.Remedy_REMEDY_RESET_GPU
	case "XID_154_EVAL":
		// Follow the XID 154 that comes with it, which is judged on its
		// own; without one, restart the application.
		d.health, d.remedy = healthy, fleetv1.Remedy_REMEDY_RESTART_APPLICATION
	default:
		d.health, d.remedy = healthy, fleetv1.Remedy_REMEDY_NONE
	}
	return d, true
}

// recoveryLine is XID 154's text: "GPU recovery action changed from 0x0
// (None) to 0x2 (Node Reboot Required)".
var recoveryLine = regexp.MustCompile(`(?i)recovery action changed from\s+0x[0-9a-f]+\s*(?:\([^)]*\))?\s*to\s+0x([0-9a-f]+)\s*(?:\(([^)]*)\))?`)

func decodeRecoveryAction(text string) (decoded, bool) {
	m := recoveryLine.FindStringSubmatch(text)
	if m == nil {
		return decoded{}, false
	}
	v, err := strconv.ParseUint(m[1], 16, 32)
	if err != nil {
		return decoded{}, false
	}
	words := m[2]
	d := decoded{}
	switch v {
	case 0:
		d.health, d.remedy, d.clears = healthy, fleetv1.Remedy_REMEDY_NONE, true
	case 1:
		d.health, d.remedy = unhealthy, fleetv1.Remedy_REMEDY_RESET_GPU
	case 2:
		d.health, d.remedy = unhealthy, fleetv1.Remedy_REMEDY_REBOOT_NODE
	case 3:
		d.health, d.remedy = degraded, fleetv1.Remedy_REMEDY_RESTART_APPLICATION
	case 4:
		d.health, d.remedy = unhealthy, fleetv1.Remedy_REMEDY_RESET_GPU
	default:
		return decoded{}, false
	}
	if words == "" {
		words = fmt.Sprintf("action 0x%x", v)
	}
	d.cause = "driver recovery action: " + words
	return d, true
}
