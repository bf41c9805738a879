package webhook

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"os"
	"sync"
	"time"

	"github.com/jonboulle/clockwork"
)

// The headers of a delivery.
const (
	HeaderSignature = "X-Navarch-Signature"
	HeaderEvent     = "X-Navarch-Event"
	HeaderDelivery  = "X-Navarch-Delivery"
)

// Sign is the X-Navarch-Signature value of body under secret.
func Sign(secret, body []byte) string {
	mac := hmac.New(sha256.New, secret)
	mac.Write(body)
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}

// sender delivers to one endpoint, one event at a time, in order.
type sender struct {
	endpoint Endpoint
	client   *http.Client
	log      *slog.Logger
	clock    clockwork.Clock
	size     int
	attempts int
	backoff  time.Duration
	wake     chan struct{}

	mu      sync.Mutex
	queue   []Event
	dropped uint64
	// dropping is set from the first drop until the queue empties, so a
	// burst of drops is logged once.
	dropping bool
}

// enqueue adds e, dropping the oldest event if the queue is full.
func (s *sender) enqueue(e Event) {
	s.mu.Lock()
	if len(s.queue) >= s.size {
		s.queue = s.queue[1:]
		s.dropped++
		if !s.dropping {
			s.dropping = true
			s.log.Warn("webhook queue full; dropping the oldest events until it drains", "queue", s.size)
		}
	}
	s.queue = append(s.queue, e)
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

// next takes the oldest queued event.
func (s *sender) next() (Event, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.queue) == 0 {
		s.dropping = false
		return Event{}, false
	}
	e := s.queue[0]
	s.queue = s.queue[1:]
	return e, true
}

func (s *sender) run(ctx context.Context) {
	for {
		e, ok := s.next()
		if !ok {
			select {
			case <-ctx.Done():
				return
			case <-s.wake:
				continue
			}
		}
		s.deliver(ctx, e)
	}
}

// deliver tries e until it is accepted, refused for good, the attempts
// run out or ctx ends. The delivery id stays the same across attempts, so
// a receiver can tell a retry from a new event.
func (s *sender) deliver(ctx context.Context, e Event) {
	body, err := json.Marshal(e)
	if err != nil {
		s.log.Error("webhook event not encoded", "event", e.ID, "err", err)
		return
	}
	delivery := newID()
	wait := s.backoff
	for attempt := 1; ; attempt++ {
		err := s.post(ctx, e.Type, delivery, body)
		if err == nil || ctx.Err() != nil {
			return
		}
		if errors.Is(err, errPermanent) || attempt >= s.attempts {
			s.log.Warn("webhook delivery given up", "event", e.ID, "type", e.Type, "delivery", delivery,
				"attempts", attempt, "err", err)
			return
		}
		s.log.Debug("webhook delivery failed; retrying", "event", e.ID, "attempt", attempt, "err", err)
		// Full jitter over [wait/2, wait), so endpoints that failed
		// together do not retry together.
		d := wait/2 + rand.N(wait/2+1)
		select {
		case <-ctx.Done():
			return
		case <-s.clock.After(d):
		}
		wait = min(wait*2, s.backoff*32)
	}
}

// post makes one attempt. A network error, a 5xx or a 429 may be retried;
// another 4xx wraps errPermanent.
func (s *sender) post(ctx context.Context, typ, delivery string, body []byte) error {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, s.endpoint.URL, bytes.NewReader(body))
	if err != nil {
		return fmt.Errorf("build request: %w: %w", errPermanent, err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("User-Agent", "navarch-webhook")
	req.Header.Set(HeaderSignature, Sign(s.endpoint.Secret, body))
	req.Header.Set(HeaderEvent, typ)
	req.Header.Set(HeaderDelivery, delivery)
	resp, err := s.client.Do(req)
	if err != nil {
		return fmt.Errorf("post: %w", err)
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 64<<10))
	_ = resp.Body.Close()
	switch c := resp.StatusCode; {
	case c >= 200 && c < 300:
		return nil
	case c == http.StatusTooManyRequests || c >= 500:
		return fmt.Errorf("answered %s", resp.Status)
	default:
		return fmt.Errorf("answered %s: %w", resp.Status, errPermanent)
	}
}

// newClient is a client whose every attempt is bounded by timeout, and
// that trusts the CAs in caFile besides the system's, when given.
func newClient(caFile string, timeout time.Duration) (*http.Client, error) {
	tr := http.DefaultTransport.(*http.Transport).Clone()
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("read ca_file: %w", err)
		}
		pool, err := x509.SystemCertPool()
		if err != nil {
			pool = x509.NewCertPool()
		}
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("ca_file %s holds no PEM certificate", caFile)
		}
		tr.TLSClientConfig = &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}
	}
	return &http.Client{
		Transport: tr,
		Timeout:   timeout,
		// A redirect could take the signed body somewhere not configured.
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}, nil
}
