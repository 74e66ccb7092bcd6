package materializer_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"testing"
	"time"

	"github.com/larder-dev/larder"
	"github.com/larder-dev/larder/materializer"
)

// allTypes is a source row with a column for every feature type, in the
// layouts writers produce: optional and required, plain and dictionary
// encoded, 3-level lists with optional lists or optional elements, and bare
// repeated fields.
type allTypes struct {
	UserID *int64     `parquet:"user_id,optional"`
	TS     *time.Time `parquet:"ts,optional,timestamp(microsecond)"`
	I64    *int64     `parquet:"i64,optional"`
	I32    int32      `parquet:"i32"`
	U32    uint32     `parquet:"u32"`
	F64    *float64   `parquet:"f64,optional"`
	F32    *float32   `parquet:"f32,optional"`
	B      *bool      `parquet:"b,optional"`
	BR     bool       `parquet:"br"`
	S      *string    `parquet:"s,optional"`
	SD     *string    `parquet:"sd,optional,dict"`
	ID     int64      `parquet:"id,dict"`
	Raw    []byte     `parquet:"raw,optional"`
	Vec    []float32  `parquet:"vec,optional,list"`
	VecN   []*float32 `parquet:"vecn,list" parquet-element:",optional"`
	Leg    []float32  `parquet:"leg"`
	Extra  string     `parquet:"extra"` // a column the view does not read
}

var allTypesFeatures = []larder.Feature{
	feature("i64", larder.TypeInt64, "i64"),
	feature("i32", larder.TypeInt64, "i32"),
	feature("u32", larder.TypeInt64, "u32"),
	feature("f64", larder.TypeFloat64, "f64"),
	feature("f32", larder.TypeFloat32, "f32"),
	feature("f32_as_f64", larder.TypeFloat64, "f32"),
	feature("b", larder.TypeBool, "b"),
	feature("br", larder.TypeBool, "br"),
	feature("s", larder.TypeString, "s"),
	feature("sd", larder.TypeString, "sd"),
	feature("id", larder.TypeInt64, "id"),
	feature("s_bytes", larder.TypeBytes, "s"),
	feature("raw", larder.TypeBytes, "raw"),
	feature("vec", larder.TypeFloat32Vector, "vec"),
	feature("vecn", larder.TypeFloat32Vector, "vecn"),
	feature("leg", larder.TypeFloat32Vector, "leg"),
}

// values returns what the view of allTypesFeatures stores for r.
func (r *allTypes) values() []larder.Value {
	opt := func(ok bool, v larder.Value) larder.Value {
		if !ok {
			return larder.Null
		}
		return v
	}
	vecn := larder.Float32VectorValue(make([]float32, 0, len(r.VecN)))
	for _, f := range r.VecN {
		if f == nil {
			vecn = larder.Null
			break
		}
		vecn = larder.Float32VectorValue(append(vecn.Vector(), *f))
	}
	return []larder.Value{
		opt(r.I64 != nil, larder.Int64Value(deref(r.I64))),
		larder.Int64Value(int64(r.I32)),
		larder.Int64Value(int64(r.U32)),
		opt(r.F64 != nil, larder.Float64Value(deref(r.F64))),
		opt(r.F32 != nil, larder.Float32Value(deref(r.F32))),
		opt(r.F32 != nil, larder.Float64Value(float64(deref(r.F32)))),
		opt(r.B != nil, larder.BoolValue(deref(r.B))),
		larder.BoolValue(r.BR),
		opt(r.S != nil, larder.StringValue(deref(r.S))),
		opt(r.SD != nil, larder.StringValue(deref(r.SD))),
		larder.Int64Value(r.ID),
		opt(r.S != nil, larder.BytesValue([]byte(deref(r.S)))),
		opt(r.Raw != nil, larder.BytesValue(r.Raw)),
		opt(r.Vec != nil, larder.Float32VectorValue(r.Vec)),
		vecn,
		larder.Float32VectorValue(r.Leg),
	}
}

func deref[T any](p *T) T {
	if p == nil {
		var zero T
		return zero
	}
	return *p
}

func (r *allTypes) record() record {
	rec := record{ts: r.TS, values: r.values()}
	if r.UserID != nil {
		k := larder.Int64Key(*r.UserID)
		rec.key = &k
	}
	return rec
}

