package main

import (
	"context"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

const greeter = `syntax = "proto3";

// Package greeter.v1 says hello.
package greeter.v1;

import "google/protobuf/timestamp.proto";

option go_package = "example.com/greeter/v1;greeterv1";

// Greeter answers greetings.
service Greeter {
  // SayHello greets one name.
  rpc SayHello(HelloRequest) returns (HelloReply);
}

// HelloRequest names who to greet.
message HelloRequest {
  string name = 1;
}

message HelloReply {
  string message = 1;
  google.protobuf.Timestamp at = 2;
}
`

// writeProto puts files, by import path, under a new directory.
func writeProto(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		path := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// declared lists the top-level types and functions of the Go file at path,
// which must parse, and returns its comments as one text.
func declared(t *testing.T, path string) ([]string, string) {
	t.Helper()
	f, err := parser.ParseFile(token.NewFileSet(), path, nil, parser.ParseComments)
	if err != nil {
		t.Fatalf("generated code does not parse: %v", err)
	}
	var names []string
	for _, d := range f.Decls {
		switch d := d.(type) {
		case *ast.FuncDecl:
			if d.Recv == nil {
				names = append(names, d.Name.Name)
			}
		case *ast.GenDecl:
			for _, s := range d.Specs {
				if ts, ok := s.(*ast.TypeSpec); ok {
					names = append(names, ts.Name.Name)
				}
			}
		}
	}
	var comments strings.Builder
	for _, g := range f.Comments {
		comments.WriteString(g.Text())
	}
	return names, comments.String()
}

func TestGenerateWritesMessagesAndService(t *testing.T) {
	dir := writeProto(t, map[string]string{"greeter/v1/greeter.proto": greeter})
	written, err := Generate(context.Background(), dir, Plugins)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"greeter/v1/greeter.pb.go", "greeter/v1/greeter_grpc.pb.go"}
	if !slices.Equal(written, want) {
		t.Fatalf("wrote %q, want %q", written, want)
	}
	for _, c := range []struct {
		file     string
		names    []string
		comments []string
	}{
		{"greeter.pb.go", []string{"HelloRequest", "HelloReply"}, []string{"Package greeter.v1 says hello.", "HelloRequest names who to greet."}},
		{"greeter_grpc.pb.go", []string{"GreeterClient", "NewGreeterClient", "GreeterServer", "RegisterGreeterServer", "UnimplementedGreeterServer"}, []string{"Greeter answers greetings.", "SayHello greets one name."}},
	} {
		names, comments := declared(t, filepath.Join(dir, "greeter", "v1", c.file))
		for _, n := range c.names {
			if !slices.Contains(names, n) {
				t.Errorf("%s does not declare %s; it declares %q", c.file, n, names)
			}
		}
		for _, s := range c.comments {
			if !strings.Contains(comments, s) {
				t.Errorf("%s lacks the comment %q from the .proto file", c.file, s)
			}
		}
	}

	again, err := Generate(context.Background(), dir, Plugins)
	if err != nil {
		t.Fatal(err)
	}
	if len(again) > 0 {
		t.Errorf("a second run over unchanged files wrote %q", again)
	}
}

func TestGenerateFails(t *testing.T) {
	for _, c := range []struct {
		name    string
		files   map[string]string
		plugins [][]string
		want    []string
	}{
		{
			name:    "compile-error",
			files:   map[string]string{"a/v1/a.proto": "syntax = \"proto3\";\npackage a.v1;\nmessage M { Missing x = 1; }\n"},
			plugins: Plugins,
			want:    []string{"a/v1/a.proto:3:13", "unknown type Missing"},
		},
		{
			name:    "missing-import",
			files:   map[string]string{"a/v1/a.proto": "syntax = \"proto3\";\npackage a.v1;\nimport \"b/v1/b.proto\";\n"},
			plugins: Plugins,
			want:    []string{"b/v1/b.proto"},
		},
		{
			name:    "no-proto-files",
			files:   map[string]string{"README": "nothing here"},
			plugins: Plugins,
			want:    []string{"no .proto files"},
		},
		{
			name:    "plugin-reports-error",
			files:   map[string]string{"a/v1/a.proto": "syntax = \"proto3\";\npackage a.v1;\nmessage M {}\n"},
			plugins: Plugins,
			want:    []string{"go tool protoc-gen-go:", "a/v1/a.proto", "Go import path"},
		},
		{
			name:    "plugin-exits",
			files:   map[string]string{"greeter/v1/greeter.proto": greeter},
			plugins: [][]string{{"sh", "-c", "cat >/dev/null; echo out of cheese >&2; exit 3"}},
			want:    []string{"run sh -c", "exit status 3", "out of cheese"},
		},
	} {
		t.Run(c.name, func(t *testing.T) {
			dir := writeProto(t, c.files)
			written, err := Generate(context.Background(), dir, c.plugins)
			if err == nil {
				t.Fatalf("no error; wrote %q", written)
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
			if len(written) > 0 {
				t.Errorf("wrote %q despite the error", written)
			}
		})
	}
}
