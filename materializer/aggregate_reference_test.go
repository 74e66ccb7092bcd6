package materializer_test

import (
	"fmt"
	"math"
	"math/rand/v2"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"github.com/larder-dev/larder"
	"github.com/larder-dev/larder/materializer"
)

// event is one source row as the brute-force reference sees it: its key and
// event time (nil when null) and the value of every aggregated column by
// name (larder.Null when null).
type event struct {
	key  *larder.Key
	ts   *time.Time
	cols map[string]larder.Value
}

// bruteAggregate computes aggregate view v over events, in read order, as of
// runTime, the slow and obvious way: for every entity and every feature, it
// collects the non-null values of the events inside the window and applies
// the function to that list. It is written apart from the materializer and
// shares none of its code.
func bruteAggregate(v *larder.View, events []event, runTime time.Time) (map[larder.Key]larder.Row, map[string]int64) {
	skipped := make(map[string]int64)
	byKey := make(map[larder.Key][]event)
	for _, e := range events {
		switch {
		case e.key == nil:
			skipped[materializer.SkipNullKey]++
		case e.ts == nil:
			skipped[materializer.SkipNullEventTime]++
		case e.ts.After(runTime):
			skipped[materializer.SkipAfterRunTime]++
		default:
			byKey[*e.key] = append(byKey[*e.key], e)
		}
	}
	rows := make(map[larder.Key]larder.Row, len(byKey))
	for k, evs := range byKey {
		var vals []larder.Value
		for _, f := range v.AggregateFeatures() {
			agg := v.Aggregations[f.Aggregation]
			start := runTime.Add(-f.Window.Duration)
			var in []timedValue // the values of the window, in read order
			for _, e := range evs {
				if val := e.cols[agg.Column]; e.ts.After(start) && !e.ts.After(runTime) && !val.IsNull() {
					if agg.Type == larder.TypeFloat64 && val.Type() == larder.TypeFloat32 {
						val = larder.Float64Value(float64(val.Float32()))
					}
					in = append(in, timedValue{*e.ts, val})
				}
			}
			vals = append(vals, bruteFunc(f.Func, agg.Type, in))
		}
		rows[k] = larder.Row{EventTime: runTime, Values: vals}
	}
	return rows, skipped
}

type timedValue struct {
	ts  time.Time
	val larder.Value
}

// bruteFunc applies fn to values of type t.
func bruteFunc(fn larder.AggFunc, t larder.Type, events []timedValue) larder.Value {
	switch fn {
	case larder.AggCount:
		return larder.Int64Value(int64(len(events)))
	case larder.AggCountDistinct:
		seen := make(map[any]bool)
		for _, e := range events {
			val := e.val
			var id any
			switch t {
			case larder.TypeString:
				id = val.Str()
			case larder.TypeFloat64, larder.TypeFloat32:
				f := asFloat(val)
				if math.IsNaN(f) {
					id = "NaN"
				} else {
					id = f // as a map key, -0 == 0
				}
			case larder.TypeBool:
				id = val.Bool()
			default:
				id = val.Int64()
			}
			seen[id] = true
		}
		return larder.Int64Value(int64(len(seen)))
	}
	if len(events) == 0 {
		return larder.Null
	}
	switch fn {
	case larder.AggSum, larder.AggMean:
		var fsum float64
		var isum int64
		for _, e := range events {
			switch val := e.val; t {
			case larder.TypeFloat64, larder.TypeFloat32:
				fsum += asFloat(val)
			case larder.TypeBool:
				if val.Bool() {
					isum++
				}
			default:
				isum += val.Int64()
			}
		}
		isFloat := t == larder.TypeFloat64 || t == larder.TypeFloat32
		if fn == larder.AggMean {
			if isFloat {
				return larder.Float64Value(fsum / float64(len(events)))
			}
			return larder.Float64Value(float64(isum) / float64(len(events)))
		}
		if isFloat {
			return larder.Float64Value(fsum)
		}
		return larder.Int64Value(isum)
	case larder.AggMin, larder.AggMax:
		best := events[0].val
		for _, e := range events[1:] {
			val := e.val
			if (fn == larder.AggMin && less(t, val, best)) || (fn == larder.AggMax && less(t, best, val)) {
				best = val
			}
		}
		return best
	case larder.AggLast:
		best := events[0]
		for _, e := range events[1:] {
			if !e.ts.Before(best.ts) {
				best = e
			}
		}
		return best.val
	}
	panic("unknown function " + fn)
}

func asFloat(v larder.Value) float64 {
	if v.Type() == larder.TypeFloat32 {
		return float64(v.Float32())
	}
	return v.Float64()
}

