package materializer_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"

	"github.com/larder-dev/larder"
	"github.com/larder-dev/larder/internal/parquettest"
	"github.com/larder-dev/larder/materializer"
	"github.com/larder-dev/larder/models"
	"github.com/larder-dev/larder/redistest"
	"github.com/larder-dev/larder/store"
)

// scoreProject returns a validated project in dir: entities user (int64
// user_id) and item (string sku); latest views user_profile (age, premium,
// score; max age 1h) and item_stats (price, rating, clicks; never stale);
// the ranker feed over six of their features and three request features
// (discount float64 default 0.5, hour int64 required, promo bool default
// true) with ranker.onnx; and the ranker peers, whose context and candidate
// are both users.
func scoreProject(tb testing.TB, dir string) *larder.Project {
	tb.Helper()
	p := &larder.Project{
		Name: "test",
		Dir:  dir,
		Entities: []*larder.Entity{
			{Name: "user", Key: "user_id", KeyType: larder.TypeInt64},
			{Name: "item", Key: "sku", KeyType: larder.TypeString},
		},
		Sources: []*larder.Source{{Name: "users", Path: "users", EventTime: "ts"}, {Name: "items", Path: "items", EventTime: "ts"}},
		Views: []*larder.View{
			{Name: "user_profile", Kind: larder.KindLatest, Entity: "user", Source: "users", MaxAge: time.Hour,
				Features: []larder.Feature{
					{Name: "age", Type: larder.TypeInt64}, {Name: "premium", Type: larder.TypeBool},
					{Name: "score", Type: larder.TypeFloat64}, {Name: "country", Type: larder.TypeString},
				}},
			{Name: "item_stats", Kind: larder.KindLatest, Entity: "item", Source: "items",
				Features: []larder.Feature{
					{Name: "price", Type: larder.TypeFloat64}, {Name: "rating", Type: larder.TypeFloat32},
					{Name: "clicks", Type: larder.TypeInt64},
				}},
		},
		Rankers: []*larder.Ranker{
			{Name: "feed", Model: "ranker.onnx", Context: "user", Candidate: "item", Inputs: []larder.RankerInput{
				{Ref: "user_profile:age", Default: -1, HasDefault: true},
				{Ref: "item_stats:price", Default: 10, HasDefault: true},
				{Ref: "request:discount", Default: 0.5, HasDefault: true},
				{Ref: "user_profile:premium"},
				{Ref: "item_stats:rating", Default: 2, HasDefault: true},
				{Ref: "request:hour", Type: larder.TypeInt64},
				{Ref: "request:promo", Type: larder.TypeBool, Default: 1, HasDefault: true},
				{Ref: "user_profile:score", Default: 0.25, HasDefault: true},
				{Ref: "item_stats:clicks"},
			}},
			{Name: "peers", Model: "peers.onnx", Context: "user", Candidate: "user", Inputs: []larder.RankerInput{
				{Ref: "user_profile:age", Default: -1, HasDefault: true},
				{Ref: "user_profile:score"},
			}},
		},
	}
	p.SetDefaults()
	if err := p.Validate(); err != nil {
		tb.Fatalf("invalid test project: %v", err)
	}
	return p
}

// scoreData is the content of the views of scoreProject, by view and key.
type scoreData map[string]map[larder.Key]larder.Row

// scoreTestData returns profiles of users 1..users (every fifth missing,
// every seventh an hour and a half old, so stale, a few nulls) and stats of
// items "i1".."i<items>" (every sixth missing, a few nulls), as of asOf.
func scoreTestData(users, items int, asOf time.Time) scoreData {
	d := scoreData{"user_profile": {}, "item_stats": {}}
	for u := 1; u <= users; u++ {
		if u%5 == 0 {
			continue
		}
		at := asOf.Add(-time.Minute)
		if u%7 == 0 {
			at = asOf.Add(-90 * time.Minute)
		}
		age := larder.Int64Value(int64(18 + u%50))
		if u%11 == 0 {
			age = larder.Null
		}
		d["user_profile"][larder.Int64Key(int64(u))] = larder.Row{EventTime: at, Values: []larder.Value{
			age, larder.BoolValue(u%3 == 0), larder.Float64Value(float64(u%10) / 10), larder.StringValue("fr"),
		}}
	}
	for i := 1; i <= items; i++ {
		if i%6 == 0 {
			continue
		}
		rating := larder.Float32Value(float32(i%5) + 0.5)
		if i%4 == 0 {
			rating = larder.Null
		}
		d["item_stats"][itemKey(i)] = larder.Row{EventTime: asOf.Add(-1000 * time.Hour), Values: []larder.Value{
			larder.Float64Value(float64(i%17) * 1.25), rating, larder.Int64Value(int64(i % 9)),
		}}
	}
	return d
}

