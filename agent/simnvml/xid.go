package simnvml

import (
	"fmt"
	"os"
	"regexp"
	"strconv"
	"strings"

	"github.com/NVIDIA/go-nvml/pkg/nvml"
)

// xidDescriptions are the XID catalog's descriptions of the XIDs the
// simulation raises, the text an XID gets when its fault names none.
var xidDescriptions = map[uint32]string{
	13:  "Graphics Engine Exception",
	31:  "GPU memory page fault",
	32:  "Invalid or corrupted push buffer stream",
	43:  "GPU stopped processing",
	45:  "Preemptive cleanup, due to previous errors",
	48:  "Double Bit ECC Error",
	63:  "ECC page retirement or row remapping recording event",
	64:  "ECC page retirement or row remapper recording failure",
	74:  "NVLINK Error",
	79:  "GPU has fallen off the bus.",
	92:  "High single-bit ECC error rate",
	94:  "Contained ECC error",
	95:  "Uncontained ECC error",
	109: "Context Switch Timeout Error",
	119: "GSP RPC Timeout",
	140: "ECC Unrecovered Error",
	144: "NVLINK: SAW Error",
	145: "NVLINK: RLW Error",
	146: "NVLINK: TLW Error",
	147: "NVLINK: TREX Error",
	148: "NVLINK: NVLPW_CTRL Error",
	149: "NVLINK: NETIR Error",
	150: "NVLINK: MSE Error",
	154: "GPU Recovery Action Changed",
}

// noProcessXIDs are the XIDs the driver writes without the process that
// ran into them ("pid=..., name=..."): its own firmware's and the NVLink5
// errors, and the recovery action's changes.
var noProcessXIDs = map[uint32]bool{62: true, 120: true, 144: true, 145: true, 146: true, 147: true, 148: true, 149: true, 150: true, 154: true}

// recoveryWords are the driver's words for each recovery action in an
// XID 154 line.
var recoveryWords = map[nvml.DeviceGpuRecoveryAction]string{
	nvml.GPU_RECOVERY_ACTION_NONE:            "None",
	nvml.GPU_RECOVERY_ACTION_GPU_RESET:       "GPU Reset Required",
	nvml.GPU_RECOVERY_ACTION_NODE_REBOOT:     "Node Reboot Required",
	nvml.GPU_RECOVERY_ACTION_DRAIN_P2P:       "Drain P2P",
	nvml.GPU_RECOVERY_ACTION_DRAIN_AND_RESET: "Drain and Reset",
}

// recoveryText is an XID 154's text for a change of recovery action.
func recoveryText(from, to nvml.DeviceGpuRecoveryAction) string {
	return fmt.Sprintf("GPU recovery action changed from 0x%x (%s) to 0x%x (%s)", from, recoveryWords[from], to, recoveryWords[to])
}

// recoveryChangedTo finds the action an XID 154's text changes to.
var recoveryChangedTo = regexp.MustCompile(`\bto 0x([0-9a-fA-F]+)\b`)

// raiseXID raises XID code on d as the driver does: a line in the kernel
// log with the GPU's bus id and, for an XID that happens to a process, the
// process on the GPU; then the NVML event. An XID 79 takes the GPU off the
// bus, and its job dies with it; an XID 154 whose text names the new
// recovery action sets it, as the driver does both together. A GPU off the
// bus raises nothing more.
func (b *Backend) raiseXID(d *Device, code uint32, text string) {
	if text == "" {
		text = xidDescriptions[code]
		if text == "" {
			text = "Simulated error"
		}
	}
	d.mu.Lock()
	if d.lost {
		d.mu.Unlock()
		return
	}
	line := fmt.Sprintf("NVRM: Xid (PCI:%s): %d, ", kernelBusID(d.index), code)
	if !noProcessXIDs[code] {
		line += processContext(d.livePIDs())
	}
	line += text
	switch code {
	case 79:
		d.lost = true
		d.stopJob()
	case 154:
		if m := recoveryChangedTo.FindStringSubmatch(text); m != nil {
			if v, err := strconv.ParseUint(m[1], 16, 31); err == nil {
				d.recovery = nvml.DeviceGpuRecoveryAction(v)
			}
		}
	}
	d.mu.Unlock()
	now := b.clock.Now()
	b.klog.write(now, kernWarning, line)
	if code == 79 {
		domain, bus := pciAddress(d.index)
		b.klog.write(now, kernWarning, fmt.Sprintf("NVRM: GPU %04x:%02x:00.0: GPU has fallen off the bus.", domain, bus))
	}
	b.emitXID(d, uint64(code))
}

// processContext names the first process on the GPU as the driver does,
// "pid=1234, name=python, ", or says it does not know one.
func processContext(pids []uint32) string {
	if len(pids) == 0 {
		return "pid='<unknown>', name=<unknown>, "
	}
	name := "<unknown>"
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/comm", pids[0])); err == nil {
		name = strings.TrimSpace(string(b))
	}
	return fmt.Sprintf("pid=%d, name=%s, ", pids[0], name)
}

// setRecovery changes d's recovery action and, when it changed, raises the
// XID 154 the driver raises with it.
func (b *Backend) setRecovery(d *Device, to nvml.DeviceGpuRecoveryAction) {
	d.mu.Lock()
	from := d.recovery
	d.mu.Unlock()
	if from != to {
		b.raiseXID(d, 154, recoveryText(from, to))
	}
}
