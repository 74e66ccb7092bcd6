package larderv1_test

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// pythonProtos are the .proto files the Python client (clients/python) is
// generated from: the FeatureService it covers.
var pythonProtos = []string{"larder/v1/larder.proto"}

const regeneratePython = "run `make proto` (it regenerates clients/python/larder/v1 with protoc and grpc_python_plugin) and commit the result"

// TestPythonCodeIsCurrent regenerates the Python client's stubs with
// Debian's protoc and grpc_python_plugin (package protobuf-compiler-grpc,
// which `make setup` installs) and compares them with the committed ones.
func TestPythonCodeIsCurrent(t *testing.T) {
	if testing.Short() {
		t.Skip("runs protoc; skipped in -short mode")
	}
	protoc, err := exec.LookPath("protoc")
	if err != nil {
		t.Fatal(noProtoc)
	}
	plugin, err := exec.LookPath("grpc_python_plugin")
	if err != nil {
		t.Fatal("grpc_python_plugin not found in PATH: run `make setup`, which installs Debian's protobuf-compiler-grpc (or `apt-get install protobuf-compiler-grpc`)")
	}
	root := repoRoot(t)
	out := t.TempDir()
	args := append([]string{"--proto_path=proto", "--python_out=" + out, "--pyi_out=" + out,
		"--grpc_python_out=" + out, "--plugin=protoc-gen-grpc_python=" + plugin}, pythonProtos...)
	cmd := exec.CommandContext(t.Context(), protoc, args...)
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("protoc: %v\n%s", err, b)
	}
	files, err := filepath.Glob(filepath.Join(out, "larder", "v1", "*"))
	if err != nil {
		t.Fatal(err)
	}
	if len(files) == 0 {
		t.Fatal("protoc wrote no Python files")
	}
	for _, path := range files {
		name := filepath.Base(path)
		want, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		got, err := os.ReadFile(filepath.Join(root, "clients", "python", "larder", "v1", name))
		if err != nil {
			t.Errorf("clients/python/larder/v1/%s: %v: %s", name, err, regeneratePython)
			continue
		}
		if !bytes.Equal(got, want) {
			t.Errorf("clients/python/larder/v1/%s is stale (%s): %s", name, firstDiff(got, want), regeneratePython)
		}
	}
}
