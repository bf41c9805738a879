package gpu

import (
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode"
	"unicode/utf8"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/NVIDIA/go-nvml/pkg/nvml/mock"

	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
)

var now = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)

// device is a go-nvml mock device answering every call the reader makes,
// with H100-like values; tests override single functions.
func device(uuid string) *mock.Device {
	busID := [32]int8{}
	for i, c := range "0000:1b:00.0" {
		busID[i] = int8(c)
	}
	links := 18
	return &mock.Device{
		GetUUIDFunc:   func() (string, nvml.Return) { return uuid, nvml.SUCCESS },
		GetNameFunc:   func() (string, nvml.Return) { return "NVIDIA H100 80GB HBM3", nvml.SUCCESS },
		GetSerialFunc: func() (string, nvml.Return) { return "1654322012345", nvml.SUCCESS },
		GetPciInfoFunc: func() (nvml.PciInfo, nvml.Return) {
			return nvml.PciInfo{BusId: busID}, nvml.SUCCESS
		},
		GetMemoryInfoFunc: func() (nvml.Memory, nvml.Return) {
			return nvml.Memory{Total: 80 << 30, Used: 60 << 30, Free: 20 << 30}, nvml.SUCCESS
		},
		GetTemperatureFunc: func(nvml.TemperatureSensors) (uint32, nvml.Return) { return 71, nvml.SUCCESS },
		GetTemperatureThresholdFunc: func(t nvml.TemperatureThresholds) (uint32, nvml.Return) {
			switch t {
			case nvml.TEMPERATURE_THRESHOLD_SLOWDOWN:
				return 87, nvml.SUCCESS
			case nvml.TEMPERATURE_THRESHOLD_MEM_MAX:
				return 95, nvml.SUCCESS
			}
			return 92, nvml.SUCCESS
		},
		GetFieldValuesFunc: fields(map[uint32]nvml.FieldValue{
			nvml.FI_DEV_GET_GPU_RECOVERY_ACTION: uintField(uint64(nvml.GPU_RECOVERY_ACTION_NONE)),
			nvml.FI_DEV_MEMORY_TEMP:             uintField(68),
		}),
		GetPowerUsageFunc:         func() (uint32, nvml.Return) { return 612000, nvml.SUCCESS },
		GetEnforcedPowerLimitFunc: func() (uint32, nvml.Return) { return 700000, nvml.SUCCESS },
		GetUtilizationRatesFunc: func() (nvml.Utilization, nvml.Return) {
			return nvml.Utilization{Gpu: 97, Memory: 61}, nvml.SUCCESS
		},
		GetClockInfoFunc: func(c nvml.ClockType) (uint32, nvml.Return) {
			if c == nvml.CLOCK_MEM {
				return 2619, nvml.SUCCESS
			}
			return 1980, nvml.SUCCESS
		},
		GetCurrentClocksEventReasonsFunc: func() (uint64, nvml.Return) { return nvml.ClocksEventReasonSwPowerCap, nvml.SUCCESS },
		GetTotalEccErrorsFunc: func(t nvml.MemoryErrorType, c nvml.EccCounterType) (uint64, nvml.Return) {
			switch {
			case t == nvml.MEMORY_ERROR_TYPE_CORRECTED && c == nvml.VOLATILE_ECC:
				return 3, nvml.SUCCESS
			case t == nvml.MEMORY_ERROR_TYPE_UNCORRECTED && c == nvml.VOLATILE_ECC:
				return 0, nvml.SUCCESS
			case t == nvml.MEMORY_ERROR_TYPE_CORRECTED:
				return 120, nvml.SUCCESS
			}
			return 1, nvml.SUCCESS
		},
		GetRemappedRowsFunc: func() (int, int, bool, bool, nvml.Return) { return 2, 1, false, false, nvml.SUCCESS },
		GetRetiredPagesFunc: func(nvml.PageRetirementCause) ([]uint64, nvml.Return) {
			return nil, nvml.ERROR_NOT_SUPPORTED
		},
		GetRetiredPages_v2Func: func(nvml.PageRetirementCause) ([]uint64, []uint64, nvml.Return) {
			return nil, nil, nvml.ERROR_NOT_SUPPORTED
		},
		GetRetiredPagesPendingStatusFunc: func() (nvml.EnableState, nvml.Return) { return 0, nvml.ERROR_NOT_SUPPORTED },
		GetNvLinkStateFunc: func(l int) (nvml.EnableState, nvml.Return) {
			if l >= links {
				return 0, nvml.ERROR_INVALID_ARGUMENT
			}
			return nvml.FEATURE_ENABLED, nvml.SUCCESS
		},
		GetNvLinkErrorCounterFunc: func(l int, c nvml.NvLinkErrorCounter) (uint64, nvml.Return) {
			return uint64(100*l) + uint64(c), nvml.SUCCESS
		},
		GetCurrPcieLinkGenerationFunc: func() (int, nvml.Return) { return 5, nvml.SUCCESS },
		GetCurrPcieLinkWidthFunc:      func() (int, nvml.Return) { return 16, nvml.SUCCESS },
		GetPcieReplayCounterFunc:      func() (int, nvml.Return) { return 4, nvml.SUCCESS },
		GetComputeRunningProcessesFunc: func() ([]nvml.ProcessInfo, nvml.Return) {
			return []nvml.ProcessInfo{{Pid: 4242, UsedGpuMemory: 30 << 30}}, nvml.SUCCESS
		},
		RegisterEventsFunc: func(uint64, nvml.EventSet) nvml.Return { return nvml.SUCCESS },
	}
}

