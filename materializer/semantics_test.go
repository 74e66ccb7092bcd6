package materializer_test

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/larder-dev/larder"
	"github.com/larder-dev/larder/materializer"
)

type scoreRow struct {
	UserID int64     `parquet:"user_id"`
	TS     time.Time `parquet:"ts,timestamp(millisecond)"`
	Score  float64   `parquet:"score"`
}

var scoreFeature = feature("score", larder.TypeFloat64, "score")

func at(sec int) time.Time { return baseTime.Add(time.Duration(sec) * time.Second) }

// runView materializes view "v" of p into a new fake store as of runTime.
func runView(tb testing.TB, p *larder.Project, runTime time.Time) (*fakeStore, materializer.Report) {
	tb.Helper()
	fs := newFakeStore()
	rep, err := materializer.New(p, fs, materializer.Options{Now: fixedClock(runTime)}).Run(context.Background(), "v")
	if err != nil {
		tb.Fatalf("Run: %v", err)
	}
	return fs, rep
}

func scores(rows map[larder.Key]larder.Row) map[int64]float64 {
	out := make(map[int64]float64, len(rows))
	for k, r := range rows {
		out[k.Int64()] = r.Values[0].Float64()
	}
	return out
}

func TestLatestTiesAndRunTime(t *testing.T) {
	dir := t.TempDir()
	writeParquet(t, filepath.Join(dir, "data", "a.parquet"), []scoreRow{
		{1, at(10), 1}, {1, at(10), 2}, // a tie in one file: the later row wins...
		{2, at(20), 10}, {2, at(5), 11}, // an older event after a newer one is ignored
		{3, at(31), 5}, {3, at(30), 6}, // after the run time, and exactly at it
		{4, at(31), 7}, // only after the run time: no row at all
		{5, at(1), 8},
	})
	writeParquet(t, filepath.Join(dir, "data", "b.parquet"), []scoreRow{
		{1, at(10), 3}, // ...and a tie across files: the later file wins
		{5, at(0), 9},
	})
	p := projectFor(t, dir, "data", larder.TypeInt64, scoreFeature)
	fs, rep := runView(t, p, at(30))
	rows, _ := fs.liveRows("v")
	want := map[int64]float64{1: 3, 2: 10, 3: 6, 5: 8}
	got := scores(rows)
	if len(got) != len(want) {
		t.Errorf("rows = %v, want %v", got, want)
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("entity %d = %v, want %v", k, got[k], v)
		}
	}
	if et := rows[larder.Int64Key(3)].EventTime; !et.Equal(at(30)) || et.Location() != time.UTC {
		t.Errorf("event time of entity 3 = %v, want %v in UTC", et, at(30))
	}
	if rep.Skipped[materializer.SkipAfterRunTime] != 2 || len(rep.Skipped) != 1 {
		t.Errorf("skipped = %v, want 2 after run time", rep.Skipped)
	}
}

// Event times may be timestamps of any unit or dates, and keys strings,
// dictionary-encoded or not; each file of a source is bound on its own.
type strKeyMillis struct {
	UserID *string `parquet:"user_id,optional,dict"`
	TS     int64   `parquet:"ts,timestamp(millisecond)"`
	Score  float64 `parquet:"score"`
}

type strKeyNanos struct {
	UserID string    `parquet:"user_id"`
	TS     time.Time `parquet:"ts,timestamp(nanosecond)"`
	Score  float32   `parquet:"score"`
}

type strKeyDate struct {
	UserID string   `parquet:"user_id"`
	TS     *int32   `parquet:"ts,optional,date"`
	Score  *float64 `parquet:"score,optional"`
}

