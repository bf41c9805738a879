package static

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"os"
	"strings"
	"time"
	"unicode"

	"github.com/navarch/navarch/controlplane/provider"
	"github.com/navarch/navarch/internal/secretfile"
	"github.com/navarch/navarch/internal/yamlfile"
)

// Config is the static provider's section of the control plane's
// configuration, under the key static_provider.
type Config struct {
	// Enabled offers the provider.
	Enabled bool `yaml:"enabled"`
	// Machines are the machines it may power on, each with its BMC.
	Machines []MachineConfig `yaml:"machines"`
	// CredentialsFile is the BMC credentials of machines that name no
	// file of their own.
	CredentialsFile string `yaml:"credentials_file"`
	// CAFile is the PEM file of CAs to trust the BMCs of machines that
	// name no file of their own with.
	CAFile string `yaml:"ca_file"`
	// PowerOffOnTerminate is how Terminate powers a machine off:
	// "graceful" asks its operating system to shut down and forces it off
	// after ShutdownTimeout; "force" cuts its power at once.
	PowerOffOnTerminate string `yaml:"power_off_on_terminate"`
	// ShutdownTimeout is how long a graceful shutdown may take.
	ShutdownTimeout yamlfile.Duration `yaml:"shutdown_timeout"`
	// RequestTimeout bounds each request to a BMC.
	RequestTimeout yamlfile.Duration `yaml:"request_timeout"`
}

// MachineConfig is one machine: the node its agent registers as and the
// BMC that powers it.
type MachineConfig struct {
	// NodeID is the node id the machine's agent, installed on it already
	// or net-booted, registers with.
	NodeID string `yaml:"node_id"`
	// BMC is the https URL of the machine's BMC, such as
	// https://10.0.0.21.
	BMC string `yaml:"bmc"`
	// System is the Redfish path of the machine's computer system, such
	// as /redfish/v1/Systems/1; empty means the first member of the
	// BMC's Systems collection.
	System string `yaml:"system"`
	// Pool is the one pool the machine serves; empty means it serves
	// only nodes an operator provisions directly.
	Pool string `yaml:"pool"`
	// Labels are the labels the machine's agent registers with; a
	// provision that asks for others cannot be served by the machine.
	Labels map[string]string `yaml:"labels"`
	// CredentialsFile holds the BMC's username and password, readable by
	// its owner only: one line USERNAME:PASSWORD, or YAML with the keys
	// username and password. Empty means the section's credentials_file.
	CredentialsFile string `yaml:"credentials_file"`
	// CAFile is the PEM file of CAs the BMC's certificate must chain to,
	// in place of the system's; empty means the section's ca_file.
	CAFile string `yaml:"ca_file"`
	// InsecureSkipVerify trusts whatever certificate the BMC shows. It is
	// logged as a warning at each start: anyone on the network path can
	// then pose as the BMC and take its credentials.
	InsecureSkipVerify bool `yaml:"insecure_skip_verify"`
}

// Ways Terminate powers a machine off.
const (
	PowerOffGraceful = "graceful"
	PowerOffForce    = "force"
)

// DefaultConfig is the section's defaults.
func DefaultConfig() Config {
	return Config{
		PowerOffOnTerminate: PowerOffGraceful,
		ShutdownTimeout:     yamlfile.Duration{Duration: 3 * time.Minute},
		RequestTimeout:      yamlfile.Duration{Duration: 30 * time.Second},
	}
}

// On reports whether the provider is offered.
func (c *Config) On() bool { return c.Enabled }

// Validate checks the section; errors name the key within it. Files are
// read by Build.
func (c *Config) Validate() error {
	if c.Enabled && len(c.Machines) == 0 {
		return errors.New("machines: the provider is enabled but lists no machines")
	}
	switch c.PowerOffOnTerminate {
	case PowerOffGraceful, PowerOffForce:
	default:
		return fmt.Errorf("power_off_on_terminate: %q is not graceful or force", c.PowerOffOnTerminate)
	}
	if d := c.ShutdownTimeout.Duration; d < time.Second || d > time.Hour {
		return fmt.Errorf("shutdown_timeout: %s is not within 1s–1h", d)
	}
	if d := c.RequestTimeout.Duration; d < time.Second || d > 10*time.Minute {
		return fmt.Errorf("request_timeout: %s is not within 1s–10m", d)
	}
	nodes := make(map[string]int)
	systems := make(map[string]int)
	for i, m := range c.Machines {
		at := fmt.Sprintf("machines[%d]", i)
		if err := checkNodeID(m.NodeID); err != nil {
			return fmt.Errorf("%s.node_id: %w", at, err)
		}
		if j, dup := nodes[m.NodeID]; dup {
			return fmt.Errorf("%s.node_id: %q is machines[%d]'s already", at, m.NodeID, j)
		}
		nodes[m.NodeID] = i
		u, err := checkBMC(m.BMC)
		if err != nil {
			return fmt.Errorf("%s.bmc: %w", at, err)
		}
		if m.System != "" && !strings.HasPrefix(m.System, systemsPath+"/") {
			return fmt.Errorf("%s.system: %q is not a path under %s/", at, m.System, systemsPath)
		}
		key := u.Host + m.System
		if j, dup := systems[key]; dup {
			return fmt.Errorf("%s: the same BMC and system as machines[%d]", at, j)
		}
		systems[key] = i
		for k := range m.Labels {
			if k == "" {
				return fmt.Errorf("%s.labels: a label has an empty key", at)
			}
		}
		if m.CredentialsFile == "" && c.CredentialsFile == "" {
			return fmt.Errorf("%s.credentials_file: not set, and there is no credentials_file for all machines", at)
		}
		if m.InsecureSkipVerify && m.CAFile != "" {
			return fmt.Errorf("%s.insecure_skip_verify: set with a ca_file that would then go unused; drop one", at)
		}
	}
	return nil
}

