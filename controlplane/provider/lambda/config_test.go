package lambda_test

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/navarch/navarch/controlplane/provider"
	"github.com/navarch/navarch/controlplane/provider/lambda"
)

func TestValidate(t *testing.T) {
	tests := []struct {
		name    string
		edit    func(*lambda.Config)
		wantErr string // "" for none
	}{
		{name: "defaults", edit: func(*lambda.Config) {}},
		{name: "enabled", edit: func(c *lambda.Config) { c.Enabled, c.SSHKeyNames = true, []string{"ops"} }},
		{name: "enabled-without-ssh-key", edit: func(c *lambda.Config) { c.Enabled = true }, wantErr: "ssh_key_names:"},
		{name: "two-ssh-keys", edit: func(c *lambda.Config) { c.Enabled, c.SSHKeyNames = true, []string{"a", "b"} }, wantErr: "ssh_key_names:"},
		{name: "http-endpoint", edit: func(c *lambda.Config) { c.Endpoint = "http://cloud.lambdalabs.com/api/v1" }, wantErr: "endpoint:"},
		{name: "endpoint-with-credentials", edit: func(c *lambda.Config) { c.Endpoint = "https://user:s3cret@cloud.lambdalabs.com/api/v1" }, wantErr: "endpoint:"},
		{name: "empty-region", edit: func(c *lambda.Config) { c.Regions = []string{"us-east-1", " "} }, wantErr: "regions[1]:"},
		{name: "region-twice", edit: func(c *lambda.Config) { c.Regions = []string{"us-east-1", "us-east-1"} }, wantErr: "regions[1]:"},
		{name: "no-instance-type", edit: func(c *lambda.Config) { c.InstanceType = "" }, wantErr: "instance_type:"},
		{name: "two-file-systems", edit: func(c *lambda.Config) { c.FileSystemNames = []string{"a", "b"} }, wantErr: "file_system_names:"},
		{name: "poll-too-often", edit: func(c *lambda.Config) { c.PollInterval.Duration = time.Second }, wantErr: "poll_interval:"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := lambda.DefaultConfig()
			tt.edit(&c)
			err := c.Validate()
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Validate: %v", err)
				}
				return
			}
			if err == nil || !strings.HasPrefix(err.Error(), tt.wantErr) {
				t.Fatalf("Validate = %v, want an error starting %q", err, tt.wantErr)
			}
			if strings.Contains(err.Error(), "s3cret") {
				t.Errorf("the error shows the URL's credentials: %v", err)
			}
		})
	}
}

func TestBuildAPIKey(t *testing.T) {
	const key = "lambda-key-from-file-42"
	tests := []struct {
		name    string
		env     string
		file    string // content; "" for no file
		mode    os.FileMode
		path    string // overrides the file's path
		fifo    bool   // the file is a FIFO nothing writes to
		wantErr string
	}{
		{name: "environment", env: key},
		{name: "owner-only-file", file: key + "\n", mode: 0o600},
		{name: "no-key", wantErr: "no API key: set LAMBDA_API_KEY or api_key_file"},
		{name: "world-readable-file", file: key, mode: 0o644, wantErr: "chmod 600"},
		{name: "group-readable-file", file: key, mode: 0o640, wantErr: "mode 0640"},
		{name: "missing-file", path: "/nonexistent/lambda.key", wantErr: "api_key_file:"},
		{name: "empty-file", file: "\n", mode: 0o600, wantErr: "is empty"},
		{name: "too-large-file", file: strings.Repeat("k", 64<<10+1), mode: 0o600, wantErr: "is too large"},
		// Reading it would hold up the start for ever.
		{name: "fifo", fifo: true, wantErr: "is not a regular file"},
		{name: "folder", path: os.TempDir(), wantErr: "is not a regular file"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Setenv(lambda.APIKeyEnv, tt.env)
			c := lambda.DefaultConfig()
			c.Enabled, c.SSHKeyNames = true, []string{"ops"}
			if tt.file != "" {
				c.APIKeyFile = filepath.Join(t.TempDir(), "lambda.key")
				if err := os.WriteFile(c.APIKeyFile, []byte(tt.file), 0o600); err != nil {
					t.Fatal(err)
				}
				if err := os.Chmod(c.APIKeyFile, tt.mode); err != nil {
					t.Fatal(err)
				}
			}
			if tt.path != "" {
				c.APIKeyFile = tt.path
			}
			if tt.fifo {
				c.APIKeyFile = filepath.Join(t.TempDir(), "lambda.key")
				if err := syscall.Mkfifo(c.APIKeyFile, 0o600); err != nil {
					t.Fatal(err)
				}
			}
			p, err := lambda.Build(c, provider.Env{Cluster: "prod"})
			if tt.wantErr == "" {
				if err != nil || p.Name() != "lambda" {
					t.Fatalf("Build: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Build = %v, want an error containing %q", err, tt.wantErr)
			}
			if strings.Contains(err.Error(), key) {
				t.Errorf("the error shows the key: %v", err)
			}
		})
	}
}
