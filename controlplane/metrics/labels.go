package metrics

import (
	"strings"

	"github.com/navarch/navarch/internal/display"
	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
)

// Label values made once from the API's enums, so that counting a change
// builds no string.
var (
	// eventKinds are the kind words the console shows ("ecc-uncorrected",
	// "gpu-lost"), and "xid" for XIDs, whose code is a label of its own.
	eventKinds = func() map[fleetv1.EventKind]string {
		out := make(map[fleetv1.EventKind]string)
		for v := range fleetv1.EventKind_name {
			switch k := fleetv1.EventKind(v); k {
			case fleetv1.EventKind_EVENT_KIND_UNSPECIFIED:
			case fleetv1.EventKind_EVENT_KIND_XID:
				out[k] = "xid"
			default:
				out[k] = display.EventKind(&fleetv1.HealthEvent{Kind: k})
			}
		}
		return out
	}()
	commandTypes    = enumWords[fleetv1.CommandType](fleetv1.CommandType_name, "COMMAND_TYPE_")
	commandStatuses = enumWords[fleetv1.CommandStatus](fleetv1.CommandStatus_name, "COMMAND_STATUS_")
	remedies        = enumWords[fleetv1.Remedy](fleetv1.Remedy_name, "REMEDY_")
)

// enumWords maps each value of an enum but its zero to its name without
// the enum's prefix, in lower case: COMMAND_TYPE_RESET_GPU is "reset_gpu".
func enumWords[E ~int32](names map[int32]string, prefix string) map[E]string {
	out := make(map[E]string, len(names))
	for v, name := range names {
		if v != 0 {
			out[E(v)] = strings.ToLower(strings.TrimPrefix(name, prefix))
		}
	}
	return out
}

// word is v's label value from words, or, for a value the API did not have
// when this was built, its name or number in lower case.
func word[E interface {
	~int32
	String() string
}](words map[E]string, v E, prefix string) string {
	if w, ok := words[v]; ok {
		return w
	}
	return strings.ToLower(strings.TrimPrefix(v.String(), prefix))
}

func eventKindWord(k fleetv1.EventKind) string {
	if w, ok := eventKinds[k]; ok {
		return w
	}
	return display.EventKind(&fleetv1.HealthEvent{Kind: k})
}

func commandTypeWord(t fleetv1.CommandType) string { return word(commandTypes, t, "COMMAND_TYPE_") }

func commandStatusWord(s fleetv1.CommandStatus) string {
	return word(commandStatuses, s, "COMMAND_STATUS_")
}

func remedyWord(r fleetv1.Remedy) string { return word(remedies, r, "REMEDY_") }