func library(devs ...*mock.Device) *mock.Interface {
	return &mock.Interface{
		InitFunc:                       func() nvml.Return { return nvml.SUCCESS },
		ShutdownFunc:                   func() nvml.Return { return nvml.SUCCESS },
		SystemGetDriverVersionFunc:     func() (string, nvml.Return) { return "550.54.15", nvml.SUCCESS },
		SystemGetCudaDriverVersionFunc: func() (int, nvml.Return) { return 12040, nvml.SUCCESS },
		DeviceGetCountFunc:             func() (int, nvml.Return) { return len(devs), nvml.SUCCESS },
		DeviceGetHandleByIndexFunc: func(i int) (nvml.Device, nvml.Return) {
			if i >= len(devs) {
				return nil, nvml.ERROR_INVALID_ARGUMENT
			}
			return devs[i], nvml.SUCCESS
		},
	}
}

func TestOpenReportsMissingDriver(t *testing.T) {
	for _, ret := range []nvml.Return{nvml.ERROR_LIBRARY_NOT_FOUND, nvml.ERROR_DRIVER_NOT_LOADED} {
		lib := &mock.Interface{InitFunc: func() nvml.Return { return ret }}
		_, err := Open(lib)
		if !errors.Is(err, ErrNoDriver) || !strings.Contains(err.Error(), "NVIDIA driver") {
			t.Fatalf("%v: err = %v", ret, err)
		}
	}
}

func TestInventory(t *testing.T) {
	r, err := Open(library(device("GPU-a"), device("GPU-b")))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	inv, err := r.Inventory()
	if err != nil {
		t.Fatal(err)
	}
	if inv.DriverVersion != "550.54.15" || inv.CUDAVersion != "12.4" || len(inv.GPUs) != 2 {
		t.Fatalf("inventory %+v", inv)
	}
	g := inv.GPUs[1]
	if g.GetIndex() != 1 || g.GetUuid() != "GPU-b" || g.GetName() != "NVIDIA H100 80GB HBM3" || g.GetSerial() != "1654322012345" ||
		g.GetPciBusId() != "0000:1b:00.0" || g.GetMemoryTotalBytes() != 80<<30 || g.GetSlowdownTemperatureCelsius() != 87 ||
		g.GetPowerLimitMilliwatts() != 700000 || g.GetNvlinkCount() != 18 || g.GetMemoryMaxTemperatureCelsius() != 95 {
		t.Fatalf("GPU %v", g)
	}
}

