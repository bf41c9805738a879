package sdnotify

import (
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestSendReachesTheSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	t.Setenv("NOTIFY_SOCKET", path)
	if ok, err := Ready("serving on 127.0.0.1:50051"); !ok || err != nil {
		t.Fatalf("Ready: %t %v", ok, err)
	}
	buf := make([]byte, 256)
	_ = conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := conn.Read(buf)
	if err != nil {
		t.Fatal(err)
	}
	if got := string(buf[:n]); !strings.HasPrefix(got, "READY=1\n") || !strings.Contains(got, "STATUS=serving on 127.0.0.1:50051") {
		t.Fatalf("systemd heard %q", got)
	}
}

func TestOutsideSystemdDoesNothing(t *testing.T) {
	t.Setenv("NOTIFY_SOCKET", "")
	if ok, err := Ready("x"); ok || err != nil {
		t.Fatalf("without NOTIFY_SOCKET: %t %v", ok, err)
	}
	t.Setenv("NOTIFY_SOCKET", filepath.Join(t.TempDir(), "nobody-listens"))
	if ok, err := Stopping(); !ok || err == nil {
		t.Fatalf("a socket nobody listens on: %t %v", ok, err)
	}
}
