package materializer_test

import (
	"context"
	"errors"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/larder-dev/larder"
	"github.com/larder-dev/larder/materializer"
)

// aggregateProject returns a validated project in dir with one entity "user"
// keyed by user_id of keyType, one source at path (relative to dir) with
// event time column "ts", and one aggregate view "v" of aggs. The view keeps
// non-finite values, so that its values are compared with the reference's as
// computed (value_rules_test.go tests the rules).
func aggregateProject(tb testing.TB, dir, path string, keyType larder.Type, aggs ...larder.Aggregation) *larder.Project {
	tb.Helper()
	p := &larder.Project{
		Name:     "test",
		Dir:      dir,
		Entities: []*larder.Entity{{Name: "user", Key: "user_id", KeyType: keyType}},
		Sources:  []*larder.Source{{Name: "events", Path: path, EventTime: "ts"}},
		Views: []*larder.View{{
			Name: "v", Kind: larder.KindAggregate, Entity: "user", Source: "events", Aggregations: aggs,
			NonFinite: larder.PolicyKeep,
		}},
	}
	p.SetDefaults()
	if err := p.Validate(); err != nil {
		tb.Fatalf("invalid test project: %v", err)
	}
	return p
}

// windows parses window specs such as "10s" and "1d".
func windows(tb testing.TB, specs ...string) []larder.Window {
	tb.Helper()
	out := make([]larder.Window, len(specs))
	for i, s := range specs {
		w, err := larder.ParseWindow(s)
		if err != nil {
			tb.Fatal(err)
		}
		out[i] = w
	}
	return out
}

func funcs(names ...larder.AggFunc) []larder.AggFunc { return names }

// eventRow is a source row of the deterministic aggregate tests.
type eventRow struct {
	UserID *int64     `parquet:"user_id,optional"`
	TS     *time.Time `parquet:"ts,optional,timestamp(millisecond)"`
	Amount *float64   `parquet:"amount,optional"`
	Qty    *int64     `parquet:"qty,optional"`
	Flag   *bool      `parquet:"flag,optional"`
	Cat    *string    `parquet:"cat,optional"`
}

func ev(user int64, sec int, amount *float64, qty *int64, flag *bool, cat *string) eventRow {
	return eventRow{UserID: &user, TS: ptr(at(sec)), Amount: amount, Qty: qty, Flag: flag, Cat: cat}
}

// expectRow returns the row of view v that holds the empty value of every
// feature (0 for counts, null otherwise) except those named in set.
func expectRow(tb testing.TB, v *larder.View, set map[string]larder.Value) []larder.Value {
	tb.Helper()
	out := make([]larder.Value, len(v.Features))
	seen := 0
	for i, f := range v.Features {
		if val, ok := set[f.Name]; ok {
			out[i] = val
			seen++
			continue
		}
		if strings.Contains(f.Name, "_count_") || strings.Contains(f.Name, "_count_distinct_") {
			out[i] = larder.Int64Value(0)
		}
	}
	if seen != len(set) {
		tb.Fatalf("expected values name features the view does not have: %v", set)
	}
	return out
}

