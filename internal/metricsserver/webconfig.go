package metricsserver

import (
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"

	"golang.org/x/crypto/bcrypt"

	"github.com/navarch/navarch/internal/yamlfile"
)

// webConfigFile is the part of Prometheus' web-config format this listener
// reads: TLS and basic authentication.
type webConfigFile struct {
	TLS       *tlsServerConfig  `yaml:"tls_server_config"`
	BasicAuth map[string]string `yaml:"basic_auth_users"`
}

type tlsServerConfig struct {
	CertFile       string `yaml:"cert_file"`
	KeyFile        string `yaml:"key_file"`
	ClientCAFile   string `yaml:"client_ca_file"`
	ClientAuthType string `yaml:"client_auth_type"`
	MinVersion     string `yaml:"min_version"`
}

// webConfig is a read web-config: nil tls serves plain HTTP, an empty users
// map asks for no authentication.
type webConfig struct {
	tls   *tls.Config
	users map[string][]byte // bcrypt hashes by user

	// cost is the highest bcrypt cost of the users' hashes: an unknown user
	// is checked at it, so a reply's timing does not tell who exists.
	cost      int
	dummyOnce sync.Once
	dummy     []byte

	mu       sync.Mutex
	verified map[string][32]byte // user → SHA-256 of the password last accepted
}

var clientAuthTypes = map[string]tls.ClientAuthType{
	"":                           tls.NoClientCert,
	"NoClientCert":               tls.NoClientCert,
	"RequestClientCert":          tls.RequestClientCert,
	"RequireAnyClientCert":       tls.RequireAnyClientCert,
	"VerifyClientCertIfGiven":    tls.VerifyClientCertIfGiven,
	"RequireAndVerifyClientCert": tls.RequireAndVerifyClientCert,
}

var tlsVersions = map[string]uint16{"": tls.VersionTLS12, "TLS12": tls.VersionTLS12, "TLS13": tls.VersionTLS13}

// readWebConfig reads path; an empty path is plain HTTP with no
// authentication. Relative file names in it are relative to its folder,
// as Prometheus reads them.
func readWebConfig(path string) (*webConfig, error) {
	c := &webConfig{verified: make(map[string][32]byte)}
	if path == "" {
		return c, nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("metrics web config: %w", err)
	}
	var f webConfigFile
	if err := yamlfile.Decode(b, &f); err != nil {
		return nil, fmt.Errorf("metrics web config %s: %w", path, err)
	}
	rel := func(p string) string {
		if p == "" || filepath.IsAbs(p) {
			return p
		}
		return filepath.Join(filepath.Dir(path), p)
	}
	if t := f.TLS; t != nil {
		if c.tls, err = t.config(rel); err != nil {
			return nil, fmt.Errorf("metrics web config %s: tls_server_config: %w", path, err)
		}
	}
	if len(f.BasicAuth) > 0 {
		c.users = make(map[string][]byte, len(f.BasicAuth))
		for user, hash := range f.BasicAuth {
			cost, err := bcrypt.Cost([]byte(hash))
			if err != nil {
				return nil, fmt.Errorf("metrics web config %s: basic_auth_users.%s: not a bcrypt hash (make one with `htpasswd -nBC 10 %s`)", path, user, user)
			}
			c.users[user] = []byte(hash)
			c.cost = max(c.cost, cost)
		}
	}
	return c, nil
}

func (t *tlsServerConfig) config(rel func(string) string) (*tls.Config, error) {
	if t.CertFile == "" || t.KeyFile == "" {
		return nil, errors.New("cert_file and key_file are required")
	}
	cert, err := tls.LoadX509KeyPair(rel(t.CertFile), rel(t.KeyFile))
	if err != nil {
		return nil, fmt.Errorf("cert_file/key_file: %w", err)
	}
	auth, ok := clientAuthTypes[t.ClientAuthType]
	if !ok {
		return nil, fmt.Errorf("client_auth_type: %q is not one of %s", t.ClientAuthType, strings.Join(keys(clientAuthTypes), ", "))
	}
	if t.ClientCAFile != "" {
		switch {
		case t.ClientAuthType == "":
			// A CA given is a CA meant to be checked.
			auth = tls.RequireAndVerifyClientCert
		case auth < tls.VerifyClientCertIfGiven:
			return nil, fmt.Errorf("client_auth_type %s checks no client certificate against client_ca_file; use RequireAndVerifyClientCert or VerifyClientCertIfGiven", t.ClientAuthType)
		}
	}
	minVersion, ok := tlsVersions[t.MinVersion]
	if !ok {
		return nil, fmt.Errorf("min_version: %q is not TLS12 or TLS13", t.MinVersion)
	}
	cfg := &tls.Config{Certificates: []tls.Certificate{cert}, ClientAuth: auth, MinVersion: minVersion}
	if t.ClientCAFile != "" {
		pem, err := os.ReadFile(rel(t.ClientCAFile))
		if err != nil {
			return nil, fmt.Errorf("client_ca_file: %w", err)
		}
		cfg.ClientCAs = x509.NewCertPool()
		if !cfg.ClientCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("client_ca_file: no PEM certificate in %s", t.ClientCAFile)
		}
	} else if auth >= tls.VerifyClientCertIfGiven {
		return nil, fmt.Errorf("client_auth_type %s needs a client_ca_file", t.ClientAuthType)
	}
	return cfg, nil
}

func keys[V any](m map[string]V) []string {
	var out []string
	for k := range m {
		if k != "" {
			out = append(out, k)
		}
	}
	sort.Strings(out)
	return out
}

func newTLSListener(ln net.Listener, cfg *tls.Config) net.Listener { return tls.NewListener(ln, cfg) }

// authenticate asks for basic authentication when users are configured.
// A password once accepted is remembered by its hash, so a scrape every
// few seconds does not pay bcrypt's cost each time.
func (c *webConfig) authenticate(next http.Handler) http.Handler {
	if len(c.users) == 0 {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		user, pass, ok := r.BasicAuth()
		if !ok || !c.check(user, pass) {
			w.Header().Set("WWW-Authenticate", `Basic realm="navarch metrics", charset="UTF-8"`)
			http.Error(w, "unauthorized", http.StatusUnauthorized)
			return
		}
		next.ServeHTTP(w, r)
	})
}

func (c *webConfig) check(user, pass string) bool {
	hash, known := c.users[user]
	sum := sha256.Sum256([]byte(pass))
	c.mu.Lock()
	seen, ok := c.verified[user]
	c.mu.Unlock()
	if known && ok && subtle.ConstantTimeCompare(seen[:], sum[:]) == 1 {
		return true
	}
	if !known {
		// The same work as for a known user, so a reply's timing does not
		// tell which users exist.
		_ = bcrypt.CompareHashAndPassword(c.unknownUserHash(), []byte(pass))
		return false
	}
	if bcrypt.CompareHashAndPassword(hash, []byte(pass)) != nil {
		return false
	}
	c.mu.Lock()
	c.verified[user] = sum
	c.mu.Unlock()
	return true
}

// unknownUserHash is a bcrypt hash, at the users' highest cost, of nothing
// anyone sends; made on first use.
func (c *webConfig) unknownUserHash() []byte {
	c.dummyOnce.Do(func() {
		c.dummy, _ = bcrypt.GenerateFromPassword([]byte("navarch: no such user"), max(c.cost, bcrypt.MinCost))
	})
	return c.dummy
}
