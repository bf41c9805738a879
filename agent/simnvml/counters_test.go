package simnvml

import (
	"encoding/binary"
	"fmt"
	"testing"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/jonboulle/clockwork"

	"github.com/navarch/navarch/internal/faultspec"
)

// fields reads the recovery action and the memory temperature as field
// values.
func fields(t *testing.T, d *Device) (recovery, memTemp uint32) {
	t.Helper()
	v := []nvml.FieldValue{{FieldId: nvml.FI_DEV_GET_GPU_RECOVERY_ACTION}, {FieldId: nvml.FI_DEV_MEMORY_TEMP}}
	if ret := d.GetFieldValues(v); ret != nvml.SUCCESS {
		t.Fatal(ret)
	}
	for _, f := range v {
		if nvml.Return(f.NvmlReturn) != nvml.SUCCESS || nvml.ValueType(f.ValueType) != nvml.VALUE_TYPE_UNSIGNED_INT {
			t.Fatalf("field %d: %v type %d", f.FieldId, nvml.Return(f.NvmlReturn), f.ValueType)
		}
	}
	return binary.NativeEndian.Uint32(v[0].Value[:]), binary.NativeEndian.Uint32(v[1].Value[:])
}

func TestNewReadingsOfAHealthyGPU(t *testing.T) {
	d := New(Options{GPUs: 1, Idle: true}).Device(0)
	recovery, memTemp := fields(t, d)
	core, _ := d.GetTemperature(nvml.TEMPERATURE_GPU)
	if recovery != uint32(nvml.GPU_RECOVERY_ACTION_NONE) || memTemp <= core || memTemp > core+10 {
		t.Fatalf("recovery %d, memory %d°C with the core at %d°C", recovery, memTemp, core)
	}
	other := []nvml.FieldValue{{FieldId: nvml.FI_DEV_ECC_CURRENT}}
	if ret := d.GetFieldValues(other); ret != nvml.SUCCESS || nvml.Return(other[0].NvmlReturn) != nvml.ERROR_NOT_SUPPORTED {
		t.Fatalf("an unknown field: %v %v, want it alone unsupported", ret, nvml.Return(other[0].NvmlReturn))
	}
	if v, ret := d.GetTemperatureThreshold(nvml.TEMPERATURE_THRESHOLD_MEM_MAX); ret != nvml.SUCCESS || v != 95 {
		t.Fatalf("memory max %d %v", v, ret)
	}
	gen, ret1 := d.GetCurrPcieLinkGeneration()
	width, ret2 := d.GetCurrPcieLinkWidth()
	if gen != 5 || width != 16 || ret1 != nvml.SUCCESS || ret2 != nvml.SUCCESS {
		t.Fatalf("PCIe Gen%d x%d (%v %v), want an H100's Gen5 x16", gen, width, ret1, ret2)
	}
	for c := nvml.NVLINK_ERROR_DL_REPLAY; c <= nvml.NVLINK_ERROR_DL_CRC_DATA; c++ {
		if v, ret := d.GetNvLinkErrorCounter(nvlinkCount-1, c); ret != nvml.SUCCESS || v != 0 {
			t.Fatalf("counter %d: %d %v", c, v, ret)
		}
	}
	if _, ret := d.GetNvLinkErrorCounter(nvlinkCount, nvml.NVLINK_ERROR_DL_REPLAY); ret != nvml.ERROR_INVALID_ARGUMENT {
		t.Fatalf("a link the GPU lacks: %v", ret)
	}
	if _, ret := d.GetNvLinkErrorCounter(0, nvml.NVLINK_ERROR_DL_ECC_DATA); ret != nvml.ERROR_NOT_SUPPORTED {
		t.Fatalf("the ECC data counter: %v", ret)
	}
	if pending, ret := d.GetRetiredPagesPendingStatus(); ret != nvml.SUCCESS || pending != nvml.FEATURE_DISABLED {
		t.Fatalf("retirement pending %v %v", pending, ret)
	}
	if r, _ := d.GetCurrentClocksEventReasons(); r&(nvml.ClocksThrottleReasonHwSlowdown|nvml.ClocksThrottleReasonHwPowerBrakeSlowdown) != 0 {
		t.Fatalf("a healthy GPU's clock events %#x", r)
	}
}

