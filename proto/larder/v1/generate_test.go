package larderv1_test

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/goccy/go-yaml"
)

// The staleness check runs Debian's protoc (package protobuf-compiler, which
// `make setup` installs) with the protoc plugins pinned in tools/gen/go.mod,
// built by `go tool` on first use in a few seconds. buf, which `make proto`
// runs with the same plugins, is left to `make proto` and `make lint`: its
// hundreds of megabytes of modules took minutes of a cold `make test`.
const (
	regenerate = "run `make proto` (go tool -modfile=tools/go.mod buf generate, from the repository root) and commit the result"
	noProtoc   = "protoc not found in PATH: run `make setup`, which installs Debian's protobuf-compiler (or `apt-get install protobuf-compiler`)"
)

// TestGeneratedCodeIsCurrent regenerates the code into a temporary folder and
// compares it with the committed files, so that a .proto change without
// `make proto` (or a hand edit of generated code) fails here, not in review.
//
// It runs protoc with the plugins and options that buf.gen.yaml gives. Their
// output is byte for byte what buf generate writes, but for one header line
// per file: buf tells the plugins no compiler version, so the committed files
// say `protoc (unknown)` where protoc's output says `protoc v3.21.12`. The
// comparison ignores the version on that line (see maskProtocVersion), and
// nothing else.
func TestGeneratedCodeIsCurrent(t *testing.T) {
	if testing.Short() {
		t.Skip("runs protoc; skipped in -short mode")
	}
	protoc, err := exec.LookPath("protoc")
	if err != nil {
		t.Fatal(noProtoc)
	}
	root := repoRoot(t)
	gen := readBufGen(t, root)
	out := t.TempDir()

	args := []string{"--proto_path=" + filepath.Join(root, gen.Input)}
	for _, p := range gen.Plugins {
		name, path := pluginPath(t, root, p.Local)
		dir := filepath.Join(out, p.Out)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		flag := strings.TrimPrefix(name, "protoc-gen-")
		args = append(args, "--plugin="+name+"="+path, "--"+flag+"_out="+dir)
		if p.Opt != "" {
			args = append(args, "--"+flag+"_opt="+p.Opt)
		}
	}
	args = append(args, protoFiles(t, filepath.Join(root, gen.Input))...)
	cmd := exec.CommandContext(t.Context(), protoc, args...)
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("protoc: %v\n%s", err, b)
	}

	generated := map[string]bool{}
	err = filepath.WalkDir(out, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, err := filepath.Rel(out, path)
		if err != nil {
			return err
		}
		generated[rel] = true
		want, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		got, err := os.ReadFile(filepath.Join(root, rel))
		switch {
		case errors.Is(err, fs.ErrNotExist):
			t.Errorf("%s is missing: %s", rel, regenerate)
		case err != nil:
			return err
		default:
			got, want = maskProtocVersion(got), maskProtocVersion(want)
			if !bytes.Equal(got, want) {
				t.Errorf("%s is stale (%s): %s", rel, firstDiff(got, want), regenerate)
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(generated) == 0 {
		t.Fatal("protoc wrote no files: check buf.gen.yaml")
	}

	// A generated file whose .proto was removed or renamed is stale too.
	committed, err := filepath.Glob(filepath.Join(root, "proto", "*", "*", "*.pb.go"))
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range committed {
		rel, err := filepath.Rel(root, path)
		if err != nil {
			t.Fatal(err)
		}
		if !generated[rel] {
			t.Errorf("%s is no longer generated from any .proto file: delete it, then %s", rel, regenerate)
		}
	}
}

// TestMaskProtocVersion pins down what the staleness check ignores: the
// compiler version on each plugin's header line, and no other difference.
func TestMaskProtocVersion(t *testing.T) {
	tests := []struct {
		name, a, b string
		alike      bool
	}{
		{
			name:  "protoc-gen-go",
			a:     "// versions:\n// \tprotoc-gen-go v1.36.12-devel\n// \tprotoc        (unknown)\n// source: a.proto\n",
			b:     "// versions:\n// \tprotoc-gen-go v1.36.12-devel\n// \tprotoc        v3.21.12\n// source: a.proto\n",
			alike: true,
		},
		{
			name:  "protoc-gen-go-grpc",
			a:     "// versions:\n// - protoc-gen-go-grpc v1.6.2\n// - protoc             (unknown)\n// source: a.proto\n",
			b:     "// versions:\n// - protoc-gen-go-grpc v1.6.2\n// - protoc             v3.21.12\n// source: a.proto\n",
			alike: true,
		},
		{
			name: "a plugin's version",
			a:    "// \tprotoc-gen-go v1.36.12-devel\n// \tprotoc        (unknown)\n// source: a.proto\n",
			b:    "// \tprotoc-gen-go v1.36.11\n// \tprotoc        (unknown)\n// source: a.proto\n",
		},
		{
			name: "below the header",
			a:    "// source: a.proto\n// protoc (unknown)\n",
			b:    "// source: a.proto\n// protoc v3.21.12\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			alike := bytes.Equal(maskProtocVersion([]byte(tt.a)), maskProtocVersion([]byte(tt.b)))
			if alike != tt.alike {
				t.Errorf("masked alike = %v, want %v", alike, tt.alike)
			}
		})
	}
}

// maskProtocVersion replaces the compiler version that a plugin writes into
// its header ("// \tprotoc        v3.21.12", "// - protoc             (unknown)")
// with a placeholder. The header is the lines before "// source:".
func maskProtocVersion(src []byte) []byte {
	lines := bytes.SplitAfter(src, []byte("\n"))
	for i, l := range lines {
		if bytes.HasPrefix(l, []byte("// source:")) {
			break
		}
		f := strings.Fields(string(l))
		if n := len(f); (n == 3 && f[1] == "protoc") || (n == 4 && f[1] == "-" && f[2] == "protoc") {
			k := bytes.LastIndex(l, []byte(f[n-1]))
			lines[i] = slices.Concat(l[:k], []byte("<protoc version>"), l[k+len(f[n-1]):])
		}
	}
	return bytes.Join(lines, nil)
}

// bufGen is the part of buf.gen.yaml (version v2) that the check reads.
type bufGen struct {
	Inputs []struct {
		Directory string `yaml:"directory"`
	} `yaml:"inputs"`
	Plugins []struct {
		Local []string `yaml:"local"`
		Out   string   `yaml:"out"`
		Opt   string   `yaml:"opt"`
	} `yaml:"plugins"`

	// Input is the one input directory.
	Input string `yaml:"-"`
}

// readBufGen reads root's buf.gen.yaml, and fails the test on what the check
// does not know how to run through protoc.
func readBufGen(tb testing.TB, root string) bufGen {
	tb.Helper()
	b, err := os.ReadFile(filepath.Join(root, "buf.gen.yaml"))
	if err != nil {
		tb.Fatal(err)
	}
	var g bufGen
	if err := yaml.Unmarshal(b, &g); err != nil {
		tb.Fatalf("buf.gen.yaml: %v", err)
	}
	if len(g.Inputs) != 1 || g.Inputs[0].Directory == "" {
		tb.Fatal("buf.gen.yaml: the staleness check knows one input directory only; extend TestGeneratedCodeIsCurrent")
	}
	g.Input = g.Inputs[0].Directory
	if len(g.Plugins) == 0 {
		tb.Fatal("buf.gen.yaml names no plugins")
	}
	return g
}

// pluginPath builds a plugin that buf.gen.yaml runs as `go tool [flags]
// NAME`, and returns its name and the path of its executable in the build
// cache, as `go tool -n` prints it.
func pluginPath(tb testing.TB, root string, local []string) (name, path string) {
	tb.Helper()
	if len(local) < 3 || local[0] != "go" || local[1] != "tool" {
		tb.Fatalf("buf.gen.yaml: plugin %q is not run as `go tool ...`; extend TestGeneratedCodeIsCurrent", local)
	}
	name = local[len(local)-1]
	// go test puts its own go first in PATH, so the plugins build with the
	// same toolchain as the test.
	cmd := exec.CommandContext(tb.Context(), "go", append([]string{"tool", "-n"}, local[2:]...)...)
	cmd.Dir = root
	// -modfile cannot be used in workspace mode.
	cmd.Env = append(os.Environ(), "GOWORK=off")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	b, err := cmd.Output()
	if err != nil {
		tb.Fatalf("building %s: %s: %v\n%s", name, strings.Join(cmd.Args, " "), err, stderr.Bytes())
	}
	return name, strings.TrimSpace(string(b))
}

// protoFiles lists the .proto files under dir, relative to it, as buf
// generate finds them in its input directory.
func protoFiles(tb testing.TB, dir string) []string {
	tb.Helper()
	var files []string
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || filepath.Ext(path) != ".proto" {
			return err
		}
		rel, err := filepath.Rel(dir, path)
		files = append(files, filepath.ToSlash(rel))
		return err
	})
	if err != nil {
		tb.Fatal(err)
	}
	if len(files) == 0 {
		tb.Fatalf("no .proto files under %s", dir)
	}
	return files
}

