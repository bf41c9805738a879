//go:build nvml

// These tests read the machine's real NVIDIA driver through NVML, so they
// build only with the nvml tag: `go tool task test-gpu` on a machine with
// GPUs. They only read: no GPU is reset, reconfigured or given work.

package gpu

import (
	"context"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
)

// pciBusID is NVML's bus id: domain, bus, device and function in hex.
var pciBusID = regexp.MustCompile(`^[0-9A-Fa-f]{4,8}:[0-9A-Fa-f]{2}:[0-9A-Fa-f]{2}\.[0-7]$`)

func openRealDriver(t *testing.T) *Reader {
	t.Helper()
	r, err := Open(nvml.New())
	if err != nil {
		t.Fatalf("opening the driver: %v", err)
	}
	t.Cleanup(r.Close)
	if r.Count() == 0 {
		t.Fatal("NVML answers but counts no GPU")
	}
	if len(r.Absent()) > 0 {
		t.Fatalf("GPUs that did not answer: %+v", r.Absent())
	}
	return r
}

// TestRealDriverInventory: what a node registers with, as the driver
// gives it.
func TestRealDriverInventory(t *testing.T) {
	r := openRealDriver(t)
	inv, err := r.Inventory()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("driver %s, CUDA %s, %d GPUs", inv.DriverVersion, inv.CUDAVersion, len(inv.GPUs))
	if !regexp.MustCompile(`^\d+\.\d+`).MatchString(inv.DriverVersion) {
		t.Errorf("driver version %q", inv.DriverVersion)
	}
	if !regexp.MustCompile(`^\d+\.\d+$`).MatchString(inv.CUDAVersion) {
		t.Errorf("CUDA version %q", inv.CUDAVersion)
	}
	seen := map[string]bool{}
	for _, g := range inv.GPUs {
		t.Logf("GPU %d: %s uuid %s serial %q bus %s, %d MiB, slowdown %d°C, memory max %d°C, power limit %d W, %d NVLink links",
			g.GetIndex(), g.GetName(), g.GetUuid(), g.GetSerial(), g.GetPciBusId(), g.GetMemoryTotalBytes()>>20,
			g.GetSlowdownTemperatureCelsius(), g.GetMemoryMaxTemperatureCelsius(), g.GetPowerLimitMilliwatts()/1000, g.GetNvlinkCount())
		if !strings.HasPrefix(g.GetUuid(), "GPU-") || seen[g.GetUuid()] {
			t.Errorf("GPU %d: uuid %q is not a fresh GPU- uuid", g.GetIndex(), g.GetUuid())
		}
		seen[g.GetUuid()] = true
		if g.GetName() == "" {
			t.Errorf("GPU %d: no name", g.GetIndex())
		}
		if !pciBusID.MatchString(g.GetPciBusId()) {
			t.Errorf("GPU %d: PCI bus id %q", g.GetIndex(), g.GetPciBusId())
		}
		if g.GetMemoryTotalBytes() < 1<<30 {
			t.Errorf("GPU %d: memory %d bytes", g.GetIndex(), g.GetMemoryTotalBytes())
		}
		if g.GetPowerLimitMilliwatts() == 0 {
			t.Errorf("GPU %d: no power limit", g.GetIndex())
		}
		if g.GetSlowdownTemperatureCelsius() == 0 {
			t.Errorf("GPU %d: no slowdown temperature", g.GetIndex())
		}
	}
}