// TestAggregateFunctions checks every function over windows with hand-made
// events: boundaries (an event exactly one window before the run time is
// out, one at the run time in), nulls, ties, empty windows, events after the
// run time, and entities whose events are all older than every window.
func TestAggregateFunctions(t *testing.T) {
	dir := t.TempDir()
	f, i, b, s := ptr[float64], ptr[int64], ptr[bool], ptr[string]
	rows := []eventRow{
		ev(1, 100, f(1.5), i(2), b(true), s("a")),  // at the run time: in every window
		ev(1, 90, f(10), i(5), b(false), s("b")),   // exactly 10s before: out of 10s
		ev(1, 91, nil, i(-3), nil, s("a")),         // nulls are skipped
		ev(1, 50, f(4), nil, b(true), s("c")),      //
		ev(1, 40, f(100), i(100), b(true), s("d")), // exactly 1m before: out of 1m
		ev(1, 101, f(1000), i(1), b(false), s("late")),
		ev(2, 30, f(7), i(1), b(false), s("p")), // a tie on event time:
		ev(2, 30, f(8), nil, b(true), s("q")),   // the later row is last
		ev(3, -300, f(5), i(5), b(true), s("old")),
		ev(4, 101, f(1), i(1), b(true), s("after")),
		{UserID: nil, TS: ptr(at(99)), Amount: f(1)},
		{UserID: i(5), TS: nil, Amount: f(1)},
	}
	writeParquet(t, filepath.Join(dir, "events.parquet"), rows[:6])
	writeParquet(t, filepath.Join(dir, "events2.parquet"), rows[6:], smallGroups(2)...)
	ws := windows(t, "10s", "1m", "5m")
	p := aggregateProject(t, dir, "events*.parquet", larder.TypeInt64,
		larder.Aggregation{Column: "amount", Type: larder.TypeFloat64, Windows: ws, Functions: funcs(
			larder.AggCount, larder.AggSum, larder.AggMean, larder.AggMin, larder.AggMax, larder.AggLast, larder.AggCountDistinct)},
		larder.Aggregation{Column: "qty", Type: larder.TypeInt64, Windows: ws, Functions: funcs(
			larder.AggSum, larder.AggMean, larder.AggMin, larder.AggMax)},
		larder.Aggregation{Column: "flag", Type: larder.TypeBool, Windows: ws, Functions: funcs(
			larder.AggCount, larder.AggSum, larder.AggMin, larder.AggMax, larder.AggLast)},
		larder.Aggregation{Column: "cat", Type: larder.TypeString, Windows: ws, Functions: funcs(
			larder.AggCount, larder.AggLast, larder.AggCountDistinct)},
	)
	fs, rep := runView(t, p, at(100))
	got, _ := fs.liveRows("v")

	I, F, B, S := larder.Int64Value, larder.Float64Value, larder.BoolValue, larder.StringValue
	v := p.View("v")
	want := map[larder.Key][]larder.Value{
		larder.Int64Key(1): expectRow(t, v, map[string]larder.Value{
			"amount_count_10s": I(1), "amount_sum_10s": F(1.5), "amount_mean_10s": F(1.5), "amount_min_10s": F(1.5),
			"amount_max_10s": F(1.5), "amount_last_10s": F(1.5), "amount_count_distinct_10s": I(1),
			"qty_sum_10s": I(-1), "qty_mean_10s": F(-0.5), "qty_min_10s": I(-3), "qty_max_10s": I(2),
			"flag_count_10s": I(1), "flag_sum_10s": I(1), "flag_min_10s": B(true), "flag_max_10s": B(true), "flag_last_10s": B(true),
			"cat_count_10s": I(2), "cat_last_10s": S("a"), "cat_count_distinct_10s": I(1),

			"amount_count_1m": I(3), "amount_sum_1m": F(15.5), "amount_mean_1m": F(15.5 / 3), "amount_min_1m": F(1.5),
			"amount_max_1m": F(10), "amount_last_1m": F(1.5), "amount_count_distinct_1m": I(3),
			"qty_sum_1m": I(4), "qty_mean_1m": F(4.0 / 3), "qty_min_1m": I(-3), "qty_max_1m": I(5),
			"flag_count_1m": I(3), "flag_sum_1m": I(2), "flag_min_1m": B(false), "flag_max_1m": B(true), "flag_last_1m": B(true),
			"cat_count_1m": I(4), "cat_last_1m": S("a"), "cat_count_distinct_1m": I(3),

			"amount_count_5m": I(4), "amount_sum_5m": F(115.5), "amount_mean_5m": F(28.875), "amount_min_5m": F(1.5),
			"amount_max_5m": F(100), "amount_last_5m": F(1.5), "amount_count_distinct_5m": I(4),
			"qty_sum_5m": I(104), "qty_mean_5m": F(26), "qty_min_5m": I(-3), "qty_max_5m": I(100),
			"flag_count_5m": I(4), "flag_sum_5m": I(3), "flag_min_5m": B(false), "flag_max_5m": B(true), "flag_last_5m": B(true),
			"cat_count_5m": I(5), "cat_last_5m": S("a"), "cat_count_distinct_5m": I(4),
		}),
		larder.Int64Key(2): expectRow(t, v, map[string]larder.Value{
			"amount_count_5m": I(2), "amount_sum_5m": F(15), "amount_mean_5m": F(7.5), "amount_min_5m": F(7),
			"amount_max_5m": F(8), "amount_last_5m": F(8), "amount_count_distinct_5m": I(2),
			"qty_sum_5m": I(1), "qty_mean_5m": F(1), "qty_min_5m": I(1), "qty_max_5m": I(1),
			"flag_count_5m": I(2), "flag_sum_5m": I(1), "flag_min_5m": B(false), "flag_max_5m": B(true), "flag_last_5m": B(true),
			"cat_count_5m": I(2), "cat_last_5m": S("q"), "cat_count_distinct_5m": I(2),
		}),
		larder.Int64Key(3): expectRow(t, v, nil), // every event is older than every window
	}
	wantRows := make(map[larder.Key]larder.Row, len(want))
	for k, vals := range want {
		wantRows[k] = larder.Row{EventTime: at(100), Values: vals}
	}
	if d := diffRows(got, wantRows); d != "" {
		t.Errorf("rows differ:\n%s\nfeatures: %v", d, featureNames(v))
	}
	wantSkipped := map[string]int64{materializer.SkipNullKey: 1, materializer.SkipNullEventTime: 1, materializer.SkipAfterRunTime: 2}
	if !equalCounts(rep.Skipped, wantSkipped) || rep.RowsRead != int64(len(rows)) || rep.EntitiesWritten != 3 || rep.Files != 2 {
		t.Errorf("report = %+v; want %d rows read, 3 entities, 2 files, skipped %v", rep, len(rows), wantSkipped)
	}
	if r := got[larder.Int64Key(1)]; r.EventTime.Location() != time.UTC {
		t.Errorf("event time %v is not in UTC", r.EventTime)
	}
}

