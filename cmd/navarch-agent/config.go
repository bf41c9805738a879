package main

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"go.yaml.in/yaml/v3"

	"github.com/navarch/navarch/internal/rootfile"
)

// applyConfig sets, from the YAML file at path, each flag the command line
// left unset: the file's keys are the flags' names (`server: HOST:PORT`,
// `scheduler: slurm`), and a list sets a repeatable flag once per item
// (`server: [cp-1:50051, cp-2:50051]`). A
// file that holds the join token must be readable by its owner alone.
func applyConfig(fs *flag.FlagSet, path string) error {
	// The file names commands the agent runs (reboot-command, nvidia-smi,
	// slurm-bin): run as root, it reads a file only root may change, by
	// the path checked.
	read := path
	if os.Geteuid() == 0 {
		real, err := rootfile.Check(path)
		if errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("--config: %w", err)
		}
		if err != nil {
			return fmt.Errorf("--config: it names commands the agent runs as root: %w", err)
		}
		read = real
	}
	b, err := os.ReadFile(read)
	if err != nil {
		return fmt.Errorf("--config: %w", err)
	}
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil // empty
		}
		return fmt.Errorf("%s: %w", path, err)
	}
	var more yaml.Node
	if err := dec.Decode(&more); !errors.Is(err, io.EOF) {
		return fmt.Errorf("%s: holds more than one YAML document (a line of ---); the settings are one document", path)
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
			if v.ShortTag() == "!!null" {
				return fmt.Errorf(`%s: no value; give one, or "" for an empty one`, at)
			}
			values = []string{v.Value}
		case yaml.SequenceNode:
			if _, repeatable := fs.Lookup(name).Value.(*listFlag); !repeatable {
				return fmt.Errorf("%s: takes one value, not a list", at)
			}
			for _, c := range v.Content {
				if c.Kind != yaml.ScalarNode || c.ShortTag() == "!!null" {
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
