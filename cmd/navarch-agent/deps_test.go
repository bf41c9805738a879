package main

import (
	"os/exec"
	"strings"
	"testing"
)

// TestAgentLinksNoTemplates: built as the Taskfile builds it (with
// grpcnotrace), the agent links no text/template. A template anywhere in
// a binary stops the linker from dropping unused exported methods, which
// costs the agent a quarter of its size and of its resident memory; a new
// dependency that brings one back fails here.
func TestAgentLinksNoTemplates(t *testing.T) {
	out, err := exec.Command("go", "list", "-tags=grpcnotrace", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, pkg := range strings.Fields(string(out)) {
		if pkg == "text/template" || pkg == "golang.org/x/net/trace" {
			t.Errorf("the agent links %s; find what imports it with 'go list -tags=grpcnotrace -deps -f \"{{.ImportPath}}: {{.Imports}}\" .'", pkg)
		}
	}
}
