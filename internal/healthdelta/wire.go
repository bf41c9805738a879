package healthdelta

import (
	"google.golang.org/protobuf/encoding/protowire"

	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
)

// GpuMetrics' scalar fields by number, as fleet.proto numbers them, and
// Timestamp's.
const (
	fieldGpuIndex                 = 1
	fieldTime                     = 2
	fieldTemperatureCelsius       = 3
	fieldPowerUsageMilliwatts     = 4
	fieldUtilizationGpuPercent    = 5
	fieldUtilizationMemoryPercent = 6
	fieldMemoryUsedBytes          = 7
	fieldSmClockMhz               = 8
	fieldMemoryClockMhz           = 9
	fieldClockEventReasons        = 10
	fieldPcieReplayCount          = 15
	fieldMemoryTemperatureCelsius = 18
	fieldPcieLinkGeneration       = 19
	fieldPcieLinkWidth            = 20
	fieldPcieReplaysPerMinute     = 21
	fieldHwSlowdownSeconds        = 22
	fieldPowerBrakeSeconds        = 23
	fieldRecoveryAction           = 24

	fieldSeconds = 1
	fieldNanos   = 2
)

// appendScalars appends a length and the encoding of m's scalar fields,
// byte for byte what proto.Marshal gives for scalarsOf(m): the snapshot a
// control plane holds is re-encoded with every report, and protobuf's
// reflective size and marshal passes were a tenth of the control plane's
// CPU at 100 000 nodes. TestScalarEncodingIsProtobufs keeps it whole.
func appendScalars(b []byte, m *fleetv1.GpuMetrics) []byte {
	var buf [160]byte
	e := buf[:0]
	e = appendUint(e, fieldGpuIndex, uint64(m.GetGpuIndex()))
	if t := m.GetTime(); t != nil {
		var tb [24]byte
		te := appendUint(tb[:0], fieldSeconds, uint64(t.GetSeconds()))
		te = appendUint(te, fieldNanos, uint64(int64(t.GetNanos())))
		e = protowire.AppendTag(e, fieldTime, protowire.BytesType)
		e = protowire.AppendBytes(e, te)
	}
	e = appendUint(e, fieldTemperatureCelsius, uint64(m.GetTemperatureCelsius()))
	e = appendUint(e, fieldPowerUsageMilliwatts, uint64(m.GetPowerUsageMilliwatts()))
	e = appendUint(e, fieldUtilizationGpuPercent, uint64(m.GetUtilizationGpuPercent()))
	e = appendUint(e, fieldUtilizationMemoryPercent, uint64(m.GetUtilizationMemoryPercent()))
	e = appendUint(e, fieldMemoryUsedBytes, m.GetMemoryUsedBytes())
	e = appendUint(e, fieldSmClockMhz, uint64(m.GetSmClockMhz()))
	e = appendUint(e, fieldMemoryClockMhz, uint64(m.GetMemoryClockMhz()))
	e = appendUint(e, fieldClockEventReasons, m.GetClockEventReasons())
	e = appendUint(e, fieldPcieReplayCount, m.GetPcieReplayCount())
	e = appendUint(e, fieldMemoryTemperatureCelsius, uint64(m.GetMemoryTemperatureCelsius()))
	e = appendUint(e, fieldPcieLinkGeneration, uint64(m.GetPcieLinkGeneration()))
	e = appendUint(e, fieldPcieLinkWidth, uint64(m.GetPcieLinkWidth()))
	e = appendUint(e, fieldPcieReplaysPerMinute, uint64(m.GetPcieReplaysPerMinute()))
	e = appendUint(e, fieldHwSlowdownSeconds, uint64(m.GetHwSlowdownSeconds()))
	e = appendUint(e, fieldPowerBrakeSeconds, uint64(m.GetPowerBrakeSeconds()))
	e = appendUint(e, fieldRecoveryAction, uint64(int64(m.GetRecoveryAction())))
	return protowire.AppendBytes(b, e)
}

// appendUint appends a varint field unless it is zero, as proto3 does.
func appendUint(b []byte, field protowire.Number, v uint64) []byte {
	if v == 0 {
		return b
	}
	b = protowire.AppendTag(b, field, protowire.VarintType)
	return protowire.AppendVarint(b, v)
}

// The parts' equality, field by field: Diff compares every part of every
// GPU with each report, where protobuf's reflective Equal was most of an
// agent's (and the fleet simulator's) work for one.
// TestPartEqualityComparesEveryField keeps each whole.

func equalECC(a, b *fleetv1.EccCounts) bool {
	return (a == nil) == (b == nil) &&
		a.GetVolatileCorrected() == b.GetVolatileCorrected() && a.GetVolatileUncorrected() == b.GetVolatileUncorrected() &&
		a.GetAggregateCorrected() == b.GetAggregateCorrected() && a.GetAggregateUncorrected() == b.GetAggregateUncorrected()
}

func equalRowRemap(a, b *fleetv1.RowRemapState) bool {
	return (a == nil) == (b == nil) &&
		a.GetCorrectedRows() == b.GetCorrectedRows() && a.GetUncorrectedRows() == b.GetUncorrectedRows() &&
		a.GetPending() == b.GetPending() && a.GetFailure() == b.GetFailure()
}

func equalRetiredPages(a, b *fleetv1.RetiredPages) bool {
	return (a == nil) == (b == nil) &&
		a.GetSingleBit() == b.GetSingleBit() && a.GetDoubleBit() == b.GetDoubleBit() &&
		a.GetPending() == b.GetPending() && a.GetDoubleBitLastWeek() == b.GetDoubleBitLastWeek()
}

func equalLink(a, b *fleetv1.NvLinkState) bool {
	return (a == nil) == (b == nil) &&
		a.GetLink() == b.GetLink() && a.GetActive() == b.GetActive() && a.GetReplayErrors() == b.GetReplayErrors() &&
		a.GetRecoveryErrors() == b.GetRecoveryErrors() && a.GetCrcErrors() == b.GetCrcErrors()
}

func equalProcess(a, b *fleetv1.GpuProcess) bool {
	return (a == nil) == (b == nil) &&
		a.GetPid() == b.GetPid() && a.GetUsedMemoryBytes() == b.GetUsedMemoryBytes() && a.GetName() == b.GetName()
}
