package simnvml

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"testing"
	"time"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
	"github.com/jonboulle/clockwork"
)

// identity lists a backend's GPU UUIDs and serials as NVML gives them.
func identity(t *testing.T, b *Backend) (uuids, serials []string) {
	t.Helper()
	n, _ := b.DeviceGetCount()
	for i := range n {
		d, _ := b.DeviceGetHandleByIndex(i)
		u, ret := d.GetUUID()
		s, ret2 := d.GetSerial()
		if ret != nvml.SUCCESS || ret2 != nvml.SUCCESS {
			t.Fatalf("GPU %d: %v %v", i, ret, ret2)
		}
		uuids, serials = append(uuids, u), append(serials, s)
	}
	return uuids, serials
}

func TestGPUsKeepTheirIdentity(t *testing.T) {
	node := func(id string, seed uint64) *Backend {
		return New(Options{GPUs: 4, Idle: true, NodeID: id, Seed: seed})
	}
	uuids, serials := identity(t, node("gpu-node-1", 0))
	tests := []struct {
		name string
		b    *Backend
		same bool
	}{
		{"same-node", node("gpu-node-1", 0), true},
		{"other-node", node("gpu-node-2", 0), false},
		{"other-seed", node("gpu-node-1", 9), false},
		{"no-node-id", node("", 0), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			u, s := identity(t, tt.b)
			if slices.Equal(u, uuids) != tt.same || slices.Equal(s, serials) != tt.same {
				t.Fatalf("UUIDs %v serials %v against %v %v: same %v", u, s, uuids, serials, tt.same)
			}
		})
	}
	uuidForm := regexp.MustCompile(`^GPU-[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`)
	for i, u := range uuids {
		if !uuidForm.MatchString(u) || len(serials[i]) != 13 || slices.Index(uuids, u) != i {
			t.Fatalf("GPU %d: UUID %q serial %q", i, u, serials[i])
		}
	}
}

func TestGPUsHaveRealisticPCIAddresses(t *testing.T) {
	b := New(Options{GPUs: 10, Idle: true})
	tests := []struct {
		gpu            int
		busID, legacy  string
		domain, busNum uint32
	}{
		{0, "00000000:18:00.0", "0000:18:00.0", 0, 0x18},
		{7, "00000000:db:00.0", "0000:db:00.0", 0, 0xdb},
		{9, "00000001:2a:00.0", "0001:2a:00.0", 1, 0x2a},
	}
	for _, tt := range tests {
		d, _ := b.DeviceGetHandleByIndex(tt.gpu)
		p, ret := d.GetPciInfo()
		if ret != nvml.SUCCESS || cString(p.BusId[:]) != tt.busID || cString(p.BusIdLegacy[:]) != tt.legacy || p.Domain != tt.domain || p.Bus != tt.busNum {
			t.Fatalf("GPU %d: %v %q %q %d %x", tt.gpu, ret, cString(p.BusId[:]), cString(p.BusIdLegacy[:]), p.Domain, p.Bus)
		}
		for _, id := range []string{tt.busID, tt.legacy} {
			if byBus, ret := b.DeviceGetHandleByPciBusId(id); ret != nvml.SUCCESS || byBus != d {
				t.Fatalf("lookup of %s: %v", id, ret)
			}
		}
	}
}

func cString(b []int8) string {
	var s []byte
	for _, c := range b {
		if c == 0 {
			break
		}
		s = append(s, byte(c))
	}
	return string(s)
}

func TestBootIDIsKeptInTheStateDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "agent", "gpu-node-1")
	start := func() *Backend {
		b := New(Options{GPUs: 2, Idle: true, NodeID: "gpu-node-1", StateDir: dir})
		if err := b.StateError(); err != nil {
			t.Fatal(err)
		}
		return b
	}
	first := start()
	boot := first.BootID()
	if !regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$`).MatchString(boot) {
		t.Fatalf("boot id %q", boot)
	}
	for _, f := range []string{bootIDFile, kernelLogFile} {
		st, err := os.Stat(filepath.Join(dir, f))
		if err != nil || st.Mode().Perm() != 0o600 {
			t.Fatalf("%s: %v %v, want mode 0600", f, st, err)
		}
	}
	if again := start(); again.BootID() != boot {
		t.Fatalf("an agent restart on the same boot has boot id %q, want %q", again.BootID(), boot)
	}

	if err := first.Reboot(); err != nil {
		t.Fatal(err)
	}
	rebooted := first.BootID()
	if rebooted == boot {
		t.Fatal("the boot id did not change on a reboot")
	}
	if again := start(); again.BootID() != rebooted {
		t.Fatalf("after the reboot a restarted agent has boot id %q, want %q", again.BootID(), rebooted)
	}
}

func TestBootIDWithoutAStateDir(t *testing.T) {
	blocked := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(blocked, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		stateDir string
		wantErr  bool
	}{
		{"none-given", "", false},
		// A state directory that is a file cannot keep the boot.
		{"not-writable", filepath.Join(blocked, "agent"), true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			start := func(seed uint64) *Backend {
				return New(Options{GPUs: 1, Idle: true, NodeID: "gpu-node-1", Seed: seed, StateDir: tt.stateDir})
			}
			b := start(0)
			if (b.StateError() != nil) != tt.wantErr {
				t.Fatalf("state error %v, want one: %v", b.StateError(), tt.wantErr)
			}
			// A boot that is not kept is this process's own: another start
			// is another boot, whose kernel log numbers its lines anew.
			boot := b.BootID()
			if boot == "" || start(0).BootID() == boot {
				t.Fatalf("boot id %q was given again to a boot that was not kept", boot)
			}
			if err := b.Reboot(); err != nil {
				t.Fatal(err)
			}
			if b.BootID() == boot {
				t.Fatal("the boot id did not change on a reboot")
			}
		})
	}
}

// TestKernelLogIsKeptForTheBoot: an agent restarted on the same boot reads
// the records the last one left, and new records go on from their
// sequence; after a reboot the sequence starts again.
func TestKernelLogIsKeptForTheBoot(t *testing.T) {
	dir := t.TempDir()
	clock := clockwork.NewFakeClock()
	start := func() *Backend {
		return New(Options{GPUs: 2, Idle: true, NodeID: "gpu-node-1", StateDir: dir, Clock: clock})
	}
	first := start()
	first.raiseXID(first.Device(1), 13, "")
	before := readAll(t, first.KernelLog())

	second := start()
	r := second.KernelLog()
	defer r.Close()
	if got := readN(t, r, len(before)); !slices.Equal(got, before) {
		t.Fatalf("a restarted agent reads %q, want %q", got, before)
	}
	clock.Advance(3 * time.Second)
	second.raiseXID(second.Device(0), 31, "")
	next := parseKmsg(t, readN(t, r, 1)[0])
	if last := parseKmsg(t, before[len(before)-1]); next.seq != last.seq+1 || next.usec < last.usec {
		t.Fatalf("record %+v after %+v", next, last)
	}

	if err := second.Reboot(); err != nil {
		t.Fatal(err)
	}
	after := readAll(t, start().KernelLog())
	if len(after) == 0 || parseKmsg(t, after[0]).seq != 0 || slices.ContainsFunc(after, func(l string) bool { return parseKmsg(t, l).xid != 0 }) {
		t.Fatalf("the log after a reboot: %q", after)
	}
}