// TestGPUThatDoesNotAnswerAtOpen: a GPU that fell off the bus before the
// agent started is left out and listed as absent; the others are read
// under their own NVML indexes.
func TestGPUThatDoesNotAnswerAtOpen(t *testing.T) {
	lost := device("GPU-b")
	lost.GetUUIDFunc = func() (string, nvml.Return) { return "", nvml.ERROR_GPU_IS_LOST }
	r, err := Open(library(device("GPU-a"), lost, device("GPU-c")))
	if err != nil {
		t.Fatalf("one lost GPU stopped the reader: %v", err)
	}
	defer r.Close()
	if a := r.Absent(); len(a) != 1 || a[0].Index != 1 || !strings.Contains(strings.ToLower(a[0].Reason), "lost") {
		t.Fatalf("absent %+v", a)
	}
	inv, _ := r.Inventory()
	if len(inv.GPUs) != 2 || inv.GPUs[1].GetIndex() != 2 || inv.GPUs[1].GetUuid() != "GPU-c" {
		t.Fatalf("inventory %v", inv.GPUs)
	}
	if rd := r.Read(time.Now()); len(rd) != 2 || rd[1].Metrics.GetGpuIndex() != 2 {
		t.Fatalf("readings %v", rd)
	}
	failed := false
	for _, c := range r.Diagnose(time.Now()) {
		if c.GPU == 1 && !c.OK && c.Name == "identity" {
			failed = true
		}
	}
	if !failed {
		t.Fatal("diagnostics do not name the GPU that did not answer")
	}

	// With no GPU answering there is nothing to watch.
	_, err = Open(library(lost))
	if err == nil || !strings.Contains(err.Error(), "none of the 1 GPUs answered") {
		t.Fatalf("all GPUs lost: %v", err)
	}
}

// TestLinkDownAtOpenIsCounted: a link already down when the agent starts
// counts in the inventory, so it reads as down rather than as a smaller
// healthy set; a GPU with no link up has no NVLink in use.
func TestLinkDownAtOpenIsCounted(t *testing.T) {
	oneDown := device("GPU-a")
	oneDown.GetNvLinkStateFunc = func(l int) (nvml.EnableState, nvml.Return) {
		switch {
		case l >= 18:
			return 0, nvml.ERROR_INVALID_ARGUMENT
		case l == 5:
			return nvml.FEATURE_DISABLED, nvml.SUCCESS
		}
		return nvml.FEATURE_ENABLED, nvml.SUCCESS
	}
	unwired := device("GPU-b")
	unwired.GetNvLinkStateFunc = func(l int) (nvml.EnableState, nvml.Return) {
		if l >= 18 {
			return 0, nvml.ERROR_INVALID_ARGUMENT
		}
		return nvml.FEATURE_DISABLED, nvml.SUCCESS
	}
	r, err := Open(library(oneDown, unwired))
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	inv, _ := r.Inventory()
	if inv.GPUs[0].GetNvlinkCount() != 18 || inv.GPUs[1].GetNvlinkCount() != 0 {
		t.Fatalf("link counts %d and %d, want 18 and 0", inv.GPUs[0].GetNvlinkCount(), inv.GPUs[1].GetNvlinkCount())
	}
	for _, c := range r.Diagnose(time.Now()) {
		if c.GPU == 0 && c.Name == "nvlink" && (c.OK || !strings.Contains(c.Detail, "17 of 18")) {
			t.Fatalf("diagnostics: %+v", c)
		}
	}
}

