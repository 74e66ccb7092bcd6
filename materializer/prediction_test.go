package materializer_test

import (
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/larder-dev/larder"
	"github.com/larder-dev/larder/materializer"
	"github.com/larder-dev/larder/models"
	"github.com/larder-dev/larder/redistest"
	"github.com/larder-dev/larder/store"
	"github.com/redis/go-redis/v9"
)

// newORT returns an ONNX Runtime for tb, closed when tb ends. The library is
// fetched once into the user's cache folder, as `make setup-onnxruntime`
// does; a missing library fails the test, never skips it.
func newORT(tb testing.TB) *models.Runtime {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	lib, err := models.EnsureLibrary(ctx, os.Stderr)
	if err != nil {
		tb.Fatalf("prediction tests need the ONNX Runtime library: %v", err)
	}
	rt, err := models.NewRuntime(lib)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := rt.Close(); err != nil {
			tb.Errorf("close ONNX Runtime: %v", err)
		}
	})
	return rt
}

// modelLoader is the adapter cmd/larder wires: a larder.ModelSpec loaded as
// a models.Spec.
func modelLoader(rt *models.Runtime) larder.ModelLoader {
	return func(spec larder.ModelSpec) (larder.Model, error) {
		m, err := rt.Load(spec.Path, models.Spec{Input: spec.Input, Output: spec.Output, Features: spec.Features, Outputs: spec.Outputs})
		if err != nil {
			return nil, err
		}
		return m, nil
	}
}

// writeModel exports a random net with features inputs, outputs outputs and
// the given hidden layers (one of 16 by default) to path.
func writeModel(tb testing.TB, path string, features, outputs int, seed uint64, hidden ...int) *models.Net {
	tb.Helper()
	if len(hidden) == 0 {
		hidden = []int{16}
	}
	net, err := models.NewRandomNet(features, hidden, outputs, seed)
	if err != nil {
		tb.Fatal(err)
	}
	var buf bytes.Buffer
	if err := net.WriteONNX(&buf, "features", "score"); err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		tb.Fatal(err)
	}
	return net
}

// predProject returns a validated project in dir: entity user, latest views
// profile (age int64, score float64, active bool, country string; max age
// 1h) and stats (clicks int64, spend float64; never stale), and the
// prediction view pred (p_click, p_buy) over five of their features with
// model.onnx. edit may change pred before validation.
func predProject(tb testing.TB, dir string, edit func(*larder.Prediction)) *larder.Project {
	tb.Helper()
	pr := &larder.Prediction{
		Model: "model.onnx",
		Inputs: []larder.RankerInput{
			{Ref: "profile:age", Default: -1},
			{Ref: "profile:score", Default: 0.5},
			{Ref: "profile:active"},
			{Ref: "stats:clicks", Default: 3},
			{Ref: "stats:spend", Default: 2.5},
		},
	}
	if edit != nil {
		edit(pr)
	}
	p := &larder.Project{
		Name:     "test",
		Dir:      dir,
		Entities: []*larder.Entity{{Name: "user", Key: "user_id", KeyType: larder.TypeInt64}},
		Sources:  []*larder.Source{{Name: "events", Path: "events", EventTime: "ts"}},
		Views: []*larder.View{
			{Name: "profile", Kind: larder.KindLatest, Entity: "user", Source: "events", MaxAge: time.Hour,
				Features: []larder.Feature{
					{Name: "age", Type: larder.TypeInt64}, {Name: "score", Type: larder.TypeFloat64},
					{Name: "active", Type: larder.TypeBool}, {Name: "country", Type: larder.TypeString},
				}},
			{Name: "stats", Kind: larder.KindLatest, Entity: "user", Source: "events",
				Features: []larder.Feature{{Name: "clicks", Type: larder.TypeInt64}, {Name: "spend", Type: larder.TypeFloat64}}},
			{Name: "pred", Kind: larder.KindPrediction, Entity: "user", Prediction: pr,
				Features: []larder.Feature{{Name: "p_click", Type: larder.TypeFloat32}, {Name: "p_buy", Type: larder.TypeFloat32}}},
		},
	}
	p.SetDefaults()
	if err := p.Validate(); err != nil {
		tb.Fatalf("invalid test project: %v", err)
	}
	return p
}