func TestEventTimeUnitsAndStringKeys(t *testing.T) {
	dir := t.TempDir()
	day := baseTime.Truncate(24 * time.Hour)
	writeParquet(t, filepath.Join(dir, "d", "1.parquet"), []strKeyMillis{
		{ptr("a"), at(1).UnixMilli(), 1},
		{nil, at(2).UnixMilli(), 2},
		{ptr("b"), at(3).UnixMilli(), 3},
		{ptr("c"), at(3).UnixMilli() + 1, 4},
	})
	writeParquet(t, filepath.Join(dir, "d", "2.parquet"), []strKeyNanos{
		{"a", at(1).Add(1), 5}, // one nanosecond newer than the millisecond row
		{"b", at(2), 6},
		{"é", at(9), 7.5},
	})
	writeParquet(t, filepath.Join(dir, "d", "3.parquet"), []strKeyDate{
		{"c", ptr(int32(day.Unix() / 86400)), nil}, // a date is midnight UTC: older
		{"d", ptr(int32(day.Unix() / 86400)), ptr(8.0)},
		{"e", nil, ptr(9.0)},
	})
	p := projectFor(t, dir, "d/*.parquet", larder.TypeString, scoreFeature)
	fs, rep := runView(t, p, at(100))
	rows, _ := fs.liveRows("v")
	want := map[string]struct {
		score float64
		ts    time.Time
	}{
		"a": {5, at(1).Add(1)},
		"b": {3, at(3)},
		"c": {4, at(3).Add(time.Millisecond)},
		"é": {7.5, at(9)},
		"d": {8, day},
	}
	if len(rows) != len(want) {
		t.Errorf("got %d rows, want %d", len(rows), len(want))
	}
	for k, w := range want {
		r, ok := rows[larder.StringKey(k)]
		if !ok {
			t.Errorf("entity %q missing", k)
			continue
		}
		if r.Values[0].Float64() != w.score || !r.EventTime.Equal(w.ts) {
			t.Errorf("entity %q = %v at %v, want %v at %v", k, r.Values[0], r.EventTime, w.score, w.ts)
		}
	}
	wantSkipped := map[string]int64{materializer.SkipNullKey: 1, materializer.SkipNullEventTime: 1}
	if !equalCounts(rep.Skipped, wantSkipped) {
		t.Errorf("skipped = %v, want %v", rep.Skipped, wantSkipped)
	}
}

func TestSourcePaths(t *testing.T) {
	dir := t.TempDir()
	writeParquet(t, filepath.Join(dir, "data", "part-00.parquet"), []scoreRow{{1, at(1), 1}, {2, at(1), 2}})
	writeParquet(t, filepath.Join(dir, "data", "part-01.parquet"), []scoreRow{{1, at(1), 10}, {3, at(1), 3}})
	writeParquet(t, filepath.Join(dir, "data", "sub-a", "x.parquet"), []scoreRow{{4, at(1), 4}})
	writeParquet(t, filepath.Join(dir, "data", "sub-b", "x.parquet"), []scoreRow{{4, at(1), 40}})
	for name, content := range map[string]string{"data/_SUCCESS": "", "data/part-02.parquet.crc": "x", "data/_tmp.parquet": "partial", "data/.part-03.parquet": "partial", "empty/README": "no data"} {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(dir, name)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	tests := []struct {
		name  string
		path  string
		files int
		want  map[int64]float64
	}{
		{"folder", "data", 2, map[int64]float64{1: 10, 2: 2, 3: 3}},
		{"file", "data/part-00.parquet", 1, map[int64]float64{1: 1, 2: 2}},
		{"absolute file", filepath.Join(dir, "data", "part-01.parquet"), 1, map[int64]float64{1: 10, 3: 3}},
		{"glob", "data/part-*.parquet", 2, map[int64]float64{1: 10, 2: 2, 3: 3}},
		{"glob of one", "data/*1.parquet", 1, map[int64]float64{1: 10, 3: 3}},
		{"glob of folders", "data/sub-*", 2, map[int64]float64{4: 40}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := projectFor(t, dir, tt.path, larder.TypeInt64, scoreFeature)
			fs, rep := runView(t, p, at(10))
			rows, _ := fs.liveRows("v")
			got := scores(rows)
			if rep.Files != tt.files || len(got) != len(tt.want) {
				t.Errorf("read %d files into %v; want %d files into %v", rep.Files, got, tt.files, tt.want)
			}
			for k, v := range tt.want {
				if got[k] != v {
					t.Errorf("entity %d = %v, want %v", k, got[k], v)
				}
			}
		})
	}

	errTests := []struct {
		name, path, want string
	}{
		{"missing file", "nope.parquet", "nope.parquet does not exist"},
		{"empty folder", "empty", "holds no .parquet files"},
		{"glob without match", "data/*.csv", "no files match"},
		{"bad glob", "data/[", "not a valid glob"},
		{"not parquet", "data/_SUCCESS", "is not a readable Parquet file"},
	}
	for _, tt := range errTests {
		t.Run(tt.name, func(t *testing.T) {
			p := projectFor(t, dir, tt.path, larder.TypeInt64, scoreFeature)
			fs := newFakeStore()
			_, err := materializer.New(p, fs, materializer.Options{}).Run(context.Background(), "v")
			if err == nil || !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), "source events") {
				t.Errorf("Run error = %v, want one naming the source and saying %q", err, tt.want)
			}
			if b, _, _ := fs.counts(); b != 0 {
				t.Errorf("a generation was begun for a source that cannot be read")
			}
		})
	}
}

