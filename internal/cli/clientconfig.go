package cli

import (
	"bytes"
	"cmp"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"go.yaml.in/yaml/v3"

	"github.com/navarch/navarch/internal/rpcclient"
	"github.com/navarch/navarch/internal/statedir"
	"github.com/navarch/navarch/internal/yamlfile"
)

// The client configuration keeps named contexts, each a control plane and
// how to reach it, the way kubectl's kubeconfig does, in
// statedir.ClientConfig():
//
//	current-context: prod
//	contexts:
//	  - name: prod
//	    server: cp-1.example.com:50051,cp-2.example.com:50051
//	    ca-cert: /etc/navarch/ca.crt
//	    token-file: /home/me/.navarch-prod.token
//
// A relative ca-cert or token-file is read from the file's directory.

// clientConfig is the client configuration file.
type clientConfig struct {
	CurrentContext string          `yaml:"current-context,omitempty" json:"current-context"`
	Contexts       []clientContext `yaml:"contexts,omitempty" json:"contexts"`
}

// clientContext is one named control plane and how to reach it; a setting
// left empty falls through to the default.
type clientContext struct {
	Name string `yaml:"name" json:"name"`
	// Server is its HOST:PORT, or the addresses of a leader and its
	// standbys joined by commas.
	Server string `yaml:"server,omitempty" json:"server"`
	// CACert is a file with the CA to trust it with.
	CACert string `yaml:"ca-cert,omitempty" json:"ca-cert"`
	// Insecure dials it without TLS: a control plane started with
	// --insecure, which only listens on loopback. It excludes CACert.
	Insecure bool `yaml:"insecure,omitempty" json:"insecure"`
	// Token is the operator token to call with, or TokenFile a file that
	// holds it, so that the secret need not sit in this file.
	Token     string `yaml:"token,omitempty" json:"token"`
	TokenFile string `yaml:"token-file,omitempty" json:"token-file"`
}

// notFoundError is a context or a pool that does not exist: exit 3.
type notFoundError struct{ msg string }

func (e notFoundError) Error() string { return e.msg }

// noContext says that the configuration at path has no context name.
func noContext(path, name string) error {
	return notFoundError{fmt.Sprintf("no context %q in %s ('navarch config get-contexts' lists them)", name, path)}
}