func featureNames(v *larder.View) []string {
	names := make([]string, len(v.Features))
	for i, f := range v.Features {
		names[i] = f.Name
	}
	return names
}

// floatRow holds the float values count_distinct and the folds treat
// specially.
type floatRow struct {
	UserID int64     `parquet:"user_id"`
	TS     time.Time `parquet:"ts,timestamp(microsecond)"`
	F64    float64   `parquet:"f64"`
	F32    float32   `parquet:"f32"`
	I32    int32     `parquet:"i32"`
}

func TestAggregateFloatsAndConversions(t *testing.T) {
	dir := t.TempDir()
	negZero := math.Copysign(0, -1)
	nan1, nan2 := math.NaN(), math.Float64frombits(math.Float64bits(math.NaN())|1)
	writeParquet(t, filepath.Join(dir, "f.parquet"), []floatRow{
		{1, at(1), 0, 0.25, math.MaxInt32},
		{1, at(2), negZero, float32(negZero), math.MaxInt32},
		{1, at(3), nan1, 0.5, math.MinInt32},
		{1, at(4), nan2, float32(math.Inf(-1)), 7},
		{1, at(5), 2, 0.25, 7},
	})
	ws := windows(t, "1h")
	p := aggregateProject(t, dir, "f.parquet", larder.TypeInt64,
		larder.Aggregation{Column: "f64", Type: larder.TypeFloat64, Windows: ws, Functions: funcs(larder.AggCountDistinct, larder.AggMax)},
		larder.Aggregation{Column: "f32", Type: larder.TypeFloat32, Windows: ws, Functions: funcs(
			larder.AggSum, larder.AggMean, larder.AggMin, larder.AggMax, larder.AggLast, larder.AggCountDistinct)},
		larder.Aggregation{Column: "f32", Type: larder.TypeFloat64, Name: "f32d", Windows: ws, Functions: funcs(larder.AggMin)},
		larder.Aggregation{Column: "i32", Type: larder.TypeInt64, Windows: ws, Functions: funcs(larder.AggSum, larder.AggMin, larder.AggLast)},
	)
	fs, _ := runView(t, p, at(10))
	got, _ := fs.liveRows("v")
	v := p.View("v")
	want := expectRow(t, v, map[string]larder.Value{
		// 0 and -0 are one value, the two NaNs another; a NaN is never
		// greater than the maximum so far.
		"f64_count_distinct_1h": larder.Int64Value(3), "f64_max_1h": larder.Float64Value(2),
		"f32_sum_1h": larder.Float64Value(math.Inf(-1)), "f32_mean_1h": larder.Float64Value(math.Inf(-1)),
		"f32_min_1h": larder.Float32Value(float32(math.Inf(-1))), "f32_max_1h": larder.Float32Value(0.5),
		"f32_last_1h": larder.Float32Value(0.25), "f32_count_distinct_1h": larder.Int64Value(4),
		"f32d_min_1h": larder.Float64Value(math.Inf(-1)),
		"i32_sum_1h":  larder.Int64Value(math.MaxInt32 + 13), "i32_min_1h": larder.Int64Value(math.MinInt32), "i32_last_1h": larder.Int64Value(7),
	})
	if d := diffRows(got, map[larder.Key]larder.Row{larder.Int64Key(1): {EventTime: at(10), Values: want}}); d != "" {
		t.Errorf("rows differ:\n%s\nfeatures: %v", d, featureNames(v))
	}
}

