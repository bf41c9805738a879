// Command protogen generates the Go API code from proto/: it compiles the
// .proto files with protocompile and runs protoc-gen-go and
// protoc-gen-go-grpc on them as protoc would, through `go tool`, writing
// each file only when its content changed. It stands in for `buf generate`,
// whose dependency tree takes minutes to build on a fresh machine; buf stays
// for `buf lint`.
//
// Run it from the repository root: go run ./internal/protogen
package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/bufbuild/protocompile"
	"github.com/bufbuild/protocompile/linker"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/reflect/protodesc"
	"google.golang.org/protobuf/reflect/protoreflect"
	"google.golang.org/protobuf/types/descriptorpb"
	"google.golang.org/protobuf/types/pluginpb"
)

// Plugins are the protoc plugins run on every generation, each a command
// that reads a CodeGeneratorRequest on stdin and writes a
// CodeGeneratorResponse on stdout.
var Plugins = [][]string{
	{"go", "tool", "protoc-gen-go"},
	{"go", "tool", "protoc-gen-go-grpc"},
}

// Parameter is what every plugin is given: paths relative to the .proto
// file, so each Go file lands beside its source.
const Parameter = "paths=source_relative"

func main() {
	dir := flag.String("dir", "proto", "the directory holding the .proto files, and where the Go files go")
	flag.Parse()
	written, err := Generate(context.Background(), *dir, Plugins)
	if err != nil {
		fmt.Fprintln(os.Stderr, "protogen:", err)
		os.Exit(1)
	}
	for _, name := range written {
		fmt.Println("protogen: wrote", filepath.Join(*dir, name))
	}
}

// Generate compiles every .proto file under dir, runs each plugin on them
// and writes the files the plugins return under dir. It returns the names,
// relative to dir, of the files it wrote: those whose content changed.
func Generate(ctx context.Context, dir string, plugins [][]string) ([]string, error) {
	names, err := protoFiles(dir)
	if err != nil {
		return nil, err
	}
	req, err := compile(ctx, dir, names)
	if err != nil {
		return nil, err
	}
	var out []*pluginpb.CodeGeneratorResponse_File
	for _, plugin := range plugins {
		files, err := run(ctx, plugin, req)
		if err != nil {
			return nil, err
		}
		out = append(out, files...)
	}
	var written []string
	for _, f := range out {
		changed, err := write(dir, f)
		if err != nil {
			return written, err
		}
		if changed {
			written = append(written, f.GetName())
		}
	}
	return written, nil
}

// protoFiles lists the .proto files under dir, relative to it, with
// forward slashes as import paths have them.
func protoFiles(dir string) ([]string, error) {
	var names []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || filepath.Ext(path) != ".proto" {
			return err
		}
		rel, err := filepath.Rel(dir, path)
		names = append(names, filepath.ToSlash(rel))
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("list the .proto files in %s: %w", dir, err)
	}
	if len(names) == 0 {
		return nil, fmt.Errorf("no .proto files in %s", dir)
	}
	return names, nil
}

// compile parses and links names, which import each other relative to dir
// and protoc's standard imports (google/protobuf/*.proto), into the
// request protoc would send a plugin: the files to generate with their
// comments, and every file they need, each after its imports.
func compile(ctx context.Context, dir string, names []string) (*pluginpb.CodeGeneratorRequest, error) {
	c := protocompile.Compiler{
		Resolver: protocompile.WithStandardImports(&protocompile.SourceResolver{
			ImportPaths: []string{dir},
		}),
		SourceInfoMode: protocompile.SourceInfoStandard,
	}
	files, err := c.Compile(ctx, names...)
	if err != nil {
		return nil, fmt.Errorf("compile %s: %w", dir, err)
	}
	req := &pluginpb.CodeGeneratorRequest{
		FileToGenerate: names,
		Parameter:      proto.String(Parameter),
	}
	seen := map[string]bool{}
	var add func(f protoreflect.FileDescriptor)
	add = func(f protoreflect.FileDescriptor) {
		if seen[f.Path()] {
			return
		}
		seen[f.Path()] = true
		imports := f.Imports()
		for i := range imports.Len() {
			add(imports.Get(i).FileDescriptor)
		}
		req.ProtoFile = append(req.ProtoFile, descriptorProto(f))
	}
	for _, f := range files {
		add(f)
	}
	return req, nil
}

// descriptorProto is f as a descriptor: the compiler's own, which carries
// source info and JSON names as protoc's does, where it has one.
func descriptorProto(f protoreflect.FileDescriptor) *descriptorpb.FileDescriptorProto {
	if r, ok := f.(linker.Result); ok {
		return r.FileDescriptorProto()
	}
	return protodesc.ToFileDescriptorProto(f)
}

// run sends req to plugin and returns the files it made.
func run(ctx context.Context, plugin []string, req *pluginpb.CodeGeneratorRequest) ([]*pluginpb.CodeGeneratorResponse_File, error) {
	name := strings.Join(plugin, " ")
	in, err := proto.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("encode the request for %s: %w", name, err)
	}
	var stdout, stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, plugin[0], plugin[1:]...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = bytes.NewReader(in), &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("run %s: %w: %s", name, err, strings.TrimSpace(stderr.String()))
	}
	var resp pluginpb.CodeGeneratorResponse
	if err := proto.Unmarshal(stdout.Bytes(), &resp); err != nil {
		return nil, fmt.Errorf("read the response of %s: %w", name, err)
	}
	if resp.Error != nil {
		return nil, fmt.Errorf("%s: %s", name, resp.GetError())
	}
	for _, f := range resp.GetFile() {
		if f.GetInsertionPoint() != "" {
			return nil, fmt.Errorf("%s: insertion point %q in %s is not supported", name, f.GetInsertionPoint(), f.GetName())
		}
	}
	return resp.GetFile(), nil
}

// write puts f under dir unless the file there already holds its content,
// and reports whether it wrote.
func write(dir string, f *pluginpb.CodeGeneratorResponse_File) (bool, error) {
	name := filepath.FromSlash(f.GetName())
	if !filepath.IsLocal(name) {
		return false, fmt.Errorf("write %s: the name leaves %s", f.GetName(), dir)
	}
	path := filepath.Join(dir, name)
	content := []byte(f.GetContent())
	old, err := os.ReadFile(path)
	switch {
	case err == nil && bytes.Equal(old, content):
		return false, nil
	case err != nil && !errors.Is(err, fs.ErrNotExist):
		return false, fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return false, fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.WriteFile(path, content, 0o644); err != nil {
		return false, fmt.Errorf("write %s: %w", path, err)
	}
	return true, nil
}
