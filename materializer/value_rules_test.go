package materializer_test

import (
	"context"
	"errors"
	"math"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/larder-dev/larder"
	"github.com/larder-dev/larder/materializer"
	"github.com/larder-dev/larder/redistest"
	"github.com/larder-dev/larder/store"
)

// ruleRow is a source row of the value rules' tests: float64, float32,
// string and vector values, some of them NaN, infinite or large.
type ruleRow struct {
	UserID int64     `parquet:"user_id"`
	TS     time.Time `parquet:"ts,timestamp(millisecond)"`
	F64    float64   `parquet:"f64"`
	F32    float32   `parquet:"f32"`
	Bio    string    `parquet:"bio"`
	Emb    []float32 `parquet:"emb,list"`
}

var ruleFeatures = []larder.Feature{
	feature("f64", larder.TypeFloat64, "f64"), feature("f32", larder.TypeFloat32, "f32"),
	feature("bio", larder.TypeString, "bio"), feature("emb", larder.TypeFloat32Vector, "emb"),
}

// bigBio is a string of 1 MiB: over the default max_value_bytes, which
// makes it equivalent to the 100 MB value seen in production.
var bigBio = strings.Repeat("x", 1<<20)

var (
	nan64, inf64 = math.NaN(), math.Inf(1)
	nan32, inf32 = float32(math.NaN()), float32(math.Inf(1))
)

// ruleRows holds, for users 1 to 6: NaN, +Inf and -Inf in float64 and
// float32 columns (users 1 to 3), a 1 MiB string (user 4), a vector
// holding a NaN (user 5), and nothing wrong (user 6).
func ruleRows() []ruleRow {
	return []ruleRow{
		{1, at(1), nan64, 1.5, "a", []float32{1}},
		{2, at(2), inf64, -inf32, "b", []float32{2}},
		{3, at(3), -inf64, nan32, "c", []float32{3}},
		{4, at(4), 2.5, 0.25, bigBio, []float32{4}},
		{5, at(5), 3.5, 0.5, "e", []float32{5, nan32}},
		{6, at(6), 4.5, 0.75, "f", []float32{6, 7}},
	}
}

// sourceValues returns the values of rows as a latest view of ruleFeatures
// reads them, by key.
func sourceValues(rows []ruleRow) map[larder.Key]larder.Row {
	out := make(map[larder.Key]larder.Row, len(rows))
	for _, r := range rows {
		out[larder.Int64Key(r.UserID)] = larder.Row{EventTime: r.TS, Values: []larder.Value{
			larder.Float64Value(r.F64), larder.Float32Value(r.F32), larder.StringValue(r.Bio), larder.Float32VectorValue(r.Emb),
		}}
	}
	return out
}

// nulled returns want with the values of the given (user, feature) pairs
// null.
func nulled(want map[larder.Key]larder.Row, at ...[2]int) map[larder.Key]larder.Row {
	out := make(map[larder.Key]larder.Row, len(want))
	for k, r := range want {
		out[k] = larder.Row{EventTime: r.EventTime, Values: append([]larder.Value(nil), r.Values...)}
	}
	for _, a := range at {
		out[larder.Int64Key(int64(a[0]))].Values[a[1]] = larder.Null
	}
	return out
}

// The (user, feature) pairs of ruleRows that are non-finite, and the one
// that is oversized.
var (
	nonFiniteValues = [][2]int{{1, 0}, {2, 0}, {2, 1}, {3, 0}, {3, 1}, {5, 3}}
	oversizedValue  = [2]int{4, 2}
)