func TestProgress(t *testing.T) {
	dir := t.TempDir()
	var rows []scoreRow
	for i := range 10000 {
		rows = append(rows, scoreRow{int64(i % 9000), at(i % 50), float64(i)})
	}
	writeParquet(t, filepath.Join(dir, "a.parquet"), rows[:6000], smallGroups(1000)...)
	writeParquet(t, filepath.Join(dir, "b.parquet"), rows[6000:], smallGroups(1000)...)
	p := projectFor(t, dir, "*.parquet", larder.TypeInt64, scoreFeature)
	var got []materializer.Progress
	m := materializer.New(p, newFakeStore(), materializer.Options{
		Now:      fixedClock(at(100)),
		Progress: func(pr materializer.Progress) { got = append(got, pr) },
	})
	rep, err := m.Run(context.Background(), "v")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) < 12 || len(got) > 20 {
		t.Fatalf("progress was reported %d times; want about once per row group and few writes", len(got))
	}
	var last materializer.Progress
	for i, pr := range got {
		if pr.View != "v" || pr.RowsTotal != 10000 {
			t.Fatalf("progress %d = %+v", i, pr)
		}
		if pr.RowsRead < last.RowsRead || pr.EntitiesWritten < last.EntitiesWritten || (last.Phase == materializer.PhaseWriting && pr.Phase != last.Phase) {
			t.Fatalf("progress went backwards: %+v after %+v", pr, last)
		}
		last = pr
	}
	want := materializer.Progress{View: "v", Phase: materializer.PhaseWriting, RowsRead: 10000, RowsTotal: 10000, EntitiesWritten: 9000, EntitiesTotal: 9000}
	if last != want {
		t.Errorf("last progress = %+v, want %+v", last, want)
	}
	if rep.RowsRead != 10000 || rep.EntitiesWritten != 9000 || rep.Duration != 0 || rep.RowsPerSecond != 0 {
		t.Errorf("report = %+v", rep)
	}
}

// Rows in time order make every row win its entity, superseding the row that
// won before it in the same row group: the bookkeeping of wins must stay
// right while it is compacted.
func TestLatestEveryRowWins(t *testing.T) {
	tests := []struct {
		name         string
		rows, keys   int
		rowsPerGroup int64
	}{
		{"few keys, one group", 50_000, 7, 1 << 20},
		{"many keys, one group", 50_000, 9_000, 1 << 20},
		{"many keys, groups", 50_000, 9_000, 12_345},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			rows := make([]scoreRow, tt.rows)
			var records []record
			for i := range rows {
				rows[i] = scoreRow{int64(i*7919) % int64(tt.keys), at(i / 3), float64(i)}
				k := larder.Int64Key(rows[i].UserID)
				records = append(records, record{key: &k, ts: &rows[i].TS, values: []larder.Value{larder.Float64Value(rows[i].Score)}})
			}
			writeParquet(t, filepath.Join(dir, "a.parquet"), rows, smallGroups(tt.rowsPerGroup)...)
			p := projectFor(t, dir, "a.parquet", larder.TypeInt64, scoreFeature)
			runTime := at(tt.rows)
			fs, _ := runView(t, p, runTime)
			got, _ := fs.liveRows("v")
			want, _ := bruteLatest(records, runTime)
			if d := diffRows(got, want); d != "" {
				t.Errorf("rows differ from the brute-force result:\n%s", d)
			}
		})
	}
}

// TestEventTimesOutOfRange runs views over a file whose event-time column
// holds dates past what Unix nanoseconds hold (year 2262), as a corrupt
// column or one of the wrong unit does: the run fails, naming the file and
// the column, instead of taking the rows as after the run time.
func TestEventTimesOutOfRange(t *testing.T) {
	dir := t.TempDir()
	writeParquet(t, filepath.Join(dir, "d", "bad.parquet"), []strKeyDate{
		{"a", ptr(int32(20_000)), ptr(1.0)},
		{"b", ptr(int32(2_000_000_000)), ptr(2.0)}, // about the year 5,477,000
	})
	p := projectFor(t, dir, "d/*.parquet", larder.TypeString, scoreFeature)
	_, err := materializer.New(p, newFakeStore(), materializer.Options{Now: fixedClock(at(100))}).Run(context.Background(), "v")
	if err == nil || !strings.Contains(err.Error(), "bad.parquet") || !strings.Contains(err.Error(), `column "ts"`) ||
		!strings.Contains(err.Error(), "1677 to 2262") {
		t.Fatalf("Run: %v; want an error naming the file, the column and the years larder can hold", err)
	}
}
