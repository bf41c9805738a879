// Package yamlfile decodes YAML configuration strictly, with errors that
// name the key they concern.
package yamlfile

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"reflect"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// Decode reads b into out. An unknown key is an error, and an error about
// a value names its key as a path ("auto_cordon.window", "xids[2].health")
// next to its line, and says what the key takes in words rather than as a
// Go type. Empty input leaves out as it was.
func Decode(b []byte, out any) error {
	dec := yaml.NewDecoder(bytes.NewReader(b))
	dec.KnownFields(true)
	err := dec.Decode(out)
	if errors.Is(err, io.EOF) {
		return nil
	}
	var root yaml.Node
	if yaml.Unmarshal(b, &root) != nil {
		return err
	}
	// The decoder truncates a fraction given for a whole number (count:
	// 1.5 reads as 1); a value silently changed is worse than an error.
	if frac := fractions(&root, reflect.TypeOf(out)); len(frac) > 0 {
		text := "yaml: unmarshal errors:"
		if err != nil {
			text = err.Error()
		}
		err = errors.New(text + "\n  " + strings.Join(frac, "\n  "))
	}
	if err == nil {
		return nil
	}
	paths := map[int][]keyAt{}
	index(&root, nil, paths)
	lines := strings.Split(err.Error(), "\n")
	for i, l := range lines {
		lines[i] = lineRE.ReplaceAllStringFunc(l, func(m string) string {
			n, _ := strconv.Atoi(lineRE.FindStringSubmatch(m)[1])
			if k := name(paths[n], kindOf(l)); k != "" {
				return fmt.Sprintf("line %d: %s:", n, k)
			}
			return m
		})
		lines[i] = typeRE.ReplaceAllStringFunc(lines[i], func(m string) string {
			sub := typeRE.FindStringSubmatch(m)
			return fmt.Sprintf("%s is not %s", got(sub[1], sub[2]), expected(sub[3]))
		})
	}
	return errors.New(strings.Join(lines, "\n"))
}

var (
	lineRE = regexp.MustCompile(`line (\d+):`)
	// typeRE matches the YAML decoder's account of a value of the wrong
	// kind: "cannot unmarshal !!str `abc` into int".
	typeRE = regexp.MustCompile("cannot unmarshal (!!\\w+)(?: `(.*)`)? into (.+)$")
)

// keyAt is a key or sequence item on a line: its path, and the kind of
// node its value is.
type keyAt struct {
	path []string
	kind yaml.Kind
}

// kindOf is the kind of node a line of the decoder's error is about, or 0
// when it does not say.
func kindOf(line string) yaml.Kind {
	sub := typeRE.FindStringSubmatch(line)
	switch {
	case sub == nil:
		return 0
	case sub[1] == "!!map":
		return yaml.MappingNode
	case sub[1] == "!!seq":
		return yaml.SequenceNode
	default:
		return yaml.ScalarNode
	}
}

// got says in words what value the file has.
func got(tag, value string) string {
	switch tag {
	case "!!map":
		return "a mapping"
	case "!!seq":
		return "a list"
	case "!!null":
		return "an empty value"
	case "!!str":
		return strconv.Quote(value)
	}
	return value
}

// expected says in words what a Go type takes, as the decoder names it.
func expected(goType string) string {
	t := strings.TrimLeft(goType, "*")
	switch {
	case t == durationType:
		return "a duration (use e.g. 10s, 5m, 1h)"
	case t == "bool":
		return "true or false"
	case t == "string":
		return "a string"
	case strings.HasPrefix(t, "uint"):
		return "a whole number, 0 or more"
	case strings.HasPrefix(t, "int"):
		return "a whole number"
	case strings.HasPrefix(t, "float"):
		return "a number"
	case strings.HasPrefix(t, "map["):
		return "a mapping of keys to values"
	case strings.HasPrefix(t, "[]"):
		return "a list"
	}
	// A struct, named or not: the configuration's own sections.
	return "a mapping of its settings"
}

// index records, for each line, the keys and sequence items on it, a path
// being its segments ("xids", "[0]", "repeat"). The document's top node
// has the empty path.
func index(n *yaml.Node, path []string, paths map[int][]keyAt) {
	at := func(line int, p []string, kind yaml.Kind) { paths[line] = append(paths[line], keyAt{p, kind}) }
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			at(c.Line, path, c.Kind)
			index(c, path, paths)
		}
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			p := append(slices.Clip(path), k.Value)
			at(k.Line, p, v.Kind)
			if v.Line != k.Line && (v.Kind == yaml.ScalarNode || v.Style&yaml.FlowStyle != 0) {
				at(v.Line, p, v.Kind) // key:\n  value, or key:\n  [a, b]
			}
			index(v, p, paths)
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			p := append(slices.Clip(path), fmt.Sprintf("[%d]", i))
			// An item of a flow sequence on its key's line ([a, b]) goes
			// by the key's name; one on a line of its own by its own.
			if n.Style&yaml.FlowStyle == 0 || c.Line != n.Line {
				at(c.Line, p, c.Kind)
			}
			index(c, p, paths)
		}
	}
}

// name picks what a line's error concerns. Of the keys on the line whose
// values are of the kind the error is about (a list given for a string is
// about the key holding the list), if any: the deepest path when the paths
// are nested in one another (- codes: [x] is rules[0].codes[0]), else the
// part they share ({count: x, window: 1h} is xids[0].repeat): the error's
// line cannot say which key it meant.
func name(keys []keyAt, kind yaml.Kind) string {
	var ps [][]string
	for _, k := range keys {
		if k.kind == kind {
			ps = append(ps, k.path)
		}
	}
	if len(ps) == 0 {
		for _, k := range keys {
			ps = append(ps, k.path)
		}
	}
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

// durationType is the type a Duration's error names, which Decode puts in
// words like the decoder's own.
const durationType = "duration"

// UnmarshalYAML reads a Go duration string. A value it cannot read is a
// type error, which the decoder gathers with its own for Decode to name.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	v, err := time.ParseDuration(n.Value)
	if n.Kind != yaml.ScalarNode || err != nil {
		value := ""
		if n.Kind == yaml.ScalarNode {
			value = " `" + n.Value + "`"
		}
		return &yaml.TypeError{Errors: []string{fmt.Sprintf("line %d: cannot unmarshal %s%s into %s", n.Line, n.ShortTag(), value, durationType)}}
	}
	d.Duration = v
	return nil
}
