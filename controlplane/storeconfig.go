package controlplane

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"time"

	"github.com/navarch/navarch/internal/secretfile"
	"github.com/navarch/navarch/store"
	etcdstore "github.com/navarch/navarch/store/etcd"
)

// The store backends.
const (
	// StoreBadger is the embedded store in DataDir, for one control plane.
	StoreBadger = "badger"
	// StoreEtcd keeps the state in an etcd cluster shared by two or three
	// control planes, one of them leading (docs/ha.md).
	StoreEtcd = "etcd"
)

// EtcdConfig configures the etcd store and the election of the leader
// that runs on the same cluster.
type EtcdConfig struct {
	// Endpoints are the cluster members' client URLs (https://HOST:2379)
	// or HOST:PORT.
	Endpoints []string `yaml:"endpoints"`
	// CAFile holds the CA that signs the members' certificates; empty
	// trusts the system's. A URL with https, or any of the three files,
	// turns TLS on.
	CAFile string `yaml:"ca_file"`
	// CertFile and KeyFile are this control plane's client certificate
	// for a cluster that authenticates clients; both or neither.
	CertFile string `yaml:"cert_file"`
	KeyFile  string `yaml:"key_file"`
	// Username and PasswordFile log in to a cluster with authentication
	// on; the password is read from the file, which only its owner may
	// read.
	Username     string `yaml:"username"`
	PasswordFile string `yaml:"password_file"`
	// Prefix is put before every key, so several fleets can share a
	// cluster.
	Prefix string `yaml:"prefix"`
	// DialTimeout bounds connecting to the cluster.
	DialTimeout Duration `yaml:"dial_timeout"`
	// LeaseTTL is how long the leader's lease lasts unrenewed: the
	// longest a standby waits to take over from a leader that died.
	LeaseTTL Duration `yaml:"lease_ttl"`
}

// defaultEtcd is the etcd section's defaults.
func defaultEtcd() EtcdConfig {
	return EtcdConfig{
		Prefix:      "/navarch/",
		DialTimeout: Duration{Duration: 5 * time.Second},
		LeaseTTL:    Duration{Duration: 5 * time.Second},
	}
}

// checkStore checks the store's settings and, with etcd, the address
// standbys name as this control plane's.
func (c *Config) checkStore() error {
	switch c.Store {
	case StoreBadger:
		return nil
	case StoreEtcd:
	default:
		return fmt.Errorf("store: %q is not %s or %s", c.Store, StoreBadger, StoreEtcd)
	}
	e := c.Etcd
	if len(e.Endpoints) == 0 {
		return errors.New("etcd.endpoints: store is etcd but no endpoint is given")
	}
	secured := e.CAFile != "" || e.CertFile != "" || e.Username != ""
	for i, ep := range e.Endpoints {
		if err := checkEndpoint(ep); err != nil {
			return fmt.Errorf("etcd.endpoints[%d]: %w", i, err)
		}
		// etcd's client drops TLS, and sends the password in the clear, to
		// an http endpoint whatever else is set.
		if secured && strings.HasPrefix(ep, "http://") {
			return fmt.Errorf("etcd.endpoints[%d]: %q is plain http, but TLS files or a user are set; use https", i, ep)
		}
	}
	if (e.CertFile == "") != (e.KeyFile == "") {
		return errors.New("etcd.cert_file: a client certificate needs etcd.key_file, and a key etcd.cert_file")
	}
	if e.Username != "" && e.PasswordFile == "" {
		return errors.New("etcd.password_file: etcd.username is set without a password file")
	}
	if e.Username == "" && e.PasswordFile != "" {
		return errors.New("etcd.username: etcd.password_file is set without a user name")
	}
	if e.PasswordFile != "" {
		if _, err := readEtcdPassword(e.PasswordFile); err != nil {
			return err
		}
	}
	if e.Prefix == "" || !strings.HasPrefix(e.Prefix, "/") || strings.ContainsAny(e.Prefix, " \t\n") {
		return fmt.Errorf("etcd.prefix: %q must start with / and hold no spaces", e.Prefix)
	}
	if e.DialTimeout.Duration < 100*time.Millisecond {
		return fmt.Errorf("etcd.dial_timeout: %s is below the minimum of 100ms", e.DialTimeout.Duration)
	}
	if e.LeaseTTL.Duration < 2*time.Second || e.LeaseTTL.Duration > time.Minute {
		return fmt.Errorf("etcd.lease_ttl: %s is not within 2s–1m", e.LeaseTTL.Duration)
	}
	if _, err := c.advertise(); err != nil {
		return err
	}
	return nil
}