// predData is the content of the input views, by view and key.
type predData map[string]map[larder.Key]larder.Row

// randomPredData returns profile rows for ids 1..n except every seventh,
// stats rows for ids 1..n except every fifth plus ids n+1..n+extraStats;
// profiles of ids divisible by 11 are stale at runTime, and a few values are
// null. Values stay within a few units of zero, like the defaults, so that
// the untrained test model's sigmoids do not saturate.
func randomPredData(n, extraStats int, runTime time.Time, seed uint64) predData {
	rng := rand.New(rand.NewPCG(seed, 3))
	d := predData{"profile": {}, "stats": {}}
	fresh := runTime.Add(-10 * time.Minute)
	orNull := func(v larder.Value) larder.Value {
		if rng.IntN(10) == 0 {
			return larder.Null
		}
		return v
	}
	for id := int64(1); id <= int64(n); id++ {
		if id%7 != 0 {
			at := fresh
			if id%11 == 0 {
				at = runTime.Add(-2 * time.Hour)
			}
			d["profile"][larder.Int64Key(id)] = larder.Row{EventTime: at, Values: []larder.Value{
				orNull(larder.Int64Value(int64(rng.IntN(4)))),
				orNull(larder.Float64Value(rng.Float64())),
				orNull(larder.BoolValue(rng.IntN(2) == 0)),
				larder.StringValue("fr"),
			}}
		}
		if id%5 != 0 {
			d["stats"][larder.Int64Key(id)] = statsRow(rng, runTime)
		}
	}
	for id := int64(n + 1); id <= int64(n+extraStats); id++ {
		d["stats"][larder.Int64Key(id)] = statsRow(rng, runTime)
	}
	return d
}

func statsRow(rng *rand.Rand, runTime time.Time) larder.Row {
	// Old rows: stats never go stale.
	return larder.Row{EventTime: runTime.Add(-100 * time.Hour), Values: []larder.Value{
		larder.Int64Value(int64(rng.IntN(4))), larder.Float64Value(rng.Float64() * 2),
	}}
}

// publishRows writes rows as a new generation of v.
func publishRows(tb testing.TB, st *store.Store, v *larder.View, rows map[larder.Key]larder.Row) {
	tb.Helper()
	ctx := context.Background()
	w, err := st.BeginSized(ctx, v, int64(len(rows)))
	if err != nil {
		tb.Fatal(err)
	}
	for k, r := range rows {
		if err := w.Put(ctx, k, r); err != nil {
			tb.Fatal(err)
		}
	}
	if _, err := w.Publish(ctx); err != nil {
		tb.Fatal(err)
	}
}

// expectedInputs builds the model input of the given keys the obvious way:
// each input's number when its row exists, is fresh at runTime and the value
// is not null, else the input's default.
func expectedInputs(pr *larder.Prediction, d predData, keys []larder.Key, runTime time.Time) []float32 {
	x := make([]float32, 0, len(keys)*len(pr.Inputs))
	for _, k := range keys {
		for _, in := range pr.Inputs {
			v := in.Default
			row, ok := d[in.View.Name][k]
			fresh := in.View.MaxAge == 0 || runTime.Sub(row.EventTime) <= in.View.MaxAge
			if ok && fresh {
				if n, isNum := row.Values[in.Feature].Number(); isNum {
					v = float32(n)
				}
			}
			x = append(x, v)
		}
	}
	return x
}

