package tlsmux

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"net"
	"slices"
	"testing"
)

// clientHello is the first record a Go TLS client sends offering protos.
func clientHello(t *testing.T, protos []string) []byte {
	t.Helper()
	a, b := net.Pipe()
	go func() {
		_ = tls.Client(a, &tls.Config{ServerName: "x", NextProtos: protos, InsecureSkipVerify: true}).Handshake()
	}()
	defer a.Close()
	defer b.Close()
	hdr := make([]byte, 5)
	if _, err := b.Read(hdr); err != nil {
		t.Fatal(err)
	}
	n := int(hdr[3])<<8 | int(hdr[4])
	rec := make([]byte, n)
	for got := 0; got < n; {
		m, err := b.Read(rec[got:])
		if err != nil {
			t.Fatal(err)
		}
		got += m
	}
	return append(hdr, rec...)
}

// TestPeekALPN: the protocols a real ClientHello offers are read, none
// when it offers none, and every cut-short or foreign record is an error,
// never a panic.
func TestPeekALPN(t *testing.T) {
	for _, protos := range [][]string{{"h2", "http/1.1"}, {"http/1.1"}, nil} {
		hello := clientHello(t, protos)
		got, err := peekALPN(bufio.NewReader(bytes.NewReader(hello)))
		if err != nil || !slices.Equal(got, protos) {
			t.Fatalf("offered %v, read %v, %v", protos, got, err)
		}
		for cut := range len(hello) {
			if _, err := peekALPN(bufio.NewReader(bytes.NewReader(hello[:cut]))); err == nil {
				t.Fatalf("a hello cut at %d of %d bytes was read", cut, len(hello))
			}
		}
		// A record whose inner lengths lie.
		bad := slices.Clone(hello)
		bad[6] = 0xff
		if _, err := peekALPN(bufio.NewReader(bytes.NewReader(bad))); err == nil {
			t.Fatal("a hello with a wrong length was read")
		}
	}
	if _, err := peekALPN(bufio.NewReader(bytes.NewReader([]byte("GET / HTTP/1.1\r\n\r\n")))); err == nil {
		t.Fatal("plain HTTP was read as TLS")
	}
}