// TestFaultsShowThroughNVML injects each new fault kind and reads it back
// through the NVML calls a reader makes.
func TestFaultsShowThroughNVML(t *testing.T) {
	tests := []struct {
		spec  string
		after time.Duration // the clock moves on this much before the check
		check func(t *testing.T, d *Device)
	}{
		{"pcie-replays=250@gpu0", 0, func(t *testing.T, d *Device) {
			if v, _ := d.GetPcieReplayCounter(); v != 250 {
				t.Fatalf("replays %d", v)
			}
		}},
		{"pcie-replays=40/min@gpu0,for=2m", 5 * time.Minute, func(t *testing.T, d *Device) {
			// Two minutes at 40 a minute, then no more.
			if v, _ := d.GetPcieReplayCounter(); v != 80 {
				t.Fatalf("replays %d, want 80", v)
			}
		}},
		{"pcie-replays=30/min@gpu0", 90 * time.Second, func(t *testing.T, d *Device) {
			if v, _ := d.GetPcieReplayCounter(); v != 45 {
				t.Fatalf("replays %d, want 45", v)
			}
		}},
		{"retired-sbe=60@gpu0", 0, func(t *testing.T, d *Device) {
			pages, _ := d.GetRetiredPages(nvml.PAGE_RETIREMENT_CAUSE_MULTIPLE_SINGLE_BIT_ECC_ERRORS)
			dbe, _ := d.GetRetiredPages(nvml.PAGE_RETIREMENT_CAUSE_DOUBLE_BIT_ECC_ERROR)
			pending, _ := d.GetRetiredPagesPendingStatus()
			if len(pages) != 60 || len(dbe) != 0 || pending != nvml.FEATURE_ENABLED {
				t.Fatalf("%d single-bit pages, %d double-bit, pending %v", len(pages), len(dbe), pending)
			}
		}},
		{"retired-dbe=3@gpu0", 0, func(t *testing.T, d *Device) {
			pages, times, ret := d.GetRetiredPages_v2(nvml.PAGE_RETIREMENT_CAUSE_DOUBLE_BIT_ECC_ERROR)
			if ret != nvml.SUCCESS || len(pages) != 3 || len(times) != 3 || pages[0] == pages[1] {
				t.Fatalf("pages %v times %v %v", pages, times, ret)
			}
			for _, ts := range times {
				if int64(ts) != d.backend.clock.Now().Unix() {
					t.Fatalf("retired at %d, want now, %d", ts, d.backend.clock.Now().Unix())
				}
			}
		}},
		{"nvlink-crc=40:link3@gpu0", 0, func(t *testing.T, d *Device) {
			flit, _ := d.GetNvLinkErrorCounter(3, nvml.NVLINK_ERROR_DL_CRC_FLIT)
			replay, _ := d.GetNvLinkErrorCounter(3, nvml.NVLINK_ERROR_DL_REPLAY)
			other, _ := d.GetNvLinkErrorCounter(2, nvml.NVLINK_ERROR_DL_CRC_FLIT)
			if flit != 40 || replay != 40 || other != 0 {
				t.Fatalf("link 3: %d CRC, %d replays; link 2: %d", flit, replay, other)
			}
		}},
		{"power-brake@gpu0", 0, func(t *testing.T, d *Device) {
			r, _ := d.GetCurrentClocksEventReasons()
			if r&nvml.ClocksThrottleReasonHwPowerBrakeSlowdown == 0 || r&nvml.ClocksThrottleReasonHwSlowdown == 0 || r&nvml.ClocksThrottleReasonHwThermalSlowdown != 0 {
				t.Fatalf("clock events %#x", r)
			}
		}},
		{"power-brake@gpu0,for=1m", 2 * time.Minute, func(t *testing.T, d *Device) {
			if r, _ := d.GetCurrentClocksEventReasons(); r&nvml.ClocksThrottleReasonHwPowerBrakeSlowdown != 0 {
				t.Fatalf("the power brake outlived its hold: %#x", r)
			}
		}},
		{"hw-slowdown@gpu0", 10 * time.Minute, func(t *testing.T, d *Device) {
			r, _ := d.GetCurrentClocksEventReasons()
			if r&nvml.ClocksThrottleReasonHwSlowdown == 0 || r&(nvml.ClocksThrottleReasonHwThermalSlowdown|nvml.ClocksThrottleReasonHwPowerBrakeSlowdown) != 0 {
				t.Fatalf("clock events %#x", r)
			}
		}},
		{"mem-temp=99@gpu0", 0, func(t *testing.T, d *Device) {
			if _, memTemp := fields(t, d); memTemp != 99 {
				t.Fatalf("memory at %d°C", memTemp)
			}
		}},
		{"temp=97@gpu0", 0, func(t *testing.T, d *Device) {
			// The memory follows the core.
			if _, memTemp := fields(t, d); memTemp != 97+memoryAboveCore {
				t.Fatalf("memory at %d°C with the core at 97°C", memTemp)
			}
		}},
		{"recovery=drain-and-reset@gpu0", 0, func(t *testing.T, d *Device) {
			if recovery, _ := fields(t, d); recovery != uint32(nvml.GPU_RECOVERY_ACTION_DRAIN_AND_RESET) {
				t.Fatalf("recovery action %d", recovery)
			}
			xids := xidLines(t, readAll(t, d.backend.KernelLog()))
			if len(xids) != 1 || xids[0].xid != 154 || xids[0].rest != "GPU recovery action changed from 0x0 (None) to 0x4 (Drain and Reset)" {
				t.Fatalf("Xid lines %+v, want the driver's 154", xids)
			}
		}},
		{"xid=154:GPU recovery action changed from 0x0 (None) to 0x2 (Node Reboot Required)@gpu0", 0, func(t *testing.T, d *Device) {
			if recovery, _ := fields(t, d); recovery != uint32(nvml.GPU_RECOVERY_ACTION_NODE_REBOOT) {
				t.Fatalf("recovery action %d after an XID 154 asking for a reboot", recovery)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.spec, func(t *testing.T) {
			spec, err := faultspec.Parse(tt.spec)
			if err != nil {
				t.Fatal(err)
			}
			clock := clockwork.NewFakeClock()
			b := New(Options{GPUs: 1, Idle: true, Clock: clock})
			b.Inject(spec)
			clock.Advance(tt.after)
			tt.check(t, b.Device(0))
		})
	}
}

// TestXID79TakesTheGPUOffTheBus: after it every call answers
// ERROR_GPU_IS_LOST, and the job dies.
func TestXID79TakesTheGPUOffTheBus(t *testing.T) {
	_, b := jobNode(t)
	d := b.Device(0)
	ps, _ := d.GetComputeRunningProcesses()
	if len(ps) != 1 {
		t.Fatalf("busy GPU lists %v", ps)
	}
	b.Inject(faultspec.Spec{Kind: faultspec.XID, Value: 79, GPU: 0})
	if alive(ps[0].Pid) {
		t.Fatalf("job %d outlived its GPU", ps[0].Pid)
	}
	calls := map[string]func() nvml.Return{
		"uuid":            func() nvml.Return { _, r := d.GetUUID(); return r },
		"temperature":     func() nvml.Return { _, r := d.GetTemperature(nvml.TEMPERATURE_GPU); return r },
		"fields":          func() nvml.Return { return d.GetFieldValues([]nvml.FieldValue{{FieldId: nvml.FI_DEV_MEMORY_TEMP}}) },
		"pcie-generation": func() nvml.Return { _, r := d.GetCurrPcieLinkGeneration(); return r },
		"pcie-width":      func() nvml.Return { _, r := d.GetCurrPcieLinkWidth(); return r },
		"pcie-replays":    func() nvml.Return { _, r := d.GetPcieReplayCounter(); return r },
		"nvlink-errors":   func() nvml.Return { _, r := d.GetNvLinkErrorCounter(0, nvml.NVLINK_ERROR_DL_CRC_FLIT); return r },
		"retired-pages": func() nvml.Return {
			_, _, r := d.GetRetiredPages_v2(nvml.PAGE_RETIREMENT_CAUSE_DOUBLE_BIT_ECC_ERROR)
			return r
		},
		"retired-bad": func() nvml.Return { _, _, r := d.GetRetiredPages_v2(7); return r },
		"threshold":   func() nvml.Return { _, r := d.GetTemperatureThreshold(nvml.TEMPERATURE_THRESHOLD_MEM_MAX); return r },
		"processes":   func() nvml.Return { _, r := d.GetComputeRunningProcesses(); return r },
	}
	for name, call := range calls {
		if ret := call(); ret != nvml.ERROR_GPU_IS_LOST {
			t.Errorf("%s on a GPU off the bus: %v", name, ret)
		}
	}
	lines := readAll(t, b.KernelLog())
	xids := xidLines(t, lines)
	if want := fmt.Sprintf("pid=%d, name=sleep, GPU has fallen off the bus.", ps[0].Pid); len(xids) != 1 || xids[0].xid != 79 || xids[0].rest != want {
		t.Fatalf("Xid lines %+v, want one with %q", xids, want)
	}
	if got := parseKmsg(t, lines[len(lines)-1]).text; got != "NVRM: GPU 0000:18:00.0: GPU has fallen off the bus." {
		t.Fatalf("last kernel line %q", got)
	}
	// Nothing more comes from a GPU off the bus.
	b.Inject(faultspec.Spec{Kind: faultspec.XID, Value: 13, GPU: 0})
	if after := readAll(t, b.KernelLog()); len(after) != len(lines) {
		t.Fatalf("a lost GPU raised %q", after[len(lines):])
	}
}
