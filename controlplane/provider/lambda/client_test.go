package lambda_test

import (
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/navarch/navarch/controlplane/provider"
	"github.com/navarch/navarch/controlplane/provider/lambda"
)

// TestRedirectsAreNotFollowed has the API redirect every request to a
// plain-http server on loopback: the key must never get there, and the
// redirect is an error naming its status.
func TestRedirectsAreNotFollowed(t *testing.T) {
	for _, st := range []int{http.StatusMovedPermanently, http.StatusFound, http.StatusTemporaryRedirect, http.StatusPermanentRedirect} {
		t.Run(http.StatusText(st), func(t *testing.T) {
			var (
				mu    sync.Mutex
				auths []string
			)
			plain := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				mu.Lock()
				auths = append(auths, r.Header.Get("Authorization"))
				mu.Unlock()
				_, _ = w.Write([]byte(`{"data":[]}`))
			}))
			defer plain.Close()
			h := newHarness(t, nil)
			h.fake.set(func(f *fakeLambda) { f.redirect, f.redirectTo = st, plain.URL })
			_, err := h.prov.List(t.Context())
			if want := fmt.Sprintf("HTTP %d: a redirect to %q, not followed", st, plain.URL+"/api/v1/instances"); err == nil || !strings.Contains(err.Error(), want) {
				t.Fatalf("List() = %v, want an error saying %q", err, want)
			}
			if strings.Contains(err.Error(), testKey) {
				t.Errorf("the error shows the key: %v", err)
			}
			mu.Lock()
			defer mu.Unlock()
			if len(auths) > 0 {
				t.Errorf("the plain-http server got %d requests, with Authorization %q", len(auths), auths)
			}
			if n := h.fake.count("GET /instances"); n != 1 {
				t.Errorf("%d requests, want one: a redirect is not asked again", n)
			}
		})
	}
}

func TestRequestTimeout(t *testing.T) {
	h := newHarness(t, func(o *lambda.Options) { o.RequestTimeout = 100 * time.Millisecond })
	h.fake.set(func(f *fakeLambda) { f.hang = true })
	start := time.Now()
	_, err := h.prov.List(t.Context())
	var timeout interface{ Timeout() bool }
	if !errors.As(err, &timeout) || !timeout.Timeout() {
		t.Fatalf("List() = %v, want the request's timeout", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("List() gave up after %s, want about six times 100ms", d)
	}
}

func TestAnswerSize(t *testing.T) {
	tests := []struct {
		name     string
		nameSize int // of one instance's name, which makes the answer long
		wantErr  bool
	}{
		{"under-the-limit", 3 << 20, false},
		{"over-the-limit", 5 << 20, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, nil)
			h.fake.add(ourInstance("a", "n-1", "active"))
			h.fake.add(&fakeInstance{ID: "b", Name: strings.Repeat("x", tt.nameSize), Status: "active"})
			got, err := h.prov.List(t.Context())
			if tt.wantErr != (err != nil) {
				t.Fatalf("List() = %v, want an error: %t", err, tt.wantErr)
			}
			if !tt.wantErr {
				if len(got) != 1 || got[0] != (provider.Instance{NodeID: "n-1", InstanceID: "a", Pool: "train", Zone: "us-east-1"}) {
					t.Errorf("List() = %+v", got)
				}
				return
			}
			if !strings.Contains(err.Error(), "answer is longer than 4 MiB") {
				t.Errorf("List() = %v, want it to say the answer is too long", err)
			}
			if n := h.fake.count("GET /instances"); n != 1 {
				t.Errorf("%d requests, want one: the same answer is not asked for again", n)
			}
		})
	}
}
