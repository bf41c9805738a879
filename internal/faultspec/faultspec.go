// Package faultspec parses the simulated-fault grammar shared by
// navarch-agent's --sim-fault flag and ProvisionNodes' sim_faults:
//
//	KIND@gpuN[+DELAY]
//
// KIND is one of xid=CODE, temp=CELSIUS, ecc-dbe, row-remap-pending,
// row-remap-failure, nvlink-down, gpu-lost; N is the GPU index; DELAY is a
// Go duration after agent start (default 0s). Examples: xid=79@gpu2+3s,
// temp=97@gpu0+1s, gpu-lost@gpu5+4s.
package faultspec

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Grammar is the one-line grammar shown in error messages.
const Grammar = "KIND@gpuN[+DELAY], KIND one of xid=CODE, temp=CELSIUS, ecc-dbe, row-remap-pending, row-remap-failure, nvlink-down, gpu-lost (e.g. xid=79@gpu2+3s)"

// Kind is a simulated fault kind.
type Kind string

// The fault kinds.
const (
	XID             Kind = "xid"
	Temp            Kind = "temp"
	ECCDBE          Kind = "ecc-dbe"
	RowRemapPending Kind = "row-remap-pending"
	RowRemapFailure Kind = "row-remap-failure"
	NVLinkDown      Kind = "nvlink-down"
	GPULost         Kind = "gpu-lost"
)

// Kinds lists every kind, in the order the grammar names them.
var Kinds = []Kind{XID, Temp, ECCDBE, RowRemapPending, RowRemapFailure, NVLinkDown, GPULost}

// Spec is one parsed fault.
type Spec struct {
	// Kind is what goes wrong.
	Kind Kind
	// Value is the XID code for XID and the temperature for Temp.
	Value uint32
	// GPU is the GPU index.
	GPU int
	// Delay is when, after the agent starts, the fault happens.
	Delay time.Duration
}

// String renders the spec back in the grammar.
func (s Spec) String() string {
	k := string(s.Kind)
	if s.Kind == XID || s.Kind == Temp {
		k = fmt.Sprintf("%s=%d", s.Kind, s.Value)
	}
	return fmt.Sprintf("%s@gpu%d+%s", k, s.GPU, s.Delay)
}

// Parse reads one spec. Errors show the grammar.
func Parse(s string) (Spec, error) {
	bad := func(why string) (Spec, error) {
		return Spec{}, fmt.Errorf("fault spec %q: %s; the grammar is %s", s, why, Grammar)
	}
	kindPart, rest, ok := strings.Cut(strings.TrimSpace(s), "@")
	if !ok {
		return bad("missing '@gpuN'")
	}
	gpuPart, delayPart, hasDelay := strings.Cut(rest, "+")
	var spec Spec
	name, value, hasValue := strings.Cut(kindPart, "=")
	spec.Kind = Kind(name)
	switch spec.Kind {
	case XID, Temp:
		if !hasValue {
			return bad(fmt.Sprintf("%s needs a value, as in %s=NN", name, name))
		}
		v, err := strconv.ParseUint(value, 10, 32)
		if err != nil || v == 0 {
			return bad(fmt.Sprintf("%s value %q is not a positive whole number", name, value))
		}
		if spec.Kind == Temp && v > 200 {
			return bad(fmt.Sprintf("temperature %d°C is above 200", v))
		}
		spec.Value = uint32(v)
	case ECCDBE, RowRemapPending, RowRemapFailure, NVLinkDown, GPULost:
		if hasValue {
			return bad(fmt.Sprintf("%s takes no value", name))
		}
	default:
		return bad(fmt.Sprintf("unknown kind %q", name))
	}
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
	return spec, nil
}
