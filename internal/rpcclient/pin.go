package rpcclient

import (
	"bytes"
	"context"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"slices"
	"strings"

	"google.golang.org/grpc/credentials"
)

// pinPrefix names the only hash a pin may use.
const pinPrefix = "sha256:"

// Pin is how Target.CAPin names cert: "sha256:" and the hex SHA-256 of its
// DER SubjectPublicKeyInfo, the form kubeadm prints for
// --discovery-token-ca-cert-hash. It depends on the key alone, so a CA
// certificate reissued for the same key keeps its pin.
func Pin(cert *x509.Certificate) string {
	sum := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
	return pinPrefix + hex.EncodeToString(sum[:])
}

// CheckPin reports whether pin is in Pin's form.
func CheckPin(pin string) error {
	_, err := parsePin(pin)
	return err
}

func parsePin(pin string) ([]byte, error) {
	hexSum, ok := strings.CutPrefix(pin, pinPrefix)
	if !ok {
		return nil, fmt.Errorf("CA pin %q does not start with %q", pin, pinPrefix)
	}
	sum, err := hex.DecodeString(hexSum)
	if err != nil || len(sum) != sha256.Size {
		return nil, fmt.Errorf("CA pin %q is not %s and %d hex digits", pin, pinPrefix, 2*sha256.Size)
	}
	return sum, nil
}

// verifyPinned does for a pinned client what the standard verification
// does with a CA file: the server's chain must hold a certificate whose
// public key has the pin, and the leaf must chain to that certificate,
// be valid now, be meant for a server, and name host, the host dialled
// (not cs.ServerName: TLS sends no server name for an IP address, and an
// empty name would skip the check). A server that merely includes the
// pinned CA beside a leaf signed by another is refused.
func verifyPinned(cs tls.ConnectionState, sum []byte, host string) error {
	if len(cs.PeerCertificates) == 0 {
		return errors.New("verify the control plane: it presented no certificate")
	}
	var pinned *x509.Certificate
	intermediates := x509.NewCertPool()
	for _, c := range cs.PeerCertificates {
		got := sha256.Sum256(c.RawSubjectPublicKeyInfo)
		if pinned == nil && bytes.Equal(got[:], sum) {
			pinned = c
			continue
		}
		intermediates.AddCert(c)
	}
	if pinned == nil {
		return fmt.Errorf("verify the control plane: no certificate it presented has the CA pin %s%x", pinPrefix, sum)
	}
	roots := x509.NewCertPool()
	roots.AddCert(pinned)
	_, err := cs.PeerCertificates[0].Verify(x509.VerifyOptions{
		DNSName:       host,
		Roots:         roots,
		Intermediates: intermediates,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
	if err != nil {
		return fmt.Errorf("verify the control plane against its pinned CA: %w", err)
	}
	return nil
}

// pinned is TLS to a control plane trusted by the pin of its CA. The
// standard verification needs the CA itself, which a pinned client does
// not have yet: verifyPinned does all of its checks, with the CA the pin
// picks out of the server's own chain, against the host of the address
// each handshake dials (its authority), so that every control plane of a
// list is checked against its own name.
type pinned struct {
	cfg *tls.Config
	sum []byte
}

func (p pinned) tls(authority string) credentials.TransportCredentials {
	cfg := p.cfg.Clone()
	host, _, err := net.SplitHostPort(authority)
	if err != nil {
		host = authority
	}
	cfg.InsecureSkipVerify = true
	cfg.VerifyConnection = func(cs tls.ConnectionState) error { return verifyPinned(cs, p.sum, host) }
	return credentials.NewTLS(cfg)
}

func (p pinned) ClientHandshake(ctx context.Context, authority string, conn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return p.tls(authority).ClientHandshake(ctx, authority, conn)
}

func (p pinned) ServerHandshake(conn net.Conn) (net.Conn, credentials.AuthInfo, error) {
	return nil, nil, errors.New("pinned control plane credentials are for clients only")
}

func (p pinned) Info() credentials.ProtocolInfo { return p.tls("").Info() }

func (p pinned) Clone() credentials.TransportCredentials {
	return pinned{cfg: p.cfg.Clone(), sum: slices.Clone(p.sum)}
}

// OverrideServerName implements the deprecated method of
// credentials.TransportCredentials; the name dialled is checked instead.
func (p pinned) OverrideServerName(string) error { return nil }