func itemKey(i int) larder.Key { return larder.StringKey(fmt.Sprintf("i%d", i)) }

// rankInputRow is a row of a ranker's scoring input. hour is INT32, which
// an int64 request feature accepts.
type rankInputRow struct {
	UserID   int64    `parquet:"user_id"`
	SKU      string   `parquet:"sku"`
	Discount *float64 `parquet:"discount,optional"`
	Hour     *int32   `parquet:"hour,optional"`
	Promo    *bool    `parquet:"promo,optional"`
}

// rankInputNoDefaults is a row of an input without the columns of the
// request features that have defaults.
type rankInputNoDefaults struct {
	UserID int64  `parquet:"user_id"`
	SKU    string `parquet:"sku"`
	Hour   int32  `parquet:"hour"`
}

// rankOutputRow is a row of a ranker's scoring output.
type rankOutputRow struct {
	UserID int64   `parquet:"user_id"`
	SKU    string  `parquet:"sku"`
	Score  float32 `parquet:"score"`
}

// scoreFixture is scoreProject on a real redis-server, with ranker.onnx, a
// random 9 → 16 → 1 net, and the views published.
type scoreFixture struct {
	dir     string
	project *larder.Project
	store   *store.Store
	rt      *models.Runtime
	asOf    time.Time
	data    scoreData
}

func newScoreFixture(tb testing.TB) *scoreFixture {
	tb.Helper()
	dir := tb.TempDir()
	f := &scoreFixture{dir: dir, project: scoreProject(tb, dir), rt: newORT(tb), asOf: time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)}
	f.store = store.New(redistest.Start(tb).Client(), f.project.Name, store.Options{})
	writeModel(tb, filepath.Join(dir, "ranker.onnx"), 9, 1, 7)
	writeModel(tb, filepath.Join(dir, "peers.onnx"), 2, 1, 8)
	f.data = scoreTestData(60, 40, f.asOf)
	for _, name := range []string{"user_profile", "item_stats"} {
		publishRows(tb, f.store, f.project.View(name), f.data[name])
	}
	return f
}

func (f *scoreFixture) materializer(opts materializer.Options) *materializer.Materializer {
	if opts.Now == nil {
		opts.Now = fixedClock(f.asOf)
	}
	if opts.Models == nil {
		opts.Models = modelLoader(f.rt)
	}
	if opts.Reader == nil {
		opts.Reader = f.store
	}
	return materializer.New(f.project, f.store, opts)
}

// rankInputs returns n input rows: users 1..70 (some with no profile at
// all) and items i1..i45 (some with no stats), grouped by user as a product
// would write them, with every few rows a null discount or promo.
func rankInputs(n int) []rankInputRow {
	rows := make([]rankInputRow, n)
	for r := range rows {
		row := rankInputRow{UserID: int64(1 + (r/7)%70), SKU: itemKey(1 + (r*13)%45).Str()}
		if r%3 != 0 {
			d := float64(r%5) / 4
			row.Discount = &d
		}
		if r%4 != 0 {
			p := r%2 == 0
			row.Promo = &p
		}
		h := int32(r % 24)
		row.Hour = &h
		rows[r] = row
	}
	return rows
}

// expectedRankInput builds the model input of feed for one row the obvious
// way: each view input the stored number when the row exists, is fresh at
// asOf and the value is not null, else the input's default; each request
// input the row's value, or its default when null or absent.
func expectedRankInput(r *larder.Ranker, d scoreData, user larder.Key, item larder.Key, req map[string]*float32, asOf time.Time) []float32 {
	x := make([]float32, len(r.Inputs))
	for j, in := range r.Inputs {
		x[j] = in.Default
		if in.Side == larder.SideRequest {
			if v := req[in.Request]; v != nil {
				x[j] = *v
			}
			continue
		}
		key := item
		if in.Side == larder.SideContext {
			key = user
		}
		row, ok := d[in.View.Name][key]
		if ok && (in.View.MaxAge == 0 || asOf.Sub(row.EventTime) <= in.View.MaxAge) {
			if n, isNum := row.Values[in.Feature].Number(); isNum {
				x[j] = float32(n)
			}
		}
	}
	return x
}

