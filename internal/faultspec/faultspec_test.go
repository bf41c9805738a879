package faultspec

import (
	"strings"
	"testing"
	"time"
)

func TestParse(t *testing.T) {
	rows := []struct {
		in   string
		want Spec
	}{
		{"xid=79@gpu2+3s", Spec{Kind: XID, Value: 79, GPU: 2, Delay: 3 * time.Second}},
		{"xid=13@gpu0+1s", Spec{Kind: XID, Value: 13, GPU: 0, Delay: time.Second}},
		{"temp=97@gpu0+1s", Spec{Kind: Temp, Value: 97, GPU: 0, Delay: time.Second}},
		{"ecc-dbe@gpu1+2s", Spec{Kind: ECCDBE, GPU: 1, Delay: 2 * time.Second}},
		{"row-remap-pending@gpu4+2s", Spec{Kind: RowRemapPending, GPU: 4, Delay: 2 * time.Second}},
		{"row-remap-failure@gpu4", Spec{Kind: RowRemapFailure, GPU: 4}},
		{"nvlink-down@gpu3+2s", Spec{Kind: NVLinkDown, GPU: 3, Delay: 2 * time.Second}},
		{"gpu-lost@gpu5+4s", Spec{Kind: GPULost, GPU: 5, Delay: 4 * time.Second}},
		{"gpu-lost@gpu63+1m30s", Spec{Kind: GPULost, GPU: 63, Delay: 90 * time.Second}},
		{"xid=149:NETIR_LINK_EVT Fatal XC0 i0 Link 02 (0x004505c6 0x00000000 0x00000000 0x00000000 0x00000000 0x00000000)@gpu1+2s",
			Spec{Kind: XID, Value: 149, Text: "NETIR_LINK_EVT Fatal XC0 i0 Link 02 (0x004505c6 0x00000000 0x00000000 0x00000000 0x00000000 0x00000000)", GPU: 1, Delay: 2 * time.Second}},
		{"xid=154:GPU recovery action changed from 0x0 (None) to 0x1 (GPU Reset Required)@gpu3",
			Spec{Kind: XID, Value: 154, Text: "GPU recovery action changed from 0x0 (None) to 0x1 (GPU Reset Required)", GPU: 3}},
		{"xid=13:odd text with @, + and a colon: here@gpu0+1s", Spec{Kind: XID, Value: 13, Text: "odd text with @, + and a colon: here", GPU: 0, Delay: time.Second}},
		{"temp=97@gpu0+1s,for=2m", Spec{Kind: Temp, Value: 97, GPU: 0, Delay: time.Second, Hold: 2 * time.Minute}},
		{"mem-temp=99@gpu2", Spec{Kind: MemTemp, Value: 99, GPU: 2}},
		{"nvlink-crc=40@gpu1", Spec{Kind: NVLinkCRC, Value: 40, GPU: 1}},
		{"nvlink-crc=40:link7@gpu1+5s", Spec{Kind: NVLinkCRC, Value: 40, Link: 7, GPU: 1, Delay: 5 * time.Second}},
		{"pcie-replays=500@gpu0", Spec{Kind: PCIeReplays, Value: 500, GPU: 0}},
		{"pcie-replays=40/min@gpu0+10s,for=5m", Spec{Kind: PCIeReplays, Value: 40, PerMinute: true, GPU: 0, Delay: 10 * time.Second, Hold: 5 * time.Minute}},
		{"retired-sbe=60@gpu4", Spec{Kind: RetiredSBE, Value: 60, GPU: 4}},
		{"retired-dbe=16@gpu4+1s", Spec{Kind: RetiredDBE, Value: 16, GPU: 4, Delay: time.Second}},
		{"power-brake@gpu6+3s", Spec{Kind: PowerBrake, GPU: 6, Delay: 3 * time.Second}},
		{"hw-slowdown@gpu6,for=90s", Spec{Kind: HWSlowdown, GPU: 6, Hold: 90 * time.Second}},
		{"recovery=none@gpu0", Spec{Kind: Recovery, Value: 0, GPU: 0}},
		{"recovery=reset@gpu0", Spec{Kind: Recovery, Value: 1, GPU: 0}},
		{"recovery=reboot@gpu0", Spec{Kind: Recovery, Value: 2, GPU: 0}},
		{"recovery=drain-p2p@gpu0", Spec{Kind: Recovery, Value: 3, GPU: 0}},
		{"recovery=drain-and-reset@gpu0+4s", Spec{Kind: Recovery, Value: 4, GPU: 0, Delay: 4 * time.Second}},
	}
	seen := map[Kind]bool{}
	for _, row := range rows {
		seen[row.want.Kind] = true
		got, err := Parse(row.in)
		if err != nil {
			t.Fatalf("%s: %v", row.in, err)
		}
		if got != row.want {
			t.Fatalf("%s: %+v, want %+v", row.in, got, row.want)
		}
		if again, _ := Parse(got.String()); again != got {
			t.Fatalf("%s does not round-trip: %s", row.in, got.String())
		}
	}
	for _, k := range Kinds {
		if !seen[k] {
			t.Errorf("no row parses kind %s", k)
		}
		if !strings.Contains(Grammar, string(k)) {
			t.Errorf("the grammar does not name kind %s", k)
		}
	}
}

