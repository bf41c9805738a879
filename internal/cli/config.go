package cli

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"go.yaml.in/yaml/v3"

	"github.com/navarch/navarch/internal/display"
	"github.com/navarch/navarch/internal/rpcclient"
	"github.com/navarch/navarch/internal/statedir"
)

// The config commands read and write the client configuration; none of
// them reaches the control plane.

// redacted stands for a token in what 'config view' prints.
const redacted = "REDACTED"

func runConfig(args []string, env Env) error {
	if len(args) == 0 {
		return within("config", usagef("config needs what to do: view, get-contexts, use-context, set-context or delete-context"))
	}
	what, args := args[0], args[1:]
	var err error
	switch what {
	case "-h", "-help", "--help":
		return helpError{groupUsage("config", "ACTION")}
	case "view":
		err = viewConfig(args, env)
	case "get-contexts":
		err = getContexts(args, env)
	case "use-context":
		err = useContext(args, env)
	case "set-context":
		err = setContext(args, env)
	case "delete-context":
		err = deleteContext(args, env)
	default:
		return within("config", usagef("config: unknown action %q (view, get-contexts, use-context, set-context, delete-context)", what))
	}
	return within("config "+what, err)
}

// configFlags makes a config command's flag set, without the connection
// flags: these commands never connect.
func configFlags(name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	return fs
}

// oneName parses a command that takes one context name.
func oneName(fs *flag.FlagSet, args []string) (string, error) {
	pos, err := parse(fs, args)
	if err != nil {
		return "", err
	}
	if len(pos) != 1 || pos[0] == "" {
		return "", usagef("%s needs exactly one context name", fs.Name())
	}
	return pos[0], nil
}

func viewConfig(args []string, env Env) error {
	fs := configFlags("config view")
	const text = "`yaml|json` output format"
	out := fs.String("o", "yaml", text)
	fs.StringVar(out, "output", "yaml", text)
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("config view takes no arguments")
	}
	if *out != "yaml" && *out != "json" {
		return usagef("-o: %q is not yaml or json", *out)
	}
	cfg, err := loadConfig(statedir.ClientConfig())
	if err != nil {
		return err
	}
	shown := clientConfig{CurrentContext: cfg.CurrentContext, Contexts: []clientContext{}}
	for _, ctx := range cfg.Contexts {
		if ctx.Token != "" {
			ctx.Token = redacted
		}
		shown.Contexts = append(shown.Contexts, ctx)
	}
	if *out == "json" {
		b, err := json.MarshalIndent(shown, "", "  ")
		if err != nil {
			return fmt.Errorf("encode the client configuration: %w", err)
		}
		_, err = fmt.Fprintf(env.Stdout, "%s\n", b)
		return err
	}
	enc := yaml.NewEncoder(env.Stdout)
	enc.SetIndent(2)
	if err := enc.Encode(shown); err != nil {
		return fmt.Errorf("encode the client configuration: %w", err)
	}
	return enc.Close()
}

func getContexts(args []string, env Env) error {
	fs := configFlags("config get-contexts")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("config get-contexts takes no arguments")
	}
	cfg, err := loadConfig(statedir.ClientConfig())
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(env.Stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "CURRENT\tNAME\tSERVER")
	for _, ctx := range cfg.Contexts {
		mark := ""
		if ctx.Name == cfg.CurrentContext {
			mark = "*"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", mark, ctx.Name, display.OrDash(ctx.Server))
	}
	return tw.Flush()
}

// existingContext reads the one context name cmd takes and the client
// configuration, which must have that context.
func existingContext(cmd string, args []string) (name, path string, cfg *clientConfig, err error) {
	if name, err = oneName(configFlags(cmd), args); err != nil {
		return "", "", nil, err
	}
	path = statedir.ClientConfig()
	if cfg, err = loadConfig(path); err != nil {
		return "", "", nil, err
	}
	if cfg.find(name) == nil {
		return "", "", nil, noContext(path, name)
	}
	return name, path, cfg, nil
}

func useContext(args []string, env Env) error {
	name, path, cfg, err := existingContext("config use-context", args)
	if err != nil {
		return err
	}
	cfg.CurrentContext = name
	if err := saveConfig(path, cfg); err != nil {
		return err
	}
	fmt.Fprintf(env.Stdout, "Switched to context %q.\n", name)
	return nil
}

