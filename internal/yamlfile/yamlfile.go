// Package yamlfile decodes YAML configuration strictly, with errors that
// name the key they concern.
package yamlfile

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Decode reads b into out. An unknown key is an error, and an error about
// a value names its key as a path ("auto_cordon.window", "xids[2].health")
// next to its line. Empty input leaves out as it was.
func Decode(b []byte, out any) error {
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	err := dec.Decode(out)
	if err == nil || errors.Is(err, io.EOF) {
		return nil
	}
	var root yaml.Node
	if yaml.Unmarshal(b, &root) != nil {
		return err
	}
	paths := map[int][][]string{}
	index(&root, nil, paths)
	return errors.New(lineRE.ReplaceAllStringFunc(err.Error(), func(m string) string {
		n, _ := strconv.Atoi(lineRE.FindStringSubmatch(m)[1])
		if k := name(paths[n]); k != "" {
			return fmt.Sprintf("line %d: %s:", n, k)
		}
		return m
	}))
}

var lineRE = regexp.MustCompile(`line (\d+):`)

// index records, for each line, the paths of the keys and sequence items
// on it, a path being its segments ("xids", "[0]", "repeat").
func index(n *yaml.Node, path []string, paths map[int][][]string) {
	at := func(line int, p []string) { paths[line] = append(paths[line], p) }
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			index(c, path, paths)
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			p := append(slices.Clip(path), k.Value)
			at(k.Line, p)
			if v.Line != k.Line && (v.Kind == yaml.ScalarNode || v.Style&yaml.FlowStyle != 0) {
				at(v.Line, p) // key:\n  value, or key:\n  [a, b]
			}
			index(v, p, paths)
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			p := append(slices.Clip(path), fmt.Sprintf("[%d]", i))
			// An item of a flow sequence on its key's line ([a, b]) goes
			// by the key's name; one on a line of its own by its own.
			if n.Style&yaml.FlowStyle == 0 || c.Line != n.Line {
				at(c.Line, p)
			}
			index(c, p, paths)
		}
	}
}

// name picks what a line's error concerns: the deepest path when the
// paths on the line are nested in one another (- codes: [x] is
// rules[0].codes[0]), else the part they share ({count: x, window: 1h} is
// xids[0].repeat): the error's line cannot say which key it meant.
func name(ps [][]string) string {
	if len(ps) == 0 {
		return ""
	}
	deepest := ps[0]
	for _, p := range ps[1:] {
		if len(p) > len(deepest) {
			deepest = p
		}
	}
	chain := true
	for _, p := range ps {
		chain = chain && slices.Equal(p, deepest[:len(p)])
	}
	pick := deepest
	if !chain {
		n := len(deepest)
		for _, p := range ps {
			i := 0
			for i < len(p) && i < n && p[i] == deepest[i] {
				i++
			}
			n = i
		}
		pick = deepest[:n]
	}
	var sb strings.Builder
	for _, seg := range pick {
		if sb.Len() > 0 && !strings.HasPrefix(seg, "[") {
			sb.WriteByte('.')
		}
		sb.WriteString(seg)
	}
	return sb.String()
}

// Duration is a time.Duration written as a Go duration string ("10s",
// "5m") in YAML.
type Duration struct{ time.Duration }

// UnmarshalYAML reads a Go duration string.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := time.ParseDuration(n.Value)
	if err != nil {
		return fmt.Errorf("line %d: %q is not a duration (use e.g. 10s, 5m, 1h)", n.Line, n.Value)
	}
	d.Duration = v
	return nil
}
