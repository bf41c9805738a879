package gcp

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"golang.org/x/oauth2"
	"google.golang.org/api/option"
)

// A redirect would have the client's transport add the access token to
// a request to whatever host the answer names.
func TestRedirectNotFollowed(t *testing.T) {
	f := startFake(t, false)
	f.auth = "Bearer secret-access-token"
	f.add(zoneA, "train-00000001", "RUNNING", clusterLabels("train-00000001", "train"))
	// The fake listens on 127.0.0.1; "localhost" is another host to the
	// client.
	elsewhere := strings.Replace(f.srv.URL, "127.0.0.1", "localhost", 1)
	front := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, elsewhere+r.URL.RequestURI(), http.StatusTemporaryRedirect)
	}))
	t.Cleanup(front.Close)
	p, err := New(Options{Config: testConfig(f), Cluster: "prod", ClientOptions: []option.ClientOption{
		option.WithEndpoint(apiBase(front.URL)),
		option.WithTokenSource(oauth2.StaticTokenSource(&oauth2.Token{AccessToken: "secret-access-token", TokenType: "Bearer"})),
	}})
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	got, err := p.List(context.Background())
	if err == nil || !strings.Contains(err.Error(), "redirects are not followed") {
		t.Fatalf("List = %+v, %v; want the redirect refused", got, err)
	}
	if n := f.count("list"); n != 0 {
		t.Errorf("the redirect was followed: %d list calls reached the other host", n)
	}
}

func TestResponseBodyCapped(t *testing.T) {
	f := newFake(t)
	f.add(zoneA, "train-00000001", "RUNNING", clusterLabels("train-00000001", "train"))
	f.padding = maxResponseBody
	p := newTestProvider(t, f, testConfig(f))
	if got, err := p.List(context.Background()); !errors.Is(err, errBodyTooLarge) {
		t.Fatalf("List = %+v, %v; want the answer refused as too large", got, err)
	}
}

func TestCappedBody(t *testing.T) {
	tests := []struct {
		name    string
		size    int
		wantErr bool
	}{
		{"under", 9, false},
		{"at-limit", 10, false},
		{"over", 11, true},
		{"far-over", 4096, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			body := &cappedBody{rc: io.NopCloser(strings.NewReader(strings.Repeat("x", tt.size))), left: 10}
			got, err := io.ReadAll(body)
			if tt.wantErr {
				if !errors.Is(err, errBodyTooLarge) || len(got) != 10 {
					t.Errorf("read %d bytes, %v; want 10 and the body refused", len(got), err)
				}
				return
			}
			if err != nil || len(got) != tt.size {
				t.Errorf("read %d bytes, %v; want all %d", len(got), err, tt.size)
			}
		})
	}
}

func TestRequestTimeout(t *testing.T) {
	f := newFake(t)
	f.hang = true
	p := newTestProvider(t, f, testConfig(f), func(o *Options) { o.RequestTimeout = 50 * time.Millisecond })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	got, err := p.List(ctx)
	var netErr net.Error
	if !errors.As(err, &netErr) || !netErr.Timeout() {
		t.Fatalf("List = %+v, %v; want the call timed out", got, err)
	}
	if ctx.Err() != nil {
		t.Error("only the caller's context ended the call")
	}
}
