package materializer_test

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/larder-dev/larder"
	"github.com/larder-dev/larder/materializer"
)

// wideRow has columns of many Parquet types, to be read as the wrong ones.
type wideRow struct {
	UserID  int64     `parquet:"user_id"`
	TS      time.Time `parquet:"ts,timestamp(microsecond)"`
	Raw     int64     `parquet:"raw_ts"`
	D       float64   `parquet:"d"`
	F       float32   `parquet:"f"`
	I       int64     `parquet:"i"`
	U64     uint64    `parquet:"u64"`
	S       string    `parquet:"s"`
	DList   []float64 `parquet:"dlist,list"`
	FList   []float32 `parquet:"flist,list"`
	Nested  []int64   `parquet:"nested"`
	Decimal int64     `parquet:"dec,decimal(2:10)"`
}

type stringKeyRow struct {
	UserID string    `parquet:"user_id"`
	TS     time.Time `parquet:"ts,timestamp(microsecond)"`
	D      float64   `parquet:"d"`
}

type noTimeRow struct {
	UserID int64   `parquet:"user_id"`
	Time   int64   `parquet:"time"`
	D      float64 `parquet:"d"`
}

type plainTimeRow struct {
	UserID int64   `parquet:"user_id"`
	TS     int64   `parquet:"ts"`
	D      float64 `parquet:"d"`
}

type stringTimeRow struct {
	UserID int64   `parquet:"user_id"`
	TS     string  `parquet:"ts"`
	D      float64 `parquet:"d"`
}