// checkBMC takes an https URL of a host, with no credentials in it.
func checkBMC(s string) (*url.URL, error) {
	u, err := url.Parse(s)
	switch {
	case err != nil || u.Host == "":
		return nil, fmt.Errorf("%q is not a URL", s)
	case u.Scheme != "https":
		return nil, fmt.Errorf("%s is not https; BMC credentials go only over TLS", s)
	case u.User != nil:
		return nil, fmt.Errorf("%s holds credentials; put them in a credentials_file", u.Redacted())
	case u.Path != "" && u.Path != "/" || u.RawQuery != "" || u.Fragment != "":
		return nil, fmt.Errorf("%s has a path; give the BMC's address only, such as https://%s", s, u.Host)
	}
	return u, nil
}

// checkNodeID enforces the fleet's node id grammar: 1–253 characters of
// letters, digits, '.', '-' and '_', starting with a letter or digit.
func checkNodeID(id string) error {
	if id == "" {
		return errors.New("is required")
	}
	if len(id) > 253 {
		return fmt.Errorf("is %d bytes; the limit is 253", len(id))
	}
	for i, r := range id {
		if r >= unicode.MaxASCII || !(unicode.IsLetter(r) || unicode.IsDigit(r) || (i > 0 && strings.ContainsRune(".-_", r))) {
			return fmt.Errorf("%q has %q at offset %d; use letters, digits, '.', '-' and '_', starting with a letter or digit", id, r, i)
		}
	}
	return nil
}

// Build reads each machine's credentials and CAs and makes the provider.
// Errors name the key they concern. A BMC trusted without verification
// is logged as a warning.
func Build(c Config, env provider.Env) (*Provider, error) {
	log := env.Logger
	if log == nil {
		log = discard
	}
	creds := make(map[string]Credentials)
	clients := make(map[string]*http.Client)
	var machines []Machine
	for i, mc := range c.Machines {
		at := fmt.Sprintf("machines[%d]", i)
		credFile, credKey := mc.CredentialsFile, at+".credentials_file"
		if credFile == "" {
			credFile, credKey = c.CredentialsFile, "credentials_file"
		}
		cr, ok := creds[credFile]
		if !ok {
			var err error
			if cr, err = ReadCredentials(credFile); err != nil {
				return nil, fmt.Errorf("%s: %w", credKey, err)
			}
			creds[credFile] = cr
		}
		caFile, caKey := mc.CAFile, at+".ca_file"
		if caFile == "" {
			caFile, caKey = c.CAFile, "ca_file"
		}
		clientKey := fmt.Sprintf("%t|%s", mc.InsecureSkipVerify, caFile)
		hc, ok := clients[clientKey]
		if !ok {
			var err error
			if hc, err = httpClient(caFile, mc.InsecureSkipVerify); err != nil {
				return nil, fmt.Errorf("%s: %w", caKey, err)
			}
			clients[clientKey] = hc
		}
		if mc.InsecureSkipVerify {
			log.Warn("static provider: TLS verification of a BMC is off (insecure_skip_verify); anyone on the network path can pose as it and take its credentials",
				"node", mc.NodeID, "bmc", mc.BMC)
		}
		machines = append(machines, Machine{
			NodeID: mc.NodeID, BMC: mc.BMC, System: mc.System, Pool: mc.Pool, Labels: mc.Labels,
			Credentials: cr, HTTPClient: hc,
		})
	}
	return New(Options{
		Machines:        machines,
		ForceOff:        c.PowerOffOnTerminate == PowerOffForce,
		ShutdownTimeout: c.ShutdownTimeout.Duration,
		RequestTimeout:  c.RequestTimeout.Duration,
		Logger:          log,
	})
}

// ReadCredentials reads a BMC's username and password from path, which
// others must not be able to read: one line USERNAME:PASSWORD (the
// password is the rest of the line after the first colon), or YAML with
// the keys username and password.
func ReadCredentials(path string) (Credentials, error) {
	b, err := secretfile.Read(path, maxCredentialsFile)
	if err != nil {
		return Credentials{}, err
	}
	text := strings.TrimSpace(string(b))
	var c Credentials
	if !strings.Contains(text, "\n") {
		user, pass, ok := strings.Cut(text, ":")
		if !ok {
			return Credentials{}, fmt.Errorf("%s is neither one line USERNAME:PASSWORD nor YAML with username and password", path)
		}
		c = Credentials{Username: user, Password: pass}
	} else {
		var y struct {
			Username string `yaml:"username"`
			Password string `yaml:"password"`
		}
		if err := yamlfile.Decode([]byte(text), &y); err != nil {
			return Credentials{}, fmt.Errorf("%s: %w", path, err)
		}
		c = Credentials{Username: y.Username, Password: y.Password}
	}
	if c.Username == "" || c.Password == "" {
		return Credentials{}, fmt.Errorf("%s: the username or the password is empty", path)
	}
	return c, nil
}

// maxCredentialsFile bounds what is read of a credentials file.
const maxCredentialsFile = 64 << 10

// httpClient makes a client that trusts the CAs in caFile in place of the
// system's, or any certificate when insecure.
func httpClient(caFile string, insecure bool) (*http.Client, error) {
	cfg := &tls.Config{MinVersion: tls.VersionTLS12, InsecureSkipVerify: insecure}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("read CA: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s holds no PEM certificate", caFile)
		}
		cfg.RootCAs = pool
	}
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.TLSClientConfig = cfg
	return &http.Client{Transport: tr}, nil
}