func requestOf(row rankInputRow) map[string]*float32 {
	req := map[string]*float32{}
	if row.Discount != nil {
		v := float32(*row.Discount)
		req["discount"] = &v
	}
	if row.Hour != nil {
		v := float32(*row.Hour)
		req["hour"] = &v
	}
	if row.Promo != nil {
		v := float32(0)
		if *row.Promo {
			v = 1
		}
		req["promo"] = &v
	}
	return req
}

// readOutput reads every row of the Parquet file at path as T, and returns
// them with the file's column names in order.
func readOutput[T any](tb testing.TB, path string) ([]T, []string) {
	tb.Helper()
	pf := parquettest.Open(tb, path)
	var cols []string
	for _, c := range pf.Root().Columns() {
		cols = append(cols, c.Name()+" "+describe(c))
	}
	r := parquet.NewGenericReader[T](pf)
	defer r.Close()
	rows := make([]T, pf.NumRows())
	if n, err := r.Read(rows); n != len(rows) && err != nil {
		tb.Fatalf("read %s: %d of %d rows: %v", path, n, len(rows), err)
	}
	return rows, cols
}

func describe(c *parquet.Column) string {
	s := c.Type().Kind().String()
	if lt := c.Type().LogicalType(); lt != nil && lt.Value != nil {
		s += " " + lt.String()
	}
	if c.Optional() {
		s = "optional " + s
	}
	return s
}

// TestScoreRanker scores a folder of two input files, one without the
// columns of the request features that have defaults, and checks every
// score against ONNX Runtime on the input built the obvious way.
func TestScoreRanker(t *testing.T) {
	for _, batch := range []int{0, 16, 1} {
		t.Run(fmt.Sprintf("batch=%d", batch), func(t *testing.T) {
			f := newScoreFixture(t)
			in := rankInputs(500)
			second := make([]rankInputNoDefaults, 37)
			for i := range second {
				second[i] = rankInputNoDefaults{UserID: int64(60 - i), SKU: itemKey(1 + i).Str(), Hour: int32(i)}
			}
			writeParquet(t, filepath.Join(f.dir, "in", "part-0.parquet"), in, smallGroups(64)...)
			writeParquet(t, filepath.Join(f.dir, "in", "part-1.parquet"), second)
			var progress []materializer.Progress
			m := f.materializer(materializer.Options{Progress: func(p materializer.Progress) { progress = append(progress, p) }})

			rep, err := m.Score(context.Background(), larder.ScoreArgs{Ranker: "feed", Input: "in", Output: "scores.parquet", BatchSize: batch})
			if err != nil {
				t.Fatal(err)
			}
			total := int64(len(in) + len(second))
			if rep.Rows != total || rep.Files != 2 || !rep.AsOf.Equal(f.asOf) || rep.Output != filepath.Join(f.dir, "scores.parquet") {
				t.Errorf("report: %d rows from %d files as of %v to %s; want %d rows from 2 files as of %v to scores.parquet",
					rep.Rows, rep.Files, rep.AsOf, rep.Output, total, f.asOf)
			}
			var gens []larder.InputGeneration
			for _, g := range rep.Generations {
				if g.AsOf.IsZero() {
					t.Errorf("generation %+v has no as-of", g)
				}
				gens = append(gens, larder.InputGeneration{View: g.View, Generation: g.Generation})
			}
			wantGens := []larder.InputGeneration{{View: "user_profile", Generation: 1}, {View: "item_stats", Generation: 1}}
			if !slices.Equal(gens, wantGens) {
				t.Errorf("generations %v, want %v", rep.Generations, wantGens)
			}
			if last := progress[len(progress)-1]; last.Phase != materializer.PhaseScoring || last.RowsRead != total || last.RowsTotal != total || last.View != "feed" {
				t.Errorf("last progress %+v, want %d of %d rows scoring with feed", last, total, total)
			}

			out, cols := readOutput[rankOutputRow](t, filepath.Join(f.dir, "scores.parquet"))
			if want := []string{"user_id INT64 INT(64,true)", "sku BYTE_ARRAY STRING", "score FLOAT"}; !slices.Equal(cols, want) {
				t.Errorf("output columns %v, want %v", cols, want)
			}
			if len(out) != int(total) {
				t.Fatalf("%d output rows, want %d", len(out), total)
			}

			r := f.project.Ranker("feed")
			var x []float32
			for _, row := range in {
				x = append(x, expectedRankInput(r, f.data, larder.Int64Key(row.UserID), larder.StringKey(row.SKU), requestOf(row), f.asOf)...)
			}
			for _, row := range second {
				h := float32(row.Hour)
				x = append(x, expectedRankInput(r, f.data, larder.Int64Key(row.UserID), larder.StringKey(row.SKU), map[string]*float32{"hour": &h}, f.asOf)...)
			}
			model, err := f.rt.Load(filepath.Join(f.dir, "ranker.onnx"), models.Spec{Input: "features", Output: "score", Features: 9})
			if err != nil {
				t.Fatal(err)
			}
			defer model.Close()
			if rep.Model != model.Version() {
				t.Errorf("model %q, want %q", rep.Model, model.Version())
			}
			want := make([]float32, total)
			if err := model.Score(context.Background(), x, int(total), want); err != nil {
				t.Fatal(err)
			}
			for i, o := range out {
				var wu int64
				var ws string
				if i < len(in) {
					wu, ws = in[i].UserID, in[i].SKU
				} else {
					wu, ws = second[i-len(in)].UserID, second[i-len(in)].SKU
				}
				if o.UserID != wu || o.SKU != ws {
					t.Fatalf("output row %d is (%d, %s), want (%d, %s): rows out of order", i, o.UserID, o.SKU, wu, ws)
				}
				if math.Float32bits(o.Score) != math.Float32bits(want[i]) {
					t.Fatalf("row %d (%d, %s): score %v, want %v (inputs %v)", i, o.UserID, o.SKU, o.Score, want[i], x[9*i:9*i+9])
				}
			}
		})
	}
}

