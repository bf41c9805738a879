package gpu

import (
	"cmp"
	"encoding/binary"
	"fmt"
	"maps"
	"math"
	"slices"
	"testing"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock"

	"github.com/navarch/navarch/internal/health"
	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
)

// fields answers GetFieldValues from byID, the way NVML fills the caller's
// values in place; a field not in byID answers NOT_SUPPORTED.
func fields(byID map[uint32]nvml.FieldValue) func([]nvml.FieldValue) nvml.Return {
	return func(values []nvml.FieldValue) nvml.Return {
		for i := range values {
			v, ok := byID[values[i].FieldId]
			if !ok {
				v = nvml.FieldValue{NvmlReturn: uint32(nvml.ERROR_NOT_SUPPORTED)}
			}
			v.FieldId = values[i].FieldId
			values[i] = v
		}
		return nvml.SUCCESS
	}
}

// uintField is a field value NVML reports as an unsigned int.
func uintField(v uint64) nvml.FieldValue {
	return typedField(nvml.VALUE_TYPE_UNSIGNED_INT, v)
}

func typedField(t nvml.ValueType, bits uint64) nvml.FieldValue {
	f := nvml.FieldValue{ValueType: uint32(t), NvmlReturn: uint32(nvml.SUCCESS)}
	switch t {
	case nvml.VALUE_TYPE_UNSIGNED_SHORT:
		binary.NativeEndian.PutUint16(f.Value[:], uint16(bits))
	case nvml.VALUE_TYPE_UNSIGNED_INT, nvml.VALUE_TYPE_SIGNED_INT:
		binary.NativeEndian.PutUint32(f.Value[:], uint32(bits))
	default:
		binary.NativeEndian.PutUint64(f.Value[:], bits)
	}
	return f
}

// readOne opens a reader on d and takes one reading at now.
func readOne(t *testing.T, d *mock.Device, now time.Time) Reading {
	t.Helper()
	r, err := Open(library(d))
	if err != nil {
		t.Fatal(err)
	}
	return r.Read(now)[0]
}

func TestRecoveryAction(t *testing.T) {
	tests := []struct {
		name   string
		action nvml.DeviceGpuRecoveryAction
		want   fleetv1.RecoveryAction
	}{
		{"none", nvml.GPU_RECOVERY_ACTION_NONE, fleetv1.RecoveryAction_RECOVERY_ACTION_NONE},
		{"gpu-reset", nvml.GPU_RECOVERY_ACTION_GPU_RESET, fleetv1.RecoveryAction_RECOVERY_ACTION_GPU_RESET},
		{"node-reboot", nvml.GPU_RECOVERY_ACTION_NODE_REBOOT, fleetv1.RecoveryAction_RECOVERY_ACTION_NODE_REBOOT},
		{"drain-p2p", nvml.GPU_RECOVERY_ACTION_DRAIN_P2P, fleetv1.RecoveryAction_RECOVERY_ACTION_DRAIN_P2P},
		{"drain-and-reset", nvml.GPU_RECOVERY_ACTION_DRAIN_AND_RESET, fleetv1.RecoveryAction_RECOVERY_ACTION_DRAIN_AND_RESET},
		{"imex-domain", nvml.GPU_RECOVERY_ACTION_RECOVER_IMEX_DOMAIN, fleetv1.RecoveryAction_RECOVERY_ACTION_NONE},
		{"bus-reset", nvml.GPU_RECOVERY_ACTION_BUS_RESET, fleetv1.RecoveryAction_RECOVERY_ACTION_GPU_RESET},
		{"system-reboot", nvml.GPU_RECOVERY_ACTION_SYSTEM_REBOOT, fleetv1.RecoveryAction_RECOVERY_ACTION_NODE_REBOOT},
		{"unknown", 99, fleetv1.RecoveryAction_RECOVERY_ACTION_NONE},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := device("GPU-a")
			d.GetFieldValuesFunc = fields(map[uint32]nvml.FieldValue{
				nvml.FI_DEV_GET_GPU_RECOVERY_ACTION: uintField(uint64(tt.action)),
				nvml.FI_DEV_MEMORY_TEMP:             uintField(70),
			})
			rd := readOne(t, d, now)
			if got := rd.Metrics.GetRecoveryAction(); got != tt.want {
				t.Fatalf("recovery action %v, want %v", got, tt.want)
			}
			if rd.Lost || len(rd.Metrics.GetUnsupported()) != 1 { // retired pages, as on every H100
				t.Fatalf("lost=%t unsupported=%v", rd.Lost, rd.Metrics.GetUnsupported())
			}
		})
	}
}