// repoRoot returns the root of the repository: the nearest folder up from the
// test's working folder that holds buf.gen.yaml.
func repoRoot(tb testing.TB) string {
	tb.Helper()
	dir, err := os.Getwd()
	if err != nil {
		tb.Fatal(err)
	}
	for {
		if _, err := os.Stat(filepath.Join(dir, "buf.gen.yaml")); err == nil {
			return dir
		}
		parent := filepath.Dir(dir)
		if parent == dir {
			tb.Fatal("no buf.gen.yaml in any parent folder of the test")
		}
		dir = parent
	}
}

// firstDiff describes the first line where got and want differ.
func firstDiff(got, want []byte) string {
	g := strings.Split(string(got), "\n")
	w := strings.Split(string(want), "\n")
	for i := 0; i < len(g) || i < len(w); i++ {
		if i >= len(g) || i >= len(w) || g[i] != w[i] {
			return fmt.Sprintf("first difference at line %d: committed %s, generated %s", i+1, lineAt(g, i), lineAt(w, i))
		}
	}
	return "differs"
}

// lineAt quotes line i of lines, shortened, or says the file has ended.
func lineAt(lines []string, i int) string {
	if i >= len(lines) {
		return "<end of file>"
	}
	const max = 80
	l := strings.TrimSpace(lines[i])
	if len(l) > max {
		l = l[:max] + "..."
	}
	return fmt.Sprintf("%q", l)
}