// TestScoreView scores the entities of a prediction view, some of which
// its entities view does not hold, and checks the outputs against the
// view's own run at the same instant.
func TestScoreView(t *testing.T) {
	f := newPredFixture(t, func(pr *larder.Prediction) { pr.BatchSize = 64 })
	data := randomPredData(300, 0, f.runTime, 5)
	f.publish(t, data)
	if _, err := f.materializer(f.defaultOptions()).Run(context.Background(), "pred"); err != nil {
		t.Fatal(err)
	}
	type keyRow struct {
		ID int32 `parquet:"id"` // INT32: an int64 key accepts it
	}
	var in []keyRow
	for id := int32(320); id >= 1; id -= 3 { // ids past 300 have no input row
		in = append(in, keyRow{ID: id})
	}
	in = append(in, keyRow{ID: 7}, keyRow{ID: 7}) // repeated, in no profile
	writeParquet(t, filepath.Join(f.dir, "keys.parquet"), in, smallGroups(50)...)

	rep, err := f.materializer(f.defaultOptions()).Score(context.Background(),
		larder.ScoreArgs{View: "pred", Input: filepath.Join(f.dir, "keys.parquet"), Output: "pred.parquet", KeyColumn: "id", BatchSize: 32})
	if err != nil {
		t.Fatal(err)
	}
	type predOut struct {
		ID     int64   `parquet:"id"`
		PClick float32 `parquet:"p_click"`
		PBuy   float32 `parquet:"p_buy"`
	}
	out, cols := readOutput[predOut](t, filepath.Join(f.dir, "pred.parquet"))
	if want := []string{"id INT64 INT(64,true)", "p_click FLOAT", "p_buy FLOAT"}; !slices.Equal(cols, want) {
		t.Errorf("output columns %v, want %v", cols, want)
	}
	if len(out) != len(in) || rep.Rows != int64(len(in)) {
		t.Fatalf("%d output rows, report %d; want %d", len(out), rep.Rows, len(in))
	}
	keys := make([]larder.Key, len(in))
	for i, r := range in {
		keys[i] = larder.Int64Key(int64(r.ID))
	}
	stored, gen := readRows(t, f.client, f.project, "pred", keys)
	if rep.Model != gen.Model {
		t.Errorf("model %q, want the view's %q", rep.Model, gen.Model)
	}
	// Entities with no row in the view: ONNX Runtime on their input built
	// the obvious way.
	m, err := f.rt.Load(filepath.Join(f.dir, "model.onnx"), models.Spec{Input: "features", Output: "score", Features: 5, Outputs: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	outside := 0
	for i, o := range out {
		k := keys[i]
		if o.ID != k.Int64() {
			t.Fatalf("output row %d has key %d, want %d", i, o.ID, k.Int64())
		}
		want := make([]float32, 2)
		if row, ok := stored[k]; ok {
			want[0], want[1] = row.Values[0].Float32(), row.Values[1].Float32()
		} else {
			outside++
			x := expectedInputs(f.project.View("pred").Prediction, data, []larder.Key{k}, f.runTime)
			if err := m.Score(context.Background(), x, 1, want); err != nil {
				t.Fatal(err)
			}
		}
		if math.Float32bits(o.PClick) != math.Float32bits(want[0]) || math.Float32bits(o.PBuy) != math.Float32bits(want[1]) {
			t.Fatalf("key %d: (%v, %v), want (%v, %v)", o.ID, o.PClick, o.PBuy, want[0], want[1])
		}
	}
	if outside == 0 || outside == len(out) {
		t.Errorf("%d of %d keys outside the view: want some of each", outside, len(out))
	}
}

// TestScoreRepublished publishes a view during a job: the job reads the
// generations that were live when it started to its end, and reports them.
func TestScoreRepublished(t *testing.T) {
	f := newScoreFixture(t)
	writeParquet(t, filepath.Join(f.dir, "in.parquet"), rankInputs(400))
	ref, err := f.materializer(materializer.Options{}).Score(context.Background(), larder.ScoreArgs{Ranker: "feed", Input: "in.parquet", Output: "ref.parquet", BatchSize: 10})
	if err != nil {
		t.Fatal(err)
	}
	changed := make(map[larder.Key]larder.Row, len(f.data["item_stats"]))
	for k, row := range f.data["item_stats"] {
		vals := slices.Clone(row.Values)
		if n, ok := vals[0].Number(); ok {
			vals[0] = larder.Float64Value(n + 1)
		}
		changed[k] = larder.Row{EventTime: row.EventTime, Values: vals}
	}
	opts := materializer.Options{Models: func(spec larder.ModelSpec) (larder.Model, error) {
		model, err := modelLoader(f.rt)(spec)
		if err != nil {
			return nil, err
		}
		return &hookModel{Model: model, after: 1, hook: func() {
			publishRows(t, f.store, f.project.View("item_stats"), changed)
		}}, nil
	}}
	rep, err := f.materializer(opts).Score(context.Background(), larder.ScoreArgs{Ranker: "feed", Input: "in.parquet", Output: "out.parquet", BatchSize: 10})
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Generations) != 2 || rep.Generations[0].View != "user_profile" || rep.Generations[1].View != "item_stats" ||
		rep.Generations[1].Generation != ref.Generations[1].Generation || rep.Generations[1].AsOf.IsZero() {
		t.Errorf("generations %v, want those of the reference run %v", rep.Generations, ref.Generations)
	}
	got, _ := readOutput[rankOutputRow](t, filepath.Join(f.dir, "out.parquet"))
	want, _ := readOutput[rankOutputRow](t, filepath.Join(f.dir, "ref.parquet"))
	if !slices.Equal(got, want) {
		t.Errorf("a publish during the job changed its scores")
	}
	res := rep.Result()
	if res.Rows != 400 || res.Model != rep.Model || res.Output != rep.Output || len(res.Generations) != 2 {
		t.Errorf("result %+v does not match the report %+v", res, rep)
	}
}

// hookModel calls hook once, after its first after runs.
type hookModel struct {
	larder.Model
	after, calls int
	hook         func()
}

func (h *hookModel) Score(ctx context.Context, x []float32, n int, out []float32) error {
	err := h.Model.Score(ctx, x, n, out)
	if h.calls++; h.calls == h.after {
		h.hook()
	}
	return err
}

// TestScorePeers scores with a ranker whose context and candidate share a
// key name: the input must name its key columns.
func TestScorePeers(t *testing.T) {
	f := newScoreFixture(t)
	type peerRow struct {
		A int64 `parquet:"a"`
		B int64 `parquet:"b"`
	}
	writeParquet(t, filepath.Join(f.dir, "peers.parquet"), []peerRow{{1, 2}, {3, 4}, {2, 99}})
	m := f.materializer(materializer.Options{})
	args := larder.ScoreArgs{Ranker: "peers", Input: "peers.parquet", Output: "out.parquet"}
	_, err := m.Score(context.Background(), args)
	if !larder.IsInvalid(err) || !strings.Contains(err.Error(), `same key name, "user_id": name the input's two key columns with context_column and candidate_column`) {
		t.Fatalf("Score = %v, want an invalid-argument error asking for the key columns", err)
	}
	args.ContextColumn, args.CandidateColumn = "a", "b"
	rep, err := m.Score(context.Background(), args)
	if err != nil {
		t.Fatal(err)
	}
	type peerOut struct {
		A     int64   `parquet:"a"`
		B     int64   `parquet:"b"`
		Score float32 `parquet:"score"`
	}
	out, cols := readOutput[peerOut](t, rep.Output)
	if len(out) != 3 || out[2].A != 2 || out[2].B != 99 || !slices.Equal(cols, []string{"a INT64 INT(64,true)", "b INT64 INT(64,true)", "score FLOAT"}) {
		t.Errorf("output %v with columns %v", out, cols)
	}
}

// TestScoreEmptyInput scores an input with no rows: the output has the
// columns and no row.
func TestScoreEmptyInput(t *testing.T) {
	f := newScoreFixture(t)
	writeParquet(t, filepath.Join(f.dir, "empty.parquet"), []rankInputRow{})
	rep, err := f.materializer(materializer.Options{}).Score(context.Background(), larder.ScoreArgs{Ranker: "feed", Input: "empty.parquet", Output: "out.parquet"})
	if err != nil {
		t.Fatal(err)
	}
	out, cols := readOutput[rankOutputRow](t, rep.Output)
	if rep.Rows != 0 || len(out) != 0 || len(cols) != 3 || len(rep.Generations) != 2 {
		t.Errorf("report %+v, output %v with columns %v: want no row, and three columns", rep, out, cols)
	}
}

// TestScoreErrors checks that a job that cannot run says why, and leaves no
// output file, partial or temporary, behind.
func TestScoreErrors(t *testing.T) {
	type wrongHour struct {
		UserID int64  `parquet:"user_id"`
		SKU    string `parquet:"sku"`
		Hour   string `parquet:"hour"`
	}
	type noSKU struct {
		UserID int64 `parquet:"user_id"`
		Hour   int64 `parquet:"hour"`
	}
	type noHour struct {
		UserID int64  `parquet:"user_id"`
		SKU    string `parquet:"sku"`
	}
	type nullKey struct {
		UserID *int64 `parquet:"user_id,optional"`
		SKU    string `parquet:"sku"`
		Hour   int64  `parquet:"hour"`
	}
	good := rankInputs(50)
	nullHour := rankInputs(50)
	nullHour[42].Hour = nil
	tests := []struct {
		name  string
		setup func(t *testing.T, f *scoreFixture)
		args  larder.ScoreArgs
		// want are parts of the error, and notWant a part it must not
		// have; invalid and is what it must be.
		want    []string
		notWant string
		invalid bool
		is      error
	}{
		{name: "both a ranker and a view", args: larder.ScoreArgs{Ranker: "feed", View: "user_profile", Input: "in.parquet", Output: "out.parquet"},
			want: []string{"not both"}, invalid: true},
		{name: "neither a ranker nor a view", args: larder.ScoreArgs{Input: "in.parquet", Output: "out.parquet"},
			want: []string{"name the ranker or the prediction view"}, invalid: true},
		{name: "unknown ranker", args: larder.ScoreArgs{Ranker: "nope", Input: "in.parquet", Output: "out.parquet"},
			want: []string{`unknown ranker "nope" (rankers: feed, peers)`}, invalid: true},
		{name: "unknown view", args: larder.ScoreArgs{View: "nope", Input: "in.parquet", Output: "out.parquet"},
			want: []string{`unknown view "nope" (the project has no prediction view)`}, invalid: true},
		{name: "not a prediction view", args: larder.ScoreArgs{View: "user_profile", Input: "in.parquet", Output: "out.parquet"},
			want: []string{"it is a latest view: only a prediction view has a model"}, invalid: true},
		{name: "key column of a view for a ranker", args: larder.ScoreArgs{Ranker: "feed", KeyColumn: "u", Input: "in.parquet", Output: "out.parquet"},
			want: []string{"key_column"}, invalid: true},
		{name: "no output", args: larder.ScoreArgs{Ranker: "feed", Input: "in.parquet"},
			want: []string{"no output"}, invalid: true},
		{name: "missing input", args: larder.ScoreArgs{Ranker: "feed", Input: "nothing.parquet", Output: "out.parquet"},
			want: []string{"nothing.parquet does not exist: check the job's input path"}},
		{name: "output folder missing", args: larder.ScoreArgs{Ranker: "feed", Input: "in.parquet", Output: "no/such/out.parquet"},
			want: []string{"the output's folder", "no/such does not exist"}},
		{name: "output is the input", args: larder.ScoreArgs{Ranker: "feed", Input: "in.parquet", Output: "in.parquet"},
			want: []string{"is one of the input files"}, invalid: true},
		{
			name: "missing key column",
			setup: func(t *testing.T, f *scoreFixture) {
				writeParquet(t, filepath.Join(f.dir, "bad.parquet"), []noSKU{{1, 2}})
			},
			args: larder.ScoreArgs{Ranker: "feed", Input: "bad.parquet", Output: "out.parquet"},
			want: []string{`input file`, `has no column "sku" (the string key of entity "item"); its columns are user_id, hour: fix the input, or name its key column (larder score's --context-column, --candidate-column or --key-column; a job's context_column, candidate_column or key_column)`},
		},
		{
			name: "wrong column type",
			setup: func(t *testing.T, f *scoreFixture) {
				writeParquet(t, filepath.Join(f.dir, "bad.parquet"), []wrongHour{{1, "i1", "noon"}})
			},
			args: larder.ScoreArgs{Ranker: "feed", Input: "bad.parquet", Output: "out.parquet"},
			want: []string{`column "hour" (the int64 request feature "hour", which has no default) is BYTE_ARRAY STRING, want INT64 or INT32`},
		},
		{
			name: "required request column missing",
			setup: func(t *testing.T, f *scoreFixture) {
				writeParquet(t, filepath.Join(f.dir, "bad.parquet"), []noHour{{1, "i1"}})
			},
			args:    larder.ScoreArgs{Ranker: "feed", Input: "bad.parquet", Output: "out.parquet"},
			want:    []string{`has no column "hour" (the int64 request feature "hour", which has no default); its columns are user_id, sku: fix the input`},
			notWant: "key column",
		},
		{
			name: "null required request feature",
			setup: func(t *testing.T, f *scoreFixture) {
				writeParquet(t, filepath.Join(f.dir, "bad.parquet"), nullHour, smallGroups(16)...)
			},
			args: larder.ScoreArgs{Ranker: "feed", Input: "bad.parquet", Output: "out.parquet", BatchSize: 8},
			want: []string{"bad.parquet row 42", `request feature "hour" (column "hour") is null, and it has no default`},
		},
		{
			name: "null key",
			setup: func(t *testing.T, f *scoreFixture) {
				writeParquet(t, filepath.Join(f.dir, "bad.parquet"), []nullKey{{UserID: ptr(int64(1)), SKU: "i1"}, {SKU: "i2"}})
			},
			args: larder.ScoreArgs{Ranker: "feed", Input: "bad.parquet", Output: "out.parquet"},
			want: []string{"bad.parquet row 1", `the int64 key of entity "user" (column "user_id") is null`},
		},
		{
			name: "view never published",
			setup: func(t *testing.T, f *scoreFixture) {
				f.project = scoreProject(t, f.dir)
				f.project.Name = "other" // a project with nothing published
				f.store = store.New(redistest.Start(t).Client(), "other", store.Options{})
			},
			args: larder.ScoreArgs{Ranker: "feed", Input: "in.parquet", Output: "out.parquet"},
			want: []string{`input view "user_profile" has no live generation`},
			is:   larder.ErrNoGeneration,
		},
		{
			name: "model of the wrong shape",
			setup: func(t *testing.T, f *scoreFixture) {
				writeModel(t, filepath.Join(f.dir, "ranker.onnx"), 8, 1, 7)
			},
			args: larder.ScoreArgs{Ranker: "feed", Input: "in.parquet", Output: "out.parquet"},
			want: []string{"load model", `"features" [N, 9]`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newScoreFixture(t)
			writeParquet(t, filepath.Join(f.dir, "in.parquet"), good)
			if tt.setup != nil {
				tt.setup(t, f)
			}
			before := listDir(t, f.dir)
			_, err := f.materializer(materializer.Options{}).Score(context.Background(), tt.args)
			if err == nil {
				t.Fatal("Score succeeded, want an error")
			}
			t.Log(err)
			for _, s := range tt.want {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not contain %q", err, s)
				}
			}
			if tt.notWant != "" && strings.Contains(err.Error(), tt.notWant) {
				t.Errorf("error %q contains %q", err, tt.notWant)
			}
			if larder.IsInvalid(err) != tt.invalid {
				t.Errorf("IsInvalid = %v, want %v", larder.IsInvalid(err), tt.invalid)
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("error does not wrap %v", tt.is)
			}
			if after := listDir(t, f.dir); !slices.Equal(after, before) {
				t.Errorf("files before: %v, after: %v", before, after)
			}
		})
	}
}

