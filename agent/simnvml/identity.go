package simnvml

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/binary"
	"fmt"
)

// A simulated node's GPUs keep their identity across agent restarts, as
// real ones do: UUIDs and serials are derived from the node id, the
// identity seed and the GPU's index, never from the workload's randomness.

// identityHash derives the bytes of one named thing of a node.
func identityHash(node string, seed uint64, what string, n int) [sha256.Size]byte {
	return sha256.Sum256(fmt.Appendf(nil, "navarch-sim\x00%s\x00%d\x00%s\x00%d", node, seed, what, n))
}

// uuidText writes 16 bytes in the 8-4-4-4-12 form of UUIDs and boot ids.
func uuidText(b []byte) string {
	return fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16])
}

func gpuUUID(node string, seed uint64, i int) string {
	h := identityHash(node, seed, "gpu", i)
	return "GPU-" + uuidText(h[:16])
}

// gpuSerial is a 13-digit board serial, as H100 boards carry.
func gpuSerial(node string, seed uint64, i int) string {
	h := identityHash(node, seed, "serial", i)
	return fmt.Sprintf("1654322%06d", binary.BigEndian.Uint64(h[:8])%1_000_000)
}

func randomBootID() string {
	b := make([]byte, 16)
	_, _ = rand.Read(b)
	return uuidText(b)
}

// busNumbers are the PCI buses of a DGX H100's eight GPUs; a node with more
// GPUs repeats them in further PCI domains.
var busNumbers = [8]uint32{0x18, 0x2a, 0x3a, 0x5d, 0x9a, 0xab, 0xba, 0xdb}

// pciAddress is GPU i's PCI domain and bus.
func pciAddress(i int) (domain, bus uint32) {
	return uint32(i / len(busNumbers)), busNumbers[i%len(busNumbers)]
}

// nvmlBusID is the bus id as NVML writes it, "00000000:18:00.0".
func nvmlBusID(i int) string {
	domain, bus := pciAddress(i)
	return fmt.Sprintf("%08x:%02x:00.0", domain, bus)
}

// kernelBusID is the bus id as the driver writes it in the kernel log,
// "0000:18:00".
func kernelBusID(i int) string {
	domain, bus := pciAddress(i)
	return fmt.Sprintf("%04x:%02x:00", domain, bus)
}
