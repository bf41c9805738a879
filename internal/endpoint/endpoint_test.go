package endpoint

import (
	"strings"
	"testing"
)

func TestCheck(t *testing.T) {
	tests := []struct {
		name     string
		endpoint string
		wantErr  string // "" passes
	}{
		{name: "empty", endpoint: ""},
		{name: "https", endpoint: "https://ec2.example.net"},
		{name: "https-with-path", endpoint: "https://compute.example/compute/v1"},
		{name: "http-on-loopback-v4", endpoint: "http://127.0.0.1:4566"},
		{name: "http-on-loopback-v6", endpoint: "http://[::1]:4566"},
		{name: "http-on-localhost", endpoint: "http://localhost:4566"},
		{name: "plain-http", endpoint: "http://ec2.example.net", wantErr: `"http://ec2.example.net" is neither https nor plain http on loopback`},
		{name: "plain-http-on-a-lookalike", endpoint: "http://localhost.example.net", wantErr: "neither https nor plain http on loopback"},
		{name: "other-scheme", endpoint: "ftp://ec2.example.net", wantErr: "neither https nor plain http on loopback"},
		{name: "no-scheme", endpoint: "ec2.example.net", wantErr: "is not a URL"},
		{name: "unparsable", endpoint: "https://ec2.example.net:port", wantErr: "is not a URL"},
		{name: "credentials", endpoint: "https://user:s3cret@ec2.example.net", wantErr: `"https://user:xxxxx@ec2.example.net" holds credentials`},
		{name: "credentials-on-loopback", endpoint: "http://user:s3cret@127.0.0.1:4566", wantErr: "holds credentials"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := Check(tt.endpoint)
			if tt.wantErr == "" {
				if err != nil {
					t.Fatalf("Check(%q) = %v, want nil", tt.endpoint, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("Check(%q) = %v, want an error with %q", tt.endpoint, err, tt.wantErr)
			}
			if strings.Contains(err.Error(), "s3cret") {
				t.Errorf("Check(%q) shows the password: %v", tt.endpoint, err)
			}
		})
	}
}