// TestRedisValueRulesLatest materializes NaN, ±Inf and a 1 MiB string into
// a real redis-server under each policy, and reads back what is stored.
func TestRedisValueRulesLatest(t *testing.T) {
	source := sourceValues(ruleRows())
	tests := []struct {
		name                string
		max                 int
		nonFinite, oversize larder.ValuePolicy
		want                map[larder.Key]larder.Row
		nulled              map[string]int64
	}{
		{name: "defaults: null both", want: nulled(source, append(nonFiniteValues, oversizedValue)...),
			nulled: map[string]int64{materializer.NullNonFinite: 6, materializer.NullOversize: 1}},
		{name: "null both", nonFinite: larder.PolicyNull, oversize: larder.PolicyNull, want: nulled(source, append(nonFiniteValues, oversizedValue)...),
			nulled: map[string]int64{materializer.NullNonFinite: 6, materializer.NullOversize: 1}},
		{name: "keep non-finite", nonFinite: larder.PolicyKeep, want: nulled(source, oversizedValue),
			nulled: map[string]int64{materializer.NullOversize: 1}},
		{name: "a limit the string fits", max: 1<<20 + 1, want: nulled(source, nonFiniteValues...),
			nulled: map[string]int64{materializer.NullNonFinite: 6}},
		{name: "a limit the string just passes", max: 1<<20 - 1, nonFinite: larder.PolicyKeep, want: nulled(source, oversizedValue),
			nulled: map[string]int64{materializer.NullOversize: 1}},
		// Vectors of two float32s take 8 bytes, over a limit of 7 (that
		// of user 5 holds a NaN, kept); strings of one byte do not.
		{name: "a limit that nulls vectors", max: 7, nonFinite: larder.PolicyKeep,
			want:   nulled(source, oversizedValue, [2]int{5, 3}, [2]int{6, 3}),
			nulled: map[string]int64{materializer.NullOversize: 3}},
		{name: "keep both within a large limit", max: 2 << 20, nonFinite: larder.PolicyKeep, want: source},
	}
	client := redistest.Start(t).Client()
	dir := t.TempDir()
	writeParquet(t, filepath.Join(dir, "data", "a.parquet"), ruleRows())
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := projectFor(t, dir, "data", larder.TypeInt64, ruleFeatures...)
			v := p.View("v")
			v.MaxValueBytes, v.NonFinite, v.Oversize = tt.max, tt.nonFinite, tt.oversize
			if err := p.Validate(); err != nil {
				t.Fatal(err)
			}
			client.FlushAll(context.Background())
			rep, err := materializer.New(p, store.New(client, p.Name, store.Options{}), materializer.Options{Now: fixedClock(at(100))}).Run(context.Background(), "v")
			if err != nil {
				t.Fatal(err)
			}
			got, _ := readAll(t, client, p, keysOf(tt.want))
			if d := diffRows(got, tt.want); d != "" {
				t.Errorf("stored rows differ:\n%s", d)
			}
			if !equalCounts(rep.Nulled, tt.nulled) || rep.NulledTotal() != sum(tt.nulled) {
				t.Errorf("nulled = %v (total %d), want %v", rep.Nulled, rep.NulledTotal(), tt.nulled)
			}
			if rep.EntitiesWritten != 6 || len(rep.Skipped) != 0 {
				t.Errorf("report: %d entities written, skipped %v; want 6 and none skipped", rep.EntitiesWritten, rep.Skipped)
			}
		})
	}
}

func sum(m map[string]int64) int64 {
	var n int64
	for _, c := range m {
		n += c
	}
	return n
}

