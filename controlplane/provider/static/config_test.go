package static_test

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"log/slog"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/navarch/navarch/controlplane/provider"
	"github.com/navarch/navarch/controlplane/provider/static"
	"github.com/navarch/navarch/internal/yamlfile"
)

func TestExampleConfig(t *testing.T) {
	b, err := os.ReadFile("testdata/static.yaml")
	if err != nil {
		t.Fatal(err)
	}
	doc := struct {
		Static static.Config `yaml:"static_provider"`
	}{Static: static.DefaultConfig()}
	if err := yamlfile.Decode(b, &doc); err != nil {
		t.Fatal(err)
	}
	c := doc.Static
	if err := c.Validate(); err != nil {
		t.Fatal(err)
	}
	if !c.On() || len(c.Machines) != 3 || c.Machines[1].System != "/redfish/v1/Systems/System.Embedded.1" ||
		c.Machines[0].Labels["gpu"] != "h100" || !c.Machines[2].InsecureSkipVerify || c.ShutdownTimeout.Duration != 3*time.Minute {
		t.Errorf("decoded %+v", c)
	}
}

func TestValidate(t *testing.T) {
	machine := func(id, bmc string) static.MachineConfig {
		return static.MachineConfig{NodeID: id, BMC: bmc}
	}
	tests := []struct {
		name string
		edit func(c *static.Config)
		want string // the error's start; "" for none
	}{
		{"valid", func(*static.Config) {}, ""},
		{"off-and-empty", func(c *static.Config) { c.Enabled, c.Machines = false, nil }, ""},
		{"no-machines", func(c *static.Config) { c.Machines = nil }, "machines: "},
		{"node-id-empty", func(c *static.Config) { c.Machines[1].NodeID = "" }, "machines[1].node_id: is required"},
		{"node-id-bad", func(c *static.Config) { c.Machines[1].NodeID = "gpu 2" }, "machines[1].node_id: "},
		{"node-id-twice", func(c *static.Config) { c.Machines[2].NodeID = "gpu-0" }, `machines[2].node_id: "gpu-0" is machines[0]'s already`},
		{"bmc-http", func(c *static.Config) { c.Machines[2].BMC = "http://10.0.0.3" }, "machines[2].bmc: http://10.0.0.3 is not https"},
		{"bmc-not-url", func(c *static.Config) { c.Machines[2].BMC = "10.0.0.3" }, "machines[2].bmc: "},
		{"bmc-user", func(c *static.Config) { c.Machines[0].BMC = "https://root:calvin@10.0.0.1" }, "machines[0].bmc: https://root:xxxxx@10.0.0.1 holds credentials"},
		{"bmc-path", func(c *static.Config) { c.Machines[0].BMC = "https://10.0.0.1/redfish/v1" }, "machines[0].bmc: "},
		{"system-path", func(c *static.Config) { c.Machines[0].System = "/redfish/v1/Managers/1" }, "machines[0].system: "},
		{"same-system", func(c *static.Config) { c.Machines[1].BMC = "https://10.0.0.1" }, "machines[1]: the same BMC and system as machines[0]"},
		{"no-credentials", func(c *static.Config) { c.CredentialsFile = "" }, "machines[0].credentials_file: not set"},
		{"own-credentials", func(c *static.Config) {
			c.CredentialsFile = ""
			for i := range c.Machines {
				c.Machines[i].CredentialsFile = "/etc/navarch/bmc"
			}
		}, ""},
		{"insecure-and-ca", func(c *static.Config) {
			c.Machines[1].InsecureSkipVerify, c.Machines[1].CAFile = true, "ca.pem"
		}, "machines[1].insecure_skip_verify: "},
		{"insecure-beside-default-ca", func(c *static.Config) { c.CAFile, c.Machines[1].InsecureSkipVerify = "ca.pem", true }, ""},
		{"label-key", func(c *static.Config) { c.Machines[0].Labels = map[string]string{"": "x"} }, "machines[0].labels: "},
		{"power-off", func(c *static.Config) { c.PowerOffOnTerminate = "later" }, `power_off_on_terminate: "later" is not graceful or force`},
		{"shutdown-timeout", func(c *static.Config) { c.ShutdownTimeout.Duration = 0 }, "shutdown_timeout: "},
		{"request-timeout", func(c *static.Config) { c.RequestTimeout.Duration = time.Hour }, "request_timeout: "},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := static.DefaultConfig()
			c.Enabled = true
			c.CredentialsFile = "/etc/navarch/bmc"
			c.Machines = []static.MachineConfig{machine("gpu-0", "https://10.0.0.1"), machine("gpu-1", "https://10.0.0.2"), machine("gpu-2", "https://10.0.0.3:8443")}
			tt.edit(&c)
			err := c.Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("Validate = %v, want nil", err)
			case tt.want != "" && (err == nil || !strings.HasPrefix(err.Error(), tt.want)):
				t.Errorf("Validate = %v, want an error starting %q", err, tt.want)
			}
		})
	}
}

