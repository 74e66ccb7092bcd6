package client_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestImports keeps the package light for the services that import it: of
// larder it imports the generated API alone, and neither Redis nor ONNX
// Runtime comes with it.
func TestImports(t *testing.T) {
	out, err := exec.CommandContext(t.Context(), "go", "list", "-deps", ".").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	allowed := map[string]bool{
		"github.com/larder-dev/larder/client":          true,
		"github.com/larder-dev/larder/proto/larder/v1": true,
	}
	for _, pkg := range strings.Fields(string(out)) {
		switch {
		case strings.HasPrefix(pkg, "github.com/larder-dev/larder") && !allowed[pkg],
			strings.Contains(pkg, "go-redis"), strings.Contains(pkg, "onnxruntime"):
			t.Errorf("package client depends on %s", pkg)
		}
	}
}
