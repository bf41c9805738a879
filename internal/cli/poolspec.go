package cli

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/known/durationpb"

	"github.com/navarch/navarch/internal/display"
	fleetv1 "github.com/navarch/navarch/proto/navarch/fleet/v1"
)

// A pool's spec, as 'pool put -f' reads it: a YAML or JSON mapping of
// PoolSpec's fields, named as the API names them (max_surge or maxSurge),
// read by protojson so that the API's own names and checks apply. YAML is
// turned into JSON first. Durations may be written as an operator writes
// them (10m, 1h30m) as well as protojson's seconds ("600s").

// readPoolSpec reads the spec in the file at path; "-" reads stdin.
func readPoolSpec(path string, stdin io.Reader) (*fleetv1.PoolSpec, error) {
	var b []byte
	var err error
	switch {
	case path == "-" && stdin == nil:
		return nil, usagef("-f -: there is no standard input to read")
	case path == "-":
		b, err = io.ReadAll(stdin)
	default:
		b, err = os.ReadFile(path)
	}
	if err != nil {
		return nil, usagef("-f: %v", err)
	}
	spec, err := parsePoolSpec(b)
	if err != nil {
		return nil, usagef("-f %s: %v", path, err)
	}
	return spec, nil
}

// parsePoolSpec reads a spec from JSON (a document that starts with '{')
// or YAML.
func parsePoolSpec(b []byte) (*fleetv1.PoolSpec, error) {
	var doc any
	if t := bytes.TrimSpace(b); len(t) > 0 && t[0] == '{' {
		dec := json.NewDecoder(bytes.NewReader(t))
		dec.UseNumber()
		if err := dec.Decode(&doc); err != nil {
			return nil, fmt.Errorf("not JSON: %w", err)
		}
	} else if err := yaml.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("not YAML: %w", err)
	}
	fields, ok := doc.(map[string]any)
	if !ok {
		return nil, errors.New("a pool spec is a mapping of its fields, such as providers: [aws], min: 1, max: 4")
	}
	if err := prepare(fields, (&fleetv1.PoolSpec{}).ProtoReflect().Descriptor(), ""); err != nil {
		return nil, err
	}
	j, err := json.Marshal(fields)
	if err != nil {
		return nil, fmt.Errorf("convert to JSON: %w", err)
	}
	spec := &fleetv1.PoolSpec{}
	if err := protojson.Unmarshal(j, spec); err != nil {
		// The line and column protojson gives are of the JSON made from
		// the file, not of the file.
		msg := protoLine.ReplaceAllString(protoPrefix.ReplaceAllString(err.Error(), ""), "")
		return nil, errors.New(strings.TrimLeft(msg, ": "))
	}
	return spec, nil
}

var (
	// protojson's prefix varies its space on purpose.
	protoPrefix = regexp.MustCompile(`^proto:[\s\p{Zs}]*`)
	protoLine   = regexp.MustCompile(`\s*\(line \d+:\d+\)`)
)

// durationName is google.protobuf.Duration's full name.
var durationName = (&durationpb.Duration{}).ProtoReflect().Descriptor().FullName()

// prepare readies fields (a message md's fields as decoded) for protojson:
// a list, a mapping or a message given something else is refused naming
// the field, which protojson would not name; every duration written as Go
// writes one ("10m") becomes protojson's form ("600s"), in nested messages
// and lists of them too. path names where fields are, for errors; protojson
// judges the rest, unknown names included.
func prepare(fields map[string]any, md protoreflect.MessageDescriptor, path string) error {
	for name, v := range fields {
		fd := md.Fields().ByJSONName(name)
		if fd == nil {
			fd = md.Fields().ByTextName(name)
		}
		if fd == nil || v == nil {
			continue
		}
		at := path + name
		_, isList := v.([]any)
		_, isMapping := v.(map[string]any)
		switch {
		case fd.IsList() && !isList:
			return fmt.Errorf("%s: is a list, such as [a, b]", at)
		case fd.IsMap() && !isMapping:
			return fmt.Errorf("%s: is a mapping of names to values, such as {team: ml}", at)
		case fd.IsMap() || fd.Kind() != protoreflect.MessageKind:
			continue
		case fd.Message().FullName() == durationName:
			s, ok := v.(string)
			if !ok {
				continue
			}
			d, err := display.ParseDuration(s)
			if err != nil {
				return fmt.Errorf("%s: %w", at, err)
			}
			fields[name] = protoDuration(d)
		case fd.IsList():
			items, _ := v.([]any)
			for i, item := range items {
				if m, ok := item.(map[string]any); ok {
					if err := prepare(m, fd.Message(), fmt.Sprintf("%s[%d].", at, i)); err != nil {
						return err
					}
				}
			}
		case !isMapping:
			return fmt.Errorf("%s: is a mapping of its fields", at)
		default:
			if err := prepare(v.(map[string]any), fd.Message(), at+"."); err != nil {
				return err
			}
		}
	}
	return nil
}

// protoDuration writes d as protojson reads a Duration: "600s", "1.5s".
func protoDuration(d time.Duration) string {
	sign := ""
	if d < 0 {
		sign, d = "-", -d
	}
	secs, nanos := d/time.Second, d%time.Second
	if nanos == 0 {
		return fmt.Sprintf("%s%ds", sign, secs)
	}
	return fmt.Sprintf("%s%d.%09ds", sign, secs, nanos)
}
