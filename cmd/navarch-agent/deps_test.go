package main

import (
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestAgentLinksNoTemplates: the Taskfile builds and tests with the
// grpcnotrace tag, and with it the agent links no text/template. A
// template anywhere in a binary stops the linker from dropping unused
// exported methods, which costs the agent a quarter of its size and of its
// resident memory; a new dependency that brings one back, or a Taskfile
// that drops the tag, fails here.
func TestAgentLinksNoTemplates(t *testing.T) {
	taskfile, err := os.ReadFile("../../Taskfile.yml")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(taskfile), "GOFLAGS: -tags=grpcnotrace") {
		t.Error("Taskfile.yml no longer sets GOFLAGS: -tags=grpcnotrace for its builds and tests")
	}
	out, err := exec.Command("go", "list", "-tags=grpcnotrace", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	for _, pkg := range strings.Fields(string(out)) {
		if pkg == "text/template" {
			t.Errorf("the agent links %s; find what imports it with 'go list -tags=grpcnotrace -deps -f \"{{.ImportPath}}: {{.Imports}}\" .'", pkg)
		}
	}
}
