package identity

import (
	"context"
	"crypto/x509"
	"fmt"
	"log/slog"
	"time"

	"github.com/jonboulle/clockwork"
	"google.golang.org/grpc"

	nodev1 "github.com/navarch/navarch/proto/navarch/node/v1"
)

// Renewer is the call RenewLoop makes; a NodeServiceClient is one.
type Renewer interface {
	RenewNodeCertificate(ctx context.Context, in *nodev1.RenewNodeCertificateRequest, opts ...grpc.CallOption) (*nodev1.RenewNodeCertificateResponse, error)
}

// Retries after a failed renewal wait from firstRetry, doubling, up to
// maxRetry: a control plane that is down for a while is not flooded, and
// one that comes back is asked again within minutes, well inside the third
// of the certificate's life that is left.
const (
	firstRetry = 10 * time.Second
	maxRetry   = 10 * time.Minute
	// renewTimeout bounds one renewal call, so that a call stuck on a
	// half-open connection is retried.
	renewTimeout = time.Minute
)

// RenewLoop renews the node certificate through client, which must
// present it, once less than a third of its life is left, and again for
// each new certificate, until ctx ends. A failed renewal is retried with
// backoff. The new certificate is saved before it is used; connections
// already open keep working, and new handshakes present it. It returns at
// once if the identity has not joined.
func (id *Identity) RenewLoop(ctx context.Context, client Renewer, clock clockwork.Clock, log *slog.Logger) {
	if !id.Joined() {
		return
	}
	var retry time.Duration
	renewed := false
	for {
		wait := renewAt(id.leaf()).Sub(clock.Now())
		switch {
		case retry > 0:
			wait = retry
		case renewed:
			// A new certificate already due (its life cut short by a CA
			// near its own end) is not asked for again at once.
			wait = max(wait, maxRetry)
		}
		timer := clock.NewTimer(wait)
		select {
		case <-ctx.Done():
			timer.Stop()
			return
		case <-timer.Chan():
		}
		if err := id.renew(ctx, client); err != nil {
			if ctx.Err() != nil {
				return
			}
			retry = min(max(2*retry, firstRetry), maxRetry)
			log.Warn("node certificate not renewed; retrying", "err", err, "retry_in", retry, "expires", id.NotAfter())
			continue
		}
		retry, renewed = 0, true
		log.Info("node certificate renewed", "expires", id.NotAfter())
	}
}

// renewAt is when two thirds of the certificate's life have passed.
func renewAt(leaf *x509.Certificate) time.Time {
	life := leaf.NotAfter.Sub(leaf.NotBefore)
	return leaf.NotBefore.Add(life - life/3)
}

func (id *Identity) leaf() *x509.Certificate {
	id.mu.RLock()
	defer id.mu.RUnlock()
	return id.cert.Leaf
}

// renew asks for a certificate for the same key and node id, checks it,
// saves it, and then uses it.
func (id *Identity) renew(ctx context.Context, client Renewer) error {
	id.mu.RLock()
	key, ca, nodeID := id.key, id.ca, id.cert.Leaf.Subject.CommonName
	id.mu.RUnlock()
	csr, err := certificateRequest(key, nodeID)
	if err != nil {
		return fmt.Errorf("renew: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, renewTimeout)
	defer cancel()
	resp, err := client.RenewNodeCertificate(ctx, &nodev1.RenewNodeCertificateRequest{CertificateRequest: csr})
	if err != nil {
		return fmt.Errorf("renew: %w", err)
	}
	leaf, err := x509.ParseCertificate(resp.GetCertificate())
	if err != nil {
		return fmt.Errorf("renew: read the node certificate: %w", err)
	}
	if err := checkIssued(leaf, ca, key, nodeID); err != nil {
		return fmt.Errorf("renew: %w", err)
	}
	if err := writeFile(id.path(certFile), encodeCertificate(leaf), 0o644); err != nil {
		return fmt.Errorf("renew: %w", err)
	}
	id.mu.Lock()
	id.cert = tlsCertificate(leaf, key)
	id.mu.Unlock()
	return nil
}
