package main

import (
	"bytes"
	"context"
	"flag"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"

	larderclient "github.com/larder-dev/larder/client"
	larderv1 "github.com/larder-dev/larder/proto/larder/v1"
	"github.com/larder-dev/larder/redistest"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/ with the current output")

// t0 is the stopped clock of the tests. The tiny project's data are dated
// relative to it, so every time and age the commands print is fixed.
var t0 = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

// result is what one in-process run of the larder command left behind.
type result struct {
	code           int
	stdout, stderr string
}

// larderAt runs the larder command in-process with its clock stopped at now.
func larderAt(tb testing.TB, ctx context.Context, now time.Time, args ...string) result {
	tb.Helper()
	var stdout, stderr bytes.Buffer
	a := &app{stdin: strings.NewReader(""), stdout: &stdout, stderr: &stderr, now: func() time.Time { return now }}
	code := a.run(ctx, args)
	return result{code: code, stdout: stdout.String(), stderr: stderr.String()}
}

// mustSucceed fails the test unless r exited 0.
func mustSucceed(tb testing.TB, r result, what string) {
	tb.Helper()
	if r.code != 0 {
		tb.Fatalf("%s: exit code %d\nstdout:\n%s\nstderr:\n%s", what, r.code, r.stdout, r.stderr)
	}
}

// checkGolden compares got with testdata/NAME.golden, or rewrites the file
// when the test runs with -update.
func checkGolden(tb testing.TB, name, got string) {
	tb.Helper()
	path := filepath.Join("testdata", name+".golden")
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			tb.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		tb.Fatalf("%v (run go test with -update to create it)", err)
	}
	if got != string(want) {
		tb.Errorf("output differs from %s (go test -run '%s' -update rewrites it)\n--- got:\n%s--- want:\n%s", path, tb.Name(), got, want)
	}
}

// tinyProject is testdata/tiny/larder.yaml copied into a temporary folder
// with its Parquet data, and a redis-server of its own.
type tinyProject struct {
	dir    string
	config string
	redis  *redistest.Server
}

// newTinyProject writes the tiny project and starts its redis-server. The
// data hold, relative to t0: users 1 (two versions, plus one dated after t0),
// 2 (30 hours old: stale for user_profile's max_age of 24h), 3 (a null age and
// a NaN score), 12 and 120; four rows skipped for a null key, a null event
// time and two event times after t0; items A-100 (updated in the second
// file), B-200 (5 hours old: stale) and C-300 (a null embedding).
func newTinyProject(tb testing.TB) *tinyProject {
	tb.Helper()
	dir := tb.TempDir()
	yaml, err := os.ReadFile(filepath.Join("testdata", "tiny", "larder.yaml"))
	if err != nil {
		tb.Fatal(err)
	}
	p := &tinyProject{dir: dir, config: filepath.Join(dir, "larder.yaml")}
	if err := os.WriteFile(p.config, yaml, 0o644); err != nil {
		tb.Fatal(err)
	}
	writeParquet(tb, filepath.Join(dir, "data", "users.parquet"), tinyUsers())
	items := tinyItems()
	writeParquet(tb, filepath.Join(dir, "data", "items", "part-0000.parquet"), items[:3])
	writeParquet(tb, filepath.Join(dir, "data", "items", "part-0001.parquet"), items[3:])
	p.redis = redistest.Start(tb)
	return p
}

// larder runs the command against the project and its Redis at now.
func (p *tinyProject) larder(tb testing.TB, now time.Time, args ...string) result {
	tb.Helper()
	return larderAt(tb, tb.Context(), now, append([]string{"--redis", p.redis.Addr, "-c", p.config}, args...)...)
}

type userRow struct {
	UserID      *int64     `parquet:"user_id,optional"`
	UpdatedAt   *time.Time `parquet:"updated_at,optional,timestamp(millisecond)"`
	Age         *int64     `parquet:"age,optional"`
	CountryCode string     `parquet:"country_code"`
	Premium     bool       `parquet:"premium"`
	Score       float64    `parquet:"score"`
	CTR         float32    `parquet:"ctr"`
}

