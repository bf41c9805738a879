package yamlfile

import (
	"fmt"
	"math"
	"reflect"
	"strconv"
	"strings"

	"go.yaml.in/yaml/v3"
)

var unmarshalerType = reflect.TypeFor[yaml.Unmarshaler]()

// fractions walks the document alongside the type it decodes into and
// returns, in the decoder's own words, an error for each number with a
// fraction given where a whole number goes. Values of types that decode
// themselves are theirs to judge.
func fractions(n *yaml.Node, t reflect.Type) []string {
	if n == nil || t == nil {
		return nil
	}
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	if reflect.PointerTo(t).Implements(unmarshalerType) {
		return nil
	}
	var out []string
	switch n.Kind {
	case yaml.DocumentNode:
		for _, c := range n.Content {
			out = append(out, fractions(c, t)...)
		}
	case yaml.AliasNode:
		out = fractions(n.Alias, t)
	case yaml.MappingNode:
		for i := 0; i+1 < len(n.Content); i += 2 {
			out = append(out, fractions(n.Content[i+1], valueType(t, n.Content[i].Value))...)
		}
	case yaml.SequenceNode:
		if t.Kind() == reflect.Slice || t.Kind() == reflect.Array {
			for _, c := range n.Content {
				out = append(out, fractions(c, t.Elem())...)
			}
		}
	case yaml.ScalarNode:
		if whole(t.Kind()) && n.ShortTag() == "!!float" {
			if f, err := strconv.ParseFloat(strings.ReplaceAll(n.Value, "_", ""), 64); err != nil || f != math.Trunc(f) {
				out = append(out, fmt.Sprintf("line %d: cannot unmarshal !!float `%s` into %s", n.Line, n.Value, t.Kind()))
			}
		}
	}
	return out
}

// valueType is the type a mapping's value under key decodes into: a
// struct's field by its yaml name (inline structs' fields included), or a
// map's element; nil when there is none, which the decoder reports.
func valueType(t reflect.Type, key string) reflect.Type {
	switch t.Kind() {
	case reflect.Map:
		return t.Elem()
	case reflect.Struct:
		for i := range t.NumField() {
			f := t.Field(i)
			name, opts, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			if strings.Contains(opts, "inline") {
				if ft := valueType(f.Type, key); ft != nil {
					return ft
				}
				continue
			}
			if name == "" {
				name = strings.ToLower(f.Name)
			}
			if name == key && f.IsExported() {
				return f.Type
			}
		}
	}
	return nil
}

func whole(k reflect.Kind) bool {
	switch k {
	case reflect.Int, reflect.Int8, reflect.Int16, reflect.Int32, reflect.Int64,
		reflect.Uint, reflect.Uint8, reflect.Uint16, reflect.Uint32, reflect.Uint64:
		return true
	}
	return false
}
