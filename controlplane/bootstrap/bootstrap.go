// Package bootstrap renders the user data that makes a launched instance
// join the fleet without a human: a #cloud-config document that writes
// the agent's settings to /etc/navarch/agent.yaml, downloads the agent's
// .deb, refuses it unless its SHA-256 is the one given, installs it with
// apt-get and enables and starts the agent's systemd unit.
//
// User data is a secret shared with whoever can read the instance's
// metadata: any process on the instance that reaches the metadata
// service, and anyone with the cloud account's permission to describe
// the instance. The document holds a join token, which is why each
// instance gets a token of its own, good for one use and a short time:
// once the agent has joined, the token is spent, and one read later from
// the metadata joins nothing. Nothing here logs the token, and the
// install script never sees it.
package bootstrap

import (
	"bytes"
	_ "embed"
	"errors"
	"fmt"
	"net"
	"net/url"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"unicode"

	"go.yaml.in/yaml/v3"

	"github.com/navarch/navarch/internal/rpcclient"
)

// Where the instance keeps what the document writes.
const (
	AgentConfigPath   = "/etc/navarch/agent.yaml"
	InstallScriptPath = "/usr/local/lib/navarch/install-agent.sh"
)

// installScript downloads, checks, installs and starts the agent; it is
// written by write_files and run by runcmd, with the package's URL and
// SHA-256 as arguments.
//
//go:embed install-agent.sh
var installScript string

// Options is what one instance's user data is rendered from.
type Options struct {
	// NodeID is the id the node's agent registers with.
	NodeID string
	// Server is the control plane's address the agent dials, HOST:PORT,
	// or several joined by commas (a leader and its standbys).
	Server string
	// CAHash pins the control plane's CA: sha256: and 64 hex digits, as
	// the control plane logs it (ca_pin).
	CAHash string
	// JoinToken is a single-use, short-lived agent token made for this
	// instance alone (NAME.SECRET).
	JoinToken string
	// Labels go on the node.
	Labels map[string]string
	// PackageURL is the agent's .deb: an https URL, or one the control
	// plane serves itself at Server, whose certificate the instance
	// cannot check yet (PackageSHA256 vouches for the file).
	PackageURL string
	// PackageSHA256 is the .deb's SHA-256 in hex; the instance refuses to
	// install a file with another.
	PackageSHA256 string
	// Settings are more of the agent's settings, keyed by its flags'
	// names, such as "scheduler": "slurm".
	Settings map[string]string
}

// bootstrapSettings are written from Options' own fields; ruled out are
// settings that would undo the bootstrap's TLS or its file.
var (
	bootstrapSettings = map[string]bool{"server": true, "ca-hash": true, "join-token": true, "node-id": true, "label": true}
	ruledOutSettings  = map[string]string{
		"ca-cert":  "the bootstrap pins the CA by hash (ca-hash)",
		"insecure": "a bootstrapped agent always uses TLS",
		"config":   "not a setting of the file",
		"version":  "not a setting of the file",
	}
	settingName = regexp.MustCompile(`^[a-z][a-z0-9-]*$`)
	sha256Hex   = regexp.MustCompile(`^[0-9a-f]{64}$`)
)

// CloudConfig renders the #cloud-config user data for one instance.
func CloudConfig(o Options) ([]byte, error) {
	tlsVerify, err := o.check()
	if err != nil {
		return nil, err
	}
	settings, err := agentSettings(o)
	if err != nil {
		return nil, fmt.Errorf("render agent settings: %w", err)
	}
	install := []string{"sh", InstallScriptPath, o.PackageURL, strings.ToLower(o.PackageSHA256)}
	if !tlsVerify {
		install = append(install, "--no-tls-verify")
	}
	doc := cloudConfig{
		WriteFiles: []writeFile{
			{Path: AgentConfigPath, Owner: "root:root", Permissions: "0600", Content: string(settings)},
			{Path: InstallScriptPath, Owner: "root:root", Permissions: "0700", Content: installScript},
		},
		Runcmd: [][]string{install},
	}
	var b bytes.Buffer
	b.WriteString("#cloud-config\n")
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(doc); err != nil {
		return nil, fmt.Errorf("render cloud-config: %w", err)
	}
	if err := enc.Close(); err != nil {
		return nil, fmt.Errorf("render cloud-config: %w", err)
	}
	return b.Bytes(), nil
}

type cloudConfig struct {
	WriteFiles []writeFile `yaml:"write_files"`
	Runcmd     [][]string  `yaml:"runcmd"`
}

type writeFile struct {
	Path        string `yaml:"path"`
	Owner       string `yaml:"owner"`
	Permissions string `yaml:"permissions"`
	Content     string `yaml:"content"`
}

// agentSettings renders agent.yaml: the agent's flags by name, the
// bootstrap's own first, labels as KEY=VALUE in key order, then the extra
// settings in name order. Every value is a string node, so the encoder
// quotes whatever YAML would read as something else.
func agentSettings(o Options) ([]byte, error) {
	root := &yaml.Node{Kind: yaml.MappingNode}
	add := func(name string, value *yaml.Node) {
		root.Content = append(root.Content, str(name), value)
	}
	add("server", str(o.Server))
	add("ca-hash", str(strings.ToLower(o.CAHash)))
	add("join-token", str(o.JoinToken))
	add("node-id", str(o.NodeID))
	if len(o.Labels) > 0 {
		list := &yaml.Node{Kind: yaml.SequenceNode}
		for _, k := range sortedKeys(o.Labels) {
			list.Content = append(list.Content, str(k+"="+o.Labels[k]))
		}
		add("label", list)
	}
	for _, k := range sortedKeys(o.Settings) {
		add(k, str(o.Settings[k]))
	}
	var b bytes.Buffer
	b.WriteString("# Written by the control plane for this node at its first boot;\n# the agent's settings, named as its flags. Mode 0600: it holds the\n# join token, which is spent once the node has joined.\n")
	enc := yaml.NewEncoder(&b)
	enc.SetIndent(2)
	if err := enc.Encode(&yaml.Node{Kind: yaml.DocumentNode, Content: []*yaml.Node{root}}); err != nil {
		return nil, err
	}
	if err := enc.Close(); err != nil {
		return nil, err
	}
	return b.Bytes(), nil
}

