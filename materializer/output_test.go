package materializer_test

import (
	"context"
	"errors"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/larder-dev/larder"
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

// outputLinks are the ways a symbolic link can name an output that
// makeOutputLinks makes: the link, and the file at the end of its links,
// relative to the folder they are made in.
var outputLinks = []struct{ name, link, file string }{
	{"a link to a file", "out/current.parquet", "sets/v1/train.parquet"},
	{"a relative link", "out/rel.parquet", "sets/other.parquet"},
	{"a link in a linked folder", "via/up", "real/up.parquet"},
	{"a dangling link", "out/new.parquet", "sets/v2.parquet"},
	{"a link to a link", "out/chain.parquet", "sets/v1/train.parquet"},
}

// makeOutputLinks makes the links of outputLinks in dir, and the files and
// folders they lead to: a link to a file there, a relative link to another
// folder, one in a linked folder whose ".." leads out of the folder linked
// to, not out of the link's, a dangling link (its file is to be created),
// and a link to a link. The files there hold "the previous output".
func makeOutputLinks(tb testing.TB, dir string) {
	tb.Helper()
	for _, d := range []string{"sets/v1", "out", "real/deep"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			tb.Fatal(err)
		}
	}
	for _, f := range []string{"sets/v1/train.parquet", "sets/other.parquet", "real/up.parquet"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte("the previous output"), 0o644); err != nil {
			tb.Fatal(err)
		}
	}
	for _, l := range [][2]string{
		{"out/current.parquet", filepath.Join(dir, "sets/v1/train.parquet")},
		{"out/rel.parquet", "../sets/other.parquet"},
		{"via", filepath.Join(dir, "real/deep")},
		{"real/deep/up", "../up.parquet"},
		{"out/new.parquet", "../sets/v2.parquet"},
		{"out/chain.parquet", "current.parquet"},
	} {
		if err := os.Symlink(l[1], filepath.Join(dir, l[0])); err != nil {
			tb.Fatal(err)
		}
	}
}

// checkWrittenThrough checks that the output named by link was written to
// file, the file at the end of its links, and the link left as it was,
// with no temporary file left beside either.
func checkWrittenThrough(tb testing.TB, dir, link, file string, before string) {
	tb.Helper()
	fi, err := os.Lstat(filepath.Join(dir, link))
	if err != nil || fi.Mode()&os.ModeSymlink == 0 {
		tb.Fatalf("%s is no longer a link (%v): the output replaced it", link, err)
	}
	if after, err := os.Readlink(filepath.Join(dir, link)); err != nil || after != before {
		tb.Errorf("%s now leads to %q (%v), want %q as before", link, after, err, before)
	}
	data, err := os.ReadFile(filepath.Join(dir, file))
	if err != nil || string(data) == "the previous output" || !strings.HasPrefix(string(data), "PAR1") {
		tb.Errorf("%s, which %s leads to, holds %.20q (%v), want the output", file, link, data, err)
	}
	for _, d := range []string{filepath.Dir(link), filepath.Dir(file)} {
		tmps, _ := filepath.Glob(filepath.Join(dir, d, ".*.tmp"))
		if len(tmps) > 0 {
			tb.Errorf("temporary files left: %v", tmps)
		}
	}
}

// TestExportOutputLink checks that an output named by a symbolic link is
// written to the file the link leads to, there or not, and the link kept.
func TestExportOutputLink(t *testing.T) {
	for _, c := range outputLinks {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			makeOutputLinks(t, dir)
			link, file := c.link, c.file
			writeParquet(t, filepath.Join(dir, "data", "part-0.parquet"), randomRows(rand.New(rand.NewPCG(1, 1)), 10, 3, baseTime))
			writeParquet(t, filepath.Join(dir, "spine.parquet"), []spineRow{{UserID: ptr(int64(1)), At: baseTime}})
			before, _ := os.Readlink(filepath.Join(dir, link))
			m := materializer.New(exportProject(t, dir), nopStore{}, materializer.Options{})
			_, err := m.Export(context.Background(), materializer.ExportArgs{
				Spine: "spine.parquet", Output: filepath.Join(dir, link), Timestamp: "at", Features: []string{"lat:*"},
			})
			if err != nil {
				t.Fatal(err)
			}
			checkWrittenThrough(t, dir, link, file, before)
			if rows := readExport(t, filepath.Join(dir, file)); len(rows) != 1 {
				t.Errorf("%s has %d rows, want the spine's 1", file, len(rows))
			}
		})
	}
}