func less(t larder.Type, a, b larder.Value) bool {
	switch t {
	case larder.TypeFloat64:
		return a.Float64() < b.Float64()
	case larder.TypeFloat32:
		return a.Float32() < b.Float32()
	case larder.TypeBool:
		return !a.Bool() && b.Bool()
	}
	return a.Int64() < b.Int64()
}

// randomRow is a source row of the randomized aggregate test: every column
// is optional, and strings come plain and dictionary-encoded.
type randomRow struct {
	UserID *int64     `parquet:"user_id,optional"`
	TS     *time.Time `parquet:"ts,optional,timestamp(microsecond)"`
	I64    *int64     `parquet:"i64,optional"`
	I32    *int32     `parquet:"i32,optional"`
	F64    *float64   `parquet:"f64,optional"`
	F32    *float32   `parquet:"f32,optional"`
	B      *bool      `parquet:"b,optional"`
	S      *string    `parquet:"s,optional,dict"`
	SP     *string    `parquet:"sp,optional"`
}

// strKeyRow is randomRow with string keys.
type strKeyRow struct {
	UserID *string    `parquet:"user_id,optional,dict"`
	TS     *time.Time `parquet:"ts,optional,timestamp(microsecond)"`
	I64    *int64     `parquet:"i64,optional"`
	F64    *float64   `parquet:"f64,optional"`
	S      *string    `parquet:"s,optional"`
}

// randomAggregations covers every function on every column type, with
// windows of several lengths, two aggregations sharing a column and one
// reading a column as another type.
func randomAggregations(tb testing.TB) []larder.Aggregation {
	all := funcs(larder.AggCount, larder.AggSum, larder.AggMean, larder.AggMin, larder.AggMax, larder.AggLast, larder.AggCountDistinct)
	return []larder.Aggregation{
		{Column: "i64", Type: larder.TypeInt64, Functions: all, Windows: windows(tb, "10s", "1m", "5m")},
		{Column: "i32", Type: larder.TypeInt64, Functions: funcs(larder.AggSum, larder.AggMin, larder.AggMax, larder.AggLast), Windows: windows(tb, "1m")},
		{Column: "f64", Type: larder.TypeFloat64, Functions: all, Windows: windows(tb, "5m", "10s", "30s")},
		{Column: "f64", Type: larder.TypeFloat64, Name: "amount", Functions: funcs(larder.AggSum, larder.AggLast), Windows: windows(tb, "2m")},
		{Column: "f32", Type: larder.TypeFloat32, Functions: all, Windows: windows(tb, "30s", "5m")},
		{Column: "f32", Type: larder.TypeFloat64, Name: "f32d", Functions: funcs(larder.AggSum, larder.AggMax), Windows: windows(tb, "1m")},
		{Column: "b", Type: larder.TypeBool, Functions: all, Windows: windows(tb, "1m", "5m")},
		{Column: "s", Type: larder.TypeString, Functions: funcs(larder.AggCount, larder.AggLast, larder.AggCountDistinct), Windows: windows(tb, "10s", "1m", "5m")},
		{Column: "sp", Type: larder.TypeString, Name: "plain", Functions: funcs(larder.AggLast, larder.AggCount), Windows: windows(tb, "1m")},
	}
}

// randomTime returns an event time around runTime that is often exactly on,
// or one microsecond off, a window boundary, often shared with other rows,
// sometimes after runTime, and sometimes null.
func randomTime(rng *rand.Rand, runTime time.Time) *time.Time {
	if rng.Float64() < 0.03 {
		return nil
	}
	var t time.Time
	switch r := rng.IntN(10); {
	case r < 4: // a boundary of one of the windows, or one microsecond off it
		d := []time.Duration{0, 10 * time.Second, 30 * time.Second, time.Minute, 2 * time.Minute, 5 * time.Minute}[rng.IntN(6)]
		t = runTime.Add(-d + time.Duration(rng.IntN(3)-1)*time.Microsecond)
	case r < 5: // after the run time
		t = runTime.Add(time.Duration(1+rng.IntN(20_000_000)) * time.Microsecond)
	case r < 8: // whole seconds, so that rows tie
		t = runTime.Add(-time.Duration(rng.IntN(400)) * time.Second)
	default:
		t = runTime.Add(-time.Duration(rng.Int64N(int64(7*time.Minute/time.Microsecond))) * time.Microsecond)
	}
	return &t
}

