package aws

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/aws/aws-sdk-go-v2/credentials"

	"github.com/navarch/navarch/controlplane/provider"
)

// TestCappedBody reads answers around the limit through the transport
// the provider wraps every request in; the limit is small here, since
// the real one is 32 MiB.
func TestCappedBody(t *testing.T) {
	const max = 1000
	tests := []struct {
		name    string
		size    int
		wantErr bool
	}{
		{"empty", 0, false},
		{"under", max - 1, false},
		{"exactly", max, false},
		{"one-over", max + 1, true},
		{"far-over", 100 * max, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
				_, _ = io.WriteString(w, strings.Repeat("x", tt.size))
			}))
			defer srv.Close()
			c := &http.Client{Transport: cappedTransport{next: http.DefaultTransport, max: max}}
			resp, err := c.Get(srv.URL)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			// One byte at a time, the way a decoder may ask.
			got, err := io.ReadAll(iotest.OneByteReader(resp.Body))
			if tt.wantErr {
				if err == nil || !strings.Contains(err.Error(), "longer than 1000 bytes") {
					t.Errorf("read = %v, want the answer refused as too long", err)
				}
				if len(got) > max {
					t.Errorf("read %d bytes, more than the limit", len(got))
				}
				return
			}
			if err != nil || len(got) != tt.size {
				t.Errorf("read %d bytes, %v; want %d", len(got), err, tt.size)
			}
		})
	}
}

// TestClientBounds checks the client New sends EC2's requests with: a caller's
// client keeps its transport (and so its TLS settings), under the
// provider's timeout, answer cap and redirect policy.
func TestClientBounds(t *testing.T) {
	given := &http.Client{Transport: &http.Transport{}, Timeout: time.Hour}
	c := DefaultConfig()
	c.Enabled, c.Region, c.AMI = true, "us-east-1", "ami-1"
	c.Subnets = []Subnet{{ID: "subnet-1", Zone: "us-east-1a"}}
	p, err := New(Options{Config: c, Env: provider.Env{Cluster: "c"}, HTTPClient: given,
		Credentials: credentials.NewStaticCredentialsProvider("AKID", "secret", "")})
	if err != nil {
		t.Fatal(err)
	}
	hc := p.ec2.http
	capped, ok := hc.Transport.(cappedTransport)
	switch {
	case !ok || capped.max != 32<<20:
		t.Errorf("transport %#v, want answers capped at 32 MiB", hc.Transport)
	case capped.next != given.Transport:
		t.Error("the given client's transport is not used")
	case hc.Timeout != time.Minute:
		t.Errorf("timeout %s, want a minute", hc.Timeout)
	case hc.CheckRedirect == nil || hc.CheckRedirect(nil, nil) != http.ErrUseLastResponse:
		t.Error("the client would follow redirects")
	}
}