// checkEndpoint checks an etcd endpoint: a URL with a host, or HOST:PORT.
func checkEndpoint(ep string) error {
	if strings.Contains(ep, "://") {
		u, err := url.Parse(ep)
		switch {
		case err != nil:
			return fmt.Errorf("%q is not a URL", ep)
		case u.Scheme == "unix" || u.Scheme == "unixs":
			if u.Host == "" && u.Path == "" {
				return fmt.Errorf("%q names no socket", ep)
			}
		case u.Scheme != "http" && u.Scheme != "https" || u.Host == "":
			return fmt.Errorf("%q is not an http, https or unix URL with a host", ep)
		}
		return nil
	}
	if _, _, err := net.SplitHostPort(ep); err != nil {
		return fmt.Errorf("%q is not a URL or HOST:PORT", ep)
	}
	return nil
}

// advertise is the address clients reach this control plane at, which
// standbys answer with while it leads: Advertise, or the listen address
// when its host is one a client can dial.
func (c *Config) advertise() (string, error) {
	if c.Advertise != "" {
		host, _, err := net.SplitHostPort(c.Advertise)
		if err != nil || host == "" {
			return "", fmt.Errorf("advertise: %q is not HOST:PORT", c.Advertise)
		}
		if ip := net.ParseIP(host); ip != nil && ip.IsUnspecified() {
			return "", fmt.Errorf("advertise: %q is not an address a client can dial", c.Advertise)
		}
		return c.Advertise, nil
	}
	host, _, _ := net.SplitHostPort(c.Listen)
	if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
		return "", fmt.Errorf("advertise: must be set with store %s when listen (%s) names no host clients can dial", StoreEtcd, c.Listen)
	}
	return c.Listen, nil
}

// storeLimits are the history's retention and per-node caps, for either
// store.
func (c *Config) storeLimits() store.Limits {
	return store.Limits{EventRetention: c.EventRetention.Duration, EventsPerNode: c.EventsPerNode,
		CommandsPerNode: c.CommandsPerNode, AuditRetention: c.AuditRetention.Duration}
}

// etcdPrefix is etcd.prefix ending with a slash, as the store uses it:
// the election's keys go under the same one.
func (c *Config) etcdPrefix() string {
	if strings.HasSuffix(c.Etcd.Prefix, "/") {
		return c.Etcd.Prefix
	}
	return c.Etcd.Prefix + "/"
}

// etcdOptions are the etcd store's options, its password read from its
// file.
func (c *Config) etcdOptions() (etcdstore.Options, error) {
	e := c.Etcd
	o := etcdstore.Options{
		Endpoints:   e.Endpoints,
		TLS:         etcdstore.TLSFiles{CAFile: e.CAFile, CertFile: e.CertFile, KeyFile: e.KeyFile},
		Username:    e.Username,
		DialTimeout: e.DialTimeout.Duration,
		Prefix:      c.etcdPrefix(),
		Limits:      c.storeLimits(),
	}
	if e.PasswordFile != "" {
		pw, err := readEtcdPassword(e.PasswordFile)
		if err != nil {
			return o, err
		}
		o.Password = pw
	}
	return o, nil
}

// readEtcdPassword reads the etcd user's password from its file, which
// only its owner may read, refusing an empty one.
func readEtcdPassword(path string) (string, error) {
	b, err := secretfile.Read(path, 4096)
	if err != nil {
		return "", fmt.Errorf("etcd.password_file: %w", err)
	}
	pw := strings.TrimSpace(string(b))
	if pw == "" {
		return "", fmt.Errorf("etcd.password_file: %s is empty", path)
	}
	return pw, nil
}