// TestRedisValueRulesLatestReject checks that a refused value fails the run
// under reject, naming the file, the row (row groups of two rows: the row
// in the file, not in its row group), the column, the entity and the
// value, and that the live generation keeps serving.
func TestRedisValueRulesLatestReject(t *testing.T) {
	good := func() []ruleRow {
		rows := ruleRows()
		for i := range rows {
			rows[i].F64, rows[i].F32, rows[i].Bio, rows[i].Emb = float64(i), float32(i), "ok", []float32{1, 2}
		}
		return rows
	}
	tests := []struct {
		name                string
		max                 int
		nonFinite, oversize larder.ValuePolicy
		spoil               func(r *ruleRow) // spoils row 3, user 4
		column, want        string
		value               string
	}{
		{name: "NaN float32", nonFinite: larder.PolicyReject, spoil: func(r *ruleRow) { r.F32 = nan32 }, column: "f32", value: "NaN",
			want: `row 3, column "f32": user 4's feature "f32" is NaN, and the view's non_finite policy is reject: fix the source, or set non_finite to null (to store such values as null) or keep`},
		{name: "+Inf float64", nonFinite: larder.PolicyReject, spoil: func(r *ruleRow) { r.F64 = inf64 }, column: "f64", value: "+Inf",
			want: `user 4's feature "f64" is +Inf, and the view's non_finite policy is reject`},
		{name: "-Inf in a vector", nonFinite: larder.PolicyReject, spoil: func(r *ruleRow) { r.Emb = []float32{0, -inf32} }, column: "emb", value: "-Inf at [1]",
			want: `user 4's feature "emb" is -Inf at [1], and the view's non_finite policy is reject`},
		{name: "1 MiB string", oversize: larder.PolicyReject, spoil: func(r *ruleRow) { r.Bio = bigBio }, column: "bio", value: "a string of 1048576 bytes",
			want: `row 3, column "bio": user 4's feature "bio" is a string of 1048576 bytes, more than the view's max_value_bytes of 65536, and its oversize policy is reject: fix the source, raise max_value_bytes, or set oversize to null to store such values as null`},
		{name: "vector over a small limit", max: 8, oversize: larder.PolicyReject, spoil: func(r *ruleRow) { r.Emb = []float32{1, 2, 3} }, column: "emb", value: "a float32_vector of 12 bytes",
			want: `row 3, column "emb": user 4's feature "emb" is a float32_vector of 12 bytes, more than the view's max_value_bytes of 8`},
	}
	client := redistest.Start(t).Client()
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			dir := t.TempDir()
			file := filepath.Join(dir, "data", "a.parquet")
			writeParquet(t, file, good(), smallGroups(2)...)
			p := projectFor(t, dir, "data", larder.TypeInt64, ruleFeatures...)
			client.FlushAll(ctx)
			st := store.New(client, p.Name, store.Options{})
			m := materializer.New(p, st, materializer.Options{Now: fixedClock(at(100))})
			first, err := m.Run(ctx, "v")
			if err != nil {
				t.Fatal(err)
			}
			before, _ := readAll(t, client, p, keysOf(sourceValues(good())))

			rows := good()
			tt.spoil(&rows[3])
			writeParquet(t, file, rows, smallGroups(2)...)
			v := p.View("v")
			v.MaxValueBytes, v.NonFinite, v.Oversize = tt.max, tt.nonFinite, tt.oversize
			_, err = m.Run(ctx, "v")
			var ve *materializer.ValueError
			if !errors.As(err, &ve) {
				t.Fatalf("Run = %v, want a *ValueError", err)
			}
			wantRow, wantKey := int64(3), larder.Int64Key(4)
			if ve.File != file || ve.Row != wantRow || ve.Column != tt.column || ve.Key != wantKey || ve.Value != tt.value {
				t.Errorf("ValueError = %+v, want file %s, row %d, column %s, key %v, value %q", *ve, file, wantRow, tt.column, wantKey, tt.value)
			}
			if !strings.HasPrefix(err.Error(), "materialize v: ") || !strings.Contains(err.Error(), "source file "+file+", ") || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Run error =\n%v\nwant one naming the file and saying\n%s", err, tt.want)
			}
			after, gen := readAll(t, client, p, keysOf(before))
			if gen.ID != first.Generation {
				t.Errorf("live generation = %d, want %d: the failed run published", gen.ID, first.Generation)
			}
			if d := diffRows(after, before); d != "" {
				t.Errorf("live rows changed:\n%s", d)
			}
		})
	}
}

