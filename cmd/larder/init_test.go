package main

import (
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/parquet-go/parquet-go"

	"github.com/larder-dev/larder/config"
	"github.com/larder-dev/larder/demo"
)

// initDemoData generates a small demo shop's Parquet files in a temporary
// folder (with the demo's own larder.yaml beside them) and returns the folder.
func initDemoData(tb testing.TB) string {
	tb.Helper()
	dir := tb.TempDir()
	if _, err := demo.Generate(tb.Context(), dir, demo.Options{Users: 50, Items: 20, Events: 500, Seed: 1, Now: t0}); err != nil {
		tb.Fatal(err)
	}
	return dir
}

// TestInitDemo runs init on the demo's files, as a user would on theirs,
// and checks that the file it writes validates and materializes as written.
func TestInitDemo(t *testing.T) {
	dir := initDemoData(t)
	out := filepath.Join(dir, "mine.yaml")
	// A quoted glob of files with different columns: a source per file.
	r := larderAt(t, t.Context(), t0, "init", "--out", out,
		filepath.Join(dir, "data", "*.parquet"), filepath.Join(dir, demo.EventsDir))
	mustSucceed(t, r, "init")

	// The listing: every column, its Parquet type, its larder type and use.
	for _, want := range []string{
		"/data/users.parquet: 1 file, ",
		"/data/events: 1 file, 500 rows (source events)",
		`(?m)^  user_id +INT64 +int64 +key of entity user$`,
		`(?m)^  updated_at +INT64 TIMESTAMP\S* +- +event time$`,
		`(?m)^  country_code +BYTE_ARRAY STRING +string +feature$`,
		`(?m)^  embedding +LIST of FLOAT +float32_vector +feature$`,
		`(?m)^  price_sensitivity +FLOAT +float32 +feature$`,
		`(?m)^  item_id +INT64 +int64 +key of entity item$`,
		`(?m)^  item_id +INT64 +int64 +feature$`,
		"wrote " + out + ": project ",
		"`larder -c " + out + " validate`",
	} {
		if !regexp.MustCompile(regexp.QuoteMeta(want)).MatchString(r.stdout) && !regexp.MustCompile(want).MatchString(r.stdout) {
			t.Errorf("init's listing lacks %q:\n%s", want, r.stdout)
		}
	}

	data, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	yaml := string(data)

	// The same files as a shell expands the glob: the same file.
	expanded := filepath.Join(dir, "expanded.yaml")
	mustSucceed(t, larderAt(t, t.Context(), t0, "init", "--out", expanded,
		filepath.Join(dir, demo.CandidatesFile), filepath.Join(dir, demo.ItemsFile),
		filepath.Join(dir, demo.UsersFile), filepath.Join(dir, demo.EventsDir)), "init of the expanded glob")
	if again, _ := os.ReadFile(expanded); string(again) != yaml {
		t.Errorf("init of the files one by one wrote\n%s\nand of the quoted glob\n%s", again, yaml)
	}
	for _, want := range []string{
		"  - {name: user, key: user_id, type: int64}",
		"  - {name: item, key: item_id, type: int64}",
		"{name: users, path: data/users.parquet, event_time: updated_at}",
		"{name: events, path: data/events, event_time: event_time}",
		"{name: candidates, path: data/candidates.parquet, event_time: generated_at}",
		"- {name: embedding, type: float32_vector}",
		"- {name: price_sensitivity, type: float32}",
		"# FLOAT; or float64",
		"# max_age: 30d",
		"larder validate",
		"larder materialize",
		"kind: aggregate",
	} {
		if !strings.Contains(yaml, want) {
			t.Errorf("the file lacks %q:\n%s", want, yaml)
		}
	}
	p, err := config.Load(out)
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Entities) != 2 || len(p.Sources) != 4 || len(p.Views) != 4 {
		t.Errorf("got %d entities, %d sources, %d views; want 2, 4, 4:\n%s", len(p.Entities), len(p.Sources), len(p.Views), yaml)
	}

	mustSucceed(t, larderAt(t, t.Context(), t0, "-c", out, "validate"), "validate")
	r = larderAt(t, t.Context(), t0, "-c", out, "materialize")
	mustSucceed(t, r, "materialize")
	for _, v := range []string{"users", "items", "candidates", "events"} {
		if !strings.Contains(r.stdout, v+": generation 1 published") {
			t.Errorf("materialize did not publish %s:\n%s", v, r.stdout)
		}
	}

	// The aggregate example, uncommented, is a view that runs too.
	i := strings.Index(yaml, "#  - name: ")
	if i < 0 {
		t.Fatalf("no aggregate example:\n%s", yaml)
	}
	var b strings.Builder
	b.WriteString(yaml[:i])
	for _, line := range strings.SplitAfter(yaml[i:], "\n") {
		b.WriteString(strings.TrimPrefix(line, "#"))
	}
	withAgg := filepath.Join(dir, "agg.yaml")
	if err := os.WriteFile(withAgg, []byte(b.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	r = larderAt(t, t.Context(), t0, "-c", withAgg, "materialize")
	mustSucceed(t, r, "materialize with the aggregate example")
	if !strings.Contains(r.stdout, "user_activity: generation 1 published") {
		t.Errorf("the aggregate example did not run:\n%s", r.stdout)
	}
}

// TestInitMergesFiles checks that files of one folder named one by one, as
// a shell expands a glob, become one source of their folder.
func TestInitMergesFiles(t *testing.T) {
	dir := initDemoData(t)
	parts, err := filepath.Glob(filepath.Join(dir, demo.EventsDir, "*.parquet"))
	if err != nil || len(parts) == 0 {
		t.Fatal(parts, err)
	}
	// Two files of one schema, so that there is something to merge.
	second := filepath.Join(dir, demo.EventsDir, "part-9999.parquet")
	copyFile(t, parts[0], second)
	parts = append(parts, second)

	out := filepath.Join(dir, "events.yaml")
	r := larderAt(t, t.Context(), t0, append([]string{"init", "-o", out}, parts...)...)
	mustSucceed(t, r, "init")
	data, _ := os.ReadFile(out)
	if !strings.Contains(string(data), "{name: events, path: data/events, event_time: event_time}") {
		t.Errorf("the event files are not one source of their folder:\n%s\n%s", r.stdout, data)
	}
	mustSucceed(t, larderAt(t, t.Context(), t0, "-c", out, "validate"), "validate")

	// Only some of the folder's files: a glob of their common part.
	other := filepath.Join(dir, demo.EventsDir, "other.parquet")
	copyFile(t, parts[0], other)
	out2 := filepath.Join(dir, "events2.yaml")
	mustSucceed(t, larderAt(t, t.Context(), t0, append([]string{"init", "-o", out2}, parts...)...), "init")
	data, _ = os.ReadFile(out2)
	if !strings.Contains(string(data), `path: "data/events/part-*.parquet"`) {
		t.Errorf("the event files are not one glob:\n%s", data)
	}
	mustSucceed(t, larderAt(t, t.Context(), t0, "-c", out2, "validate"), "validate")
}

func copyFile(tb testing.TB, from, to string) {
	tb.Helper()
	data, err := os.ReadFile(from)
	if err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(to, data, 0o644); err != nil {
		tb.Fatal(err)
	}
}

// initOddRow has columns init must leave out, a key without _id, and a
// second time.
type initOddRow struct {
	ID        string   `parquet:"id"`
	Ts        int64    `parquet:"ts,timestamp(microsecond)"`
	CreatedAt int64    `parquet:"created_at,timestamp(millisecond)"`
	Score     float64  `parquet:"score"`
	Tags      []string `parquet:"tags,list"`
	Legacy    [16]byte `parquet:"legacy"`
	Count     int32    `parquet:"count"`
	Weird     string   `parquet:"weird name"`
	Raw       []byte   `parquet:"raw"`
}

func TestInitLeavesOut(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "accounts.parquet")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	w := parquet.NewGenericWriter[initOddRow](f)
	if _, err := w.Write([]initOddRow{{ID: "a", Ts: 1_700_000_000_000_000, CreatedAt: 1_600_000_000_000, Score: 1, Tags: []string{"x"}, Count: 3, Weird: "w", Raw: []byte{1}}}); err != nil {
		t.Fatal(err)
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	f.Close()

	out := filepath.Join(dir, "larder.yaml")
	r := larderAt(t, t.Context(), t0, "init", "--project", "acme", "-o", out, path)
	mustSucceed(t, r, "init")
	data, _ := os.ReadFile(out)
	yaml := string(data)
	for _, want := range []string{
		"project: acme",
		"- {name: account, key: id, type: string}",
		"event_time: ts}",
		"other times: created_at",
		"- {name: score, type: float64}",
		"- {name: count, type: int64}",
		`- {name: weird_name, type: string, column: "weird name"}`,
		"- {name: raw, type: bytes}",
		"# left out: tags: only a LIST of FLOAT",
		"# left out: legacy: FIXED_LEN_BYTE_ARRAY",
		"# left out: created_at: a time",
	} {
		if !strings.Contains(yaml, want) {
			t.Errorf("the file lacks %q:\n%s", want, yaml)
		}
	}
	mustSucceed(t, larderAt(t, t.Context(), t0, "-c", out, "validate"), "validate")
	mustSucceed(t, larderAt(t, t.Context(), t0, "-c", out, "materialize"), "materialize")
}

func TestInitRefuses(t *testing.T) {
	dir := initDemoData(t)
	users := filepath.Join(dir, demo.UsersFile)
	project := filepath.Join(dir, demo.ProjectFile)
	before, _ := os.ReadFile(project)

	notParquet := filepath.Join(dir, "data", "notes.parquet")
	if err := os.WriteFile(notParquet, []byte("user_id,age\n1,30\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	fresh := filepath.Join(dir, "fresh.yaml")
	for _, tc := range []struct {
		name string
		args []string
		want string
	}{
		{"existing file", []string{"-c", project, "init", users}, project + " already exists, and init does not overwrite a project file: write another with --out PATH, or replace it with --force"},
		{"existing --out", []string{"init", "--out", project, users}, "replace it with --force"},
		{"not Parquet", []string{"init", "-o", fresh, users, notParquet}, notParquet + " is not a readable Parquet file"},
		{"empty glob", []string{"init", "-o", fresh, filepath.Join(dir, "data", "*.csv")}, "no files match " + filepath.Join(dir, "data", "*.csv")},
		{"missing file", []string{"init", "-o", fresh, filepath.Join(dir, "nope.parquet")}, "nope.parquet does not exist"},
		{"no argument", []string{"init", "-o", fresh}, "requires at least 1 arg"},
		{"no folder", []string{"init", "-o", filepath.Join(dir, "no", "such.yaml"), users}, "does not exist: create it first"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := larderAt(t, t.Context(), t0, tc.args...)
			if r.code == 0 || !strings.Contains(r.stderr, tc.want) {
				t.Errorf("exit %d, stderr %q; want an error containing %q", r.code, r.stderr, tc.want)
			}
		})
	}
	if after, _ := os.ReadFile(project); string(after) != string(before) {
		t.Error("init changed the existing project file")
	}
	if _, err := os.Stat(fresh); err == nil {
		t.Error("a failed init wrote its file")
	}

	// --force replaces it; - writes to standard output, the listing to
	// standard error.
	mustSucceed(t, larderAt(t, t.Context(), t0, "-c", project, "init", "--force", users), "init --force")
	if after, _ := os.ReadFile(project); !strings.Contains(string(after), `written by "larder init"`) {
		t.Errorf("--force did not replace the file:\n%s", after)
	}
	r := larderAt(t, t.Context(), t0, "init", "-o", "-", users)
	mustSucceed(t, r, "init -o -")
	if !strings.HasPrefix(r.stdout, "# larder.yaml") || !strings.Contains(r.stderr, "COLUMN") {
		t.Errorf("init -o -: stdout %q..., stderr %q", r.stdout[:min(len(r.stdout), 80)], r.stderr)
	}
}
