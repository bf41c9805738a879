package gcp

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/navarch/navarch/controlplane/provider"
	"github.com/navarch/navarch/internal/yamlfile"
)

func TestValidate(t *testing.T) {
	enabled := func(edit func(*Config)) Config {
		c := DefaultConfig()
		c.Enabled, c.Project, c.Zones, c.Image = true, "proj", []string{zoneA, zoneB}, image
		edit(&c)
		return c
	}
	tests := []struct {
		name    string
		c       Config
		wantKey string // the error starts with it; "" means valid
	}{
		{"defaults", DefaultConfig(), ""},
		{"enabled", enabled(func(*Config) {}), ""},
		{"full", enabled(func(c *Config) {
			c.MachineType, c.Accelerators = "n1-standard-8", []Accelerator{{Type: "nvidia-tesla-t4", Count: 1}}
			c.ServiceAccount, c.Scopes = "nodes@proj.iam.gserviceaccount.com", []string{"https://www.googleapis.com/auth/logging.write"}
			c.NICType, c.Spot, c.Labels = "GVNIC", true, map[string]string{"team": "ml", "cost-centre": ""}
			c.Endpoint = "https://127.0.0.1:8443"
		}), ""},
		{"no-project", enabled(func(c *Config) { c.Project = "" }), "project:"},
		{"no-zones", enabled(func(c *Config) { c.Zones = nil }), "zones:"},
		{"no-image", enabled(func(c *Config) { c.Image = "" }), "image:"},
		{"bad-zone", enabled(func(c *Config) { c.Zones = []string{zoneA, "us_central1"} }), "zones[1]:"},
		{"zone-twice", enabled(func(c *Config) { c.Zones = []string{zoneA, zoneA} }), "zones[1]:"},
		{"bad-zone-while-disabled", func() Config { c := DefaultConfig(); c.Zones = []string{"Central"}; return c }(), "zones[0]:"},
		{"bad-machine-type", enabled(func(c *Config) { c.MachineType = "A3 High" }), "machine_type:"},
		{"bad-accelerator", enabled(func(c *Config) { c.Accelerators = []Accelerator{{Type: "T4", Count: 1}} }), "accelerators[0].type:"},
		{"no-accelerators", enabled(func(c *Config) { c.Accelerators = []Accelerator{{Type: "nvidia-tesla-t4"}} }), "accelerators[0].count:"},
		{"small-disk", enabled(func(c *Config) { c.DiskSizeGB = 5 }), "disk_size_gb:"},
		{"bad-disk-type", enabled(func(c *Config) { c.DiskType = "" }), "disk_type:"},
		{"bad-nic-type", enabled(func(c *Config) { c.NICType = "e1000" }), "nic_type:"},
		{"bad-service-account", enabled(func(c *Config) { c.ServiceAccount = "nodes" }), "service_account:"},
		{"scopes-without-account", enabled(func(c *Config) { c.Scopes = []string{"https://www.googleapis.com/auth/cloud-platform"} }), "scopes:"},
		{"bad-label-key", enabled(func(c *Config) { c.Labels = map[string]string{"Team": "ml"} }), "labels:"},
		{"own-label-key", enabled(func(c *Config) { c.Labels = map[string]string{"navarch-node": "x"} }), "labels:"},
		{"bad-label-value", enabled(func(c *Config) { c.Labels = map[string]string{"team": "ML Ops"} }), "labels.team:"},
		{"bad-endpoint", enabled(func(c *Config) { c.Endpoint = "compute.example" }), "endpoint:"},
		{"plain-http-endpoint", enabled(func(c *Config) { c.Endpoint = "http://compute.example" }), "endpoint:"},
		{"plain-http-loopback", enabled(func(c *Config) { c.Endpoint = "http://127.0.0.1:8080" }), ""},
		{"endpoint-with-password", enabled(func(c *Config) { c.Endpoint = "https://u:p@compute.example" }), "endpoint:"},
		{"short-poll", enabled(func(c *Config) { c.PollInterval = 100 * time.Millisecond }), "poll_interval:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.c.Validate()
			switch {
			case tt.wantKey == "" && err != nil:
				t.Fatalf("Validate: %v", err)
			case tt.wantKey != "" && (err == nil || !strings.HasPrefix(err.Error(), tt.wantKey)):
				t.Fatalf("Validate = %v, want an error naming %s", err, tt.wantKey)
			}
		})
	}
}

func TestAPIBase(t *testing.T) {
	for _, in := range []string{"https://h:1", "https://h:1/", "https://h:1/compute/v1", "https://h:1/compute/v1/"} {
		if got := apiBase(in); got != "https://h:1/compute/v1/" {
			t.Errorf("apiBase(%q) = %q", in, got)
		}
	}
}

