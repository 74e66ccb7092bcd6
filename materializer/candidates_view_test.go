package materializer_test

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/larder-dev/larder"
	"github.com/larder-dev/larder/materializer"
	"github.com/larder-dev/larder/redistest"
	"github.com/larder-dev/larder/store"
)

// viewCandProject returns a validated project in dir: entities category
// (category_id of catType) and item (item_id of itemType); latest views
// item_profile (category of catType, price float64; max age 1h) and
// item_stats (popularity float32; never stale), both over source items;
// the prediction view item_prior (p_click float32 over item_profile:price,
// max age 1h); and the candidates view "v" of items per category, from
// fromView's score feature, with context item_profile:category. View "v"
// keeps non-finite scores, so that its lists are compared with the
// reference's as computed (value_rules_test.go tests the rules).
func viewCandProject(tb testing.TB, dir string, catType, itemType larder.Type, fromView, score string, topK int) *larder.Project {
	tb.Helper()
	p := &larder.Project{
		Name: "vcands",
		Dir:  dir,
		Entities: []*larder.Entity{
			{Name: "category", Key: "category_id", KeyType: catType},
			{Name: "item", Key: "item_id", KeyType: itemType},
		},
		Sources: []*larder.Source{{Name: "items", Path: "items", EventTime: "ts"}},
		Views: []*larder.View{
			{Name: "v", Kind: larder.KindCandidates, Entity: "category",
				Candidates: &larder.Candidates{Entity: "item", FromView: fromView, ScoreFeature: score, Context: "item_profile:category", TopK: topK},
				NonFinite:  larder.PolicyKeep},
			{Name: "item_prior", Kind: larder.KindPrediction, Entity: "item", MaxAge: time.Hour,
				Prediction: &larder.Prediction{Model: "prior.onnx", Inputs: []larder.RankerInput{{Ref: "item_profile:price"}}},
				Features:   []larder.Feature{{Name: "p_click", Type: larder.TypeFloat32}}},
			{Name: "item_profile", Kind: larder.KindLatest, Entity: "item", Source: "items", MaxAge: time.Hour,
				Features: []larder.Feature{{Name: "category", Type: catType}, {Name: "price", Type: larder.TypeFloat64}}},
			{Name: "item_stats", Kind: larder.KindLatest, Entity: "item", Source: "items",
				Features: []larder.Feature{{Name: "popularity", Type: larder.TypeFloat32}}},
		},
	}
	p.SetDefaults()
	if err := p.Validate(); err != nil {
		tb.Fatalf("invalid test project: %v", err)
	}
	return p
}

// viewCandData is the content of the views a view-fed candidates view
// reads, by view and key.
type viewCandData map[string]map[larder.Key]larder.Row

// randomViewCandData returns rows for items 0..n-1 in item_profile,
// item_prior and item_stats: few distinct scores (ties), null and NaN
// scores, missing, null and stale contexts, stale scores, and event times
// that differ by the minute.
func randomViewCandData(n, categories int, catType, itemType larder.Type, runTime time.Time, seed uint64) viewCandData {
	rng := rand.New(rand.NewPCG(seed, 5))
	d := viewCandData{"item_profile": {}, "item_prior": {}, "item_stats": {}}
	key := func(id int, t larder.Type, prefix string) larder.Key {
		if t == larder.TypeString {
			return larder.StringKey(fmt.Sprintf("%s%d", prefix, id))
		}
		return larder.Int64Key(int64(id) - 3)
	}
	when := func() time.Time {
		if rng.IntN(20) == 0 {
			return runTime.Add(-2 * time.Hour) // stale in views with a max age of 1h
		}
		return runTime.Add(-time.Duration(rng.IntN(30)) * time.Minute)
	}
	score := func() float64 {
		switch x := rng.Float64(); {
		case x < 0.03:
			return math.NaN()
		case x < 0.6:
			return []float64{-1, 0, 0.25, 0.5, 1, math.Inf(1)}[rng.IntN(6)]
		}
		return float64(rng.IntN(1000)) / 64
	}
	for id := range n {
		k := key(id, itemType, "item-")
		if rng.IntN(15) != 0 { // some items have no profile
			cat := larder.Null
			if rng.IntN(25) != 0 {
				ck := key(rng.IntN(categories), catType, "cat-")
				cat = larder.Int64Value(ck.Int64())
				if catType == larder.TypeString {
					cat = larder.StringValue(ck.Str())
				}
			}
			price := larder.Float64Value(score())
			if rng.IntN(25) == 0 {
				price = larder.Null
			}
			d["item_profile"][k] = larder.Row{EventTime: when(), Values: []larder.Value{cat, price}}
		}
		p := larder.Float32Value(float32(score()))
		if rng.IntN(25) == 0 {
			p = larder.Null
		}
		d["item_prior"][k] = larder.Row{EventTime: when(), Values: []larder.Value{p}}
		if rng.IntN(10) != 0 {
			pop := larder.Float32Value(float32(score()))
			if rng.IntN(25) == 0 {
				pop = larder.Null
			}
			d["item_stats"][k] = larder.Row{EventTime: when(), Values: []larder.Value{pop}}
		}
	}
	return d
}