func TestAggregateColumnErrors(t *testing.T) {
	dir := t.TempDir()
	writeParquet(t, filepath.Join(dir, "e.parquet"), []eventRow{ev(1, 1, ptr(1.0), ptr(int64(1)), ptr(true), ptr("a"))})
	ws := windows(t, "1h")
	tests := []struct {
		name         string
		agg          larder.Aggregation
		column, want string
	}{
		{"string column summed as float64", larder.Aggregation{Column: "cat", Type: larder.TypeFloat64, Windows: ws, Functions: funcs(larder.AggSum)},
			"cat", `column "cat" (the float64 feature "cat_sum_1h") is BYTE_ARRAY STRING, want DOUBLE, FLOAT, INT64 or INT32`},
		{"float column read as int64", larder.Aggregation{Column: "amount", Type: larder.TypeInt64, Name: "spend", Windows: ws, Functions: funcs(larder.AggCount, larder.AggMax)},
			"amount", `column "amount" (the int64 feature "spend_count_1h") is DOUBLE, want INT64 or INT32`},
		{"missing column", larder.Aggregation{Column: "price", Type: larder.TypeFloat64, Windows: ws, Functions: funcs(larder.AggMean)},
			"price", `has no column "price" (the float64 feature "price_mean_1h"); its columns are user_id, ts, amount, qty, flag, cat`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := aggregateProject(t, dir, "e.parquet", larder.TypeInt64,
				larder.Aggregation{Column: "qty", Type: larder.TypeInt64, Windows: ws, Functions: funcs(larder.AggSum)}, tt.agg)
			fs := newFakeStore()
			_, err := materializer.New(p, fs, materializer.Options{Now: fixedClock(at(10))}).Run(context.Background(), "v")
			var ce *materializer.ColumnError
			if !errors.As(err, &ce) || ce.Column != tt.column || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Run error = %v, want a *ColumnError saying %s", err, tt.want)
			}
			if !strings.Contains(err.Error(), filepath.Join(dir, "e.parquet")) || !strings.Contains(err.Error(), "fix the source or") {
				t.Errorf("error %q does not name the file or say what to do", err)
			}
			if b, _, _ := fs.counts(); b != 0 {
				t.Errorf("a generation was begun")
			}
		})
	}
}

// TestAggregateReadFailures checks that a source that cannot be read fails
// the run with an error naming the file, before any generation is begun,
// and that progress is reported once per row group in order.
func TestAggregateReadFailures(t *testing.T) {
	dir := t.TempDir()
	var rows []eventRow
	for i := range 6000 {
		rows = append(rows, ev(int64(i%700), i%90, ptr(float64(i)), ptr(int64(i)), nil, ptr("c")))
	}
	writeParquet(t, filepath.Join(dir, "data", "a.parquet"), rows[:3000], smallGroups(500)...)
	second := filepath.Join(dir, "data", "b.parquet")
	writeParquet(t, second, rows[3000:], smallGroups(500)...)
	good, err := os.ReadFile(second)
	if err != nil {
		t.Fatal(err)
	}
	p := aggregateProject(t, dir, "data", larder.TypeInt64,
		larder.Aggregation{Column: "amount", Type: larder.TypeFloat64, Windows: windows(t, "1m"), Functions: funcs(larder.AggSum, larder.AggLast)},
		larder.Aggregation{Column: "cat", Type: larder.TypeString, Windows: windows(t, "1m"), Functions: funcs(larder.AggCountDistinct)})

	var progress []materializer.Progress
	fs := newFakeStore()
	m := materializer.New(p, fs, materializer.Options{
		Now:      fixedClock(at(100)),
		Progress: func(pr materializer.Progress) { progress = append(progress, pr) },
	})
	rep, err := m.Run(context.Background(), "v")
	if err != nil {
		t.Fatal(err)
	}
	if rep.EntitiesWritten != 700 || rep.RowsRead != 6000 {
		t.Errorf("report = %+v", rep)
	}
	var reading []int64
	for _, pr := range progress {
		if pr.Phase == materializer.PhaseReading {
			reading = append(reading, pr.RowsRead)
		}
	}
	if want := []int64{0, 500, 1000, 1500, 2000, 2500, 3000, 3500, 4000, 4500, 5000, 5500, 6000}; !slices.Equal(reading, want) {
		t.Errorf("rows read as reported while reading = %v, want %v", reading, want)
	}

	mid := len(good) / 2
	tests := []struct {
		name   string
		broken func([]byte) []byte
	}{
		{"truncated", func(b []byte) []byte { return b[:mid] }},
		{"page bytes flipped", func(b []byte) []byte {
			for i := mid; i < mid+8; i++ {
				b[i] ^= 0x5a
			}
			return b
		}},
		{"page bytes zeroed", func(b []byte) []byte {
			clear(b[mid-64 : mid+64])
			return b
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if err := os.WriteFile(second, tt.broken(append([]byte(nil), good...)), 0o644); err != nil {
				t.Fatal(err)
			}
			fs := newFakeStore()
			_, err := materializer.New(p, fs, materializer.Options{Now: fixedClock(at(100))}).Run(context.Background(), "v")
			if err == nil || !strings.Contains(err.Error(), second) {
				t.Fatalf("Run error = %v, want one naming %s", err, second)
			}
			t.Log(err)
			if b, _, _ := fs.counts(); b != 0 {
				t.Errorf("a generation was begun for a source that cannot be read")
			}
		})
	}

	t.Run("context ended", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		fs := newFakeStore()
		_, err := materializer.New(p, fs, materializer.Options{}).Run(ctx, "v")
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Run error = %v, want %v", err, context.Canceled)
		}
	})
}