func TestColumnErrors(t *testing.T) {
	now := baseTime
	wide := []wideRow{{UserID: 1, TS: now, DList: []float64{1}, FList: []float32{1}}}
	tests := []struct {
		name    string
		write   func(tb testing.TB, path string)
		keyType larder.Type
		feature larder.Feature
		// want is the ColumnError expected, without File.
		want materializer.ColumnError
	}{
		{
			name: "float32 from DOUBLE", write: writeRows(wide), keyType: larder.TypeInt64,
			feature: feature("x", larder.TypeFloat32, "d"),
			want:    materializer.ColumnError{Column: "d", Role: `float32 feature "x"`, Found: "DOUBLE", Want: "FLOAT or INT32"},
		},
		{
			name: "int64 from STRING", write: writeRows(wide), keyType: larder.TypeInt64,
			feature: feature("x", larder.TypeInt64, "s"),
			want:    materializer.ColumnError{Column: "s", Role: `int64 feature "x"`, Found: "BYTE_ARRAY STRING", Want: "INT64 or INT32"},
		},
		{
			name: "float64 from unsigned INT64", write: writeRows(wide), keyType: larder.TypeInt64,
			feature: feature("x", larder.TypeFloat64, "u64"),
			want:    materializer.ColumnError{Column: "u64", Role: `float64 feature "x"`, Found: "INT64 INT(64,false)", Want: "DOUBLE, FLOAT, INT64 or INT32"},
		},
		{
			name: "int64 from unsigned INT64", write: writeRows(wide), keyType: larder.TypeInt64,
			feature: feature("x", larder.TypeInt64, "u64"),
			want:    materializer.ColumnError{Column: "u64", Role: `int64 feature "x"`, Found: "INT64 INT(64,false)", Want: "INT64 or INT32"},
		},
		{
			name: "int64 from DECIMAL", write: writeRows(wide), keyType: larder.TypeInt64,
			feature: feature("x", larder.TypeInt64, "dec"),
			want:    materializer.ColumnError{Column: "dec", Role: `int64 feature "x"`, Found: "INT64 DECIMAL(10,2)", Want: "INT64 or INT32"},
		},
		{
			name: "bool from FLOAT", write: writeRows(wide), keyType: larder.TypeInt64,
			feature: feature("x", larder.TypeBool, "f"),
			want:    materializer.ColumnError{Column: "f", Role: `bool feature "x"`, Found: "FLOAT", Want: "BOOLEAN"},
		},
		{
			name: "vector from LIST of DOUBLE", write: writeRows(wide), keyType: larder.TypeInt64,
			feature: feature("x", larder.TypeFloat32Vector, "dlist"),
			want:    materializer.ColumnError{Column: "dlist", Role: `float32_vector feature "x"`, Found: "LIST of DOUBLE", Want: "LIST of FLOAT"},
		},
		{
			name: "vector from FLOAT", write: writeRows(wide), keyType: larder.TypeInt64,
			feature: feature("x", larder.TypeFloat32Vector, "f"),
			want:    materializer.ColumnError{Column: "f", Role: `float32_vector feature "x"`, Found: "FLOAT", Want: "LIST of FLOAT"},
		},
		{
			name: "scalar from a list", write: writeRows(wide), keyType: larder.TypeInt64,
			feature: feature("x", larder.TypeFloat32, "flist"),
			want:    materializer.ColumnError{Column: "flist", Role: `float32 feature "x"`, Found: "LIST of FLOAT", Want: "FLOAT or INT32"},
		},
		{
			name: "scalar from a repeated column", write: writeRows(wide), keyType: larder.TypeInt64,
			feature: feature("x", larder.TypeInt64, "nested"),
			want:    materializer.ColumnError{Column: "nested", Role: `int64 feature "x"`, Found: "repeated INT64", Want: "INT64 or INT32"},
		},
		{
			name: "string key from INT64", write: writeRows(wide), keyType: larder.TypeString,
			feature: feature("x", larder.TypeFloat64, "d"),
			want:    materializer.ColumnError{Column: "user_id", Role: `string key of entity "user"`, Found: "INT64", Want: "BYTE_ARRAY (STRING or unannotated)"},
		},
		{
			name: "int64 key from STRING", write: writeRows([]stringKeyRow{{"a", now, 1}}), keyType: larder.TypeInt64,
			feature: feature("x", larder.TypeFloat64, "d"),
			want:    materializer.ColumnError{Column: "user_id", Role: `int64 key of entity "user"`, Found: "BYTE_ARRAY STRING", Want: "INT64 or INT32"},
		},
		{
			name: "event time without TIMESTAMP", write: writeRows([]plainTimeRow{{1, 1, 1}}), keyType: larder.TypeInt64,
			feature: feature("x", larder.TypeFloat64, "d"),
			want:    materializer.ColumnError{Column: "ts", Role: "event time", Found: "INT64", Want: "INT64 TIMESTAMP (MILLIS, MICROS or NANOS) or INT32 DATE"},
		},
		{
			name: "event time from STRING", write: writeRows([]stringTimeRow{{1, "2025-01-01", 1}}), keyType: larder.TypeInt64,
			feature: feature("x", larder.TypeFloat64, "d"),
			want:    materializer.ColumnError{Column: "ts", Role: "event time", Found: "BYTE_ARRAY STRING", Want: "INT64 TIMESTAMP (MILLIS, MICROS or NANOS) or INT32 DATE"},
		},
		{
			name: "missing feature column", write: writeRows([]scoreRow{{1, now, 1}}), keyType: larder.TypeInt64,
			feature: feature("x", larder.TypeFloat64, "clicks"),
			want:    materializer.ColumnError{Column: "clicks", Role: `float64 feature "x"`, Columns: []string{"user_id", "ts", "score"}},
		},
		{
			name: "missing event time column", write: writeRows([]noTimeRow{{1, 1, 1}}), keyType: larder.TypeInt64,
			feature: feature("x", larder.TypeFloat64, "d"),
			want:    materializer.ColumnError{Column: "ts", Role: "event time", Columns: []string{"user_id", "time", "d"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			bad := filepath.Join(dir, "b.parquet")
			tt.write(t, bad)
			p := projectFor(t, dir, dir, tt.keyType, tt.feature)
			fs := newFakeStore()
			rep, err := materializer.New(p, fs, materializer.Options{}).Run(context.Background(), "v")
			var ce *materializer.ColumnError
			if !errors.As(err, &ce) {
				t.Fatalf("Run error = %v, want a *ColumnError", err)
			}
			want := tt.want
			want.File = bad
			if ce.File != want.File || ce.Column != want.Column || ce.Role != want.Role || ce.Found != want.Found ||
				ce.Want != want.Want || strings.Join(ce.Columns, ",") != strings.Join(want.Columns, ",") {
				t.Errorf("error = %#v\nwant    %#v", *ce, want)
			}
			msg := err.Error()
			for _, part := range []string{bad, `"` + want.Column + `"`, want.Found, want.Want, "larder.yaml", "materialize v"} {
				if !strings.Contains(msg, part) {
					t.Errorf("message %q does not say %q", msg, part)
				}
			}
			if b, _, _ := fs.counts(); b != 0 || rep.RowsRead != 0 {
				t.Errorf("%d generations begun and %d rows read before the columns were checked", b, rep.RowsRead)
			}
		})
	}
}

func writeRows[T any](rows []T) func(testing.TB, string) {
	return func(tb testing.TB, path string) {
		tb.Helper()
		writeParquet(tb, path, rows)
	}
}

type stringScoreRow struct {
	UserID int64     `parquet:"user_id"`
	TS     time.Time `parquet:"ts,timestamp(millisecond)"`
	Score  string    `parquet:"score"`
}

// Every file's columns are checked before any row of any file is read.
func TestColumnsCheckedBeforeReading(t *testing.T) {
	dir := t.TempDir()
	writeParquet(t, filepath.Join(dir, "a.parquet"), []scoreRow{{1, baseTime, 1}})
	writeParquet(t, filepath.Join(dir, "b.parquet"), []stringScoreRow{{2, baseTime, "high"}})
	p := projectFor(t, dir, ".", larder.TypeInt64, scoreFeature)
	var progress []materializer.Progress
	fs := newFakeStore()
	rep, err := materializer.New(p, fs, materializer.Options{
		Progress: func(pr materializer.Progress) { progress = append(progress, pr) },
	}).Run(context.Background(), "v")
	var ce *materializer.ColumnError
	if !errors.As(err, &ce) || ce.File != filepath.Join(dir, "b.parquet") || ce.Column != "score" {
		t.Fatalf("Run error = %v, want a *ColumnError about b.parquet's score", err)
	}
	if b, _, _ := fs.counts(); b != 0 || rep.RowsRead != 0 || len(progress) != 0 {
		t.Errorf("%d generations begun, %d rows read, %d progress reports before the columns were checked", b, rep.RowsRead, len(progress))
	}
}

// widenRow has integer and FLOAT columns to be read as wider types.
type widenRow struct {
	UserID int64     `parquet:"user_id"`
	TS     time.Time `parquet:"ts,timestamp(microsecond)"`
	I64    int64     `parquet:"i64"`
	I32    int32     `parquet:"i32"`
	U32    uint32    `parquet:"u32"`
	F      float32   `parquet:"f"`
}

// TestWidening reads integers as float64 (INT64, INT32, unsigned INT32) and
// as float32 (INT32), and FLOAT as float64, as the values they hold; an
// INT64 beyond 2^53 rounds to the nearest float64.
func TestWidening(t *testing.T) {
	dir := t.TempDir()
	big := int64(1)<<53 + 1
	writeRows([]widenRow{
		{UserID: 1, TS: baseTime, I64: -7, I32: 12, U32: 4_000_000_000, F: 0.25},
		{UserID: 2, TS: baseTime, I64: big, I32: -3, U32: 1, F: -1.5},
	})(t, filepath.Join(dir, "w.parquet"))
	p := projectFor(t, dir, dir, larder.TypeInt64,
		feature("a", larder.TypeFloat64, "i64"), feature("b", larder.TypeFloat64, "i32"), feature("c", larder.TypeFloat64, "u32"),
		feature("d", larder.TypeFloat32, "i32"), feature("e", larder.TypeFloat64, "f"))
	fs := newFakeStore()
	if _, err := materializer.New(p, fs, materializer.Options{Now: fixedClock(baseTime.Add(time.Hour))}).Run(context.Background(), "v"); err != nil {
		t.Fatal(err)
	}
	want := map[int64][]larder.Value{
		1: {larder.Float64Value(-7), larder.Float64Value(12), larder.Float64Value(4_000_000_000), larder.Float32Value(12), larder.Float64Value(0.25)},
		2: {larder.Float64Value(float64(big)), larder.Float64Value(-3), larder.Float64Value(1), larder.Float32Value(-3), larder.Float64Value(-1.5)},
	}
	rows, _ := fs.liveRows("v")
	for id, vals := range want {
		row, ok := rows[larder.Int64Key(id)]
		if !ok {
			t.Fatalf("user %d not written", id)
		}
		for i, v := range vals {
			if !row.Values[i].Equal(v) {
				t.Errorf("user %d feature %d = %v, want %v", id, i, row.Values[i], v)
			}
		}
	}
}

// castRow has a DOUBLE and an INT64 column to be read as float32 features.
type castRow struct {
	UserID int64     `parquet:"user_id"`
	TS     time.Time `parquet:"ts,timestamp(microsecond)"`
	D      float64   `parquet:"d"`
	I64    int64     `parquet:"i64"`
}

// TestCast reads DOUBLE and INT64 columns as float32 features that ask for
// the cast, each value rounded to the nearest float32 (overflow to infinity
// then meets the view's non_finite rule); without the cast,
// the run fails before writing, naming the file, the column and the fix.
func TestCast(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "c.parquet")
	writeRows([]castRow{
		{UserID: 1, TS: baseTime, D: 0.1, I64: 1<<24 + 1},
		{UserID: 2, TS: baseTime, D: -1e300, I64: -5},
	})(t, path)
	cast := func(name, column string) larder.Feature {
		f := feature(name, larder.TypeFloat32, column)
		f.Cast = true
		return f
	}
	p := projectFor(t, dir, dir, larder.TypeInt64, cast("d", "d"), cast("n", "i64"))
	fs := newFakeStore()
	if _, err := materializer.New(p, fs, materializer.Options{Now: fixedClock(baseTime.Add(time.Hour))}).Run(context.Background(), "v"); err != nil {
		t.Fatal(err)
	}
	want := map[int64][]larder.Value{
		1: {larder.Float32Value(0.1), larder.Float32Value(1 << 24)},
		// -1e300 rounds to -Inf, which the view's non_finite rule (null
		// by default) turns into null, as for any other non-finite value.
		2: {{}, larder.Float32Value(-5)},
	}
	rows, _ := fs.liveRows("v")
	for id, vals := range want {
		row, ok := rows[larder.Int64Key(id)]
		if !ok {
			t.Fatalf("user %d not written", id)
		}
		for i, v := range vals {
			if !row.Values[i].Equal(v) {
				t.Errorf("user %d feature %d = %v, want %v", id, i, row.Values[i], v)
			}
		}
	}

	for _, col := range []string{"d", "i64"} {
		p := projectFor(t, dir, dir, larder.TypeInt64, feature("x", larder.TypeFloat32, col))
		fs := newFakeStore()
		_, err := materializer.New(p, fs, materializer.Options{Now: fixedClock(baseTime.Add(time.Hour))}).Run(context.Background(), "v")
		var ce *materializer.ColumnError
		if !errors.As(err, &ce) || ce.File != path || ce.Column != col || !ce.Cast {
			t.Fatalf("column %s without cast: Run error = %v, want a *ColumnError with Cast", col, err)
		}
		if msg := err.Error(); !strings.Contains(msg, "add `cast: true`") {
			t.Errorf("column %s without cast: error %q does not name the fix", col, msg)
		}
		if b, _, _ := fs.counts(); b != 0 {
			t.Errorf("column %s without cast: %d generations begun", col, b)
		}
	}
}
