package kmsg

import (
	"fmt"
	"strconv"
	"strings"
	"time"
)

// XID is one XID line of the NVIDIA driver.
type XID struct {
	// Seq is the kernel's sequence number for the line, unique within a
	// boot.
	Seq uint64
	// Time is when the kernel logged the line.
	Time time.Time
	// Bus is the GPU's PCI bus id.
	Bus BusID
	// Code is the XID.
	Code uint32
	// Text is what the driver wrote after the code, such as
	// "pid='<unknown>', name=<unknown>, GPU has fallen off the bus.".
	Text string
}

// xidMark starts the driver's XID lines: "NVRM: Xid (PCI:0000:3b:00):
// 79, …" today, "NVRM: Xid (0000:03:00): 14, …" or "NVRM: Xid (0003:00):
// 8, …" from older drivers. On a MIG GPU the parenthesis also names the
// instances: "(PCI:0000:01:00 GPU-I:05 GPU-CI:00)".
const xidMark = "NVRM: Xid ("

// ParseXID reads the driver's XID line from a record's text, leaving Seq
// and Time to the caller.
func ParseXID(text string) (XID, bool) {
	_, after, ok := strings.Cut(text, xidMark)
	if !ok {
		return XID{}, false
	}
	where, after, ok := strings.Cut(after, "): ")
	if !ok {
		return XID{}, false
	}
	id, _, _ := strings.Cut(where, " ")
	bus, ok := ParseBusID(id)
	if !ok {
		return XID{}, false
	}
	digits := after
	if i := strings.IndexFunc(after, func(r rune) bool { return r < '0' || r > '9' }); i >= 0 {
		digits = after[:i]
	}
	code, err := strconv.ParseUint(digits, 10, 32)
	if err != nil {
		return XID{}, false
	}
	rest := after[len(digits):]
	if rest != "" && !strings.HasPrefix(rest, ",") {
		return XID{}, false
	}
	return XID{Bus: bus, Code: uint32(code), Text: strings.TrimSpace(strings.TrimPrefix(rest, ","))}, true
}

// BusID is a PCI bus id: domain, bus and device. The function is left
// out: a GPU is function 0, and the driver's XID lines do not name it.
type BusID struct {
	Domain uint32
	Bus    uint8
	Device uint8
}

// ParseBusID reads a PCI bus id as the driver's XID lines write it
// ("PCI:0000:3b:00", "0000:03:00", "0003:00") or as NVML does
// ("00000000:3B:00.0"), in either case.
func ParseBusID(s string) (BusID, bool) {
	if len(s) > 4 && strings.EqualFold(s[:4], "PCI:") {
		s = s[4:]
	}
	if dev, fn, ok := strings.Cut(s, "."); ok {
		if len(fn) != 1 || fn[0] < '0' || fn[0] > '7' {
			return BusID{}, false
		}
		s = dev
	}
	parts := strings.Split(s, ":")
	if len(parts) == 2 {
		parts = append([]string{"0"}, parts...)
	}
	if len(parts) != 3 {
		return BusID{}, false
	}
	domain, err1 := strconv.ParseUint(parts[0], 16, 32)
	bus, err2 := strconv.ParseUint(parts[1], 16, 8)
	dev, err3 := strconv.ParseUint(parts[2], 16, 8)
	if err1 != nil || err2 != nil || err3 != nil {
		return BusID{}, false
	}
	return BusID{Domain: uint32(domain), Bus: uint8(bus), Device: uint8(dev)}, true
}

// String writes the bus id as NVML and nvidia-smi do, "00000000:3B:00.0".
func (b BusID) String() string {
	return fmt.Sprintf("%08X:%02X:%02X.0", b.Domain, b.Bus, b.Device)
}