func tinyUsers() []userRow {
	id := func(v int64) *int64 { return &v }
	at := func(d time.Duration) *time.Time { t := t0.Add(d); return &t }
	return []userRow{
		{UserID: id(1), UpdatedAt: at(-72 * time.Hour), Age: id(30), CountryCode: "FR", Score: 0.5, CTR: 0.1},
		{UserID: id(2), UpdatedAt: at(-30 * time.Hour), Age: id(45), CountryCode: "US", Score: 1.5, CTR: 0.25},
		{UserID: id(1), UpdatedAt: at(-3 * time.Hour), Age: id(31), CountryCode: "FR", Premium: true, Score: 0.75, CTR: 0.125},
		{UserID: id(3), UpdatedAt: at(-time.Hour), CountryCode: "DE", Premium: true, Score: math.NaN(), CTR: 0.5},
		{UserID: id(12), UpdatedAt: at(-10 * time.Minute), Age: id(22), CountryCode: "JP", Score: -2, CTR: 0},
		{UserID: id(120), UpdatedAt: at(-90 * time.Second), Age: id(67), CountryCode: "", Score: 1e21, CTR: 0.0625},
		{UserID: nil, UpdatedAt: at(-time.Hour), Age: id(50), CountryCode: "NL"},
		{UserID: id(5), UpdatedAt: nil, Age: id(50), CountryCode: "NL"},
		{UserID: id(1), UpdatedAt: at(2 * time.Hour), Age: id(99), CountryCode: "XX"},
		{UserID: id(4), UpdatedAt: at(time.Minute), Age: id(40), CountryCode: "BE"},
	}
}

type itemRow struct {
	SKU       string    `parquet:"sku"`
	UpdatedAt time.Time `parquet:"updated_at,timestamp(microsecond)"`
	Title     string    `parquet:"title"`
	Price     float64   `parquet:"price"`
	Embedding []float32 `parquet:"embedding,optional,list"`
	Thumb     []byte    `parquet:"thumb,optional"`
}

// tinyItems returns the item rows: the first three go to the first file, the
// rest to the second.
func tinyItems() []itemRow {
	return []itemRow{
		{SKU: "A-100", UpdatedAt: t0.Add(-30 * time.Minute), Title: "Kettle", Price: 24.5, Embedding: []float32{0.1, 0.2, 0.3}, Thumb: []byte{0xca, 0xfe}},
		{SKU: "B-200", UpdatedAt: t0.Add(-5 * time.Hour), Title: "Mug \"large\"", Price: 7.25, Embedding: []float32{1}},
		{SKU: "C-300", UpdatedAt: t0.Add(-10 * time.Minute), Title: "Teapot", Price: 31},
		{SKU: "A-100", UpdatedAt: t0.Add(-15 * time.Minute), Title: "Kettle", Price: 22, Embedding: []float32{0.1, 0.2, 0.3}, Thumb: []byte{0xca, 0xfe}},
	}
}

// writeParquet writes rows to path as one Parquet file, with the writer's
// options opts.
func writeParquet[T any](tb testing.TB, path string, rows []T, opts ...parquet.WriterOption) {
	tb.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		tb.Fatal(err)
	}
	f, err := os.Create(path)
	if err != nil {
		tb.Fatal(err)
	}
	w := parquet.NewGenericWriter[T](f, opts...)
	if _, err := w.Write(rows); err != nil {
		tb.Fatalf("write %s: %v", path, err)
	}
	if err := w.Close(); err != nil {
		tb.Fatalf("write %s: %v", path, err)
	}
	if err := f.Close(); err != nil {
		tb.Fatal(err)
	}
}

// int64Key is client.Int64Key, for tests whose gRPC clients are named
// client.
func int64Key(v int64) *larderv1.EntityKey { return larderclient.Int64Key(v) }

// TestErrorsPrintable checks that an error quoting a name from outside (a
// file name here; a Parquet column or a stream field as well) cannot send
// a terminal its control sequences.
func TestErrorsPrintable(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "larder\x1b[2J\u202e.yaml")
	r := larderAt(t, t.Context(), time.Now(), "-c", path, "views")
	if r.code == 0 {
		t.Fatalf("larder views with a missing config succeeded: %+v", r)
	}
	if strings.ContainsAny(r.stderr, "\x1b\u202e") {
		t.Errorf("the error holds raw control characters: %q", r.stderr)
	}
	if !strings.Contains(r.stderr, `larder\x1b[2J\u202e.yaml`) {
		t.Errorf("the error does not name the file, escaped: %q", r.stderr)
	}
}