// loadConfig reads the client configuration at path; a missing file is an
// empty configuration. A file that holds a token and that others may read
// is refused, as ssh refuses such a key.
func loadConfig(path string) (*clientConfig, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return &clientConfig{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read the client configuration: %w", err)
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("read the client configuration: %w", err)
	}
	b, err := io.ReadAll(f)
	if err != nil {
		return nil, fmt.Errorf("read the client configuration: %w", err)
	}
	var c clientConfig
	if err := yamlfile.Decode(b, &c); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if err := c.check(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	for _, ctx := range c.Contexts {
		if ctx.Token != "" {
			if err := private(path, info, "a token"); err != nil {
				return nil, err
			}
			break
		}
	}
	return &c, nil
}

// private refuses a file that holds a secret (what) when its mode lets
// the group or others read it.
func private(path string, info fs.FileInfo, what string) error {
	if perm := info.Mode().Perm(); perm&0o044 != 0 {
		return fmt.Errorf("%s holds %s but its mode %04o lets others read it; run chmod 600 %s", path, what, perm, path)
	}
	return nil
}

// check finds what decoding cannot: contexts without a name or with the
// name of another, and a context with both a token and a token file.
func (c *clientConfig) check() error {
	seen := map[string]bool{}
	for i, ctx := range c.Contexts {
		switch {
		case ctx.Name == "":
			return fmt.Errorf("contexts[%d]: no name", i)
		case seen[ctx.Name]:
			return fmt.Errorf("contexts[%d]: the name %q is used twice", i, ctx.Name)
		case ctx.Token != "" && ctx.TokenFile != "":
			return fmt.Errorf("contexts[%d] (%s): token and token-file are both set; keep one", i, ctx.Name)
		case ctx.Insecure && ctx.CACert != "":
			return fmt.Errorf("contexts[%d] (%s): insecure and ca-cert are both set; keep one", i, ctx.Name)
		}
		seen[ctx.Name] = true
	}
	return nil
}

// find returns the context called name, or nil.
func (c *clientConfig) find(name string) *clientContext {
	for i := range c.Contexts {
		if c.Contexts[i].Name == name {
			return &c.Contexts[i]
		}
	}
	return nil
}

// pick is the context to connect with: the one named, else the current
// one; nil when none is named and none is current.
func (c *clientConfig) pick(path, name string) (*clientContext, error) {
	if name != "" {
		if ctx := c.find(name); ctx != nil {
			return ctx, nil
		}
		return nil, noContext(path, name)
	}
	if c.CurrentContext == "" {
		return nil, nil
	}
	if ctx := c.find(c.CurrentContext); ctx != nil {
		return ctx, nil
	}
	return nil, notFoundError{fmt.Sprintf("the current context %q is not in %s; pick one with 'navarch config use-context NAME'", c.CurrentContext, path)}
}

// token is the context's token, from the file itself or from its token
// file; a relative token file is read from dir.
func (ctx *clientContext) token(dir string) (string, error) {
	if ctx.TokenFile == "" {
		return ctx.Token, nil
	}
	path := besides(dir, ctx.TokenFile)
	f, err := os.Open(path)
	if err != nil {
		return "", fmt.Errorf("context %s: read its token: %w", ctx.Name, err)
	}
	defer f.Close()
	info, err := f.Stat()
	if err != nil {
		return "", fmt.Errorf("context %s: read its token: %w", ctx.Name, err)
	}
	if err := private(path, info, "context "+ctx.Name+"'s token"); err != nil {
		return "", err
	}
	b, err := io.ReadAll(f)
	if err != nil {
		return "", fmt.Errorf("context %s: read its token: %w", ctx.Name, err)
	}
	token := strings.TrimSpace(string(b))
	if token == "" {
		return "", fmt.Errorf("context %s: its token file %s is empty", ctx.Name, path)
	}
	return token, nil
}

// besides resolves a path from the configuration file, which dir holds.
func besides(dir, path string) string {
	if path == "" || filepath.IsAbs(path) {
		return path
	}
	return filepath.Join(dir, path)
}

// saveConfig writes the configuration to path atomically (a whole new
// file or the old one, never half of one), 0600 in a directory made 0700,
// since it may hold tokens.
func saveConfig(path string, c *clientConfig) error {
	var buf bytes.Buffer
	enc := yaml.NewEncoder(&buf)
	enc.SetIndent(2)
	if err := enc.Encode(c); err != nil {
		return fmt.Errorf("encode the client configuration: %w", err)
	}
	if err := enc.Close(); err != nil {
		return fmt.Errorf("encode the client configuration: %w", err)
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("save the client configuration: %w", err)
	}
	// CreateTemp makes the file 0600.
	f, err := os.CreateTemp(dir, ".config-*.yaml")
	if err != nil {
		return fmt.Errorf("save the client configuration: %w", err)
	}
	tmp := f.Name()
	_, err = f.Write(buf.Bytes())
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		_ = os.Remove(tmp)
		return fmt.Errorf("save the client configuration: %w", err)
	}
	return nil
}

// target resolves where and how to reach the control plane. Each setting
// comes from the first that gives it of: its flag, its environment
// variable, the context (--context, else the configuration's current one),
// and the default (127.0.0.1:50051; this machine's default control plane's
// CA, and for a control plane on loopback its admin token). The
// configuration is read only when a flag or variable leaves a setting
// open, or --context names a context.
func (c *connFlags) target() (rpcclient.Target, error) {
	t := rpcclient.Target{
		Addr:     cmp.Or(c.server, os.Getenv(rpcclient.EnvServer)),
		CACert:   cmp.Or(c.caCert, os.Getenv(rpcclient.EnvCACert)),
		Insecure: c.insecure,
		Token:    cmp.Or(c.token, os.Getenv(rpcclient.EnvToken)),
	}
	if c.context != "" || t.Addr == "" || (t.CACert == "" && !t.Insecure) || t.Token == "" {
		path := statedir.ClientConfig()
		cfg, err := loadConfig(path)
		if err != nil {
			return rpcclient.Target{}, err
		}
		ctx, err := cfg.pick(path, c.context)
		if err != nil {
			return rpcclient.Target{}, err
		}
		if ctx != nil {
			dir := filepath.Dir(path)
			t.Context = ctx.Name
			t.Addr = cmp.Or(t.Addr, ctx.Server)
			t.CACert = cmp.Or(t.CACert, besides(dir, ctx.CACert))
			// A CA from a flag or the environment means TLS, whatever the
			// context says.
			t.Insecure = t.Insecure || (ctx.Insecure && t.CACert == "")
			if t.Token == "" {
				if t.Token, err = ctx.token(dir); err != nil {
					return rpcclient.Target{}, err
				}
			}
		}
	}
	t.Addr = cmp.Or(t.Addr, rpcclient.DefaultServer)
	if t.CACert == "" && !t.Insecure {
		t.CACert = rpcclient.LocalCACert()
	}
	if t.Token == "" {
		token, err := rpcclient.LocalAdminToken(t.Addr)
		if err != nil {
			return rpcclient.Target{}, fmt.Errorf("find a token: %w", err)
		}
		t.Token = token
	}
	return t, nil
}
