// Package yamlfile decodes YAML configuration strictly, with errors that
// name the key they concern.
package yamlfile

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"regexp"
	"strconv"

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
	keys := map[int]string{}
	index(&root, "", keys)
	return errors.New(lineRE.ReplaceAllStringFunc(err.Error(), func(m string) string {
		n, _ := strconv.Atoi(lineRE.FindStringSubmatch(m)[1])
		if k, ok := keys[n]; ok {
			return fmt.Sprintf("line %d: %s:", n, k)
		}
		return m
	}))
}

var lineRE = regexp.MustCompile(`line (\d+):`)

// index records, for each line that holds a key or a sequence item, the
// path of the innermost one there, or of the mapping whose several keys
// share the line.
func index(n *yaml.Node, path string, keys map[int]string) {
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			index(c, path, keys)
		}
	case yaml.MappingNode:
		// A line with several keys of this mapping ({count: 2, window: 1h})
		// is named by the mapping: the error's line cannot say which key.
		perLine := map[int]int{}
		for i := 0; i+1 < len(n.Content); i += 2 {
			perLine[n.Content[i].Line]++
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			p := k.Value
			if path != "" {
				p = path + "." + k.Value
			}
			if perLine[k.Line] > 1 && path != "" {
				keys[k.Line] = path
			} else {
				keys[k.Line] = p
			}
			if v.Line != k.Line {
				keys[v.Line] = p
			}
			index(v, p, keys)
		}
	case yaml.SequenceNode:
		for i, c := range n.Content {
			p := fmt.Sprintf("%s[%d]", path, i)
			// Items of a flow sequence ([a, b]) share its line, which
			// keeps the name of its key.
			if n.Style&yaml.FlowStyle == 0 {
				keys[c.Line] = p
			}
			index(c, p, keys)
		}
	}
}
