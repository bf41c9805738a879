package aws_test

import (
	"context"
	"errors"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/credentials"

	"github.com/navarch/navarch/controlplane/provider"
	"github.com/navarch/navarch/controlplane/provider/aws"
)

// TestRedirectsAreNotFollowed has the endpoint redirect every call to a
// plain-http server on loopback: the signed request, and with it the
// access key's signature and the call's parameters, must never get there.
func TestRedirectsAreNotFollowed(t *testing.T) {
	for _, st := range []int{http.StatusFound, http.StatusTemporaryRedirect, http.StatusPermanentRedirect} {
		t.Run(http.StatusText(st), func(t *testing.T) {
			var (
				mu   sync.Mutex
				got  []string
				sigs []string
			)
			plain := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				mu.Lock()
				defer mu.Unlock()
				got = append(got, r.Method+" "+r.URL.Path)
				sigs = append(sigs, r.Header.Get("Authorization"))
			}))
			defer plain.Close()
			f := newFakeEC2(t)
			f.redirect, f.redirectTo = st, plain.URL
			p, _ := newProvider(t, f, nil)
			_, err := p.List(context.Background())
			if err == nil {
				t.Fatal("List() succeeded through a redirect")
			}
			mu.Lock()
			defer mu.Unlock()
			if len(got) > 0 {
				t.Errorf("the plain-http server got %q with Authorization %q", got, sigs)
			}
		})
	}
}

func TestRequestTimeout(t *testing.T) {
	f := newFakeEC2(t)
	f.hang = true
	p, err := aws.New(aws.Options{
		Config:         testConfig(f),
		Env:            provider.Env{Cluster: cluster},
		Credentials:    credentials.NewStaticCredentialsProvider(accessKey, secretKey, ""),
		HTTPClient:     f.srv.Client(),
		RequestTimeout: 100 * time.Millisecond,
		MaxAttempts:    1,
	})
	if err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	_, err = p.List(context.Background())
	var timeout interface{ Timeout() bool }
	if !errors.As(err, &timeout) || !timeout.Timeout() {
		t.Fatalf("List() = %v, want the request's timeout", err)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("List() gave up after %s, want about 100ms", d)
	}
}
