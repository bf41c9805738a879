// Package faultspec parses the simulated-fault grammar shared by
// navarch-agent's --sim-fault flag and ProvisionNodes' sim_faults:
//
//	KIND@gpuN[+DELAY][,for=HOLD]
//
// N is the GPU index; DELAY is a Go duration after agent start (default
// 0s); HOLD is how long a held condition lasts (default: until what ends it
// on real hardware, a GPU reset for slowdowns and the recovery action, a
// reboot for the rest). KIND is one of:
//
//	xid=CODE[:TEXT]          an XID, with the driver's text after the code
//	temp=CELSIUS             the core held at a temperature (holds)
//	mem-temp=CELSIUS         the memory (HBM) held at a temperature (holds)
//	ecc-dbe                  an uncorrectable (double-bit) ECC error
//	row-remap-pending        a row waiting for a reset to be remapped
//	row-remap-failure        a row that could not be remapped
//	nvlink-down              a link down
//	nvlink-crc=COUNT[:linkL] CRC errors (and their replays) on link L (default 0)
//	pcie-replays=COUNT       PCIe replays, all at once
//	pcie-replays=RATE/min    PCIe replays at a rate per minute (holds)
//	retired-sbe=COUNT        pages retired for single-bit errors
//	retired-dbe=COUNT        pages retired for double-bit errors
//	power-brake              the power brake slowing the clocks (holds)
//	hw-slowdown              hardware slowdown holding the clocks (holds)
//	recovery=ACTION          the driver's recovery action: none, reset,
//	                         reboot, drain-p2p or drain-and-reset
//	gpu-lost                 the GPU gone from the bus
//
// Examples: xid=79@gpu2+3s, temp=97@gpu0+1s, gpu-lost@gpu5+4s,
// pcie-replays=40/min@gpu1+10s,for=5m,
// xid=154:GPU recovery action changed from 0x0 (None) to 0x1 (GPU Reset Required)@gpu3+2s.
// The GPU part is found after the last '@', so an XID's text may hold any
// printable character.
package faultspec