// predFixture is a prediction project on a real redis-server with a real
// ONNX model, and its input views published.
type predFixture struct {
	dir     string
	project *larder.Project
	client  redis.UniversalClient
	store   *store.Store
	rt      *models.Runtime
	net     *models.Net
	runTime time.Time
}

func newPredFixture(tb testing.TB, edit func(*larder.Prediction)) *predFixture {
	tb.Helper()
	dir := tb.TempDir()
	f := &predFixture{dir: dir, project: predProject(tb, dir, edit), rt: newORT(tb),
		runTime: time.Date(2026, 2, 1, 12, 0, 0, 0, time.UTC)}
	f.client = redistest.Start(tb).Client()
	f.store = store.New(f.client, f.project.Name, store.Options{})
	f.net = writeModel(tb, filepath.Join(dir, "model.onnx"), 5, 2, 1)
	return f
}

func (f *predFixture) publish(tb testing.TB, d predData) {
	tb.Helper()
	for _, name := range []string{"profile", "stats"} {
		if rows, ok := d[name]; ok {
			publishRows(tb, f.store, f.project.View(name), rows)
		}
	}
}

func (f *predFixture) materializer(opts materializer.Options) *materializer.Materializer {
	if opts.Now == nil {
		opts.Now = fixedClock(f.runTime)
	}
	return materializer.New(f.project, f.store, opts)
}

func (f *predFixture) defaultOptions() materializer.Options {
	return materializer.Options{Models: modelLoader(f.rt), Reader: f.store}
}

// storedKeys lists the keys of view's live generation through a new store.
func storedKeys(tb testing.TB, client redis.UniversalClient, p *larder.Project, view string) []larder.Key {
	tb.Helper()
	var keys []larder.Key
	st := store.New(client, p.Name, store.Options{})
	if err := st.Keys(context.Background(), p.View(view), 0, func(ks []larder.Key) error {
		keys = append(keys, ks...)
		return nil
	}); err != nil {
		tb.Fatalf("Keys(%s): %v", view, err)
	}
	return keys
}

func sortKeys(keys []larder.Key) {
	slices.SortFunc(keys, func(a, b larder.Key) int { return cmp.Compare(a.Int64(), b.Int64()) })
}