// bruteViewCandidates computes view-fed candidates view v the obvious way:
// every entity of its from_view, checked in the documented order, then per
// context every usable candidate sorted by score and key, cut to top_k.
func bruteViewCandidates(v *larder.View, d viewCandData, runTime time.Time) (map[larder.Key]larder.Row, map[string]int64) {
	c := v.Candidates
	fv, score := c.FromViewDef()
	cv, feature := c.ContextDef()
	type cand struct {
		key   larder.Key
		score float64
		ts    time.Time
	}
	perCtx := map[larder.Key][]cand{}
	skipped := map[string]int64{}
	stale := func(view *larder.View, t time.Time) bool { return view.MaxAge > 0 && runTime.Sub(t) > view.MaxAge }
	for k, srow := range d[fv.Name] {
		s, ok := srow.Values[score].Number()
		crow, found := d[cv.Name][k]
		var reason string
		switch {
		case stale(fv, srow.EventTime):
			reason = materializer.SkipStaleScore
		case !ok:
			reason = materializer.SkipNullScore
		case math.IsNaN(s):
			reason = materializer.SkipNaNScore
		case !found:
			reason = materializer.SkipNoContext
		case stale(cv, crow.EventTime):
			reason = materializer.SkipStaleContext
		case crow.Values[feature].IsNull():
			reason = materializer.SkipNullContext
		}
		if reason != "" {
			skipped[reason]++
			continue
		}
		cval := crow.Values[feature]
		ck := larder.Int64Key(cval.Int64())
		if cval.Type() == larder.TypeString {
			ck = larder.StringKey(cval.Str())
		}
		perCtx[ck] = append(perCtx[ck], cand{key: k, score: s, ts: srow.EventTime})
	}
	rows := map[larder.Key]larder.Row{}
	for ck, cands := range perCtx {
		slices.SortFunc(cands, func(a, b cand) int {
			if c := cmp.Compare(b.score, a.score); c != 0 {
				return c
			}
			if a.key.Type() == larder.TypeString {
				return strings.Compare(a.key.Str(), b.key.Str())
			}
			return cmp.Compare(a.key.Int64(), b.key.Int64())
		})
		cands = cands[:min(len(cands), c.TopK)]
		var ints []int64
		var strs []string
		scores := []float32{}
		var ts time.Time
		for _, x := range cands {
			if x.key.Type() == larder.TypeString {
				strs = append(strs, x.key.Str())
			} else {
				ints = append(ints, x.key.Int64())
			}
			scores = append(scores, float32(x.score))
			if x.ts.After(ts) {
				ts = x.ts
			}
		}
		list := larder.Int64ListValue(ints)
		if c.EntityDef().KeyType == larder.TypeString {
			list = larder.StringListValue(strs)
		}
		rows[ck] = larder.Row{EventTime: ts, Values: []larder.Value{list, larder.Float32VectorValue(scores)}}
	}
	return rows, skipped
}

// publishViewCandData publishes the rows of d as the live generations of
// the project's views.
func publishViewCandData(tb testing.TB, st *store.Store, p *larder.Project, d viewCandData) {
	tb.Helper()
	for name, rows := range d {
		publishRows(tb, st, p.View(name), rows)
	}
}