// TestRedisValueRulesIncremental checks that an incremental run applies the
// rules: it nulls and counts under null, and fails under reject, naming the
// new file, and leaving the watermark where it was.
func TestRedisValueRulesIncremental(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	clean := []ruleRow{
		{1, at(1), 1, 1, "a", []float32{1}}, {2, at(2), 2, 2, "b", []float32{2}}, {3, at(3), 3, 3, "c", []float32{3}},
	}
	writeParquet(t, filepath.Join(dir, "data", "a.parquet"), clean)
	p := projectFor(t, dir, "data", larder.TypeInt64, ruleFeatures...)
	client := redistest.Start(t).Client()
	st := store.New(client, p.Name, store.Options{})
	m := materializer.New(p, st, materializer.Options{Now: fixedClock(at(100))})
	full, err := m.Run(ctx, "v")
	if err != nil {
		t.Fatal(err)
	}

	later := []ruleRow{{2, at(10), nan64, 2, "b", []float32{2}}, {3, at(11), 3, 3, bigBio, []float32{3}}}
	writeParquet(t, filepath.Join(dir, "data", "b.parquet"), later)
	rep, err := m.RunIncremental(ctx, "v")
	if err != nil {
		t.Fatal(err)
	}
	want := nulled(merge(sourceValues(clean), sourceValues(later)), [2]int{2, 0}, [2]int{3, 2})
	if got, gen := readAll(t, client, p, keysOf(want)); gen.ID != full.Generation {
		t.Errorf("live generation %d, want %d", gen.ID, full.Generation)
	} else if d := diffRows(got, want); d != "" {
		t.Errorf("stored rows differ:\n%s", d)
	}
	if wantNulled := map[string]int64{materializer.NullNonFinite: 1, materializer.NullOversize: 1}; !equalCounts(rep.Nulled, wantNulled) {
		t.Errorf("nulled = %v, want %v", rep.Nulled, wantNulled)
	}
	wm, err := st.Watermark(ctx, p.View("v"))
	if err != nil || !wm.Equal(at(11)) {
		t.Fatalf("watermark = %v, %v; want %v", wm, err, at(11))
	}

	third := filepath.Join(dir, "data", "c.parquet")
	writeParquet(t, third, []ruleRow{{1, at(20), 1, inf32, "a", []float32{1}}})
	p.View("v").NonFinite = larder.PolicyReject
	_, err = m.RunIncremental(ctx, "v")
	var ve *materializer.ValueError
	if !errors.As(err, &ve) || ve.File != third || ve.Row != 0 || ve.Feature != "f32" || ve.Value != "+Inf" {
		t.Fatalf("RunIncremental = %v, want a *ValueError for +Inf in %s, row 0, column f32", err, third)
	}
	if wm, err := st.Watermark(ctx, p.View("v")); err != nil || !wm.Equal(at(11)) {
		t.Errorf("watermark after the failed run = %v, %v; want %v", wm, err, at(11))
	}
}

// overflowRow is an event of an aggregate view: sums of finite amounts
// may overflow to an infinity.
type overflowRow struct {
	UserID int64     `parquet:"user_id"`
	TS     time.Time `parquet:"ts,timestamp(millisecond)"`
	Amount float64   `parquet:"amount"`
}