func TestParseErrorsShowTheGrammar(t *testing.T) {
	rows := []struct{ in, why string }{
		{"xid=79", "missing '@gpuN'"},
		{"xid@gpu1", "needs a value"},
		{"xid=abc@gpu1", "not a positive whole number"},
		{"xid=0@gpu1", "not a positive whole number"},
		{"temp=500@gpu0", "above 200"},
		{"ecc-dbe=3@gpu0", "takes no value"},
		{"meltdown@gpu0", `unknown kind "meltdown"`},
		{"xid=79@cpu0", `"cpu0" is not gpuN`},
		{"xid=79@gpu64", "not within 0–63"},
		{"xid=79@gpu-1", "not within 0–63"},
		{"xid=79@gpu1+soon", `delay "soon"`},
		{"xid=79@gpu1+-3s", `delay "-3s"`},
		{"xid=154:@gpu1", "text after ':' is empty"},
		{"xid=154:two\nlines@gpu1", "one line of printable text"},
		{"xid=154:" + strings.Repeat("x", MaxTextSize+1) + "@gpu1", "the limit is 512"},
		{"xid=abc:text@gpu1", `"abc" is not a positive whole number`},
		{"mem-temp=201@gpu0", "above 200"},
		{"nvlink-crc@gpu0", "nvlink-crc needs a value"},
		{"nvlink-crc=40:3@gpu0", `"3" is not linkL`},
		{"nvlink-crc=40:link64@gpu0", `"link64" is not linkL`},
		{"pcie-replays=0/min@gpu0", "not a positive whole number"},
		{"pcie-replays=40/s@gpu0", `"40/s" is not a positive whole number`},
		{"retired-dbe=100001@gpu0", "above 100000"},
		{"power-brake=1@gpu0", "takes no value"},
		{"recovery=panic@gpu0", `recovery action "panic" is not one of none, reset, reboot, drain-p2p, drain-and-reset`},
		{"xid=79@gpu1+3s,for=1m", "xid does not hold"},
		{"pcie-replays=40@gpu0,for=1m", "pcie-replays does not hold"},
		{"power-brake@gpu0,until=1m", `"until=1m" after the GPU is not for=HOLD`},
		{"power-brake@gpu0,for=0s", `hold "0s" is not a positive duration`},
		{"power-brake@gpu0,for=soon", `hold "soon"`},
	}
	for _, row := range rows {
		_, err := Parse(row.in)
		if err == nil {
			t.Fatalf("%s accepted", row.in)
		}
		if !strings.Contains(err.Error(), row.why) || !strings.Contains(err.Error(), "KIND@gpuN") {
			t.Fatalf("%s: %q should say %q and show the grammar", row.in, err, row.why)
		}
	}
}