// TestFieldsUnsupported: a driver without the recovery-action field (or
// without memory temperature) marks that group alone unsupported; a whole
// call NOT_SUPPORTED marks both; another failure marks neither. None of it
// loses the GPU.
func TestFieldsUnsupported(t *testing.T) {
	tests := []struct {
		name            string
		answer          func([]nvml.FieldValue) nvml.Return
		wantUnsupported []string
		wantAction      fleetv1.RecoveryAction
		wantMemTemp     uint32
	}{
		{
			name:            "no-recovery-action",
			answer:          fields(map[uint32]nvml.FieldValue{nvml.FI_DEV_MEMORY_TEMP: uintField(66)}),
			wantUnsupported: []string{GroupRecoveryAction},
			wantMemTemp:     66,
		},
		{
			name: "no-memory-temperature",
			answer: fields(map[uint32]nvml.FieldValue{
				nvml.FI_DEV_GET_GPU_RECOVERY_ACTION: uintField(uint64(nvml.GPU_RECOVERY_ACTION_GPU_RESET)),
			}),
			wantUnsupported: []string{GroupMemoryTemperature},
			wantAction:      fleetv1.RecoveryAction_RECOVERY_ACTION_GPU_RESET,
		},
		{
			name:            "call-not-supported",
			answer:          func([]nvml.FieldValue) nvml.Return { return nvml.ERROR_NOT_SUPPORTED },
			wantUnsupported: []string{GroupRecoveryAction, GroupMemoryTemperature},
		},
		{
			name:   "call-failed",
			answer: func([]nvml.FieldValue) nvml.Return { return nvml.ERROR_UNKNOWN },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := device("GPU-a")
			d.GetFieldValuesFunc = tt.answer
			rd := readOne(t, d, now)
			m := rd.Metrics
			unsupported := slices.DeleteFunc(slices.Clone(m.GetUnsupported()), func(g string) bool { return g == GroupRetiredPages })
			if rd.Lost || !slices.Equal(unsupported, tt.wantUnsupported) {
				t.Fatalf("lost=%t unsupported=%v, want %v", rd.Lost, unsupported, tt.wantUnsupported)
			}
			if m.GetRecoveryAction() != tt.wantAction || m.GetMemoryTemperatureCelsius() != tt.wantMemTemp {
				t.Fatalf("recovery action %v, memory %d°C; want %v, %d°C", m.GetRecoveryAction(), m.GetMemoryTemperatureCelsius(), tt.wantAction, tt.wantMemTemp)
			}
		})
	}
}

// TestFieldValueTypes: NVML says in ValueType how it filled the value's
// union; each integer width reads right, a negative reads as 0.
func TestFieldValueTypes(t *testing.T) {
	tests := []struct {
		name   string
		field  nvml.FieldValue
		want   uint64
		wantOK bool
	}{
		{"unsigned-short", typedField(nvml.VALUE_TYPE_UNSIGNED_SHORT, 71), 71, true},
		{"unsigned-int", typedField(nvml.VALUE_TYPE_UNSIGNED_INT, 72), 72, true},
		{"unsigned-long", typedField(nvml.VALUE_TYPE_UNSIGNED_LONG, 1<<40), 1 << 40, true},
		{"unsigned-long-long", typedField(nvml.VALUE_TYPE_UNSIGNED_LONG_LONG, 73), 73, true},
		{"signed-int", typedField(nvml.VALUE_TYPE_SIGNED_INT, 74), 74, true},
		{"signed-int-negative", typedField(nvml.VALUE_TYPE_SIGNED_INT, uint64(math.MaxUint32)), 0, true},
		{"signed-long-long-negative", typedField(nvml.VALUE_TYPE_SIGNED_LONG_LONG, math.MaxUint64), 0, true},
		{"double", typedField(nvml.VALUE_TYPE_DOUBLE, math.Float64bits(75.6)), 75, true},
		{"double-nan", typedField(nvml.VALUE_TYPE_DOUBLE, math.Float64bits(math.NaN())), 0, true},
		{"unknown-type", typedField(nvml.VALUE_TYPE_COUNT, 76), 0, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := fieldUint(tt.field)
			if got != tt.want || ok != tt.wantOK {
				t.Fatalf("fieldUint = %d, %t; want %d, %t", got, ok, tt.want, tt.wantOK)
			}
		})
	}
}