func setContext(args []string, env Env) error {
	fs := configFlags("config set-context")
	var set clientContext
	fs.StringVar(&set.Server, "server", "", "`HOST:PORT` the control plane, or several joined by commas (a leader and its standbys); empty clears it")
	fs.StringVar(&set.CACert, "ca-cert", "", "`FILE` the CA certificate to trust it with (its DATA_DIR/pki/ca.crt); empty clears it")
	fs.BoolVar(&set.Insecure, "insecure", false, "dial it without TLS, a control plane started with --insecure on loopback; clears --ca-cert, and --insecure=false clears it")
	fs.StringVar(&set.Token, "token", "", "`TOKEN` the operator token to call with, kept in the configuration file; empty clears it")
	fs.StringVar(&set.TokenFile, "token-file", "", "`FILE` a file that holds the operator token, read at each call, so that the secret stays out of the configuration file; empty clears it")
	name, err := oneName(fs, args)
	if err != nil {
		return err
	}
	given := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { given[f.Name] = true })
	if given["token"] && given["token-file"] {
		return usagef("give --token or --token-file, not both")
	}
	if set.Insecure && set.CACert != "" {
		return usagef("give --insecure or --ca-cert, not both")
	}
	if given["server"] && set.Server != "" {
		addrs, err := rpcclient.ParseAddrs(set.Server)
		if err != nil {
			return usagef("--server: %v", err)
		}
		set.Server = strings.Join(addrs, ",")
	}
	for _, f := range []struct {
		flag string
		path *string
	}{{"ca-cert", &set.CACert}, {"token-file", &set.TokenFile}} {
		if *f.path == "" {
			continue
		}
		// Kept absolute, so that the context works from any directory.
		abs, err := filepath.Abs(*f.path)
		if err != nil {
			return fmt.Errorf("--%s: %w", f.flag, err)
		}
		if _, err := os.Stat(abs); err != nil {
			return usagef("--%s: %v", f.flag, err)
		}
		*f.path = abs
	}
	path := statedir.ClientConfig()
	cfg, err := loadConfig(path)
	if err != nil {
		return err
	}
	ctx, verb := cfg.find(name), "modified"
	if ctx == nil {
		cfg.Contexts = append(cfg.Contexts, clientContext{Name: name})
		ctx, verb = &cfg.Contexts[len(cfg.Contexts)-1], "created"
	}
	if given["server"] {
		ctx.Server = set.Server
	}
	// TLS with a CA and plaintext are one setting given two ways: either
	// replaces the other.
	if given["ca-cert"] {
		ctx.CACert = set.CACert
		if set.CACert != "" {
			ctx.Insecure = false
		}
	}
	if given["insecure"] {
		ctx.Insecure = set.Insecure
		if set.Insecure {
			ctx.CACert = ""
		}
	}
	// A token and a token file are one setting given two ways: either
	// replaces the other.
	if given["token"] {
		ctx.Token, ctx.TokenFile = set.Token, ""
	}
	if given["token-file"] {
		ctx.Token, ctx.TokenFile = "", set.TokenFile
	}
	became := ""
	if cfg.CurrentContext == "" {
		cfg.CurrentContext = name
		became = " It is the current context."
	}
	if err := saveConfig(path, cfg); err != nil {
		return err
	}
	fmt.Fprintf(env.Stdout, "Context %q %s.%s\n", name, verb, became)
	return nil
}

func deleteContext(args []string, env Env) error {
	name, path, cfg, err := existingContext("config delete-context", args)
	if err != nil {
		return err
	}
	kept := cfg.Contexts[:0]
	for _, ctx := range cfg.Contexts {
		if ctx.Name != name {
			kept = append(kept, ctx)
		}
	}
	cfg.Contexts = kept
	note := ""
	if cfg.CurrentContext == name {
		cfg.CurrentContext = ""
		note = " No context is current now; pick one with 'navarch config use-context NAME'."
	}
	if err := saveConfig(path, cfg); err != nil {
		return err
	}
	fmt.Fprintf(env.Stdout, "Context %q deleted.%s\n", name, note)
	return nil
}
