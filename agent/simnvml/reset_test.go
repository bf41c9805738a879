package simnvml

import (
	"errors"
	"os/exec"
	"testing"

	"github.com/NVIDIA/go-nvml/pkg/nvml"

	"github.com/navarch/navarch/internal/faultspec"
)

// gpuState is what a reset or a reboot may clear, read through NVML.
type gpuState struct {
	uuid                string
	volatileUnc, aggUnc uint64
	remapPending        bool
	remapUnc            int
	retired             int
	retiredPending      bool
	recovery            uint32
	reasons             uint64
	replays             int
	crc                 uint64
	linkUp              bool
	lost                bool
}

func readState(t *testing.T, d *Device) gpuState {
	t.Helper()
	var s gpuState
	var ret nvml.Return
	if s.uuid, ret = d.GetUUID(); ret == nvml.ERROR_GPU_IS_LOST {
		return gpuState{lost: true}
	}
	s.volatileUnc, _ = d.GetTotalEccErrors(nvml.MEMORY_ERROR_TYPE_UNCORRECTED, nvml.VOLATILE_ECC)
	s.aggUnc, _ = d.GetTotalEccErrors(nvml.MEMORY_ERROR_TYPE_UNCORRECTED, nvml.AGGREGATE_ECC)
	_, s.remapUnc, s.remapPending, _, _ = d.GetRemappedRows()
	pages, _ := d.GetRetiredPages(nvml.PAGE_RETIREMENT_CAUSE_DOUBLE_BIT_ECC_ERROR)
	s.retired = len(pages)
	pending, _ := d.GetRetiredPagesPendingStatus()
	s.retiredPending = pending == nvml.FEATURE_ENABLED
	s.recovery, _ = fields(t, d)
	r, _ := d.GetCurrentClocksEventReasons()
	s.reasons = r &^ nvml.ClocksEventReasonGpuIdle
	s.replays, _ = d.GetPcieReplayCounter()
	s.crc, _ = d.GetNvLinkErrorCounter(0, nvml.NVLINK_ERROR_DL_CRC_FLIT)
	up, _ := d.GetNvLinkState(0)
	s.linkUp = up == nvml.FEATURE_ENABLED
	return s
}

// faulty injects the faults a reset or a reboot is judged on.
func faulty(b *Backend) {
	for _, f := range []faultspec.Spec{
		{Kind: faultspec.ECCDBE},
		{Kind: faultspec.RowRemapPending},
		{Kind: faultspec.RetiredDBE, Value: 2},
		{Kind: faultspec.Recovery, Value: uint32(nvml.GPU_RECOVERY_ACTION_GPU_RESET)},
		{Kind: faultspec.PowerBrake},
		{Kind: faultspec.PCIeReplays, Value: 30},
		{Kind: faultspec.NVLinkCRC, Value: 12},
		{Kind: faultspec.NVLinkDown},
	} {
		b.Inject(f)
	}
}

func TestResetGPU(t *testing.T) {
	b := New(Options{GPUs: 2, Idle: true, NodeID: "gpu-node-1"})
	d := b.Device(0)
	faulty(b)
	before := readState(t, d)
	if err := b.ResetGPU(0); err != nil {
		t.Fatal(err)
	}
	got := readState(t, d)
	want := gpuState{
		uuid: before.uuid, aggUnc: 1, remapUnc: 1, retired: 2,
		replays: 30, crc: 12,
	}
	if got != want {
		t.Fatalf("after a reset\n got %+v\nwant %+v\n(before %+v)", got, want, before)
	}
}

func TestResetGPURefuses(t *testing.T) {
	b := New(Options{GPUs: 2, Idle: true})
	cmd := exec.Command("sleep", "30")
	if err := cmd.Start(); err != nil {
		t.Skip("no sleep program to stand in for a job:", err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill() })
	b.Device(0).AttachProcess(uint32(cmd.Process.Pid))
	b.Inject(faultspec.Spec{Kind: faultspec.XID, Value: 79, GPU: 1})
	tests := []struct {
		name string
		gpu  int
		want error
	}{
		{"in-use", 0, ErrGPUInUse},
		{"lost", 1, ErrGPULost},
		{"no-such-gpu", 2, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := b.ResetGPU(tt.gpu)
			if err == nil || (tt.want != nil && !errors.Is(err, tt.want)) {
				t.Fatalf("reset: %v, want %v", err, tt.want)
			}
		})
	}
	if err := b.ResetGPU(1); err.Error() != "reset GPU 1: GPU is lost; reboot the node" {
		t.Fatalf("reset of a lost GPU says %q", err)
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	if err := b.ResetGPU(0); err != nil {
		t.Fatalf("reset once the process ended: %v", err)
	}
}

func TestReboot(t *testing.T) {
	b := New(Options{GPUs: 2, Idle: true, NodeID: "gpu-node-1", StateDir: t.TempDir()})
	faulty(b)
	b.Inject(faultspec.Spec{Kind: faultspec.Temp, Value: 97, GPU: 0})
	b.Inject(faultspec.Spec{Kind: faultspec.XID, Value: 79, GPU: 1})
	uuids, _ := identity(t, New(Options{GPUs: 2, Idle: true, NodeID: "gpu-node-1"}))
	if !readState(t, b.Device(1)).lost {
		t.Fatal("GPU 1 is not lost")
	}
	if err := b.Reboot(); err != nil {
		t.Fatal(err)
	}
	want := []gpuState{
		{uuid: uuids[0], aggUnc: 1, remapUnc: 1, retired: 2, linkUp: true},
		{uuid: uuids[1], linkUp: true},
	}
	for i, w := range want {
		if got := readState(t, b.Device(i)); got != w {
			t.Fatalf("GPU %d after a reboot\n got %+v\nwant %+v", i, got, w)
		}
	}
	if tc, _ := b.Device(0).GetTemperature(nvml.TEMPERATURE_GPU); tc >= slowdownTemp {
		t.Fatalf("the forced temperature outlived the reboot: %d°C", tc)
	}
}
