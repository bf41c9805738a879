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

func TestTokenFromEnv(t *testing.T) {
	state := t.TempDir()
	t.Setenv("XDG_STATE_HOME", state)
	t.Setenv("NAVARCH_TOKEN", "")
	if got, err := TokenFromEnv("", "127.0.0.1:50051"); got != "" || err != nil {
		t.Fatalf("no token anywhere: %q %v", got, err)
	}
	file := filepath.Join(state, "navarch", "admin.token")
	if err := os.MkdirAll(filepath.Dir(file), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(file, []byte("admin.s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got, _ := TokenFromEnv("", "127.0.0.1:50051"); got != "admin.s3cret" {
		t.Fatalf("the local admin token: %q", got)
	}
	if got, _ := TokenFromEnv("", "cp.example.com:50051"); got != "" {
		t.Fatalf("this machine's admin token offered to another control plane: %q", got)
	}
	t.Setenv("NAVARCH_TOKEN", "ops.x")
	if got, _ := TokenFromEnv("", "127.0.0.1:50051"); got != "ops.x" {
		t.Fatalf("environment: %q", got)
	}
	if got, _ := TokenFromEnv("viewer.y", "127.0.0.1:50051"); got != "viewer.y" {
		t.Fatalf("flag: %q", got)
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