// TestReadEveryMetric checks every metric the reader takes from NVML.
func TestReadEveryMetric(t *testing.T) {
	r, err := Open(library(device("GPU-a")))
	if err != nil {
		t.Fatal(err)
	}
	rd := r.Read(now)[0]
	m := rd.Metrics
	if rd.Lost {
		t.Fatal("healthy GPU read as lost")
	}
	checks := []struct {
		name      string
		got, want any
	}{
		{"temperature", m.GetTemperatureCelsius(), uint32(71)},
		{"power", m.GetPowerUsageMilliwatts(), uint32(612000)},
		{"utilization", m.GetUtilizationGpuPercent(), uint32(97)},
		{"memory utilization", m.GetUtilizationMemoryPercent(), uint32(61)},
		{"memory used", m.GetMemoryUsedBytes(), uint64(60 << 30)},
		{"sm clock", m.GetSmClockMhz(), uint32(1980)},
		{"memory clock", m.GetMemoryClockMhz(), uint32(2619)},
		{"clock events", m.GetClockEventReasons(), uint64(nvml.ClocksEventReasonSwPowerCap)},
		{"ecc volatile corrected", m.GetEcc().GetVolatileCorrected(), uint64(3)},
		{"ecc volatile uncorrected", m.GetEcc().GetVolatileUncorrected(), uint64(0)},
		{"ecc aggregate corrected", m.GetEcc().GetAggregateCorrected(), uint64(120)},
		{"ecc aggregate uncorrected", m.GetEcc().GetAggregateUncorrected(), uint64(1)},
		{"remapped corrected", m.GetRowRemap().GetCorrectedRows(), uint32(2)},
		{"remapped uncorrected", m.GetRowRemap().GetUncorrectedRows(), uint32(1)},
		{"nvlinks", len(m.GetNvlinks()), 18},
		{"memory temperature", m.GetMemoryTemperatureCelsius(), uint32(68)},
		{"recovery action", m.GetRecoveryAction(), fleetv1.RecoveryAction_RECOVERY_ACTION_NONE},
		{"nvlink 2 replay errors", m.GetNvlinks()[2].GetReplayErrors(), uint64(200)},
		{"nvlink 2 recovery errors", m.GetNvlinks()[2].GetRecoveryErrors(), uint64(201)},
		{"nvlink 2 crc errors", m.GetNvlinks()[2].GetCrcErrors(), uint64(202 + 203)},
		{"pcie generation", m.GetPcieLinkGeneration(), uint32(5)},
		{"pcie width", m.GetPcieLinkWidth(), uint32(16)},
		{"pcie replays", m.GetPcieReplayCount(), uint64(4)},
		{"pcie replay rate", m.GetPcieReplaysPerMinute(), uint32(0)},
		{"hw slowdown", m.GetHwSlowdownSeconds(), uint32(0)},
		{"power brake", m.GetPowerBrakeSeconds(), uint32(0)},
		{"processes", len(m.GetProcesses()), 1},
		{"process pid", m.GetProcesses()[0].GetPid(), uint32(4242)},
		{"process memory", m.GetProcesses()[0].GetUsedMemoryBytes(), uint64(30 << 30)},
		{"time", m.GetTime().AsTime(), now},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v, want %v", c.name, c.got, c.want)
		}
	}
	// H100 has no retired pages: that is unsupported, not a fault.
	if !slices.Equal(m.GetUnsupported(), []string{GroupRetiredPages}) || m.GetRetiredPages() != nil {
		t.Errorf("unsupported %v, retired pages %v", m.GetUnsupported(), m.GetRetiredPages())
	}
}

func TestNotSupportedIsRecordedNotFailed(t *testing.T) {
	d := device("GPU-old")
	notSupported := nvml.ERROR_NOT_SUPPORTED
	d.GetTotalEccErrorsFunc = func(nvml.MemoryErrorType, nvml.EccCounterType) (uint64, nvml.Return) { return 0, notSupported }
	d.GetRemappedRowsFunc = func() (int, int, bool, bool, nvml.Return) { return 0, 0, false, false, notSupported }
	d.GetNvLinkStateFunc = func(int) (nvml.EnableState, nvml.Return) { return 0, notSupported }
	d.GetPcieReplayCounterFunc = func() (int, nvml.Return) { return 0, notSupported }
	d.GetCurrentClocksEventReasonsFunc = func() (uint64, nvml.Return) { return 0, notSupported }
	d.GetPowerUsageFunc = func() (uint32, nvml.Return) { return 0, notSupported }
	d.GetFieldValuesFunc = fields(map[uint32]nvml.FieldValue{})
	d.GetCurrPcieLinkGenerationFunc = func() (int, nvml.Return) { return 0, notSupported }
	d.GetCurrPcieLinkWidthFunc = func() (int, nvml.Return) { return 0, notSupported }
	r, err := Open(library(d))
	if err != nil {
		t.Fatal(err)
	}
	inv, _ := r.Inventory()
	if inv.GPUs[0].GetNvlinkCount() != 0 {
		t.Fatalf("nvlink count %d on a GPU without NVLink", inv.GPUs[0].GetNvlinkCount())
	}
	rd := r.Read(now)[0]
	want := []string{GroupRecoveryAction, GroupMemoryTemperature, GroupPower, GroupClockEvents, GroupECC, GroupRowRemap,
		GroupRetiredPages, GroupNVLink, GroupPCIeLink, GroupPCIeReplay}
	if rd.Lost || !slices.Equal(rd.Metrics.GetUnsupported(), want) {
		t.Fatalf("lost=%t unsupported=%v, want %v", rd.Lost, rd.Metrics.GetUnsupported(), want)
	}
	if rd.Metrics.GetEcc() != nil || rd.Metrics.GetRowRemap() != nil {
		t.Fatal("unsupported groups carry values")
	}
	if rd.Metrics.GetTemperatureCelsius() != 71 {
		t.Fatal("supported metrics lost alongside")
	}
	checks := r.Diagnose(now)
	for _, c := range checks {
		if !c.OK {
			t.Fatalf("diagnostics failed an unsupported check: %+v", c)
		}
	}
}