func TestCandidatesFromViewMatchBruteForce(t *testing.T) {
	srv := redistest.Start(t)
	tests := []struct {
		name              string
		catType, itemType larder.Type
		fromView, score   string
		items, categories int
		topK              int
		seed              uint64
	}{
		{"prediction scores, int64 keys", larder.TypeInt64, larder.TypeInt64, "item_prior", "p_click", 3000, 12, 7, 1},
		{"string keys", larder.TypeString, larder.TypeString, "item_prior", "p_click", 3000, 12, 5, 2},
		{"string contexts, int64 candidates", larder.TypeString, larder.TypeInt64, "item_prior", "p_click", 2000, 9, 3, 3},
		{"score and context from one view", larder.TypeInt64, larder.TypeString, "item_profile", "price", 2500, 10, 8, 4},
		{"score view never stale", larder.TypeInt64, larder.TypeInt64, "item_stats", "popularity", 2000, 8, 6, 5},
		{"top k above every list", larder.TypeInt64, larder.TypeInt64, "item_prior", "p_click", 400, 5, 1000, 6},
		{"top k of one", larder.TypeString, larder.TypeInt64, "item_prior", "p_click", 1500, 7, 1, 7},
	}
	for i, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p := viewCandProject(t, t.TempDir(), tt.catType, tt.itemType, tt.fromView, tt.score, tt.topK)
			p.Name = fmt.Sprintf("vcands%d", i)
			st := store.New(srv.Client(), p.Name, store.Options{})
			runTime := baseTime.Add(time.Hour)
			d := randomViewCandData(tt.items, tt.categories, tt.catType, tt.itemType, runTime, tt.seed)
			publishViewCandData(t, st, p, d)
			v := p.View("v")
			want, wantSkipped := bruteViewCandidates(v, d, runTime)

			rep, err := materializer.New(p, st, materializer.Options{Now: fixedClock(runTime), Reader: st}).Run(context.Background(), "v")
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
			got, gen := readAll(t, srv.Client(), p, keysOf(want))
			if d := diffRows(got, want); d != "" {
				t.Errorf("live rows differ from the brute-force result:\n%s", d)
			}
			fv, _ := v.Candidates.FromViewDef()
			if gen.ID != rep.Generation || rep.EntitiesWritten != int64(len(want)) || gen.Rows != int64(len(want)) || rep.RowsRead != int64(len(d[fv.Name])) {
				t.Errorf("report %+v, generation %+v; want %d candidates read and %d entities written", rep, gen, len(d[fv.Name]), len(want))
			}
			if !equalCounts(rep.Skipped, wantSkipped) {
				t.Errorf("skipped = %v, want %v", rep.Skipped, wantSkipped)
			}
			reasons := []string{materializer.SkipNullScore, materializer.SkipNaNScore, materializer.SkipNullContext}
			if fv.MaxAge > 0 {
				reasons = append(reasons, materializer.SkipStaleScore)
			}
			if cv, _ := v.Candidates.ContextDef(); cv != fv {
				// One view: a candidate with a score has a context row,
				// fresh when its score is.
				reasons = append(reasons, materializer.SkipNoContext, materializer.SkipStaleContext)
			}
			for _, reason := range reasons {
				if wantSkipped[reason] == 0 {
					t.Errorf("the fixture has no candidate skipped for %q: it tests less than it should", reason)
				}
			}
			checkViewCandFixture(t, want, tt.topK)
		})
	}
}

// checkViewCandFixture fails tb unless the result holds what the comparison
// must cover: ties on score within a list, and (for small top_k) full lists.
func checkViewCandFixture(tb testing.TB, want map[larder.Key]larder.Row, topK int) {
	tb.Helper()
	ties, full := 0, 0
	for _, row := range want {
		s := row.Values[1].Vector()
		for i := 1; i < len(s); i++ {
			if s[i] == s[i-1] {
				ties++
			}
		}
		if len(s) == topK {
			full++
		}
	}
	if topK > 1 && ties == 0 {
		tb.Errorf("no list holds equal scores: the tie rule is not tested")
	}
	if topK < 100 && full == 0 {
		tb.Errorf("no list is cut at %d: the cut is not tested", topK)
	}
}