func writeFile(t *testing.T, name, text string, mode os.FileMode) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(path, []byte(text), mode); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(path, mode); err != nil { // past the umask
		t.Fatal(err)
	}
	return path
}

func TestReadCredentials(t *testing.T) {
	tests := []struct {
		name string
		text string
		mode os.FileMode
		// path, when set, makes the file in place of text and mode.
		path    func(t *testing.T) string
		want    static.Credentials
		wantErr string
	}{
		{"one-line", "navarch:s3cret\n", 0o600, nil, static.Credentials{Username: "navarch", Password: "s3cret"}, ""},
		{"colon-in-password", "navarch:a:b c", 0o400, nil, static.Credentials{Username: "navarch", Password: "a:b c"}, ""},
		{"yaml", "username: navarch\npassword: 'p: w'\n", 0o600, nil, static.Credentials{Username: "navarch", Password: "p: w"}, ""},
		{"group-readable", "navarch:s3cret", 0o640, nil, static.Credentials{}, "may be read or changed by its group or others (mode 0640); chmod 600 it"},
		{"world-readable", "navarch:s3cret", 0o644, nil, static.Credentials{}, "(mode 0644); chmod 600 it"},
		{"no-colon", "navarch", 0o600, nil, static.Credentials{}, "is neither one line USERNAME:PASSWORD nor YAML"},
		{"empty-password", "navarch:", 0o600, nil, static.Credentials{}, "the username or the password is empty"},
		{"yaml-unknown-key", "user: navarch\npassword: x\n", 0o600, nil, static.Credentials{}, "user"},
		{"others-writable", "navarch:s3cret", 0o602, nil, static.Credentials{}, "(mode 0602); chmod 600 it"},
		// Nothing writes to the FIFO: reading it would hold up the start
		// for ever.
		{"fifo", "", 0, func(t *testing.T) string {
			path := filepath.Join(t.TempDir(), "bmc.credentials")
			if err := syscall.Mkfifo(path, 0o600); err != nil {
				t.Fatal(err)
			}
			return path
		}, static.Credentials{}, "is not a regular file"},
		{"folder", "", 0, func(t *testing.T) string { return t.TempDir() }, static.Credentials{}, "is not a regular file"},
		{"too-large", strings.Repeat("x", 64<<10) + ":y", 0o600, nil, static.Credentials{}, "is too large"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var path string
			if tt.path != nil {
				path = tt.path(t)
			} else {
				path = writeFile(t, "bmc.credentials", tt.text, tt.mode)
			}
			got, err := static.ReadCredentials(path)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("ReadCredentials = %+v, %v; want an error with %q", got, err, tt.wantErr)
				}
				return
			}
			if err != nil || got != tt.want {
				t.Errorf("ReadCredentials = %+v, %v; want %+v", got, err, tt.want)
			}
		})
	}
	if _, err := static.ReadCredentials(filepath.Join(t.TempDir(), "none")); err == nil {
		t.Error("a missing file was read")
	}
}