// TestRedisValueRulesAggregate checks an aggregate view whose sums of
// finite values overflow to +Inf and -Inf: the sums are nulled and
// counted, or fail the run under reject, while the counts and maximums
// are stored.
func TestRedisValueRulesAggregate(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	writeParquet(t, filepath.Join(dir, "events", "a.parquet"), []overflowRow{
		{1, at(1), math.MaxFloat64}, {1, at(2), math.MaxFloat64},
		{2, at(1), -math.MaxFloat64}, {2, at(2), -math.MaxFloat64},
		{3, at(1), 1}, {3, at(2), 2},
	})
	p := aggregateProject(t, dir, "events", larder.TypeInt64, larder.Aggregation{Column: "amount", Type: larder.TypeFloat64,
		Functions: funcs(larder.AggCount, larder.AggSum, larder.AggMax), Windows: windows(t, "1h")})
	v := p.View("v")
	v.NonFinite = larder.PolicyNull // aggregateProject keeps them
	client := redistest.Start(t).Client()
	st := store.New(client, p.Name, store.Options{})
	m := materializer.New(p, st, materializer.Options{Now: fixedClock(at(100))})

	rep, err := m.Run(ctx, "v")
	if err != nil {
		t.Fatal(err)
	}
	row := func(count int64, sum, max larder.Value) larder.Row {
		return larder.Row{EventTime: at(100), Values: []larder.Value{larder.Int64Value(count), sum, max}}
	}
	want := map[larder.Key]larder.Row{
		larder.Int64Key(1): row(2, larder.Null, larder.Float64Value(math.MaxFloat64)),
		larder.Int64Key(2): row(2, larder.Null, larder.Float64Value(-math.MaxFloat64)),
		larder.Int64Key(3): row(2, larder.Float64Value(3), larder.Float64Value(2)),
	}
	got, _ := readAll(t, client, p, keysOf(want))
	if d := diffRows(got, want); d != "" {
		t.Errorf("stored rows differ:\n%s\nfeatures: %v", d, featureNames(v))
	}
	if wantNulled := map[string]int64{materializer.NullNonFinite: 2}; !equalCounts(rep.Nulled, wantNulled) {
		t.Errorf("nulled = %v, want %v", rep.Nulled, wantNulled)
	}

	v.NonFinite = larder.PolicyReject
	_, err = m.Run(ctx, "v")
	var ve *materializer.ValueError
	if !errors.As(err, &ve) {
		t.Fatalf("Run = %v, want a *ValueError", err)
	}
	wantValue := map[larder.Key]string{larder.Int64Key(1): "+Inf", larder.Int64Key(2): "-Inf"}[ve.Key]
	if ve.Feature != "amount_sum_1h" || ve.Value != wantValue || ve.File != "" || ve.Column != "" {
		t.Errorf("ValueError = %+v, want user 1's +Inf or user 2's -Inf in amount_sum_1h, with no file", *ve)
	}
	if msg := `user ` + ve.Key.String() + `'s feature "amount_sum_1h" is ` + wantValue + `, and the view's non_finite policy is reject: fix the source`; !strings.Contains(err.Error(), msg) {
		t.Errorf("Run error = %v, want one saying %q", err, msg)
	}
	if _, gen := readAll(t, client, p, keysOf(want)); gen.ID != rep.Generation {
		t.Errorf("live generation = %d, want %d", gen.ID, rep.Generation)
	}
}

// nanModel is a model that outputs, for each row, NaN when the first input
// (profile:age) is 13, +Inf when it is 14, and otherwise age/10; and 0.5 as
// its second output. It stands in for a model that outputs NaN, which a
// small trained net does not do on demand.
type nanModel struct{}

func (nanModel) Score(_ context.Context, x []float32, n int, out []float32) error {
	const inputs, outputs = 5, 2
	for i := range n {
		switch age := x[i*inputs]; age {
		case 13:
			out[i*outputs] = nan32
		case 14:
			out[i*outputs] = inf32
		default:
			out[i*outputs] = age / 10
		}
		out[i*outputs+1] = 0.5
	}
	return nil
}

func (nanModel) Version() string { return "nan-model" }