// TestCandidatesFromViewSemantics spells out the rules on a handful of
// items.
func TestCandidatesFromViewSemantics(t *testing.T) {
	srv := redistest.Start(t)
	p := viewCandProject(t, t.TempDir(), larder.TypeString, larder.TypeInt64, "item_prior", "p_click", 2)
	st := store.New(srv.Client(), p.Name, store.Options{})
	runTime := baseTime
	fresh, older, stale := runTime.Add(-time.Minute), runTime.Add(-30*time.Minute), runTime.Add(-2*time.Hour)
	profile := func(cat string, at time.Time) larder.Row {
		c := larder.StringValue(cat)
		if cat == "" {
			c = larder.Null
		}
		return larder.Row{EventTime: at, Values: []larder.Value{c, larder.Float64Value(1)}}
	}
	prior := func(s float32, at time.Time) larder.Row {
		return larder.Row{EventTime: at, Values: []larder.Value{larder.Float32Value(s)}}
	}
	k := larder.Int64Key
	publishViewCandData(t, st, p, viewCandData{
		"item_profile": {
			k(1): profile("books", fresh), k(2): profile("books", fresh), k(3): profile("books", fresh),
			k(4): profile("books", older), k(5): profile("toys", fresh),
			k(6): profile("toys", stale), // stale context
			k(7): profile("", fresh),     // null context
			// 8 has no profile
			k(9): profile("toys", fresh),
		},
		"item_prior": {
			k(1): prior(0.5, fresh), k(2): prior(0.9, older), k(3): prior(0.9, fresh), // 2 and 3 tie: by key
			k(4): prior(0.95, fresh),
			k(5): prior(0.1, fresh), k(6): prior(0.99, fresh), k(7): prior(0.99, fresh), k(8): prior(0.99, fresh),
			k(9):  prior(0.99, stale), // stale score
			k(10): prior(0.99, fresh), // no profile either
		},
		"item_stats": {},
	})
	rep, err := materializer.New(p, st, materializer.Options{Now: fixedClock(runTime), Reader: st}).Run(context.Background(), "v")
	if err != nil {
		t.Fatal(err)
	}
	want := map[larder.Key]larder.Row{
		larder.StringKey("books"): {EventTime: fresh, Values: []larder.Value{larder.Int64ListValue([]int64{4, 2}), larder.Float32VectorValue([]float32{0.95, 0.9})}},
		larder.StringKey("toys"):  {EventTime: fresh, Values: []larder.Value{larder.Int64ListValue([]int64{5}), larder.Float32VectorValue([]float32{0.1})}},
	}
	got, _ := readAll(t, srv.Client(), p, keysOf(want, larder.StringKey("games")))
	if d := diffRows(got, want); d != "" {
		t.Errorf("rows differ:\n%s", d)
	}
	wantSkipped := map[string]int64{materializer.SkipStaleContext: 1, materializer.SkipNullContext: 1,
		materializer.SkipNoContext: 2, materializer.SkipStaleScore: 1}
	if !equalCounts(rep.Skipped, wantSkipped) || rep.RowsRead != 10 || rep.EntitiesWritten != 2 {
		t.Errorf("report %+v; want 10 candidates read, 2 lists written, skipped %v", rep, wantSkipped)
	}
}

// TestCandidatesFromViewNeedsLiveViews checks that a run whose views are
// not published writes nothing and says which view to materialize first.
func TestCandidatesFromViewNeedsLiveViews(t *testing.T) {
	srv := redistest.Start(t)
	p := viewCandProject(t, t.TempDir(), larder.TypeInt64, larder.TypeInt64, "item_prior", "p_click", 5)
	st := store.New(srv.Client(), p.Name, store.Options{})
	publishRows(t, st, p.View("item_prior"), map[larder.Key]larder.Row{
		larder.Int64Key(1): {EventTime: baseTime, Values: []larder.Value{larder.Float32Value(1)}},
	})
	m := materializer.New(p, st, materializer.Options{Now: fixedClock(baseTime), Reader: st})
	_, err := m.Run(context.Background(), "v")
	if !errors.Is(err, larder.ErrNoGeneration) || !strings.Contains(err.Error(), `view "item_profile", which it reads, has no live generation: materialize it first`) {
		t.Fatalf("Run = %v, want an error wrapping ErrNoGeneration naming item_profile", err)
	}
	if _, err := st.Live(context.Background(), p.View("v")); !errors.Is(err, larder.ErrNoGeneration) {
		t.Errorf("Live(v) = %v, want ErrNoGeneration: nothing may be published", err)
	}

	_, err = materializer.New(p, st, materializer.Options{Now: fixedClock(baseTime)}).Run(context.Background(), "v")
	if err == nil || !strings.Contains(err.Error(), "needs a store reader") {
		t.Errorf("Run without a reader = %v, want an error saying it needs one", err)
	}
}