// randomAllTypes returns n random rows over few keys and few event times, so
// that ties, out-of-order events, events after the run time and nulls are
// all common.
func randomAllTypes(rng *rand.Rand, n, keys, seconds int) []allTypes {
	rows := make([]allTypes, n)
	vec := func(n int) []float32 {
		v := make([]float32, n)
		for i := range v {
			v[i] = rng.Float32()
		}
		return v
	}
	for i := range rows {
		ts := baseTime.Add(time.Duration(rng.IntN(seconds)) * time.Second).Add(time.Duration(rng.IntN(3)) * time.Microsecond)
		r := allTypes{
			UserID: maybe(rng, 0.03, int64(rng.IntN(keys))-3), // some negative keys
			TS:     maybe(rng, 0.03, ts),
			I64:    maybe(rng, 0.2, rng.Int64()-rng.Int64()),
			I32:    rng.Int32() - rng.Int32(),
			U32:    rng.Uint32(),
			F64:    maybe(rng, 0.2, rng.NormFloat64()*1e6),
			F32:    maybe(rng, 0.2, float32(rng.NormFloat64())),
			B:      maybe(rng, 0.2, rng.IntN(2) == 0),
			BR:     rng.IntN(2) == 0,
			S:      maybe(rng, 0.2, fmt.Sprintf("s-%d-%x", i, rng.Uint32())),
			SD:     maybe(rng, 0.2, fmt.Sprintf("cat-%d", rng.IntN(5))),
			ID:     int64(rng.IntN(7)),
			Extra:  "not read",
		}
		if rng.IntN(5) > 0 {
			r.Raw = []byte{byte(i), byte(i >> 8), 0, 255}
		}
		switch rng.IntN(4) {
		case 0: // null list
		case 1:
			r.Vec = []float32{}
		default:
			r.Vec = vec(1 + rng.IntN(5))
		}
		for range rng.IntN(4) {
			r.VecN = append(r.VecN, maybe(rng, 0.1, rng.Float32()))
		}
		r.Leg = vec(rng.IntN(4))
		rows[i] = r
	}
	return rows
}

func TestLatestMatchesBruteForce(t *testing.T) {
	tests := []struct {
		name         string
		files        int
		rowsPerFile  int
		rowsPerGroup int64
		keys         int
		seed         uint64
	}{
		{"one file one group", 1, 500, 1 << 20, 30, 1},
		{"one file many groups", 1, 2000, 97, 50, 2},
		{"many files", 4, 700, 150, 80, 3},
		{"more keys than rows per group", 3, 900, 64, 1000, 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(tt.seed, 42))
			dir := t.TempDir()
			parts := make([][]allTypes, tt.files)
			for i := range parts {
				parts[i] = randomAllTypes(rng, tt.rowsPerFile, tt.keys, 60)
			}
			// Files are read in sorted path order: create them in another.
			for i := len(parts) - 1; i >= 0; i-- {
				name := filepath.Join(dir, "data", fmt.Sprintf("part-%02d.parquet", i))
				writeParquet(t, name, parts[i], smallGroups(tt.rowsPerGroup)...)
			}
			var records []record
			for _, rows := range parts {
				for j := range rows {
					records = append(records, rows[j].record())
				}
			}
			total := int64(len(records))

			runTime := baseTime.Add(45 * time.Second)
			want, wantSkipped := bruteLatest(records, runTime)
			p := projectFor(t, dir, "data", larder.TypeInt64, allTypesFeatures...)
			fs := newFakeStore()
			m := materializer.New(p, fs, materializer.Options{Now: fixedClock(runTime)})
			rep, err := m.Run(context.Background(), "v")
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
			got, id := fs.liveRows("v")
			if d := diffRows(got, want); d != "" {
				t.Errorf("live rows differ from the brute-force result:\n%s", d)
			}
			if rep.Generation != id || rep.RowsRead != total || rep.EntitiesWritten != int64(len(want)) || rep.Files != tt.files {
				t.Errorf("report = %+v; want generation %d, %d rows, %d entities, %d files", rep, id, total, len(want), tt.files)
			}
			if !equalCounts(rep.Skipped, wantSkipped) {
				t.Errorf("skipped = %v, want %v", rep.Skipped, wantSkipped)
			}
			for _, reason := range []string{materializer.SkipNullKey, materializer.SkipNullEventTime, materializer.SkipAfterRunTime} {
				if wantSkipped[reason] == 0 {
					t.Errorf("the fixture has no row skipped for %q: it tests less than it should", reason)
				}
			}
		})
	}
}
