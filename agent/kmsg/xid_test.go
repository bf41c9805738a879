package kmsg

import (
	"bufio"
	"fmt"
	"os"
	"strings"
	"testing"
)

// TestDriverLines parses every recorded driver line in testdata and checks
// it against what testdata/driver-xids.want says each one holds.
func TestDriverLines(t *testing.T) {
	var got []string
	for _, line := range readLines(t, "testdata/driver-xids.kmsg") {
		rec, ok := ParseRecord(line)
		if !ok {
			t.Fatalf("record %q does not parse", line)
		}
		x, ok := ParseXID(rec.Text)
		if !ok {
			if strings.Contains(rec.Text, "Xid") {
				t.Errorf("record %d names an Xid but did not parse: %q", rec.Seq, rec.Text)
			}
			continue
		}
		got = append(got, fmt.Sprintf("%d\t%d\t%s\t%s", rec.Seq, x.Code, x.Bus, x.Text))
	}
	want := readLines(t, "testdata/driver-xids.want")
	if len(got) != len(want) {
		t.Errorf("%d XID lines, want %d", len(got), len(want))
	}
	for i := range min(len(got), len(want)) {
		if got[i] != want[i] {
			t.Errorf("XID line %d:\n got %q\nwant %q", i, got[i], want[i])
		}
	}
}

func readLines(t *testing.T, path string) []string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var lines []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		lines = append(lines, sc.Text())
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return lines
}

func TestParseXID(t *testing.T) {
	gpu3b := BusID{Domain: 0, Bus: 0x3b, Device: 0}
	tests := []struct {
		name   string
		text   string
		want   XID
		wantOK bool
	}{
		{"current", "NVRM: Xid (PCI:0000:3b:00): 79, pid='<unknown>', name=<unknown>, GPU has fallen off the bus.",
			XID{Bus: gpu3b, Code: 79, Text: "pid='<unknown>', name=<unknown>, GPU has fallen off the bus."}, true},
		{"mig-compute-instance", "NVRM: Xid (PCI:0000:3b:00 GPU-I:01 GPU-CI:02): 31, pid=7, name=x, Ch 00000008",
			XID{Bus: gpu3b, Code: 31, Text: "pid=7, name=x, Ch 00000008"}, true},
		{"with-function", "NVRM: Xid (PCI:0000:3b:00.0): 79, GPU has fallen off the bus.",
			XID{Bus: gpu3b, Code: 79, Text: "GPU has fallen off the bus."}, true},
		{"code-alone", "NVRM: Xid (PCI:0000:3b:00): 46",
			XID{Bus: gpu3b, Code: 46}, true},
		{"uppercase-hex", "NVRM: Xid (PCI:0000:3B:00): 48, DBE",
			XID{Bus: gpu3b, Code: 48, Text: "DBE"}, true},
		{"not-an-xid", "NVRM: GPU at PCI:0000:3b:00: GPU-b850f46d-d5ea-c752-ddf3-c4453e44d3f7", XID{}, false},
		{"no-bus", "NVRM: Xid : 32, pid=2280636", XID{}, false},
		{"letters-for-code", "NVRM: Xid (PCI:0000:3b:00): abc, pid=1", XID{}, false},
		{"code-run-on", "NVRM: Xid (PCI:0000:3b:00): 79x, text", XID{}, false},
		{"bad-bus", "NVRM: Xid (PCI:zz:3b:00): 79, text", XID{}, false},
		{"unclosed", "NVRM: Xid (PCI:0000:3b:00 79, text", XID{}, false},
		{"other-wording", "NVRM: Xid critical error: 79, details follow", XID{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := ParseXID(tt.text)
			if ok != tt.wantOK || got != tt.want {
				t.Fatalf("ParseXID(%q) = %+v, %v; want %+v, %v", tt.text, got, ok, tt.want, tt.wantOK)
			}
		})
	}
}

func TestParseBusID(t *testing.T) {
	tests := []struct {
		name   string
		in     string
		want   BusID
		wantOK bool
	}{
		{"nvml", "00000000:3B:00.0", BusID{Bus: 0x3b}, true},
		{"kernel", "PCI:0000:3b:00", BusID{Bus: 0x3b}, true},
		{"kernel-lowercase-prefix", "pci:0000:3b:00", BusID{Bus: 0x3b}, true},
		{"older-kernel", "0000:03:00", BusID{Bus: 0x03}, true},
		{"bus-and-device", "0003:00", BusID{Bus: 0x03}, true},
		{"domain", "00000018:01:00.0", BusID{Domain: 0x18, Bus: 0x01}, true},
		{"wide-domain", "10000:01:1c", BusID{Domain: 0x10000, Bus: 0x01, Device: 0x1c}, true},
		{"function-too-big", "0000:3b:00.8", BusID{}, false},
		{"bus-too-big", "0000:3bb:00", BusID{}, false},
		{"one-part", "3b", BusID{}, false},
		{"four-parts", "0:0:3b:00", BusID{}, false},
		{"empty", "", BusID{}, false},
		{"not-hex", "0000:3g:00", BusID{}, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, ok := ParseBusID(tt.in)
			if ok != tt.wantOK || got != tt.want {
				t.Fatalf("ParseBusID(%q) = %+v, %v; want %+v, %v", tt.in, got, ok, tt.want, tt.wantOK)
			}
		})
	}
}

// TestBusIDMatchesNVML: the bus id of a kernel line equals the one NVML
// gives the same GPU, and prints as NVML does.
func TestBusIDMatchesNVML(t *testing.T) {
	kernel, _ := ParseBusID("PCI:0000:10:1c")
	nvml, _ := ParseBusID("00000000:10:1C.0")
	if kernel != nvml || kernel.String() != "00000000:10:1C.0" {
		t.Fatalf("kernel %v, NVML %v: want equal, printed 00000000:10:1C.0", kernel, nvml)
	}
}
