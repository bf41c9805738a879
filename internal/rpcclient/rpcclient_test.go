package rpcclient

import "testing"

func TestServerFromEnv(t *testing.T) {
	t.Setenv("NAVARCH_SERVER", "")
	if got := ServerFromEnv(""); got != DefaultServer {
		t.Fatalf("default: %q", got)
	}
	t.Setenv("NAVARCH_SERVER", "cp.example:7000")
	if got := ServerFromEnv(""); got != "cp.example:7000" {
		t.Fatalf("environment: %q", got)
	}
	if got := ServerFromEnv("10.0.0.1:50051"); got != "10.0.0.1:50051" {
		t.Fatalf("flag: %q", got)
	}
}

func TestDialChecksTheAddress(t *testing.T) {
	if _, err := Dial("no-port"); err == nil {
		t.Fatal("an address without a port was accepted")
	}
	conn, err := Dial("127.0.0.1:1")
	if err != nil {
		t.Fatal(err)
	}
	_ = conn.Close()
}