// TestOutputLinkToAnInput checks that an output whose link leads to a file
// an export or a scoring job reads, or would read once written, is refused,
// the link and the file left as they were, and that a loop of links is
// refused.
func TestOutputLinkToAnInput(t *testing.T) {
	dir := t.TempDir()
	writeParquet(t, filepath.Join(dir, "data", "part-0.parquet"), randomRows(rand.New(rand.NewPCG(1, 1)), 10, 3, baseTime))
	writeParquet(t, filepath.Join(dir, "spines", "a.parquet"), []spineRow{{UserID: ptr(int64(1)), At: baseTime}})
	for link, target := range map[string]string{
		"to-source.parquet":     "data/part-0.parquet",
		"to-new-source.parquet": "data/part-1.parquet",
		"to-spine.parquet":      "spines/a.parquet",
		"to-new-spine.parquet":  "spines/b.parquet",
		"loop-a.parquet":        "loop-b.parquet",
		"loop-b.parquet":        "loop-a.parquet",
	} {
		if err := os.Symlink(target, filepath.Join(dir, link)); err != nil {
			t.Fatal(err)
		}
	}
	m := materializer.New(exportProject(t, dir), nopStore{}, materializer.Options{})
	for _, c := range []struct{ output, want string }{
		{"to-source.parquet", `a link to ` + filepath.Join(dir, "data/part-0.parquet") + `) is a file of source "events"`},
		{"to-new-source.parquet", `a link to ` + filepath.Join(dir, "data/part-1.parquet") + `) is a file of source "events"`},
		{"to-spine.parquet", "is one of the spine's files"},
		{"to-new-spine.parquet", "the spine's folder or glob would read it"},
		{"loop-a.parquet", "a loop of them"},
	} {
		t.Run(c.output, func(t *testing.T) {
			before := listDir(t, dir)
			_, err := m.Export(context.Background(), materializer.ExportArgs{
				Spine: "spines", Output: filepath.Join(dir, c.output), Timestamp: "at", Features: []string{"lat:*"},
			})
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("err = %v, want one saying %q", err, c.want)
			}
			if after := listDir(t, dir); !slices.Equal(after, before) {
				t.Errorf("files before: %v, after: %v", before, after)
			}
			if fi, err := os.Lstat(filepath.Join(dir, c.output)); err != nil || fi.Mode()&os.ModeSymlink == 0 {
				t.Errorf("%s is no longer a link (%v)", c.output, err)
			}
		})
	}
}

// TestScoreOutputLink checks that a scoring job's output named by a
// symbolic link is written to the file the link leads to, there or not,
// and the link kept.
func TestScoreOutputLink(t *testing.T) {
	f := newScoreFixture(t)
	writeParquet(t, filepath.Join(f.dir, "in.parquet"), rankInputs(20))
	m := f.materializer(materializer.Options{})
	for _, c := range outputLinks {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			makeOutputLinks(t, dir)
			before, _ := os.Readlink(filepath.Join(dir, c.link))
			rep, err := m.Score(context.Background(), larder.ScoreArgs{Ranker: "feed", Input: "in.parquet", Output: filepath.Join(dir, c.link)})
			if err != nil {
				t.Fatal(err)
			}
			checkWrittenThrough(t, dir, c.link, c.file, before)
			if rows, _ := readOutput[rankOutputRow](t, filepath.Join(dir, c.file)); int64(len(rows)) != rep.Rows || rep.Rows != 20 {
				t.Errorf("%s has %d rows, want the input's 20 (report: %d)", c.file, len(rows), rep.Rows)
			}
		})
	}
}