func TestPredictionMatchesORT(t *testing.T) {
	tests := []struct {
		name         string
		entities     int
		batch        int
		extraStats   int
		entitiesFrom string
	}{
		{name: "one entity", entities: 1, batch: 64},
		{name: "exactly one batch", entities: 64, batch: 64},
		{name: "one past a batch", entities: 65, batch: 64},
		{name: "several batches and a remainder", entities: 1000, batch: 64},
		{name: "batch of one", entities: 40, batch: 1},
		{name: "default batch size", entities: 3000},
		// The entities are the stats view's: entities with no profile,
		// and some in no input view but stats, are scored too.
		{name: "entities from stats", entities: 300, batch: 50, extraStats: 25, entitiesFrom: "stats"},
		// Store writes are still in flight when the last row is Put:
		// they must not run on a context the run has ended.
		{name: "store batches in flight", entities: 20000, batch: 1024},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newPredFixture(t, func(pr *larder.Prediction) {
				pr.BatchSize, pr.EntitiesFrom = tt.batch, tt.entitiesFrom
			})
			data := randomPredData(tt.entities, tt.extraStats, f.runTime, uint64(i))
			f.publish(t, data)
			pr := f.project.View("pred").Prediction
			ev := pr.EntitiesView()
			if want := cmp.Or(tt.entitiesFrom, "profile"); ev.Name != want {
				t.Fatalf("entities view %s, want %s", ev.Name, want)
			}

			rep, err := f.materializer(f.defaultOptions()).Run(context.Background(), "pred")
			if err != nil {
				t.Fatal(err)
			}

			// The entities scored are exactly the entities view's.
			want := storedKeys(t, f.client, f.project, ev.Name)
			got := storedKeys(t, f.client, f.project, "pred")
			sortKeys(want)
			sortKeys(got)
			if len(want) != len(data[ev.Name]) || !slices.Equal(got, want) {
				t.Fatalf("pred holds %d entities, want the %d of %s", len(got), len(want), ev.Name)
			}
			if rep.EntitiesWritten != int64(len(want)) || rep.RowsRead != int64(len(want)) {
				t.Errorf("report: %d read, %d written; want %d", rep.RowsRead, rep.EntitiesWritten, len(want))
			}

			// ONNX Runtime on the whole input matrix at once, built the
			// obvious way, gives the stored values.
			x := expectedInputs(pr, data, want, f.runTime)
			m, err := f.rt.Load(filepath.Join(f.dir, "model.onnx"), models.Spec{Input: "features", Output: "score", Features: 5, Outputs: 2})
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			y := make([]float32, 2*len(want))
			if err := m.Score(context.Background(), x, len(want), y); err != nil {
				t.Fatal(err)
			}
			fwd := make([]float32, 2*len(want))
			f.net.Forward(x, len(want), fwd)

			rows, gen := readRows(t, f.client, f.project, "pred", want)
			if gen.Model != m.Version() || gen.ID != rep.Generation {
				t.Errorf("live generation %d of model %q, want generation %d of model %q", gen.ID, gen.Model, rep.Generation, m.Version())
			}
			maxDiff := 0.0
			for j, k := range want {
				row, ok := rows[k]
				if !ok {
					t.Fatalf("key %v: no row", k)
				}
				if !row.EventTime.Equal(f.runTime) {
					t.Fatalf("key %v: event time %v, want the run time %v", k, row.EventTime, f.runTime)
				}
				for o := range 2 {
					g := row.Values[o].Float32()
					if row.Values[o].Type() != larder.TypeFloat32 {
						t.Fatalf("key %v output %d: %v, want a float32", k, o, row.Values[o])
					}
					if d := math.Abs(float64(g - y[2*j+o])); d > 1e-6 {
						t.Fatalf("key %v output %d: stored %v, ONNX Runtime on the same inputs %v (inputs %v)", k, o, g, y[2*j+o], x[5*j:5*j+5])
					}
					maxDiff = max(maxDiff, math.Abs(float64(g-fwd[2*j+o])))
				}
			}
			if maxDiff > 1e-5 {
				t.Errorf("stored values differ from Net.Forward by up to %g", maxDiff)
			}
		})
	}
}

// readRows reads keys from view's live generation through a new store.
func readRows(tb testing.TB, client redis.UniversalClient, p *larder.Project, view string, keys []larder.Key) (map[larder.Key]larder.Row, larder.Generation) {
	tb.Helper()
	ctx := context.Background()
	st := store.New(client, p.Name, store.Options{})
	l := &larder.Lookup{View: p.View(view), Keys: keys}
	if err := st.Read(ctx, []*larder.Lookup{l}); err != nil {
		tb.Fatalf("Read %s: %v", view, err)
	}
	gen, err := st.Live(ctx, p.View(view))
	if err != nil {
		tb.Fatal(err)
	}
	rows := make(map[larder.Key]larder.Row, len(keys))
	for i, k := range keys {
		if l.Found[i] {
			rows[k] = l.Rows[i]
		}
	}
	return rows, gen
}