import (
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// Grammar is the one-line grammar shown in error messages.
const Grammar = "KIND@gpuN[+DELAY][,for=HOLD], KIND one of xid=CODE[:TEXT], temp=CELSIUS, mem-temp=CELSIUS, ecc-dbe, row-remap-pending, row-remap-failure, nvlink-down, nvlink-crc=COUNT[:linkL], pcie-replays=COUNT or RATE/min, retired-sbe=COUNT, retired-dbe=COUNT, power-brake, hw-slowdown, recovery=none|reset|reboot|drain-p2p|drain-and-reset, gpu-lost (e.g. xid=79@gpu2+3s)"

// Kind is a simulated fault kind.
type Kind string

// The fault kinds.
const (
	XID             Kind = "xid"
	Temp            Kind = "temp"
	MemTemp         Kind = "mem-temp"
	ECCDBE          Kind = "ecc-dbe"
	RowRemapPending Kind = "row-remap-pending"
	RowRemapFailure Kind = "row-remap-failure"
	NVLinkDown      Kind = "nvlink-down"
	NVLinkCRC       Kind = "nvlink-crc"
	PCIeReplays     Kind = "pcie-replays"
	RetiredSBE      Kind = "retired-sbe"
	RetiredDBE      Kind = "retired-dbe"
	PowerBrake      Kind = "power-brake"
	HWSlowdown      Kind = "hw-slowdown"
	Recovery        Kind = "recovery"
	GPULost         Kind = "gpu-lost"
)

// Kinds lists every kind, in the order the grammar names them.
var Kinds = []Kind{XID, Temp, MemTemp, ECCDBE, RowRemapPending, RowRemapFailure, NVLinkDown, NVLinkCRC, PCIeReplays, RetiredSBE, RetiredDBE, PowerBrake, HWSlowdown, Recovery, GPULost}

// RecoveryActions names the recovery actions recovery=ACTION takes; each
// one's index is NVML's value for it (nvmlDeviceGpuRecoveryAction_t).
var RecoveryActions = []string{"none", "reset", "reboot", "drain-p2p", "drain-and-reset"}

// Limits of the values a spec may hold.
const (
	MaxCelsius  = 200
	MaxCount    = 100000
	MaxLink     = 63
	MaxTextSize = 512
)

// Spec is one parsed fault.
type Spec struct {
	// Kind is what goes wrong.
	Kind Kind
	// Value is the XID code, the temperature, the count or rate, or the
	// recovery action's index in RecoveryActions.
	Value uint32
	// PerMinute says Value is a rate per minute (pcie-replays=RATE/min).
	PerMinute bool
	// Text is the driver's text of an XID; empty means the catalog's.
	Text string
	// Link is the NVLink link of nvlink-crc.
	Link int
	// GPU is the GPU index.
	GPU int
	// Delay is when, after the agent starts, the fault happens.
	Delay time.Duration
	// Hold is how long a held condition lasts; 0 means until what ends it
	// on real hardware.
	Hold time.Duration
}

// Holds reports whether the spec's condition lasts, so that for=HOLD
// applies to it.
func (s Spec) Holds() bool {
	switch s.Kind {
	case Temp, MemTemp, PowerBrake, HWSlowdown:
		return true
	case PCIeReplays:
		return s.PerMinute
	}
	return false
}

// String renders the spec back in the grammar.
func (s Spec) String() string {
	k := string(s.Kind)
	switch s.Kind {
	case XID:
		k = fmt.Sprintf("%s=%d", s.Kind, s.Value)
		if s.Text != "" {
			k += ":" + s.Text
		}
	case Temp, MemTemp, RetiredSBE, RetiredDBE:
		k = fmt.Sprintf("%s=%d", s.Kind, s.Value)
	case NVLinkCRC:
		k = fmt.Sprintf("%s=%d:link%d", s.Kind, s.Value, s.Link)
	case PCIeReplays:
		k = fmt.Sprintf("%s=%d", s.Kind, s.Value)
		if s.PerMinute {
			k += "/min"
		}
	case Recovery:
		k = fmt.Sprintf("%s=%s", s.Kind, RecoveryActions[s.Value])
	}
	out := fmt.Sprintf("%s@gpu%d+%s", k, s.GPU, s.Delay)
	if s.Hold > 0 {
		out += ",for=" + s.Hold.String()
	}
	return out
}

// Parse reads one spec. Errors show the grammar.
func Parse(s string) (Spec, error) {
	bad := func(why string) (Spec, error) {
		return Spec{}, fmt.Errorf("fault spec %q: %s; the grammar is %s", s, why, Grammar)
	}
	trimmed := strings.TrimSpace(s)
	at := strings.LastIndexByte(trimmed, '@')
	if at < 0 {
		return bad("missing '@gpuN'")
	}
	spec, why := parseKind(trimmed[:at])
	if why != "" {
		return bad(why)
	}
	where, option, hasOption := strings.Cut(trimmed[at+1:], ",")
	gpuPart, delayPart, hasDelay := strings.Cut(where, "+")
	idx, ok := strings.CutPrefix(gpuPart, "gpu")
	if !ok {
		return bad(fmt.Sprintf("%q is not gpuN", gpuPart))
	}
	n, err := strconv.Atoi(idx)
	if err != nil || n < 0 || n > 63 {
		return bad(fmt.Sprintf("GPU index %q is not within 0–63", idx))
	}
	spec.GPU = n
	if hasDelay {
		d, err := time.ParseDuration(delayPart)
		if err != nil || d < 0 {
			return bad(fmt.Sprintf("delay %q is not a duration such as 3s or 1m", delayPart))
		}
		spec.Delay = d
	}
	if hasOption {
		hold, ok := strings.CutPrefix(option, "for=")
		if !ok {
			return bad(fmt.Sprintf("%q after the GPU is not for=HOLD", option))
		}
		if !spec.Holds() {
			return bad(fmt.Sprintf("%s does not hold, so takes no for=", spec.Kind))
		}
		d, err := time.ParseDuration(hold)
		if err != nil || d <= 0 {
			return bad(fmt.Sprintf("hold %q is not a positive duration such as 30s or 5m", hold))
		}
		spec.Hold = d
	}
	return spec, nil
}

// parseKind reads KIND[=VALUE], or says why it cannot.
func parseKind(part string) (Spec, string) {
	name, value, hasValue := strings.Cut(part, "=")
	spec := Spec{Kind: Kind(name)}
	if !slices.Contains(Kinds, spec.Kind) {
		return Spec{}, fmt.Sprintf("unknown kind %q", name)
	}
	switch spec.Kind {
	case ECCDBE, RowRemapPending, RowRemapFailure, NVLinkDown, PowerBrake, HWSlowdown, GPULost:
		if hasValue {
			return Spec{}, fmt.Sprintf("%s takes no value", name)
		}
		return spec, ""
	}
	if !hasValue {
		return Spec{}, fmt.Sprintf("%s needs a value, as in %s", name, example[spec.Kind])
	}
	var why string
	switch spec.Kind {
	case XID:
		code, text, hasText := strings.Cut(value, ":")
		spec.Value, why = positive(name, code, 0)
		if why == "" && hasText {
			spec.Text, why = xidText(text)
		}
	case Temp, MemTemp:
		spec.Value, why = positive(name, value, MaxCelsius)
	case RetiredSBE, RetiredDBE:
		spec.Value, why = positive(name, value, MaxCount)
	case PCIeReplays:
		count, perMinute := strings.CutSuffix(value, "/min")
		spec.PerMinute = perMinute
		spec.Value, why = positive(name, count, MaxCount)
	case NVLinkCRC:
		count, link, hasLink := strings.Cut(value, ":")
		spec.Value, why = positive(name, count, MaxCount)
		if why == "" && hasLink {
			spec.Link, why = linkIndex(link)
		}
	case Recovery:
		i := slices.Index(RecoveryActions, value)
		if i < 0 {
			return Spec{}, fmt.Sprintf("recovery action %q is not one of %s", value, strings.Join(RecoveryActions, ", "))
		}
		spec.Value = uint32(i)
	}
	if why != "" {
		return Spec{}, why
	}
	return spec, ""
}

// example shows each kind that takes a value with one.
var example = map[Kind]string{
	XID: "xid=79", Temp: "temp=97", MemTemp: "mem-temp=98", NVLinkCRC: "nvlink-crc=40:link3",
	PCIeReplays: "pcie-replays=40/min", RetiredSBE: "retired-sbe=10", RetiredDBE: "retired-dbe=2",
	Recovery: "recovery=reset",
}

// positive reads a whole number from 1 to limit (0: any that fits 32 bits).
func positive(name, s string, limit uint64) (uint32, string) {
	v, err := strconv.ParseUint(s, 10, 32)
	if err != nil || v == 0 {
		return 0, fmt.Sprintf("%s value %q is not a positive whole number", name, s)
	}
	if limit > 0 && v > limit {
		return 0, fmt.Sprintf("%s value %d is above %d", name, v, limit)
	}
	return uint32(v), ""
}

func linkIndex(s string) (int, string) {
	n, err := strconv.Atoi(strings.TrimPrefix(s, "link"))
	if !strings.HasPrefix(s, "link") || err != nil || n < 0 || n > MaxLink {
		return 0, fmt.Sprintf("%q is not linkL with L within 0–%d", s, MaxLink)
	}
	return n, ""
}

// xidText checks an XID's text: one printable line, as the driver writes
// it after the code.
func xidText(s string) (string, string) {
	switch {
	case s == "":
		return "", "the XID text after ':' is empty"
	case len(s) > MaxTextSize:
		return "", fmt.Sprintf("the XID text is %d bytes; the limit is %d", len(s), MaxTextSize)
	case !utf8.ValidString(s) || strings.IndexFunc(s, func(r rune) bool { return !unicode.IsPrint(r) }) >= 0:
		return "", "the XID text must be one line of printable text"
	}
	return s, ""
}