// otherCA is the PEM of a CA that signed nothing the fake BMC shows.
func otherCA(t *testing.T) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "some other CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}))
}

func TestBuild(t *testing.T) {
	bmc := newFakeBMC(t, &fakeSystem{id: "1", power: "On"})
	bmcCA := string(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: bmc.srv.Certificate().Raw}))
	creds := writeFile(t, "bmc.credentials", bmc.user+":"+bmc.pass, 0o600)
	tests := []struct {
		name      string
		edit      func(c *static.Config, m *static.MachineConfig)
		buildErr  string
		listErr   string
		warnsOfIt bool
	}{
		{"ca-pinned", func(_ *static.Config, m *static.MachineConfig) {
			m.CAFile = writeFile(t, "bmc.pem", bmcCA, 0o644)
		}, "", "", false},
		{"default-ca", func(c *static.Config, _ *static.MachineConfig) {
			c.CAFile = writeFile(t, "bmc.pem", bmcCA, 0o644)
		}, "", "", false},
		{"other-ca", func(_ *static.Config, m *static.MachineConfig) {
			m.CAFile = writeFile(t, "other.pem", otherCA(t), 0o644)
		}, "", "certificate that is not trusted", false},
		{"system-roots", func(*static.Config, *static.MachineConfig) {}, "", "certificate that is not trusted", false},
		{"insecure", func(_ *static.Config, m *static.MachineConfig) { m.InsecureSkipVerify = true }, "", "", true},
		{"ca-not-pem", func(_ *static.Config, m *static.MachineConfig) {
			m.CAFile = writeFile(t, "bmc.pem", "not a certificate", 0o644)
		}, "machines[0].ca_file: ", "", false},
		{"credentials-readable", func(c *static.Config, _ *static.MachineConfig) {
			c.CredentialsFile = writeFile(t, "bmc.credentials", "a:b", 0o644)
		}, "credentials_file: ", "", false},
		{"machine-credentials-readable", func(_ *static.Config, m *static.MachineConfig) {
			m.CredentialsFile = writeFile(t, "bmc.credentials", "a:b", 0o604)
		}, "machines[0].credentials_file: ", "", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := static.DefaultConfig()
			c.Enabled, c.CredentialsFile = true, creds
			m := static.MachineConfig{NodeID: "gpu-0", BMC: bmc.srv.URL}
			tt.edit(&c, &m)
			c.Machines = []static.MachineConfig{m}
			if err := c.Validate(); err != nil {
				t.Fatal(err)
			}
			var logs bytes.Buffer
			p, err := static.Build(c, provider.Env{Cluster: "test", Logger: slog.New(slog.NewTextHandler(&logs, nil))})
			if tt.buildErr != "" {
				if err == nil || !strings.HasPrefix(err.Error(), tt.buildErr) {
					t.Fatalf("Build = %v, want an error starting %q", err, tt.buildErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			if warned := strings.Contains(logs.String(), "level=WARN") && strings.Contains(logs.String(), "insecure_skip_verify"); warned != tt.warnsOfIt {
				t.Errorf("warned of insecure_skip_verify: %t, want %t; logs:\n%s", warned, tt.warnsOfIt, logs.String())
			}
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			insts, err := p.List(ctx)
			if tt.listErr != "" {
				if status.Code(err) != codes.FailedPrecondition || !strings.Contains(err.Error(), tt.listErr) {
					t.Errorf("List = %v, %v; want a FailedPrecondition saying %q", insts, err, tt.listErr)
				}
				return
			}
			if err != nil || len(insts) != 1 || insts[0].NodeID != "gpu-0" {
				t.Errorf("List = %v, %v; want gpu-0", insts, err)
			}
		})
	}
}
