package larderv1_test

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The generators are Go tools of the tools module, so these tests need only
// the Go module proxy: the first run downloads and builds buf and the plugins
// (about a minute and a half), later runs take about a second.
const (
	regenerate = "run `make proto` (go tool -modfile=tools/go.mod buf generate, from the repository root) and commit the result"
	reformat   = "run `go tool -modfile=tools/go.mod buf format -w` from the repository root"
)

// TestGeneratedCodeIsCurrent regenerates the code into a temporary folder and
// compares it with the committed files, so that a .proto change without
// `make proto` (or a hand edit of generated code) fails here, not in review.
func TestGeneratedCodeIsCurrent(t *testing.T) {
	if testing.Short() {
		t.Skip("runs buf; skipped in -short mode")
	}
	root := repoRoot(t)
	out := t.TempDir()
	runBuf(t, root, "generate", "--output", out)

	generated := map[string]bool{}
	err := filepath.WalkDir(out, func(path string, d fs.DirEntry, err error) error {
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
		case !bytes.Equal(got, want):
			t.Errorf("%s is stale (%s): %s", rel, firstDiff(got, want), regenerate)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(generated) == 0 {
		t.Fatal("buf generate wrote no files: check buf.gen.yaml")
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

// TestProtoLint keeps the API within buf's STANDARD and COMMENTS rules (see
// buf.yaml) and in buf's canonical format.
func TestProtoLint(t *testing.T) {
	if testing.Short() {
		t.Skip("runs buf; skipped in -short mode")
	}
	root := repoRoot(t)
	t.Run("lint", func(t *testing.T) {
		if out, err := bufCmd(t, root, "lint"); err != nil {
			t.Errorf("buf lint: %v\n%s\nfix the .proto files; `make lint` runs the same check", err, out)
		}
	})
	t.Run("format", func(t *testing.T) {
		if out, err := bufCmd(t, root, "format", "--diff", "--exit-code"); err != nil {
			t.Errorf("buf format: %v\n%s\n%s", err, out, reformat)
		}
	})
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

// runBuf runs buf with args in root and fails the test if buf fails.
func runBuf(tb testing.TB, root string, args ...string) {
	tb.Helper()
	if out, err := bufCmd(tb, root, args...); err != nil {
		tb.Fatalf("buf %s: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// bufCmd runs buf through the tools module, from root as `make proto` does:
// buf.gen.yaml names the plugins by paths relative to it.
func bufCmd(tb testing.TB, root string, args ...string) ([]byte, error) {
	tb.Helper()
	// go test puts its own go first in PATH, so the tools build with the
	// same toolchain as the test.
	cmd := exec.CommandContext(tb.Context(), "go", append([]string{"tool", "-modfile=tools/go.mod", "buf"}, args...)...)
	cmd.Dir = root
	// -modfile cannot be used in workspace mode.
	cmd.Env = append(os.Environ(), "GOWORK=off")
	return cmd.CombinedOutput()
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
