package rpcclient

import (
	"os"
	"path/filepath"
	"testing"
)

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

func TestCACertFromEnv(t *testing.T) {
	state := t.TempDir()
	t.Setenv("XDG_STATE_HOME", state)
	t.Setenv("NAVARCH_CA_CERT", "")
	if got := CACertFromEnv(""); got != "" {
		t.Fatalf("no CA anywhere: %q", got)
	}
	local := filepath.Join(state, "navarch", "pki", "ca.crt")
	if err := os.MkdirAll(filepath.Dir(local), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(local, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	if got := CACertFromEnv(""); got != local {
		t.Fatalf("the local control plane's CA: %q", got)
	}
	t.Setenv("NAVARCH_CA_CERT", "/etc/navarch/ca.crt")
	if got := CACertFromEnv(""); got != "/etc/navarch/ca.crt" {
		t.Fatalf("environment: %q", got)
	}
	if got := CACertFromEnv("ca.pem"); got != "ca.pem" {
		t.Fatalf("flag: %q", got)
	}
}

func TestDialChecksTheAddressAndTheCA(t *testing.T) {
	if _, err := Dial(Target{Addr: "no-port", Insecure: true}); err == nil {
		t.Fatal("an address without a port was accepted")
	}
	if _, err := Dial(Target{Addr: "127.0.0.1:1"}); err == nil {
		t.Fatal("TLS without a CA was accepted")
	}
	notPEM := filepath.Join(t.TempDir(), "ca.crt")
	if err := os.WriteFile(notPEM, []byte("not a certificate"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Dial(Target{Addr: "127.0.0.1:1", CACert: notPEM}); err == nil {
		t.Fatal("a CA file without a certificate was accepted")
	}
	conn, err := Dial(Target{Addr: "127.0.0.1:1", Insecure: true})
	if err != nil {
		t.Fatal(err)
	}
	_ = conn.Close()
}

func TestLocalAdminToken(t *testing.T) {
	state := t.TempDir()
	t.Setenv("XDG_STATE_HOME", state)
	if got, err := LocalAdminToken("127.0.0.1:50051"); got != "" || err != nil {
		t.Fatalf("no token anywhere: %q %v", got, err)
	}
	file := filepath.Join(state, "navarch", "admin.token")
	if err := os.MkdirAll(filepath.Dir(file), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, []byte("admin.s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, addr, want string
	}{
		{"ipv4-loopback", "127.0.0.1:50051", "admin.s3cret"},
		{"ipv6-loopback", "[::1]:50051", "admin.s3cret"},
		{"localhost", "localhost:50051", "admin.s3cret"},
		{"another-machine", "cp.example.com:50051", ""},
		{"not-host-port", "127.0.0.1", ""},
		{"list-on-loopback", "127.0.0.1:50051,localhost:50052", "admin.s3cret"},
		{"list-with-another-machine", "127.0.0.1:50051,cp.example.com:50051", ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got, err := LocalAdminToken(tt.addr); got != tt.want || err != nil {
				t.Fatalf("%q, %v; want %q", got, err, tt.want)
			}
		})
	}
}

func TestBearerKeepsTheTokenOffPlaintext(t *testing.T) {
	md, err := bearer{token: "ops.x", tls: true}.GetRequestMetadata(t.Context())
	if err != nil || md["authorization"] != "Bearer ops.x" {
		t.Fatalf("metadata %v %v", md, err)
	}
	if !(bearer{tls: true}).RequireTransportSecurity() || (bearer{}).RequireTransportSecurity() {
		t.Fatal("the token must need TLS except to a plaintext loopback control plane")
	}
}