// TestMemoryTemperature: the memory temperature is read each time, its
// limit once into the inventory, and diagnostics compare the two.
func TestMemoryTemperature(t *testing.T) {
	d := device("GPU-a")
	r, err := Open(library(d))
	if err != nil {
		t.Fatal(err)
	}
	inv, _ := r.Inventory()
	if got := inv.GPUs[0].GetMemoryMaxTemperatureCelsius(); got != 95 {
		t.Fatalf("memory limit %d°C, want 95", got)
	}
	memoryCheck := func() Check {
		for _, c := range r.Diagnose(now) {
			if c.Name == "memory-temperature" {
				return c
			}
		}
		t.Fatal("no memory-temperature check")
		return Check{}
	}
	if c := memoryCheck(); !c.OK || c.Detail != "68°C, limit 95°C" {
		t.Fatalf("cool memory: %+v", c)
	}
	d.GetFieldValuesFunc = fields(map[uint32]nvml.FieldValue{nvml.FI_DEV_MEMORY_TEMP: uintField(95)})
	if got := r.Read(now)[0].Metrics.GetMemoryTemperatureCelsius(); got != 95 {
		t.Fatalf("memory temperature %d°C, want 95", got)
	}
	if c := memoryCheck(); c.OK {
		t.Fatalf("memory at its limit passed: %+v", c)
	}

	// A GPU without the limit registers 0, which means unknown.
	d.GetTemperatureThresholdFunc = func(nvml.TemperatureThresholds) (uint32, nvml.Return) { return 0, nvml.ERROR_NOT_SUPPORTED }
	inv, _ = r.Inventory()
	if got := inv.GPUs[0].GetMemoryMaxTemperatureCelsius(); got != 0 {
		t.Fatalf("memory limit %d°C where unsupported", got)
	}
}

func TestPCIeLink(t *testing.T) {
	d := device("GPU-a")
	d.GetCurrPcieLinkGenerationFunc = func() (int, nvml.Return) { return 4, nvml.SUCCESS }
	d.GetCurrPcieLinkWidthFunc = func() (int, nvml.Return) { return 8, nvml.SUCCESS }
	m := readOne(t, d, now).Metrics
	if m.GetPcieLinkGeneration() != 4 || m.GetPcieLinkWidth() != 8 {
		t.Fatalf("link Gen%d x%d, want Gen4 x8", m.GetPcieLinkGeneration(), m.GetPcieLinkWidth())
	}

	d.GetCurrPcieLinkGenerationFunc = func() (int, nvml.Return) { return 0, nvml.ERROR_NOT_SUPPORTED }
	d.GetCurrPcieLinkWidthFunc = func() (int, nvml.Return) { return 0, nvml.ERROR_NOT_SUPPORTED }
	rd := readOne(t, d, now)
	if rd.Lost || !slices.Contains(rd.Metrics.GetUnsupported(), GroupPCIeLink) || rd.Metrics.GetPcieLinkGeneration() != 0 {
		t.Fatalf("lost=%t unsupported=%v gen=%d", rd.Lost, rd.Metrics.GetUnsupported(), rd.Metrics.GetPcieLinkGeneration())
	}
}

