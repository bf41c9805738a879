package main

import (
	"errors"
	"flag"
	"fmt"
	"os"

	"go.yaml.in/yaml/v3"
)

// applyConfig sets, from the YAML file at path, each flag the command line
// left unset: the file's keys are the flags' names (`server: HOST:PORT`,
// `scheduler: slurm`), and a list sets a repeatable flag once per item. A
// file that holds the join token must be readable by its owner alone.
func applyConfig(fs *flag.FlagSet, path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("--config: %w", err)
	}
	// The agent runs as root and the file names commands it runs
	// (reboot-command, nvidia-smi, slurm-bin): only its owner may change it.
	if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o022 != 0 {
		return fmt.Errorf("%s: writable by others (mode %04o), yet it names commands the agent runs: chmod go-w it", path, fi.Mode().Perm())
	}
	var doc yaml.Node
	if err := yaml.Unmarshal(b, &doc); err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	if len(doc.Content) == 0 {
		return nil // nothing but comments
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return fmt.Errorf("%s: line %d: settings are `name: value` lines, one per flag", path, root.Line)
	}
	onCommandLine := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { onCommandLine[f.Name] = true })
	seen := map[string]bool{}
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		name := k.Value
		at := fmt.Sprintf("%s: line %d: %s", path, k.Line, name)
		if fs.Lookup(name) == nil || name == "config" || name == "version" {
			return fmt.Errorf("%s: not a setting of navarch-agent; the settings are its flags' names, without dashes (navarch-agent --help)", at)
		}
		if seen[name] {
			return fmt.Errorf("%s: set twice", at)
		}
		seen[name] = true
		if name == "join-token" {
			if err := ownerOnly(path); err != nil {
				return fmt.Errorf("%s: %w", at, err)
			}
		}
		var values []string
		switch v.Kind {
		case yaml.ScalarNode:
			values = []string{v.Value}
		case yaml.SequenceNode:
			for _, c := range v.Content {
				if c.Kind != yaml.ScalarNode {
					return fmt.Errorf("%s: line %d: a list of plain values, please", at, c.Line)
				}
				values = append(values, c.Value)
			}
		default:
			return fmt.Errorf("%s: a value or a list of values, please", at)
		}
		if onCommandLine[name] {
			continue // the command line wins
		}
		for _, val := range values {
			if err := fs.Set(name, val); err != nil {
				if b, ok := fs.Lookup(name).Value.(interface{ IsBoolFlag() bool }); ok && b.IsBoolFlag() {
					return fmt.Errorf("%s: %q is not true or false", at, val)
				}
				if def := fs.Lookup(name).DefValue; def != "" && def != "[]" {
					return fmt.Errorf("%s: %q is not a value it takes (%w; the default is %s)", at, val, err, def)
				}
				return fmt.Errorf("%s: %q is not a value it takes (%w)", at, val, err)
			}
		}
	}
	return nil
}

// ownerOnly refuses a file others may read: it holds a secret.
func ownerOnly(path string) error {
	fi, err := os.Stat(path)
	if err != nil {
		return err
	}
	if mode := fi.Mode().Perm(); mode&0o077 != 0 {
		return errors.New("the join token is a secret, but the file is readable by others (mode " + fmt.Sprintf("%04o", mode) + "): chmod 600 it")
	}
	return nil
}
