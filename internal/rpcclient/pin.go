package rpcclient

import (
	"bytes"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
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