// TestAggregateEmptySource publishes an empty generation for a source
// without rows.
func TestAggregateEmptySource(t *testing.T) {
	dir := t.TempDir()
	writeParquet(t, filepath.Join(dir, "empty.parquet"), []eventRow{})
	p := aggregateProject(t, dir, "empty.parquet", larder.TypeInt64,
		larder.Aggregation{Column: "qty", Type: larder.TypeInt64, Windows: windows(t, "1h"), Functions: funcs(larder.AggSum)})
	fs, rep := runView(t, p, at(0))
	rows, id := fs.liveRows("v")
	if id == 0 || len(rows) != 0 || rep.RowsRead != 0 || rep.EntitiesWritten != 0 {
		t.Errorf("generation %d with %d rows, report %+v; want an empty published generation", id, len(rows), rep)
	}
}

// TestAggregateRowCount counts rows with an aggregation that names no
// column: every row with a key and an event time in the window counts,
// whatever its other columns hold, as a count of a never-null column would.
func TestAggregateRowCount(t *testing.T) {
	dir := t.TempDir()
	amount := 2.5
	rows := []eventRow{
		ev(1, 10, &amount, nil, nil, nil),
		ev(1, 20, nil, nil, nil, nil),  // every value null: still a row
		ev(1, 100, nil, nil, nil, nil), // the only one in the 1m window
		ev(2, 30, nil, nil, nil, nil),
		{UserID: ptr(int64(3))}, // no event time: not counted
	}
	writeRows(rows)(t, filepath.Join(dir, "e.parquet"))
	p := aggregateProject(t, dir, dir, larder.TypeInt64,
		larder.Aggregation{Name: "events", Functions: funcs(larder.AggCount), Windows: windows(t, "1m", "1h")},
		larder.Aggregation{Column: "amount", Type: larder.TypeFloat64, Functions: funcs(larder.AggCount), Windows: windows(t, "1h")})
	v := p.View("v")
	if names := []string{v.Features[0].Name, v.Features[1].Name}; names[0] != "events_count_1m" || names[1] != "events_count_1h" {
		t.Fatalf("features %v", names)
	}
	fs := newFakeStore()
	if _, err := materializer.New(p, fs, materializer.Options{Now: fixedClock(at(120))}).Run(context.Background(), "v"); err != nil {
		t.Fatal(err)
	}
	got, _ := fs.liveRows("v")
	// Window 1m is (60s, 120s], 1h all of them.
	want := map[int64][3]int64{1: {1, 3, 1}, 2: {0, 1, 0}}
	for id, w := range want {
		row := got[larder.Int64Key(id)]
		for i, n := range w {
			if row.Values[i].Int64() != n {
				t.Errorf("user %d feature %s = %v, want %d", id, v.Features[i].Name, row.Values[i], n)
			}
		}
	}
}