// serviceAccountKey writes a service account key file whose tokens come
// from tokenURL.
func serviceAccountKey(t *testing.T, tokenURL string) string {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(map[string]string{
		"type":           "service_account",
		"project_id":     "proj",
		"private_key_id": "key-1",
		"private_key":    string(pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der})),
		"client_email":   "navarch@proj.iam.gserviceaccount.com",
		"client_id":      "1",
		"token_uri":      tokenURL,
	})
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "key.json")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// tokenServer is Google's OAuth token endpoint on loopback: it grants
// tok-1 for a service account's signed assertion, or refuses it.
func tokenServer(t *testing.T, refuse bool) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if err := r.ParseForm(); err != nil || r.Form.Get("grant_type") != "urn:ietf:params:oauth:grant-type:jwt-bearer" || r.Form.Get("assertion") == "" {
			http.Error(w, "bad token request", http.StatusBadRequest)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		if refuse {
			w.WriteHeader(http.StatusBadRequest)
			_, _ = w.Write([]byte(`{"error":"invalid_grant","error_description":"Invalid JWT Signature."}`))
			return
		}
		_, _ = w.Write([]byte(`{"access_token":"tok-1","token_type":"Bearer","expires_in":3600}`))
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestBuildCredentials(t *testing.T) {
	tests := []struct {
		name     string
		refuse   bool // the token endpoint refuses the key
		viaEnv   bool // the key comes as Application Default Credentials
		wantCode codes.Code
	}{
		{name: "credentials-file"},
		{name: "application-default", viaEnv: true},
		{name: "key-refused", refuse: true, wantCode: codes.FailedPrecondition},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := startFake(t, false)
			f.auth = "Bearer tok-1"
			f.add(zoneA, "train-00000001", "RUNNING", clusterLabels("train-00000001", "train"))
			key := serviceAccountKey(t, tokenServer(t, tt.refuse).URL+"/token")
			c := testConfig(f)
			c.Endpoint = f.srv.URL
			if tt.viaEnv {
				t.Setenv("GOOGLE_APPLICATION_CREDENTIALS", key)
			} else {
				c.CredentialsFile = key
			}
			p, err := Build(c, provider.Env{Cluster: "prod"})
			if err != nil {
				t.Fatalf("Build: %v", err)
			}
			got, err := p.List(context.Background())
			if tt.wantCode != codes.OK {
				if status.Code(err) != tt.wantCode || !strings.Contains(err.Error(), "gcp: credentials refused: ") {
					t.Fatalf("List = %v, want %s saying the credentials were refused", err, tt.wantCode)
				}
				if n := f.count("list"); n != 0 {
					t.Errorf("%d list calls reached the API without a token", n)
				}
				return
			}
			if err != nil || len(got) != 1 {
				t.Fatalf("List = %+v, %v; want the instance", got, err)
			}
		})
	}
}

func TestBuildRefusesKeyFile(t *testing.T) {
	readable := serviceAccountKey(t, "https://oauth2.example/token")
	if err := os.Chmod(readable, 0o640); err != nil {
		t.Fatal(err)
	}
	worldReadable := serviceAccountKey(t, "https://oauth2.example/token")
	if err := os.Chmod(worldReadable, 0o604); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(t.TempDir(), "missing.json")
	// Nothing writes to the FIFO: reading it would hold up the start for
	// ever.
	fifo := filepath.Join(t.TempDir(), "key.json")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	tooLarge := filepath.Join(t.TempDir(), "key.json")
	if err := os.WriteFile(tooLarge, make([]byte, maxKeyFile+1), 0o600); err != nil {
		t.Fatal(err)
	}
	tests := []struct{ name, path, adc, want string }{
		{"missing", missing, "", "no such file"},
		{"group-readable", readable, "", "may be read or changed by its group or others (mode 0640); chmod 600 it"},
		{"others-readable", worldReadable, "", "(mode 0604); chmod 600 it"},
		{"fifo", fifo, "", "is not a regular file"},
		{"folder", t.TempDir(), "", "is not a regular file"},
		{"too-large", tooLarge, "", "is too large"},
		// GOOGLE_APPLICATION_CREDENTIALS names a file that is not there,
		// so nothing else is looked for, the metadata server least.
		{"no-application-default", "", missing, "not set, and no Application Default Credentials"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv("GOOGLE_APPLICATION_CREDENTIALS", tt.adc)
			f := startFake(t, false)
			c := testConfig(f)
			c.CredentialsFile = tt.path
			_, err := Build(c, provider.Env{Cluster: "prod"})
			if err == nil || !strings.HasPrefix(err.Error(), "credentials_file: ") || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Build = %v, want an error naming credentials_file and saying %q", err, tt.want)
			}
		})
	}
}

func TestNewRefuses(t *testing.T) {
	f := newFake(t)
	c := testConfig(f)
	c.Project = ""
	if _, err := New(Options{Config: c, Cluster: "prod"}); err == nil || !strings.HasPrefix(err.Error(), "project:") {
		t.Errorf("New without a project = %v, want it named", err)
	}
	if _, err := New(Options{Config: testConfig(f)}); err == nil || !strings.HasPrefix(err.Error(), "cluster:") {
		t.Errorf("New without a cluster = %v, want it named", err)
	}
}

func TestConfigFile(t *testing.T) {
	b, err := os.ReadFile("testdata/config.yaml")
	if err != nil {
		t.Fatal(err)
	}
	file := struct {
		GCP Config `yaml:"gcp_provider"`
	}{GCP: DefaultConfig()}
	if err := yamlfile.Decode(b, &file); err != nil {
		t.Fatalf("decode: %v", err)
	}
	c := file.GCP
	if err := c.Validate(); err != nil {
		t.Fatalf("Validate: %v", err)
	}
	if !c.On() || c.Project != "my-gpu-project" || len(c.Zones) != 3 || c.DiskSizeGB != 500 || c.ExternalIP || c.PollInterval != 30*time.Second || c.Labels["team"] != "ml-platform" {
		t.Errorf("config = %+v", c)
	}
}