// TestPredictionDefaults checks the model input of entities whose inputs
// are missing, null or stale: each stored prediction equals ONNX Runtime's
// output on the input row written out by hand.
func TestPredictionDefaults(t *testing.T) {
	f := newPredFixture(t, nil)
	fresh, stale := f.runTime.Add(-time.Minute), f.runTime.Add(-3*time.Hour)
	row := func(at time.Time, vals ...larder.Value) larder.Row { return larder.Row{EventTime: at, Values: vals} }
	f.publish(t, predData{
		"profile": {
			larder.Int64Key(1): row(fresh, larder.Int64Value(2), larder.Float64Value(0.25), larder.BoolValue(true), larder.Null),
			larder.Int64Key(2): row(stale, larder.Int64Value(2), larder.Float64Value(0.25), larder.BoolValue(true), larder.Null),
			larder.Int64Key(3): row(fresh, larder.Null, larder.Float64Value(0.75), larder.Null, larder.Null),
			larder.Int64Key(4): row(fresh, larder.Int64Value(1), larder.Null, larder.BoolValue(false), larder.Null),
		},
		"stats": {
			larder.Int64Key(1): row(stale.Add(-1000*time.Hour), larder.Int64Value(1), larder.Float64Value(1.5)),
			larder.Int64Key(3): row(fresh, larder.Null, larder.Float64Value(0.125)),
		},
	})
	// Inputs: age (default -1), score (0.5), active (0), clicks (3), spend (2.5).
	want := map[int64][]float32{
		1: {2, 0.25, 1, 1, 1.5},    // all present; stats never go stale
		2: {-1, 0.5, 0, 3, 2.5},    // stale profile, no stats: all defaults
		3: {-1, 0.75, 0, 3, 0.125}, // null age, active and clicks
		4: {1, 0.5, 0, 3, 2.5},     // null score; false is 0; no stats
	}
	if _, err := f.materializer(f.defaultOptions()).Run(context.Background(), "pred"); err != nil {
		t.Fatal(err)
	}
	m, err := f.rt.Load(filepath.Join(f.dir, "model.onnx"), models.Spec{Input: "features", Output: "score", Features: 5, Outputs: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	for id, x := range want {
		t.Run(fmt.Sprint(id), func(t *testing.T) {
			y := make([]float32, 2)
			if err := m.Score(context.Background(), x, 1, y); err != nil {
				t.Fatal(err)
			}
			rows, _ := readRows(t, f.client, f.project, "pred", []larder.Key{larder.Int64Key(id)})
			r, ok := rows[larder.Int64Key(id)]
			if !ok {
				t.Fatal("no row")
			}
			for o := range 2 {
				if g := r.Values[o].Float32(); math.Abs(float64(g-y[o])) > 1e-6 {
					t.Errorf("output %d = %v, want %v (ONNX Runtime on inputs %v)", o, g, y[o], x)
				}
			}
		})
	}
}

func TestPredictionFailsBeforeWriting(t *testing.T) {
	tests := []struct {
		name string
		// setup prepares the fixture; the run must then fail with an error
		// holding every one of want, and wrapping is when set.
		setup func(t *testing.T, f *predFixture) materializer.Options
		want  []string
		is    error
	}{
		{
			name: "input view never published",
			setup: func(t *testing.T, f *predFixture) materializer.Options {
				publishRows(t, f.store, f.project.View("profile"), randomPredData(10, 0, f.runTime, 1)["profile"])
				return f.defaultOptions()
			},
			want: []string{`input view "stats" has no live generation`, "larder materialize stats"},
			is:   larder.ErrNoGeneration,
		},
		{
			name: "model with three outputs for two features",
			setup: func(t *testing.T, f *predFixture) materializer.Options {
				f.publish(t, randomPredData(10, 0, f.runTime, 1))
				writeModel(t, filepath.Join(f.dir, "model.onnx"), 5, 3, 2)
				return f.defaultOptions()
			},
			want: []string{"load model", "model.onnx", `want float32 tensor "score" [N, 2], the file has float32 tensor "score" [N, 3]`},
		},
		{
			name: "model with four inputs for five",
			setup: func(t *testing.T, f *predFixture) materializer.Options {
				f.publish(t, randomPredData(10, 0, f.runTime, 1))
				writeModel(t, filepath.Join(f.dir, "model.onnx"), 4, 2, 2)
				return f.defaultOptions()
			},
			want: []string{`want float32 tensor "features" [N, 5], the file has float32 tensor "features" [N, 4]`},
		},
		{
			name: "missing model file",
			setup: func(t *testing.T, f *predFixture) materializer.Options {
				f.publish(t, randomPredData(10, 0, f.runTime, 1))
				if err := os.Remove(filepath.Join(f.dir, "model.onnx")); err != nil {
					t.Fatal(err)
				}
				return f.defaultOptions()
			},
			want: []string{"load model", "no such file"},
		},
		{
			name: "input view schema changed",
			setup: func(t *testing.T, f *predFixture) materializer.Options {
				f.publish(t, randomPredData(10, 0, f.runTime, 1))
				// The stats generation was written with another schema.
				old := *f.project.View("stats")
				old.Features = []larder.Feature{{Name: "clicks", Type: larder.TypeInt64}}
				st := store.New(f.client, f.project.Name, store.Options{})
				w, err := st.BeginSized(context.Background(), &old, 1)
				if err != nil {
					t.Fatal(err)
				}
				if _, err := w.Publish(context.Background()); err != nil {
					t.Fatal(err)
				}
				return materializer.Options{Models: modelLoader(f.rt), Reader: st}
			},
			want: []string{"stats"},
			is:   larder.ErrSchemaChanged,
		},
		{
			name: "no model loader",
			setup: func(t *testing.T, f *predFixture) materializer.Options {
				f.publish(t, randomPredData(10, 0, f.runTime, 1))
				return materializer.Options{Reader: f.store}
			},
			want: []string{"Options.Models"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newPredFixture(t, nil)
			opts := tt.setup(t, f)
			_, err := f.materializer(opts).Run(context.Background(), "pred")
			if err == nil {
				t.Fatal("Run succeeded, want an error")
			}
			t.Log(err)
			for _, s := range tt.want {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not contain %q", err, s)
				}
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("error %v does not wrap %v", err, tt.is)
			}
			// Nothing of pred was written: not even a generation begun.
			if keys := f.client.Keys(context.Background(), "larder:test:pred:*").Val(); len(keys) != 0 {
				t.Errorf("Redis holds keys of pred: %v", keys)
			}
		})
	}
}

// TestPredictionFailureKeepsLive checks that a run failing during scoring
// (its context ends) aborts its generation and leaves the previous one live.
func TestPredictionFailureKeepsLive(t *testing.T) {
	f := newPredFixture(t, func(pr *larder.Prediction) { pr.BatchSize = 16 })
	f.publish(t, randomPredData(500, 0, f.runTime, 4))
	first, err := f.materializer(f.defaultOptions()).Run(context.Background(), "pred")
	if err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	opts := f.defaultOptions()
	loader := opts.Models
	calls := 0
	opts.Models = func(spec larder.ModelSpec) (larder.Model, error) {
		m, err := loader(spec)
		if err != nil {
			return nil, err
		}
		return &cancellingModel{Model: m, after: 5, cancel: cancel, calls: &calls}, nil
	}
	_, err = f.materializer(opts).Run(ctx, "pred")
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Run = %v, want context.Canceled", err)
	}
	_, gen := readRows(t, f.client, f.project, "pred", nil)
	if gen.ID != first.Generation {
		t.Fatalf("live generation %d, want %d (the first run's)", gen.ID, first.Generation)
	}
	gens, err := f.store.Generations(context.Background(), "pred")
	if err != nil {
		t.Fatal(err)
	}
	if len(gens) != 1 {
		t.Errorf("pred has %d generations, want only the live one: %+v", len(gens), gens)
	}
}

// cancellingModel cancels the run after a number of batches.
type cancellingModel struct {
	larder.Model
	after  int
	calls  *int
	cancel context.CancelFunc
}

func (c *cancellingModel) Score(ctx context.Context, x []float32, n int, out []float32) error {
	*c.calls++
	if *c.calls == c.after {
		c.cancel()
	}
	return c.Model.Score(ctx, x, n, out)
}