// TestScoreOutputNotAnInput checks that a job refuses to write over one of
// its input files, among them (a new file its input's folder or glob would
// read), or over or among a source's files, and leaves them as they were.
func TestScoreOutputNotAnInput(t *testing.T) {
	f := newScoreFixture(t)
	for _, name := range []string{"in.parquet", "inputs/a.parquet", "inputs/b.parquet"} {
		writeParquet(t, filepath.Join(f.dir, name), rankInputs(20))
	}
	if err := os.MkdirAll(filepath.Join(f.dir, "users"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(f.dir, "users", "part-0.parquet"), []byte("the users' events"), 0o644); err != nil {
		t.Fatal(err)
	}
	f.project.File = filepath.Join(f.dir, "larder.yaml")
	if err := os.WriteFile(f.project.File, []byte("project: score\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	m := f.materializer(materializer.Options{})
	for _, c := range []struct {
		name, input, output, want string
	}{
		{"an input file of its folder", "inputs", "inputs/b.parquet", "is one of the input files"},
		{"an input file of its glob", "inputs/*.parquet", "inputs/a.parquet", "is one of the input files"},
		{"a new file in the input's folder", "inputs", "inputs/c.parquet", "the input's folder or glob would read it"},
		{"a new file the input's glob matches", "inputs/*.parquet", "inputs/c.parquet", "the input's folder or glob would read it"},
		{"a source's file", "in.parquet", "users/part-0.parquet", `source "users"`},
		{"a new file in a source's folder", "in.parquet", "users/part-1.parquet", `source "users"`},
		{"the ranker's model", "in.parquet", "ranker.onnx", `the model of ranker "feed"`},
		{"another ranker's model", "in.parquet", "peers.onnx", "the model of ranker"},
		{"the project file", "in.parquet", "larder.yaml", "the project file"},
	} {
		t.Run(c.name, func(t *testing.T) {
			before := listDir(t, f.dir)
			output := filepath.Join(f.dir, c.output)
			content, err := os.ReadFile(output)
			if errors.Is(err, os.ErrNotExist) {
				// A file written in spite of the check must not reach the
				// next case's inputs.
				t.Cleanup(func() { os.Remove(output) })
			}
			_, err = m.Score(context.Background(), larder.ScoreArgs{Ranker: "feed", Input: c.input, Output: output})
			if err == nil || !strings.Contains(err.Error(), c.want) || !larder.IsInvalid(err) {
				t.Fatalf("err = %v, want an invalid-argument error saying %q", err, c.want)
			}
			if after := listDir(t, f.dir); !slices.Equal(after, before) {
				t.Errorf("files before: %v, after: %v", before, after)
			}
			if after, _ := os.ReadFile(output); !bytes.Equal(after, content) {
				t.Errorf("%s changed", c.output)
			}
		})
	}
}

// TestScoreCancelled cancels a job after a few batches: it returns the
// context's error and leaves no output file, partial or temporary; an
// output already there stays as it was.
func TestScoreCancelled(t *testing.T) {
	f := newScoreFixture(t)
	writeParquet(t, filepath.Join(f.dir, "in.parquet"), rankInputs(2000), smallGroups(100)...)
	if err := os.WriteFile(filepath.Join(f.dir, "old.parquet"), []byte("the previous output"), 0o644); err != nil {
		t.Fatal(err)
	}
	before := listDir(t, f.dir)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	calls := 0
	opts := materializer.Options{Models: func(spec larder.ModelSpec) (larder.Model, error) {
		model, err := modelLoader(f.rt)(spec)
		if err != nil {
			return nil, err
		}
		return &cancellingModel{Model: model, after: 3, cancel: cancel, calls: &calls}, nil
	}}
	_, err := f.materializer(opts).Score(ctx, larder.ScoreArgs{Ranker: "feed", Input: "in.parquet", Output: "old.parquet", BatchSize: 50})
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Score = %v, want context.Canceled", err)
	}
	if after := listDir(t, f.dir); !slices.Equal(after, before) {
		t.Errorf("files before: %v, after: %v", before, after)
	}
	if b, _ := os.ReadFile(filepath.Join(f.dir, "old.parquet")); string(b) != "the previous output" {
		t.Errorf("the previous output was changed")
	}
}

// listDir lists the files under dir, hidden ones included.
func listDir(tb testing.TB, dir string) []string {
	tb.Helper()
	var names []string
	err := filepath.WalkDir(dir, func(path string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if !d.IsDir() {
			rel, _ := filepath.Rel(dir, path)
			names = append(names, rel)
		}
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
	return names
}