// TestRedisValueRulesPrediction checks a prediction view whose model
// outputs NaN and +Inf: the outputs are nulled and counted, or fail the
// run under reject.
func TestRedisValueRulesPrediction(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	p := predProject(t, dir, nil)
	client := redistest.Start(t).Client()
	st := store.New(client, p.Name, store.Options{})
	runTime := at(100)
	profile := func(age int64) larder.Row {
		return larder.Row{EventTime: runTime.Add(-time.Minute), Values: []larder.Value{
			larder.Int64Value(age), larder.Float64Value(0.5), larder.BoolValue(true), larder.StringValue("fr"),
		}}
	}
	publishRows(t, st, p.View("profile"), map[larder.Key]larder.Row{
		larder.Int64Key(1): profile(13), larder.Int64Key(2): profile(14), larder.Int64Key(3): profile(5),
	})
	publishRows(t, st, p.View("stats"), map[larder.Key]larder.Row{})
	m := materializer.New(p, st, materializer.Options{
		Now: fixedClock(runTime), Reader: st,
		Models: func(larder.ModelSpec) (larder.Model, error) { return nanModel{}, nil },
	})

	rep, err := m.Run(ctx, "pred")
	if err != nil {
		t.Fatal(err)
	}
	out := func(pClick larder.Value) larder.Row {
		return larder.Row{EventTime: runTime, Values: []larder.Value{pClick, larder.Float32Value(0.5)}}
	}
	want := map[larder.Key]larder.Row{
		larder.Int64Key(1): out(larder.Null), larder.Int64Key(2): out(larder.Null), larder.Int64Key(3): out(larder.Float32Value(0.5)),
	}
	got, _ := readRows(t, client, p, "pred", keysOf(want))
	if d := diffRows(got, want); d != "" {
		t.Errorf("stored rows differ:\n%s", d)
	}
	if wantNulled := map[string]int64{materializer.NullNonFinite: 2}; !equalCounts(rep.Nulled, wantNulled) {
		t.Errorf("nulled = %v, want %v", rep.Nulled, wantNulled)
	}

	p.View("pred").NonFinite = larder.PolicyReject
	_, err = m.Run(ctx, "pred")
	var ve *materializer.ValueError
	if !errors.As(err, &ve) || ve.Feature != "p_click" || ve.File != "" {
		t.Fatalf("Run = %v, want a *ValueError for p_click", err)
	}
	msg := map[larder.Key]string{
		larder.Int64Key(1): `user 1's feature "p_click" is NaN, and the view's non_finite policy is reject: fix the model or its inputs`,
		larder.Int64Key(2): `user 2's feature "p_click" is +Inf, and the view's non_finite policy is reject: fix the model or its inputs`,
	}[ve.Key]
	if msg == "" || !strings.Contains(err.Error(), msg) {
		t.Errorf("Run error = %v, want one saying %q", err, msg)
	}
	if _, gen := readRows(t, client, p, "pred", keysOf(want)); gen.ID != rep.Generation {
		t.Errorf("live generation = %d, want %d", gen.ID, rep.Generation)
	}
}

// TestRedisValueRulesCandidates checks a candidates view whose scores
// include one too large for a float32, stored as +Inf: the list's scores
// are nulled and counted while its candidates stay, or the run fails
// under reject.
func TestRedisValueRulesCandidates(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	pair := func(user, item int64, score float64) intPair {
		return intPair{UserID: &user, ItemID: &item, Score: &score, TS: ptr(at(1))}
	}
	writeParquet(t, filepath.Join(dir, "pairs", "a.parquet"), []intPair{
		pair(1, 10, 1e39), pair(1, 11, 0.5), pair(2, 10, 0.25), pair(2, 12, 0.75),
	})
	p := candProject(t, dir, "pairs", larder.TypeInt64, larder.TypeInt64, "", 10)
	v := p.View("v")
	v.NonFinite = larder.PolicyNull // candProject keeps them
	client := redistest.Start(t).Client()
	m := materializer.New(p, store.New(client, p.Name, store.Options{}), materializer.Options{Now: fixedClock(at(100))})

	rep, err := m.Run(ctx, "v")
	if err != nil {
		t.Fatal(err)
	}
	want := map[larder.Key]larder.Row{
		larder.Int64Key(1): {EventTime: at(1), Values: []larder.Value{larder.Int64ListValue([]int64{10, 11}), larder.Null}},
		larder.Int64Key(2): {EventTime: at(1), Values: []larder.Value{larder.Int64ListValue([]int64{12, 10}), larder.Float32VectorValue([]float32{0.75, 0.25})}},
	}
	got, _ := readAll(t, client, p, keysOf(want))
	if d := diffRows(got, want); d != "" {
		t.Errorf("stored rows differ:\n%s", d)
	}
	if wantNulled := map[string]int64{materializer.NullNonFinite: 1}; !equalCounts(rep.Nulled, wantNulled) {
		t.Errorf("nulled = %v, want %v", rep.Nulled, wantNulled)
	}

	v.NonFinite = larder.PolicyReject
	_, err = m.Run(ctx, "v")
	var ve *materializer.ValueError
	if !errors.As(err, &ve) || ve.Key != larder.Int64Key(1) || ve.Feature != larder.ScoresFeature || ve.Value != "+Inf at [0]" ||
		!strings.Contains(err.Error(), `user 1's feature "scores" is +Inf at [0], and the view's non_finite policy is reject: fix the scores`) {
		t.Fatalf("Run = %v, want a *ValueError for user 1's scores", err)
	}
}