// TestNvLinkErrorCounters: every counter of every link is read; CRC errors
// add flit and data. A counter the GPU lacks reads 0 and is asked once; the
// group is unsupported only when no counter is supported; a counter that
// fails keeps its last value rather than dropping to 0.
func TestNvLinkErrorCounters(t *testing.T) {
	d := device("GPU-a")
	counts := map[nvml.NvLinkErrorCounter]uint64{
		nvml.NVLINK_ERROR_DL_REPLAY:   7,
		nvml.NVLINK_ERROR_DL_RECOVERY: 2,
		nvml.NVLINK_ERROR_DL_CRC_FLIT: 30,
		nvml.NVLINK_ERROR_DL_CRC_DATA: 4,
	}
	answer := map[nvml.NvLinkErrorCounter]nvml.Return{}
	asked := map[nvml.NvLinkErrorCounter]int{}
	d.GetNvLinkErrorCounterFunc = func(l int, c nvml.NvLinkErrorCounter) (uint64, nvml.Return) {
		asked[c]++
		if ret, ok := answer[c]; ok {
			return 0, ret
		}
		return counts[c] * uint64(l+1), nvml.SUCCESS
	}
	r, err := Open(library(d))
	if err != nil {
		t.Fatal(err)
	}
	links := func() []*fleetv1.NvLinkState {
		t.Helper()
		rd := r.Read(now)[0]
		if rd.Lost || len(rd.Metrics.GetNvlinks()) != 18 {
			t.Fatalf("lost=%t links=%d", rd.Lost, len(rd.Metrics.GetNvlinks()))
		}
		return rd.Metrics.GetNvlinks()
	}
	for _, l := range links() {
		n := uint64(l.GetLink() + 1)
		if l.GetReplayErrors() != 7*n || l.GetRecoveryErrors() != 2*n || l.GetCrcErrors() != 34*n {
			t.Fatalf("link %d: replay %d, recovery %d, crc %d", l.GetLink(), l.GetReplayErrors(), l.GetRecoveryErrors(), l.GetCrcErrors())
		}
	}

	// A GPU that keeps no data CRC counter: CRC is the flit count alone.
	answer[nvml.NVLINK_ERROR_DL_CRC_DATA] = nvml.ERROR_NOT_SUPPORTED
	clear(asked)
	rd := r.Read(now)[0]
	if l := rd.Metrics.GetNvlinks()[1]; l.GetCrcErrors() != 60 || l.GetReplayErrors() != 14 {
		t.Fatalf("link 1 without data CRC: crc %d, replay %d", l.GetCrcErrors(), l.GetReplayErrors())
	}
	if asked[nvml.NVLINK_ERROR_DL_CRC_DATA] != 1 || asked[nvml.NVLINK_ERROR_DL_REPLAY] != 18 {
		t.Fatalf("asked %v", asked)
	}
	if slices.Contains(rd.Metrics.GetUnsupported(), GroupNVLinkErrors) {
		t.Fatal("one missing counter made every counter unsupported")
	}

	// A failed read keeps the last value: a 0 would read as a burst next.
	answer[nvml.NVLINK_ERROR_DL_RECOVERY] = nvml.ERROR_UNKNOWN
	counts[nvml.NVLINK_ERROR_DL_REPLAY] = 8
	if l := links()[3]; l.GetRecoveryErrors() != 8 || l.GetReplayErrors() != 32 {
		t.Fatalf("link 3 after a failed recovery read: recovery %d, replay %d", l.GetRecoveryErrors(), l.GetReplayErrors())
	}

	// No counter at all: unsupported, not a fault.
	for c := range counts {
		answer[c] = nvml.ERROR_NOT_SUPPORTED
	}
	rd = r.Read(now)[0]
	if rd.Lost || !slices.Contains(rd.Metrics.GetUnsupported(), GroupNVLinkErrors) {
		t.Fatalf("lost=%t unsupported=%v", rd.Lost, rd.Metrics.GetUnsupported())
	}
	for _, l := range rd.Metrics.GetNvlinks() {
		if l.GetReplayErrors()+l.GetRecoveryErrors()+l.GetCrcErrors() != 0 || !l.GetActive() {
			t.Fatalf("unsupported counters carry values: %v", l)
		}
	}
}