// TestCandidatesFromViewInOneRun materializes, in larder.Order, a
// candidates view, the prediction view it ranks by and the latest view its
// context comes from, all from scratch in one pass, as `larder materialize`
// does: the candidates view must run last and see what the others wrote.
func TestCandidatesFromViewInOneRun(t *testing.T) {
	rt := newORT(t)
	srv := redistest.Start(t)
	dir := t.TempDir()
	type itemRow struct {
		ItemID     int64     `parquet:"item_id"`
		Category   string    `parquet:"category"`
		Price      float64   `parquet:"price"`
		Popularity float32   `parquet:"popularity"`
		TS         time.Time `parquet:"ts,timestamp(millisecond)"`
	}
	runTime := baseTime.Add(time.Hour)
	var rows []itemRow
	for id := range int64(300) {
		rows = append(rows, itemRow{ItemID: id, Category: fmt.Sprintf("cat-%d", id%7), Price: float64(id%13) / 4, TS: runTime.Add(-time.Minute)})
	}
	writeParquet(t, filepath.Join(dir, "items", "part-0.parquet"), rows, smallGroups(64)...)
	writeModel(t, filepath.Join(dir, "prior.onnx"), 1, 1, 9)
	p := viewCandProject(t, dir, larder.TypeString, larder.TypeInt64, "item_prior", "p_click", 4)
	st := store.New(srv.Client(), p.Name, store.Options{})
	m := materializer.New(p, st, materializer.Options{Now: fixedClock(runTime), Reader: st, Models: modelLoader(rt)})

	views := []*larder.View{p.View("v"), p.View("item_prior"), p.View("item_profile")}
	var order []string
	for _, v := range larder.Order(views) {
		order = append(order, v.Name)
		if _, err := m.Run(context.Background(), v.Name); err != nil {
			t.Fatalf("Run(%s): %v", v.Name, err)
		}
	}
	if want := []string{"item_profile", "item_prior", "v"}; !slices.Equal(order, want) {
		t.Errorf("order = %v, want %v", order, want)
	}

	// The reference reads back what the first two runs stored.
	d := viewCandData{}
	for _, name := range []string{"item_profile", "item_prior"} {
		v := p.View(name)
		l := &larder.Lookup{View: v}
		for _, r := range rows {
			l.Keys = append(l.Keys, larder.Int64Key(r.ItemID))
		}
		if err := st.Read(context.Background(), []*larder.Lookup{l}); err != nil {
			t.Fatal(err)
		}
		d[name] = map[larder.Key]larder.Row{}
		for i, k := range l.Keys {
			if l.Found[i] {
				d[name][k] = l.Rows[i]
			}
		}
	}
	want, _ := bruteViewCandidates(p.View("v"), d, runTime)
	if len(want) != 7 {
		t.Fatalf("the reference has %d lists, want one per category (7)", len(want))
	}
	got, _ := readAll(t, srv.Client(), p, keysOf(want))
	if diff := diffRows(got, want); diff != "" {
		t.Errorf("rows differ from the reference:\n%s", diff)
	}
}

// BenchmarkCandidatesFromView materializes the top 50 of 200k items per
// category (100 categories) from a prediction view and a profile view in a
// real redis-server; candidates/s is the rate of candidates listed, read and
// ranked, writing included.
func BenchmarkCandidatesFromView(b *testing.B) {
	srv := redistest.Start(b)
	p := viewCandProject(b, b.TempDir(), larder.TypeInt64, larder.TypeInt64, "item_prior", "p_click", 50)
	st := store.New(srv.Client(), p.Name, store.Options{})
	runTime := baseTime.Add(time.Hour)
	const items = 200_000
	d := randomViewCandData(items, 100, larder.TypeInt64, larder.TypeInt64, runTime, 1)
	publishViewCandData(b, st, p, d)
	m := materializer.New(p, st, materializer.Options{Now: fixedClock(runTime), Reader: st})
	b.ResetTimer()
	for b.Loop() {
		if _, err := m.Run(context.Background(), "v"); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(items)*float64(b.N)/b.Elapsed().Seconds(), "candidates/s")
}