func randomRows(rng *rand.Rand, n, keys int, runTime time.Time) []randomRow {
	floats := []float64{0, math.Copysign(0, -1), 1.5, -2.25, 3, 1e300, -1e-300, 0.1, 7}
	strs := []string{"", "a", "b", "é", "long value with spaces", "z"}
	rows := make([]randomRow, n)
	for i := range rows {
		r := &rows[i]
		r.UserID = maybe(rng, 0.03, int64(rng.IntN(keys))-3)
		r.TS = randomTime(rng, runTime)
		r.I64 = maybe(rng, 0.2, int64(rng.IntN(21))-10)
		if rng.IntN(50) == 0 {
			r.I64 = ptr(int64(math.MaxInt64 - rng.IntN(3))) // sums wrap
		}
		r.I32 = maybe(rng, 0.2, int32(rng.IntN(2001)-1000))
		f := floats[rng.IntN(len(floats))]
		if rng.IntN(100) == 0 {
			f = math.NaN()
		}
		r.F64 = maybe(rng, 0.2, f)
		r.F32 = maybe(rng, 0.2, float32(floats[rng.IntN(len(floats))]))
		r.B = maybe(rng, 0.2, rng.IntN(2) == 0)
		r.S = maybe(rng, 0.2, strs[rng.IntN(len(strs))])
		r.SP = maybe(rng, 0.2, fmt.Sprintf("v%d", rng.IntN(5)))
	}
	return rows
}

func (r *randomRow) event() event {
	e := event{ts: r.TS, cols: make(map[string]larder.Value)}
	if r.UserID != nil {
		k := larder.Int64Key(*r.UserID)
		e.key = &k
	}
	set := func(col string, ok bool, v larder.Value) {
		e.cols[col] = larder.Null
		if ok {
			e.cols[col] = v
		}
	}
	set("i64", r.I64 != nil, larder.Int64Value(deref(r.I64)))
	set("i32", r.I32 != nil, larder.Int64Value(int64(deref(r.I32))))
	set("f64", r.F64 != nil, larder.Float64Value(deref(r.F64)))
	set("f32", r.F32 != nil, larder.Float32Value(deref(r.F32)))
	set("b", r.B != nil, larder.BoolValue(deref(r.B)))
	set("s", r.S != nil, larder.StringValue(deref(r.S)))
	set("sp", r.SP != nil, larder.StringValue(deref(r.SP)))
	return e
}

// withProcs runs fn with GOMAXPROCS set to n, which sets how many
// partitions the materializer reads in parallel.
func withProcs(tb testing.TB, n int) {
	tb.Helper()
	old := runtime.GOMAXPROCS(n)
	tb.Cleanup(func() { runtime.GOMAXPROCS(old) })
}

// TestAggregateMatchesBruteForce compares every feature of every entity
// with the brute-force reference, over random rows in several files and
// small row groups and pages, with nulls everywhere, ties on event time,
// events out of order, exactly on window boundaries and after the run time,
// read by 1 to 5 parallel partitions.
func TestAggregateMatchesBruteForce(t *testing.T) {
	runTime := baseTime.Add(time.Hour)
	for _, procs := range []int{1, 2, 3, 5} {
		t.Run(fmt.Sprintf("procs=%d", procs), func(t *testing.T) {
			withProcs(t, procs)
			rng := rand.New(rand.NewPCG(uint64(procs), 11))
			dir := t.TempDir()
			var events []event
			for i := range 4 {
				rows := randomRows(rng, 1500+rng.IntN(1000), 150, runTime)
				writeParquet(t, filepath.Join(dir, "data", fmt.Sprintf("part-%d.parquet", i)), rows, smallGroups(int64(100+rng.IntN(300)))...)
				for j := range rows {
					events = append(events, rows[j].event())
				}
			}
			p := aggregateProject(t, dir, "data", larder.TypeInt64, randomAggregations(t)...)
			fs, rep := runView(t, p, runTime)
			got, _ := fs.liveRows("v")
			want, wantSkipped := bruteAggregate(p.View("v"), events, runTime)
			if d := diffRows(got, want); d != "" {
				t.Errorf("rows differ from the brute-force result:\n%s\nfeatures: %v", d, featureNames(p.View("v")))
			}
			if !equalCounts(rep.Skipped, wantSkipped) || rep.RowsRead != int64(len(events)) || rep.EntitiesWritten != int64(len(want)) {
				t.Errorf("report = %+v; want %d rows read, %d entities, skipped %v", rep, len(events), len(want), wantSkipped)
			}
			checkCoverage(t, events, runTime)
		})
	}
}