// TestValueRulesShards checks that each shard of a sharded run counts the
// values of its own entities: over every shard, each value once.
func TestValueRulesShards(t *testing.T) {
	dir := t.TempDir()
	writeParquet(t, filepath.Join(dir, "data", "a.parquet"), ruleRows())
	p := projectFor(t, dir, "data", larder.TypeInt64, ruleFeatures...)
	var total int64
	const shards = 3
	for i := range shards {
		rep, err := materializer.New(p, newFakeStore(), materializer.Options{
			Now: fixedClock(at(100)), Shard: &larder.ShardRef{Generation: 1, Index: i, Count: shards},
		}).Run(context.Background(), "v")
		if err != nil {
			t.Fatalf("shard %d: %v", i, err)
		}
		total += rep.NulledTotal()
	}
	if want := int64(len(nonFiniteValues) + 1); total != want {
		t.Errorf("the shards nulled %d values in all, want %d", total, want)
	}
}

// TestRunnerRecordsNulled checks that a run's record holds the values its
// rules nulled, and a rejecting run's record the value it failed on.
func TestRunnerRecordsNulled(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	writeParquet(t, filepath.Join(dir, "data", "a.parquet"), ruleRows())
	p := projectFor(t, dir, "data", larder.TypeInt64, ruleFeatures...)
	st := store.New(redistest.Start(t).Client(), p.Name, store.Options{})
	r := materializer.NewRunner(p, st, materializer.RunnerOptions{Now: fixedClock(at(100)), Owner: "test:1"})
	if _, err := r.Run(ctx, materializer.RunRequest{Views: p.Views, Trigger: larder.TriggerManual}); err != nil {
		t.Fatal(err)
	}
	runs, err := st.Runs(ctx, "v", 1)
	if err != nil || len(runs) != 1 {
		t.Fatalf("Runs = %v, %v", runs, err)
	}
	if want := map[string]int64{materializer.NullNonFinite: 6, materializer.NullOversize: 1}; runs[0].Result() != larder.RunOK || !equalCounts(runs[0].Nulled, want) {
		t.Errorf("run %s, nulled %v; want ok, %v", runs[0].Result(), runs[0].Nulled, want)
	}

	p.View("v").Oversize = larder.PolicyReject
	if _, err := r.Run(ctx, materializer.RunRequest{Views: p.Views, Trigger: larder.TriggerManual}); err == nil {
		t.Fatal("Run succeeded; want it to reject the 1 MiB string")
	}
	runs, err = st.Runs(ctx, "v", 1)
	if err != nil || len(runs) != 1 {
		t.Fatalf("Runs = %v, %v", runs, err)
	}
	if runs[0].Result() != larder.RunFailed || !strings.Contains(runs[0].Err, `user 4's feature "bio" is a string of 1048576 bytes`) {
		t.Errorf("run %s: %q; want a failure naming user 4's bio", runs[0].Result(), runs[0].Err)
	}
}