func str(v string) *yaml.Node {
	return &yaml.Node{Kind: yaml.ScalarNode, Tag: "!!str", Value: v}
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// check refuses options the instance could not use, naming the option;
// it reports whether the package's download can check TLS against the
// system's CAs (false for a package the control plane serves itself).
func (o Options) check() (tlsVerify bool, err error) {
	if o.NodeID == "" {
		return false, errors.New("option NodeID: empty")
	}
	if err := oneLine(o.NodeID); err != nil {
		return false, fmt.Errorf("option NodeID: %w", err)
	}
	// Several control planes, a leader and its standbys, are joined by
	// commas: the agent calls whichever leads.
	var servers [][2]string
	for _, addr := range strings.Split(o.Server, ",") {
		host, port, err := net.SplitHostPort(addr)
		if err != nil {
			return false, fmt.Errorf("option Server: %q is not HOST:PORT: %w", addr, err)
		}
		if err := checkHostPort(host, port); err != nil {
			return false, fmt.Errorf("option Server: %q: %w", addr, err)
		}
		servers = append(servers, [2]string{host, port})
	}
	if err := rpcclient.CheckPin(strings.ToLower(o.CAHash)); err != nil {
		return false, fmt.Errorf("option CAHash: %w", err)
	}
	if name, secret, ok := strings.Cut(o.JoinToken, "."); !ok || name == "" || secret == "" {
		// The token itself stays out of the error, which may be logged.
		return false, errors.New("option JoinToken: not an agent token (NAME.SECRET, from navarch token create --role agent)")
	}
	if strings.IndexFunc(o.JoinToken, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0 {
		return false, errors.New("option JoinToken: holds white space or a control character")
	}
	for _, k := range sortedKeys(o.Labels) {
		if k == "" || strings.Contains(k, "=") {
			return false, fmt.Errorf("option Labels: key %q: empty or holds '=', so KEY=VALUE would not give it back", k)
		}
		if err := oneLine(k); err != nil {
			return false, fmt.Errorf("option Labels: key %q: %w", k, err)
		}
	}
	if tlsVerify, err = o.checkPackageURL(servers); err != nil {
		return false, fmt.Errorf("option PackageURL: %w", err)
	}
	if !sha256Hex.MatchString(strings.ToLower(o.PackageSHA256)) {
		return false, fmt.Errorf("option PackageSHA256: %q is not 64 hex digits (sha256sum's first column)", o.PackageSHA256)
	}
	for _, k := range sortedKeys(o.Settings) {
		switch {
		case !settingName.MatchString(k):
			return false, fmt.Errorf("option Settings: %q is not an agent flag's name (lower case, without dashes in front)", k)
		case bootstrapSettings[k]:
			return false, fmt.Errorf("option Settings: %q comes from its own option", k)
		case ruledOutSettings[k] != "":
			return false, fmt.Errorf("option Settings: %q: %s", k, ruledOutSettings[k])
		}
	}
	return tlsVerify, nil
}

// checkPackageURL takes an https URL; one at a control plane's own
// address cannot be checked against the system's CAs.
func (o Options) checkPackageURL(servers [][2]string) (tlsVerify bool, err error) {
	if o.PackageURL == "" {
		return false, errors.New("empty")
	}
	if strings.IndexFunc(o.PackageURL, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0 {
		return false, fmt.Errorf("%q holds white space or a control character", o.PackageURL)
	}
	u, err := url.Parse(o.PackageURL)
	if err != nil {
		return false, err
	}
	if u.Scheme != "https" {
		return false, fmt.Errorf("%q is not an https URL", o.PackageURL)
	}
	if u.Host == "" {
		return false, fmt.Errorf("%q names no host", o.PackageURL)
	}
	if u.User != nil {
		return false, fmt.Errorf("%q holds a user name or password, which user data would show to anyone who reads it", u.Redacted())
	}
	port := u.Port()
	if port == "" {
		port = "443"
	}
	for _, hp := range servers {
		if strings.EqualFold(u.Hostname(), hp[0]) && port == hp[1] {
			return false, nil
		}
	}
	return true, nil
}

func checkHostPort(host, port string) error {
	if host == "" {
		return errors.New("no host")
	}
	if strings.IndexFunc(host, func(r rune) bool { return unicode.IsSpace(r) || unicode.IsControl(r) }) >= 0 {
		return errors.New("the host holds white space or a control character")
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return fmt.Errorf("port %q is not 1–65535", port)
	}
	return nil
}

// oneLine refuses control characters (a newline among them): ids and
// label keys are one line of text.
func oneLine(s string) error {
	if i := strings.IndexFunc(s, unicode.IsControl); i >= 0 {
		return fmt.Errorf("holds a control character at byte %d", i)
	}
	return nil
}
