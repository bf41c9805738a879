package rpcclient

import (
	"slices"
	"strings"
	"testing"
)

func TestParseAddrs(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    []string
		wantErr string // what the error says; empty: accepted
	}{
		{name: "one", in: "cp-1:50051", want: []string{"cp-1:50051"}},
		{name: "three", in: "cp-1:50051,cp-2:50051,10.0.0.3:7000", want: []string{"cp-1:50051", "cp-2:50051", "10.0.0.3:7000"}},
		{name: "spaces-around", in: " cp-1:50051 , cp-2:50051", want: []string{"cp-1:50051", "cp-2:50051"}},
		{name: "ipv6", in: "[::1]:50051,[fd00::2]:50051", want: []string{"[::1]:50051", "[fd00::2]:50051"}},
		{name: "no-host-is-this-machine", in: ":50051", want: []string{":50051"}},
		{name: "empty", in: "", wantErr: "no server address"},
		{name: "blank", in: "  ", wantErr: "no server address"},
		{name: "no-port", in: "nowhere", wantErr: `server address "nowhere" is not HOST:PORT`},
		{name: "bad-second", in: "cp-1:50051,cp-2", wantErr: `server address 2 of 2 in "cp-1:50051,cp-2": server address "cp-2" is not HOST:PORT`},
		{name: "empty-entry", in: "cp-1:50051,,cp-2:50051", wantErr: `server address 2 of 3 in "cp-1:50051,,cp-2:50051": the address is empty`},
		{name: "trailing-comma", in: "cp-1:50051,", wantErr: "server address 2 of 2"},
		{name: "port-not-a-number", in: "cp-1:grpc", wantErr: `server address "cp-1:grpc": the port "grpc" is not a number from 1 to 65535`},
		{name: "port-zero", in: "cp-1:0", wantErr: `the port "0"`},
		{name: "port-too-big", in: "cp-1:50051,cp-2:70000", wantErr: `server address 2 of 2 in "cp-1:50051,cp-2:70000": server address "cp-2:70000": the port "70000"`},
		{name: "ipv6-unbracketed", in: "::1:50051", wantErr: `server address "::1:50051" is not HOST:PORT`},
		{name: "twice", in: "cp-1:50051,cp-2:50051,cp-1:50051", wantErr: `server address "cp-1:50051" is given twice`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseAddrs(tt.in)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("got %v, %v; want an error saying %q", got, err, tt.wantErr)
				}
				return
			}
			if err != nil || !slices.Equal(got, tt.want) {
				t.Fatalf("got %q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

func TestDialRefusesABadAddressInAList(t *testing.T) {
	_, err := Dial(Target{Addr: "127.0.0.1:1,cp-2", Insecure: true})
	if err == nil || !strings.Contains(err.Error(), `"cp-2" is not HOST:PORT`) {
		t.Fatalf("got %v, want the bad address named", err)
	}
	if _, err := Dial(Target{Addr: "127.0.0.1:1,:2", CAPin: Pin(newCA(t, "ca").cert)}); err == nil || !strings.Contains(err.Error(), `":2" names no host`) {
		t.Fatalf("a pinned list with an address without a host: %v", err)
	}
}
