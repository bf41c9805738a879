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
	}
	for _, row := range rows {
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