// checkCoverage fails when the random events miss a case the test exists for.
func checkCoverage(tb testing.TB, events []event, runTime time.Time) {
	tb.Helper()
	var atRun, onBoundary, after, ties int
	seen := make(map[string]bool)
	for _, e := range events {
		if e.key == nil || e.ts == nil {
			continue
		}
		switch d := runTime.Sub(*e.ts); d {
		case 0:
			atRun++
		case 10 * time.Second, time.Minute, 5 * time.Minute:
			onBoundary++
		default:
			if d < 0 {
				after++
			}
		}
		id := fmt.Sprint(*e.key, e.ts.UnixMicro())
		if seen[id] {
			ties++
		}
		seen[id] = true
	}
	if atRun < 10 || onBoundary < 10 || after < 10 || ties < 10 {
		tb.Fatalf("random events lack coverage: %d at the run time, %d on a boundary, %d after, %d ties", atRun, onBoundary, after, ties)
	}
}

// TestAggregateStringKeysMatchBruteForce does the same with string keys,
// dictionary-encoded and null.
func TestAggregateStringKeysMatchBruteForce(t *testing.T) {
	runTime := baseTime
	all := funcs(larder.AggCount, larder.AggSum, larder.AggMean, larder.AggMin, larder.AggMax, larder.AggLast, larder.AggCountDistinct)
	aggs := []larder.Aggregation{
		{Column: "i64", Type: larder.TypeInt64, Functions: all, Windows: windows(t, "10s", "5m")},
		{Column: "f64", Type: larder.TypeFloat64, Functions: all, Windows: windows(t, "1m")},
		{Column: "s", Type: larder.TypeString, Functions: funcs(larder.AggLast, larder.AggCountDistinct), Windows: windows(t, "30s", "5m")},
	}
	for _, procs := range []int{1, 3} {
		t.Run(fmt.Sprintf("procs=%d", procs), func(t *testing.T) {
			withProcs(t, procs)
			rng := rand.New(rand.NewPCG(uint64(procs), 12))
			dir := t.TempDir()
			var events []event
			for i := range 3 {
				src := randomRows(rng, 1200, 80, runTime)
				rows := make([]strKeyRow, len(src))
				for j, r := range src {
					rows[j] = strKeyRow{TS: r.TS, I64: r.I64, F64: r.F64, S: r.S}
					if r.UserID != nil {
						rows[j].UserID = ptr(fmt.Sprintf("user-%d", *r.UserID))
					}
					e := src[j].event()
					e.key = nil
					if r.UserID != nil {
						k := larder.StringKey(*rows[j].UserID)
						e.key = &k
					}
					events = append(events, e)
				}
				writeParquet(t, filepath.Join(dir, fmt.Sprintf("p%d.parquet", i)), rows, smallGroups(250)...)
			}
			p := aggregateProject(t, dir, "*.parquet", larder.TypeString, aggs...)
			fs, rep := runView(t, p, runTime)
			got, _ := fs.liveRows("v")
			want, wantSkipped := bruteAggregate(p.View("v"), events, runTime)
			if d := diffRows(got, want); d != "" {
				t.Errorf("rows differ from the brute-force result:\n%s", d)
			}
			if !equalCounts(rep.Skipped, wantSkipped) {
				t.Errorf("skipped = %v, want %v", rep.Skipped, wantSkipped)
			}
		})
	}
}

// TestLatestPartitionsMatchBruteForce checks the latest view read by several
// parallel partitions against the brute-force latest.
func TestLatestPartitionsMatchBruteForce(t *testing.T) {
	for _, procs := range []int{1, 3, 4} {
		t.Run(fmt.Sprintf("procs=%d", procs), func(t *testing.T) {
			withProcs(t, procs)
			rng := rand.New(rand.NewPCG(uint64(procs), 13))
			dir := t.TempDir()
			var records []record
			for i := range 3 {
				rows := randomAllTypes(rng, 1500, 300, 60)
				writeParquet(t, filepath.Join(dir, "data", fmt.Sprintf("part-%d.parquet", i)), rows, smallGroups(200)...)
				for j := range rows {
					records = append(records, rows[j].record())
				}
			}
			runTime := baseTime.Add(45 * time.Second)
			p := projectFor(t, dir, "data", larder.TypeInt64, allTypesFeatures...)
			fs, rep := runView(t, p, runTime)
			got, _ := fs.liveRows("v")
			want, wantSkipped := bruteLatest(records, runTime)
			if d := diffRows(got, want); d != "" {
				t.Errorf("rows differ from the brute-force result:\n%s", d)
			}
			if !equalCounts(rep.Skipped, wantSkipped) {
				t.Errorf("skipped = %v, want %v", rep.Skipped, wantSkipped)
			}
		})
	}
}