func TestLostGPU(t *testing.T) {
	good, bad := device("GPU-a"), device("GPU-b")
	r, err := Open(library(good, bad))
	if err != nil {
		t.Fatal(err)
	}
	lost := func(...any) nvml.Return { return nvml.ERROR_GPU_IS_LOST }
	bad.GetTemperatureFunc = func(nvml.TemperatureSensors) (uint32, nvml.Return) { return 0, lost() }
	bad.GetUtilizationRatesFunc = func() (nvml.Utilization, nvml.Return) { return nvml.Utilization{}, lost() }
	rds := r.Read(now)
	if rds[0].Lost || !rds[1].Lost || !strings.Contains(rds[1].LostReason, "lost") {
		t.Fatalf("readings %+v %+v", rds[0], rds[1])
	}
	// A GPU failing every call, with whatever error, is lost too.
	unknown := func() nvml.Return { return nvml.ERROR_UNKNOWN }
	*bad = mock.Device{
		GetTemperatureFunc:               func(nvml.TemperatureSensors) (uint32, nvml.Return) { return 0, unknown() },
		GetPowerUsageFunc:                func() (uint32, nvml.Return) { return 0, unknown() },
		GetUtilizationRatesFunc:          func() (nvml.Utilization, nvml.Return) { return nvml.Utilization{}, unknown() },
		GetMemoryInfoFunc:                func() (nvml.Memory, nvml.Return) { return nvml.Memory{}, unknown() },
		GetClockInfoFunc:                 func(nvml.ClockType) (uint32, nvml.Return) { return 0, unknown() },
		GetCurrentClocksEventReasonsFunc: func() (uint64, nvml.Return) { return 0, unknown() },
		GetTotalEccErrorsFunc:            func(nvml.MemoryErrorType, nvml.EccCounterType) (uint64, nvml.Return) { return 0, unknown() },
		GetRemappedRowsFunc:              func() (int, int, bool, bool, nvml.Return) { return 0, 0, false, false, unknown() },
		GetRetiredPagesFunc:              func(nvml.PageRetirementCause) ([]uint64, nvml.Return) { return nil, unknown() },
		GetNvLinkStateFunc:               func(int) (nvml.EnableState, nvml.Return) { return 0, unknown() },
		GetPcieReplayCounterFunc:         func() (int, nvml.Return) { return 0, unknown() },
		GetComputeRunningProcessesFunc:   func() ([]nvml.ProcessInfo, nvml.Return) { return nil, unknown() },
		GetFieldValuesFunc:               func([]nvml.FieldValue) nvml.Return { return unknown() },
		GetCurrPcieLinkGenerationFunc:    func() (int, nvml.Return) { return 0, unknown() },
		GetCurrPcieLinkWidthFunc:         func() (int, nvml.Return) { return 0, unknown() },
	}
	if rd := r.Read(now)[1]; !rd.Lost || rd.LostReason != "every NVML read failed" {
		t.Fatalf("GPU failing every call: %+v", rd)
	}
}

