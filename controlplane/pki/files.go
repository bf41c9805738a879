package pki

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"
)

// FileTLS is the server's TLS configuration for a certificate and key the
// operator brings; clients may present node certificates clientCAs signed.
// The files are read again when either changes, so a certificate renewed
// in place (by cert-manager, certbot or a script) is served from the next
// handshake on, without a restart.
func FileTLS(certFile, keyFile string, clientCAs *x509.CertPool) (*tls.Config, error) {
	f := &fileCert{certFile: certFile, keyFile: keyFile}
	if _, err := f.get(); err != nil {
		return nil, err
	}
	return &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return f.get() },
		ClientAuth:     tls.RequestClientCert, // checked by the gate, as in ServerTLS
		ClientCAs:      clientCAs,
	}, nil
}

type fileCert struct {
	certFile, keyFile string

	mu       sync.Mutex
	cert     *tls.Certificate
	certTime time.Time
	keyTime  time.Time
}

func (f *fileCert) get() (*tls.Certificate, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	ct, cerr := modTime(f.certFile)
	kt, kerr := modTime(f.keyFile)
	if err := errors.Join(cerr, kerr); err != nil {
		if f.cert != nil {
			return f.cert, nil // keep serving what was loaded
		}
		return nil, err
	}
	if f.cert != nil && ct.Equal(f.certTime) && kt.Equal(f.keyTime) {
		return f.cert, nil
	}
	c, err := tls.LoadX509KeyPair(f.certFile, f.keyFile)
	if err != nil {
		if f.cert != nil {
			// Half-written during a renewal: keep the old pair until
			// both files agree.
			return f.cert, nil
		}
		return nil, fmt.Errorf("load TLS certificate %s and key %s: %w", f.certFile, f.keyFile, err)
	}
	f.cert, f.certTime, f.keyTime = &c, ct, kt
	return f.cert, nil
}

func modTime(path string) (time.Time, error) {
	st, err := os.Stat(path)
	if err != nil {
		return time.Time{}, fmt.Errorf("TLS file: %w", err)
	}
	return st.ModTime(), nil
}
