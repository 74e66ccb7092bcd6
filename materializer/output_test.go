package materializer_test

import (
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/larder-dev/larder/materializer"
)

// syncedExportDir, set in the environment, makes TestExportOutputSynced
// the child it runs under strace: it exports into that folder and returns.
const syncedExportDir = "LARDER_TEST_SYNCED_EXPORT_DIR"

// TestExportOutputSynced runs an export under strace and checks, from the
// system calls it makes, that the output's data is written to disk before
// the temporary file is renamed over the output, and the output's folder
// after: a crash right after the export leaves the whole training set
// under its name, never an empty or partial file. It is skipped where
// strace is missing or not allowed to trace.
func TestExportOutputSynced(t *testing.T) {
	if dir := os.Getenv(syncedExportDir); dir != "" {
		writeParquet(t, filepath.Join(dir, "data", "part-0.parquet"), randomRows(rand.New(rand.NewPCG(1, 1)), 10, 3, baseTime))
		writeParquet(t, filepath.Join(dir, "spine.parquet"), []spineRow{{UserID: ptr(int64(1)), At: baseTime}})
		m := materializer.New(exportProject(t, dir), nopStore{}, materializer.Options{})
		_, err := m.Export(context.Background(), materializer.ExportArgs{
			Spine: "spine.parquet", Output: filepath.Join(dir, "out", "train.parquet"), Timestamp: "at", Features: []string{"lat:*"},
		})
		if err != nil {
			t.Fatal(err)
		}
		return
	}
	strace, err := exec.LookPath("strace")
	if err != nil {
		t.Skip("strace is not installed")
	}
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "out"), 0o755); err != nil {
		t.Fatal(err)
	}
	log := filepath.Join(t.TempDir(), "strace.log")
	cmd := exec.Command(strace, "-f", "-y", "-qq", "-o", log, "-e", "trace=fsync,fdatasync,rename,renameat,renameat2",
		os.Args[0], "-test.run=^TestExportOutputSynced$", "-test.count=1")
	cmd.Env = append(os.Environ(), syncedExportDir+"="+dir)
	out, err := cmd.CombinedOutput()
	var exit *exec.ExitError
	if errors.As(err, &exit) && strings.Contains(string(out), "strace:") {
		t.Skipf("strace cannot trace here: %s", out)
	}
	if err != nil {
		t.Fatalf("the export under strace: %v\n%s", err, out)
	}
	calls, err := os.ReadFile(log)
	if err != nil {
		t.Fatal(err)
	}
	outDir := regexp.QuoteMeta(filepath.Join(dir, "out"))
	steps := []struct {
		what string
		re   *regexp.Regexp
	}{
		{"the temporary file's fsync", regexp.MustCompile(`fsync\(\d+<` + outDir + `/\.train\.parquet\.\d+\.tmp>\)\s+= 0`)},
		{"the rename", regexp.MustCompile(`rename(at2?)?\(.*"` + outDir + `/\.train\.parquet\.\d+\.tmp".*"` + outDir + `/train\.parquet"`)},
		{"the folder's fsync", regexp.MustCompile(`fsync\(\d+<` + outDir + `>\)\s+= 0`)},
	}
	lines := strings.Split(string(calls), "\n")
	at := 0
	for _, s := range steps {
		for at < len(lines) && !s.re.MatchString(lines[at]) {
			at++
		}
		if at == len(lines) {
			t.Fatalf("no %s, in order after the steps before it, among the export's calls:\n%s", s.what, calls)
		}
	}
}