// TestRealDriverReadings: two passes a second apart read every group the
// driver supports, with values a working GPU can have, and name the groups
// it does not support rather than reporting zeros.
func TestRealDriverReadings(t *testing.T) {
	r := openRealDriver(t)
	inv, err := r.Inventory()
	if err != nil {
		t.Fatal(err)
	}
	r.Read(time.Now())
	time.Sleep(time.Second)
	for i, rd := range r.Read(time.Now()) {
		m := rd.Metrics
		if rd.Lost {
			t.Fatalf("GPU %d read as lost: %s", m.GetGpuIndex(), rd.LostReason)
		}
		t.Logf("GPU %d: %d°C (memory %d°C), %d mW, util %d%%/%d%%, %d MiB used, SM %d MHz, memory %d MHz, clock events %#x, PCIe gen %d x%d, %d replays (%d/min), ECC %+v, row remap %+v, retired %+v, recovery %v, %d links, %d processes; unsupported %v",
			m.GetGpuIndex(), m.GetTemperatureCelsius(), m.GetMemoryTemperatureCelsius(), m.GetPowerUsageMilliwatts(),
			m.GetUtilizationGpuPercent(), m.GetUtilizationMemoryPercent(), m.GetMemoryUsedBytes()>>20, m.GetSmClockMhz(),
			m.GetMemoryClockMhz(), m.GetClockEventReasons(), m.GetPcieLinkGeneration(), m.GetPcieLinkWidth(),
			m.GetPcieReplayCount(), m.GetPcieReplaysPerMinute(), m.GetEcc(), m.GetRowRemap(), m.GetRetiredPages(),
			m.GetRecoveryAction(), len(m.GetNvlinks()), len(m.GetProcesses()), m.GetUnsupported())
		supported := func(g string) bool { return !slices.Contains(m.GetUnsupported(), g) }
		if supported(GroupTemperature) && (m.GetTemperatureCelsius() < 5 || m.GetTemperatureCelsius() > 110) {
			t.Errorf("GPU %d: temperature %d°C", m.GetGpuIndex(), m.GetTemperatureCelsius())
		}
		if supported(GroupPower) && m.GetPowerUsageMilliwatts() == 0 {
			t.Errorf("GPU %d: draws no power", m.GetGpuIndex())
		}
		if m.GetSmClockMhz() == 0 || m.GetMemoryClockMhz() == 0 {
			t.Errorf("GPU %d: clocks %d/%d MHz", m.GetGpuIndex(), m.GetSmClockMhz(), m.GetMemoryClockMhz())
		}
		if g := m.GetPcieLinkGeneration(); g < 1 || g > 6 {
			t.Errorf("GPU %d: PCIe generation %d", m.GetGpuIndex(), g)
		}
		if w := m.GetPcieLinkWidth(); w < 1 || w > 32 {
			t.Errorf("GPU %d: PCIe width %d", m.GetGpuIndex(), w)
		}
		if got, want := len(m.GetNvlinks()), int(inv.GPUs[i].GetNvlinkCount()); got != want {
			t.Errorf("GPU %d: %d NVLink readings for %d links in the inventory", m.GetGpuIndex(), got, want)
		}
	}
}

// TestRealDriverDiagnose: the self-check a DIAGNOSE command runs passes
// on a working GPU.
func TestRealDriverDiagnose(t *testing.T) {
	r := openRealDriver(t)
	checks := r.Diagnose(time.Now())
	if len(checks) == 0 {
		t.Fatal("no checks")
	}
	for _, c := range checks {
		t.Logf("GPU %d %s: ok=%t %s", c.GPU, c.Name, c.OK, c.Detail)
		if !c.OK {
			t.Errorf("GPU %d: %s failed: %s", c.GPU, c.Name, c.Detail)
		}
	}
}

// TestRealDriverProcessesAndXIDWatch: the process list answers, and every
// GPU registers for XID events; the watch ends with its context.
func TestRealDriverProcessesAndXIDWatch(t *testing.T) {
	r := openRealDriver(t)
	procs, err := r.Processes()
	if err != nil {
		t.Fatalf("processes: %v", err)
	}
	t.Logf("%d compute processes", len(procs))
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	var skipped []string
	err = r.WatchXIDs(ctx, make(chan XIDEvent, 16), func(gpu int, err error) {
		skipped = append(skipped, err.Error())
	}, time.Now)
	if err != nil {
		t.Fatalf("XID watch: %v", err)
	}
	if len(skipped) > 0 {
		t.Fatalf("GPUs not registered for XIDs: %v", skipped)
	}
}

// BenchmarkRealDriverRead times one metrics pass over every GPU, the
// agent's poll, against the real driver.
func BenchmarkRealDriverRead(b *testing.B) {
	r, err := Open(nvml.New())
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	b.ReportAllocs()
	for b.Loop() {
		r.Read(time.Now())
	}
	b.ReportMetric(float64(r.Count()), "GPUs")
}