// TestRetiredPagesLastWeek: double-bit retirements count toward the last
// week from the reading's time back seven days, by NVML's timestamps.
func TestRetiredPagesLastWeek(t *testing.T) {
	at := func(ago time.Duration) uint64 { return uint64(now.Add(-ago).Unix()) }
	day := 24 * time.Hour
	tests := []struct {
		name     string
		times    []uint64
		lastWeek uint32
	}{
		{"none", nil, 0},
		{"within", []uint64{at(time.Hour), at(6 * day)}, 2},
		{"outside", []uint64{at(8 * day), at(30 * day)}, 0},
		{"at-the-edge", []uint64{at(7 * day), at(7*day + time.Second)}, 1},
		{"during-the-reading", []uint64{at(-time.Second)}, 1},
		{"mixed", []uint64{at(400 * day), at(2 * day), at(9 * day), at(time.Minute)}, 2},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := device("GPU-v100")
			d.GetRetiredPagesFunc = func(c nvml.PageRetirementCause) ([]uint64, nvml.Return) {
				if c != nvml.PAGE_RETIREMENT_CAUSE_MULTIPLE_SINGLE_BIT_ECC_ERRORS {
					t.Errorf("single-bit pages read with cause %v", c)
				}
				return []uint64{0x1000, 0x2000, 0x3000}, nvml.SUCCESS
			}
			d.GetRetiredPages_v2Func = func(c nvml.PageRetirementCause) ([]uint64, []uint64, nvml.Return) {
				if c != nvml.PAGE_RETIREMENT_CAUSE_DOUBLE_BIT_ECC_ERROR {
					t.Errorf("double-bit pages read with cause %v", c)
				}
				return make([]uint64, len(tt.times)), tt.times, nvml.SUCCESS
			}
			d.GetRetiredPagesPendingStatusFunc = func() (nvml.EnableState, nvml.Return) { return nvml.FEATURE_ENABLED, nvml.SUCCESS }
			rp := readOne(t, d, now).Metrics.GetRetiredPages()
			if rp.GetSingleBit() != 3 || rp.GetDoubleBit() != uint32(len(tt.times)) || !rp.GetPending() {
				t.Fatalf("retired pages %v", rp)
			}
			if rp.GetDoubleBitLastWeek() != tt.lastWeek {
				t.Fatalf("double-bit last week %d, want %d", rp.GetDoubleBitLastWeek(), tt.lastWeek)
			}
		})
	}
}

// TestRecoveryActionWords: each action the driver may ask for has words
// of its own, so an event says which one.
func TestRecoveryActionWords(t *testing.T) {
	unknown := RecoveryActionWords(fleetv1.RecoveryAction_RECOVERY_ACTION_UNSPECIFIED)
	seen := map[string]string{}
	for v, name := range fleetv1.RecoveryAction_name {
		if v == int32(fleetv1.RecoveryAction_RECOVERY_ACTION_UNSPECIFIED) {
			continue
		}
		words := RecoveryActionWords(fleetv1.RecoveryAction(v))
		if words == unknown || seen[words] != "" {
			t.Errorf("%s says %q, as %s does", name, words, cmp.Or(seen[words], "an unknown action"))
		}
		seen[words] = name
	}
}

// TestDiagnoseNewSignals: diagnostics fail a PCIe link replaying past its
// limit and a GPU whose driver asks for recovery, and say why.
func TestDiagnoseNewSignals(t *testing.T) {
	d := device("GPU-a")
	d.GetCurrPcieLinkGenerationFunc = func() (int, nvml.Return) { return 4, nvml.SUCCESS }
	r, err := Open(library(d))
	if err != nil {
		t.Fatal(err)
	}
	d.GetPcieReplayCounterFunc = func() (int, nvml.Return) { return 100, nvml.SUCCESS }
	r.Read(now)
	d.GetPcieReplayCounterFunc = func() (int, nvml.Return) { return 120, nvml.SUCCESS }
	d.GetFieldValuesFunc = fields(map[uint32]nvml.FieldValue{
		nvml.FI_DEV_GET_GPU_RECOVERY_ACTION: uintField(uint64(nvml.GPU_RECOVERY_ACTION_GPU_RESET)),
	})
	failed := map[string]string{}
	for _, c := range r.Diagnose(now.Add(30 * time.Second)) {
		if !c.OK {
			failed[c.Name] = c.Detail
		}
	}
	want := map[string]string{
		"pcie":            fmt.Sprintf("replay counter 120, 20/min on a Gen4 x16 link (limit %d/min)", health.PCIeReplayLimit(4, 16)),
		"recovery-action": "the driver asks for a GPU reset",
	}
	if !maps.Equal(failed, want) {
		t.Fatalf("failed checks %v, want %v", failed, want)
	}
}