func TestWatchXIDs(t *testing.T) {
	a, b := device("GPU-a"), device("GPU-b")
	events := make(chan nvml.EventData, 4)
	var registered []uint64
	set := &mock.EventSet{
		WaitFunc: func(ms uint32) (nvml.EventData, nvml.Return) {
			select {
			case e := <-events:
				return e, nvml.SUCCESS
			case <-time.After(time.Duration(ms) * time.Millisecond):
				return nvml.EventData{}, nvml.ERROR_TIMEOUT
			}
		},
		FreeFunc: func() nvml.Return { return nvml.SUCCESS },
	}
	for _, d := range []*mock.Device{a, b} {
		d.RegisterEventsFunc = func(types uint64, _ nvml.EventSet) nvml.Return {
			registered = append(registered, types)
			return nvml.SUCCESS
		}
	}
	lib := library(a, b)
	lib.EventSetCreateFunc = func() (nvml.EventSet, nvml.Return) { return set, nvml.SUCCESS }
	r, err := Open(lib)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	out := make(chan XIDEvent, 4)
	done := make(chan error, 1)
	go func() { done <- r.WatchXIDs(ctx, out, func(int, error) {}, func() time.Time { return now }) }()
	events <- nvml.EventData{Device: b, EventType: nvml.EventTypeXidCriticalError, EventData: 79}
	select {
	case x := <-out:
		if x.GPU != 1 || x.UUID != "GPU-b" || x.XID != 79 || !x.Time.Equal(now) {
			t.Fatalf("xid %+v", x)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("XID not delivered")
	}
	if len(registered) != 2 || registered[0] != nvml.EventTypeXidCriticalError {
		t.Fatalf("registered %v", registered)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}

	lib.EventSetCreateFunc = func() (nvml.EventSet, nvml.Return) { return nil, nvml.ERROR_NOT_SUPPORTED }
	if err := r.WatchXIDs(context.Background(), out, func(int, error) {}, time.Now); err == nil {
		t.Fatal("no error when the event set cannot be created")
	}
}

func TestProcessesAndDiagnose(t *testing.T) {
	a, b := device("GPU-a"), device("GPU-b")
	b.GetComputeRunningProcessesFunc = func() ([]nvml.ProcessInfo, nvml.Return) {
		return []nvml.ProcessInfo{{Pid: 4242}, {Pid: 5151}}, nvml.SUCCESS
	}
	r, err := Open(library(a, b))
	if err != nil {
		t.Fatal(err)
	}
	procs, err := r.Processes()
	if err != nil || len(procs) != 2 {
		t.Fatalf("processes %v %v (a pid on two GPUs counts once)", procs, err)
	}
	for _, c := range r.Diagnose(now) {
		if !c.OK {
			t.Fatalf("healthy GPU failed %+v", c)
		}
	}
	b.GetTotalEccErrorsFunc = func(t nvml.MemoryErrorType, c nvml.EccCounterType) (uint64, nvml.Return) {
		if t == nvml.MEMORY_ERROR_TYPE_UNCORRECTED && c == nvml.VOLATILE_ECC {
			return 2, nvml.SUCCESS
		}
		return 0, nvml.SUCCESS
	}
	b.GetTemperatureFunc = func(nvml.TemperatureSensors) (uint32, nvml.Return) { return 95, nvml.SUCCESS }
	var failed []string
	for _, c := range r.Diagnose(now) {
		if !c.OK {
			failed = append(failed, c.Name)
			if c.GPU != 1 {
				t.Fatalf("wrong GPU failed: %+v", c)
			}
		}
	}
	if !slices.Equal(failed, []string{"temperature", "ecc"}) {
		t.Fatalf("failed checks %v", failed)
	}
}

// TestProcessNameIsCleaned: a process may name itself anything; its name
// is reported as valid UTF-8 without control characters, or one bad name
// would stop every health report.
func TestProcessNameIsCleaned(t *testing.T) {
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Skip("no sleep binary")
	}
	link := filepath.Join(t.TempDir(), "job\xff\x1b[31m")
	if err := os.Symlink(sleep, link); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(link, "30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	var name string
	for range 100 {
		if name = processName(uint32(cmd.Process.Pid)); strings.HasPrefix(name, "job") {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !utf8.ValidString(name) || strings.ContainsFunc(name, unicode.IsControl) || !strings.HasPrefix(name, "job") {
		t.Fatalf("process name %q", name)
	}
	if got := cleanText(strings.Repeat("é", 100)); len(got) > maxText || !utf8.ValidString(got) {
		t.Fatalf("long name cut to %d bytes, valid %t", len(got), utf8.ValidString(got))
	}
}
