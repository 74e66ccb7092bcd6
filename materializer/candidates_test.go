package materializer_test

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/larder-dev/larder"
	"github.com/larder-dev/larder/materializer"
	"github.com/larder-dev/larder/redistest"
	"github.com/larder-dev/larder/store"
)

// candProject returns a validated project in dir: entities user (user_id)
// and item (item_id) of the given key types, a source of pairs at path with
// event time "ts", and a candidates view "v" of items per user, scored by
// column "score". column is the candidate key column ("" for the default).
// The view keeps non-finite scores, so that its lists are compared with the
// reference's as computed (value_rules_test.go tests the rules).
func candProject(tb testing.TB, dir, path string, userKey, itemKey larder.Type, column string, topK int) *larder.Project {
	tb.Helper()
	p := &larder.Project{
		Name: "cands",
		Dir:  dir,
		Entities: []*larder.Entity{
			{Name: "user", Key: "user_id", KeyType: userKey},
			{Name: "item", Key: "item_id", KeyType: itemKey},
		},
		Sources: []*larder.Source{{Name: "pairs", Path: path, EventTime: "ts"}},
		Views: []*larder.View{{
			Name: "v", Kind: larder.KindCandidates, Entity: "user", Source: "pairs",
			Candidates: &larder.Candidates{Entity: "item", Column: column, ScoreColumn: "score", TopK: topK},
			NonFinite:  larder.PolicyKeep,
		}},
	}
	p.SetDefaults()
	if err := p.Validate(); err != nil {
		tb.Fatalf("invalid test project: %v", err)
	}
	return p
}

type intPair struct {
	UserID *int64     `parquet:"user_id,optional"`
	ItemID *int64     `parquet:"item_id,optional"`
	Score  *float64   `parquet:"score,optional"`
	TS     *time.Time `parquet:"ts,optional,timestamp(millisecond)"`
}

type strPair struct {
	UserID *string    `parquet:"user_id,optional,dict"`
	ItemID *string    `parquet:"item_id,optional,dict"`
	Score  *float32   `parquet:"score,optional"`
	TS     *time.Time `parquet:"ts,optional,timestamp(microsecond)"`
}

// pairRecord is one source row as the brute-force reference sees it; nil
// fields are null.
type pairRecord struct {
	user, item *larder.Key
	score      *float64
	ts         *time.Time
}

func (r intPair) record() pairRecord {
	rec := pairRecord{score: r.Score, ts: r.TS}
	if r.UserID != nil {
		rec.user = ptr(larder.Int64Key(*r.UserID))
	}
	if r.ItemID != nil {
		rec.item = ptr(larder.Int64Key(*r.ItemID))
	}
	return rec
}

func (r strPair) record() pairRecord {
	rec := pairRecord{ts: r.TS}
	if r.UserID != nil {
		rec.user = ptr(larder.StringKey(*r.UserID))
	}
	if r.ItemID != nil {
		rec.item = ptr(larder.StringKey(*r.ItemID))
	}
	if r.Score != nil {
		rec.score = ptr(float64(*r.Score))
	}
	return rec
}

// bruteCandidates computes a candidates view the obvious way, independently
// of the materializer: the newest row of every (user, item) pair, in read
// order, then per user every item sorted by score and key, cut to topK.
func bruteCandidates(records []pairRecord, runTime time.Time, topK int) (map[larder.Key]larder.Row, map[string]int64) {
	type newest struct {
		ts    time.Time
		score float64
	}
	perUser := map[larder.Key]map[larder.Key]newest{}
	skipped := map[string]int64{}
	for _, r := range records {
		var reason string
		switch {
		case r.user == nil:
			reason = materializer.SkipNullKey
		case r.ts == nil:
			reason = materializer.SkipNullEventTime
		case r.ts.After(runTime):
			reason = materializer.SkipAfterRunTime
		case r.item == nil:
			reason = materializer.SkipNullCandidate
		case r.score == nil:
			reason = materializer.SkipNullScore
		case math.IsNaN(*r.score):
			reason = materializer.SkipNaNScore
		}
		if reason != "" {
			skipped[reason]++
			continue
		}
		items := perUser[*r.user]
		if items == nil {
			items = map[larder.Key]newest{}
			perUser[*r.user] = items
		}
		if cur, ok := items[*r.item]; ok && r.ts.Before(cur.ts) {
			continue
		}
		items[*r.item] = newest{ts: *r.ts, score: *r.score}
	}
	rows := map[larder.Key]larder.Row{}
	for user, items := range perUser {
		keys := make([]larder.Key, 0, len(items))
		for k := range items {
			keys = append(keys, k)
		}
		slices.SortFunc(keys, func(a, b larder.Key) int {
			if c := cmp.Compare(items[b].score, items[a].score); c != 0 {
				return c
			}
			if a.Type() == larder.TypeString {
				return strings.Compare(a.Str(), b.Str())
			}
			return cmp.Compare(a.Int64(), b.Int64())
		})
		if len(keys) > topK {
			keys = keys[:topK]
		}
		var ints []int64
		var strs []string
		scores := []float32{}
		var ts time.Time
		for _, k := range keys {
			if k.Type() == larder.TypeString {
				strs = append(strs, k.Str())
			} else {
				ints = append(ints, k.Int64())
			}
			scores = append(scores, float32(items[k].score))
			if items[k].ts.After(ts) {
				ts = items[k].ts
			}
		}
		list := larder.Int64ListValue(ints)
		if strs != nil {
			list = larder.StringListValue(strs)
		}
		rows[user] = larder.Row{EventTime: ts, Values: []larder.Value{list, larder.Float32VectorValue(scores)}}
	}
	return rows, skipped
}

// randomPairs returns n rows over the given numbers of users and items, with
// few distinct scores and times (ties), repeated pairs (duplicates, newer
// and older), nulls in every column, NaN scores and times after runTime.
func randomPairs(rng *rand.Rand, n, users, items int, runTime time.Time) []intPair {
	scores := []float64{-1, 0, 0.25, 0.5, 0.5, 1, 2.5, math.Inf(1)}
	rows := make([]intPair, n)
	for i := range rows {
		var s float64
		switch x := rng.Float64(); {
		case x < 0.01:
			s = math.NaN()
		case x < 0.6:
			s = scores[rng.IntN(len(scores))]
		default:
			s = float64(rng.IntN(1000)) / 100
		}
		// Times step by milliseconds around the run time: exactly at it,
		// before it and after it.
		ts := runTime.Add(time.Duration(rng.IntN(60)-50) * time.Millisecond)
		rows[i] = intPair{
			UserID: maybe(rng, 0.02, int64(rng.IntN(users))-int64(users/4)),
			ItemID: maybe(rng, 0.02, int64(rng.IntN(items))*7-3),
			Score:  maybe(rng, 0.02, s),
			TS:     maybe(rng, 0.02, ts),
		}
	}
	return rows
}

func toStrPairs(rows []intPair) []strPair {
	out := make([]strPair, len(rows))
	for i, r := range rows {
		out[i].TS = r.TS
		if r.UserID != nil {
			out[i].UserID = ptr(fmt.Sprintf("u%d", *r.UserID))
		}
		if r.ItemID != nil {
			out[i].ItemID = ptr(fmt.Sprintf("item-%d", *r.ItemID))
		}
		if r.Score != nil {
			out[i].Score = ptr(float32(*r.Score))
		}
	}
	return out
}

// writePairs writes parts as the files part-00.parquet, part-01.parquet,
// ... of dir (with string keys and FLOAT scores when strs is set; rows cut
// into groups of rowsPerGroup) and returns their rows in the order a run
// reads them. The files are created in reverse order, since a run reads
// them in sorted path order.
func writePairs(tb testing.TB, dir string, parts [][]intPair, strs bool, rowsPerGroup int64) []pairRecord {
	tb.Helper()
	for i := len(parts) - 1; i >= 0; i-- {
		path := filepath.Join(dir, fmt.Sprintf("part-%02d.parquet", i))
		if strs {
			writeParquet(tb, path, toStrPairs(parts[i]), smallGroups(rowsPerGroup)...)
		} else {
			writeParquet(tb, path, parts[i], smallGroups(rowsPerGroup)...)
		}
	}
	var records []pairRecord
	for _, part := range parts {
		if strs {
			for _, r := range toStrPairs(part) {
				records = append(records, r.record())
			}
			continue
		}
		for _, r := range part {
			records = append(records, r.record())
		}
	}
	return records
}

func TestCandidatesMatchBruteForce(t *testing.T) {
	tests := []struct {
		name         string
		strings      bool // string keys and FLOAT scores
		files        int
		rowsPerFile  int
		rowsPerGroup int64
		users, items int
		topK         int
		seed         uint64
	}{
		{"one group", false, 1, 800, 1 << 20, 10, 40, 5, 1},
		{"many groups, many files", false, 3, 1500, 97, 40, 60, 8, 2},
		{"string keys, float scores", true, 3, 1500, 128, 40, 60, 8, 3},
		{"top k above every list", false, 2, 600, 50, 30, 20, 100, 4},
		{"top k of one", true, 2, 900, 200, 25, 30, 1, 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(tt.seed, 9))
			dir := t.TempDir()
			runTime := baseTime.Add(time.Minute)
			parts := make([][]intPair, tt.files)
			for i := range parts {
				parts[i] = randomPairs(rng, tt.rowsPerFile, tt.users, tt.items, runTime)
			}
			records := writePairs(t, filepath.Join(dir, "pairs"), parts, tt.strings, tt.rowsPerGroup)
			keyType := larder.TypeInt64
			if tt.strings {
				keyType = larder.TypeString
			}
			want, wantSkipped := bruteCandidates(records, runTime, tt.topK)
			checkCandidateFixture(t, records, runTime, tt.topK)

			p := candProject(t, dir, "pairs", keyType, keyType, "", tt.topK)
			fs := newFakeStore()
			rep, err := materializer.New(p, fs, materializer.Options{Now: fixedClock(runTime)}).Run(context.Background(), "v")
			if err != nil {
				t.Fatalf("Run: %v", err)
			}
			got, id := fs.liveRows("v")
			if d := diffRows(got, want); d != "" {
				t.Errorf("live rows differ from the brute-force result:\n%s", d)
			}
			if rep.Generation != id || rep.RowsRead != int64(len(records)) || rep.EntitiesWritten != int64(len(want)) || rep.Files != tt.files {
				t.Errorf("report = %+v; want generation %d, %d rows, %d entities, %d files", rep, id, len(records), len(want), tt.files)
			}
			if !equalCounts(rep.Skipped, wantSkipped) {
				t.Errorf("skipped = %v, want %v", rep.Skipped, wantSkipped)
			}
			for _, reason := range []string{materializer.SkipNullKey, materializer.SkipNullEventTime, materializer.SkipAfterRunTime,
				materializer.SkipNullCandidate, materializer.SkipNullScore, materializer.SkipNaNScore} {
				if wantSkipped[reason] == 0 {
					t.Errorf("the fixture has no row skipped for %q: it tests less than it should", reason)
				}
			}
		})
	}
}

// checkCandidateFixture fails tb unless the records hold what the
// comparison must cover: lists cut at topK, ties on score, and repeated
// pairs whose newest row scores lower than an older one (a demotion), or
// ties on time.
func checkCandidateFixture(tb testing.TB, records []pairRecord, runTime time.Time, topK int) {
	tb.Helper()
	type pair struct{ user, item larder.Key }
	seen := map[pair]pairRecord{}
	demoted, timeTies := 0, 0
	perUser := map[larder.Key]map[larder.Key]bool{}
	for _, r := range records {
		if r.user == nil || r.item == nil || r.ts == nil || r.score == nil || r.ts.After(runTime) || math.IsNaN(*r.score) {
			continue
		}
		pk := pair{*r.user, *r.item}
		if old, ok := seen[pk]; ok {
			switch {
			case r.ts.Equal(*old.ts):
				timeTies++
			case r.ts.After(*old.ts) && *r.score < *old.score:
				demoted++
			}
		}
		seen[pk] = r
		if perUser[*r.user] == nil {
			perUser[*r.user] = map[larder.Key]bool{}
		}
		perUser[*r.user][*r.item] = true
	}
	cut := 0
	for _, items := range perUser {
		if len(items) > topK {
			cut++
		}
	}
	if demoted == 0 || timeTies == 0 {
		tb.Errorf("the fixture has %d demotions and %d ties on time among repeated pairs: it tests less than it should", demoted, timeTies)
	}
	if topK < 20 && cut == 0 {
		tb.Errorf("no user has more than %d candidates: the cut is not tested", topK)
	}
}

// TestCandidatesSemantics spells out the rules on a handful of rows.
func TestCandidatesSemantics(t *testing.T) {
	dir := t.TempDir()
	t1, t2, t3 := at(1), at(2), at(3)
	row := func(user, item int64, score float64, ts time.Time) intPair {
		return intPair{UserID: &user, ItemID: &item, Score: &score, TS: &ts}
	}
	writeParquet(t, filepath.Join(dir, "pairs", "a.parquet"), []intPair{
		row(1, 10, 0.5, t1),
		row(1, 12, 0.9, t1), row(1, 11, 0.9, t1), // equal scores: by key
		row(1, 13, 0.99, t1), // demoted below by a newer row...
		row(1, 14, 0.95, t3), // ...and 14's newest row is this one
		row(1, 16, 0.2, t1),
		row(1, 17, 5, at(31)), // after the run time
		row(2, 10, 1, t2),
		{UserID: ptr(int64(3)), ItemID: nil, Score: ptr(1.0), TS: &t1}, // no usable row for user 3
	})
	writeParquet(t, filepath.Join(dir, "pairs", "b.parquet"), []intPair{
		row(1, 13, 0.1, t2),  // newer: 13 drops out
		row(1, 14, 0.99, t2), // older than 14's row above: ignored
		row(1, 16, 0.3, t1),  // as new as 16's row: the later row wins
		{UserID: ptr(int64(3)), ItemID: ptr(int64(1)), Score: nil, TS: &t1},
		{UserID: ptr(int64(3)), ItemID: ptr(int64(1)), Score: ptr(math.NaN()), TS: &t1},
	})
	p := candProject(t, dir, "pairs", larder.TypeInt64, larder.TypeInt64, "", 4)
	fs := newFakeStore()
	rep, err := materializer.New(p, fs, materializer.Options{Now: fixedClock(at(30))}).Run(context.Background(), "v")
	if err != nil {
		t.Fatal(err)
	}
	got, _ := fs.liveRows("v")
	want := map[larder.Key]larder.Row{
		larder.Int64Key(1): {EventTime: t3, Values: []larder.Value{
			larder.Int64ListValue([]int64{14, 11, 12, 10}), larder.Float32VectorValue([]float32{0.95, 0.9, 0.9, 0.5}),
		}},
		larder.Int64Key(2): {EventTime: t2, Values: []larder.Value{
			larder.Int64ListValue([]int64{10}), larder.Float32VectorValue([]float32{1}),
		}},
	}
	if d := diffRows(got, want); d != "" {
		t.Errorf("rows differ:\n%s", d)
	}
	wantSkipped := map[string]int64{
		materializer.SkipAfterRunTime: 1, materializer.SkipNullCandidate: 1,
		materializer.SkipNullScore: 1, materializer.SkipNaNScore: 1,
	}
	if !equalCounts(rep.Skipped, wantSkipped) {
		t.Errorf("skipped = %v, want %v", rep.Skipped, wantSkipped)
	}
	// With the top 6, 16 comes in with its later row's score, and 13 with
	// its newest row's.
	p = candProject(t, dir, "pairs", larder.TypeInt64, larder.TypeInt64, "", 6)
	fs = newFakeStore()
	if _, err := materializer.New(p, fs, materializer.Options{Now: fixedClock(at(30))}).Run(context.Background(), "v"); err != nil {
		t.Fatal(err)
	}
	got, _ = fs.liveRows("v")
	wantList := larder.Int64ListValue([]int64{14, 11, 12, 10, 16, 13})
	wantScores := larder.Float32VectorValue([]float32{0.95, 0.9, 0.9, 0.5, 0.3, 0.1})
	if r := got[larder.Int64Key(1)]; !r.Values[0].Equal(wantList) || !r.Values[1].Equal(wantScores) {
		t.Errorf("user 1 = %v %v, want %v %v", r.Values[0], r.Values[1], wantList, wantScores)
	}
}

type otherColumnPair struct {
	UserID int64     `parquet:"user_id"`
	Other  string    `parquet:"other_item"`
	Score  float32   `parquet:"score"`
	TS     time.Time `parquet:"ts,timestamp(millisecond)"`
}

type badScorePair struct {
	UserID int64     `parquet:"user_id"`
	ItemID int64     `parquet:"item_id"`
	Score  string    `parquet:"score"`
	TS     time.Time `parquet:"ts,timestamp(millisecond)"`
}

type badItemPair struct {
	UserID int64     `parquet:"user_id"`
	ItemID float64   `parquet:"item_id"`
	Score  float64   `parquet:"score"`
	TS     time.Time `parquet:"ts,timestamp(millisecond)"`
}

// TestCandidatesColumns checks the candidate column's default and override,
// and that a column of the wrong type or a missing one fails before
// anything is written.
func TestCandidatesColumns(t *testing.T) {
	dir := t.TempDir()
	writeParquet(t, filepath.Join(dir, "other.parquet"), []otherColumnPair{
		{1, "b", 0.5, at(1)}, {1, "a", 0.5, at(1)}, {1, "c", 0.75, at(1)}, {2, "a", -1, at(2)},
	})
	p := candProject(t, dir, "other.parquet", larder.TypeInt64, larder.TypeString, "other_item", 10)
	fs, _ := runView(t, p, at(10))
	got, _ := fs.liveRows("v")
	want := map[larder.Key]larder.Row{
		larder.Int64Key(1): {EventTime: at(1), Values: []larder.Value{
			larder.StringListValue([]string{"c", "a", "b"}), larder.Float32VectorValue([]float32{0.75, 0.5, 0.5})}},
		larder.Int64Key(2): {EventTime: at(2), Values: []larder.Value{
			larder.StringListValue([]string{"a"}), larder.Float32VectorValue([]float32{-1})}},
	}
	if d := diffRows(got, want); d != "" {
		t.Errorf("rows differ:\n%s", d)
	}

	writeParquet(t, filepath.Join(dir, "badscore.parquet"), []badScorePair{{1, 2, "high", at(1)}})
	writeParquet(t, filepath.Join(dir, "baditem.parquet"), []badItemPair{{1, 2.5, 1, at(1)}})
	errTests := []struct {
		name string
		p    *larder.Project
		want []string
	}{
		{"score of the wrong type", candProject(t, dir, "badscore.parquet", larder.TypeInt64, larder.TypeInt64, "", 10),
			[]string{"badscore.parquet", `"score"`, "BYTE_ARRAY", "DOUBLE, FLOAT, INT64 or INT32"}},
		{"candidate key of the wrong type", candProject(t, dir, "baditem.parquet", larder.TypeInt64, larder.TypeInt64, "", 10),
			[]string{"baditem.parquet", `"item_id"`, `key of entity "item"`, "DOUBLE", "INT64 or INT32"}},
		{"default candidate column missing", candProject(t, dir, "other.parquet", larder.TypeInt64, larder.TypeString, "", 10),
			[]string{"other.parquet", `no column "item_id"`, "other_item"}},
	}
	for _, tt := range errTests {
		t.Run(tt.name, func(t *testing.T) {
			fs := newFakeStore()
			_, err := materializer.New(tt.p, fs, materializer.Options{Now: fixedClock(at(10))}).Run(context.Background(), "v")
			if err == nil {
				t.Fatal("Run succeeded")
			}
			for _, s := range tt.want {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("error %q does not say %q", err, s)
				}
			}
			var ce *materializer.ColumnError
			if !errors.As(err, &ce) {
				t.Errorf("error %v is not a *ColumnError", err)
			}
			if b, _, _ := fs.counts(); b != 0 {
				t.Errorf("a generation was begun for a source that cannot feed the view")
			}
		})
	}
}

// TestCandidatesRedis materializes a candidates view into a real
// redis-server and reads it back through the store.
func TestCandidatesRedis(t *testing.T) {
	srv := redistest.Start(t)
	rng := rand.New(rand.NewPCG(11, 3))
	dir := t.TempDir()
	runTime := baseTime.Add(time.Minute)
	rows := randomPairs(rng, 3000, 50, 80, runTime)
	strs := toStrPairs(rows)
	writeParquet(t, filepath.Join(dir, "pairs.parquet"), strs, smallGroups(500)...)
	var records []pairRecord
	for _, r := range strs {
		records = append(records, r.record())
	}
	want, _ := bruteCandidates(records, runTime, 7)
	p := candProject(t, dir, "pairs.parquet", larder.TypeString, larder.TypeString, "", 7)
	st := store.New(srv.Client(), p.Name, store.Options{})
	rep, err := materializer.New(p, st, materializer.Options{Now: fixedClock(runTime)}).Run(context.Background(), "v")
	if err != nil {
		t.Fatal(err)
	}
	got, gen := readAll(t, srv.Client(), p, keysOf(want, larder.StringKey("nobody")))
	if gen.ID != rep.Generation || gen.Rows != int64(len(want)) {
		t.Errorf("live generation %+v, want %d with %d rows", gen, rep.Generation, len(want))
	}
	if d := diffRows(got, want); d != "" {
		t.Errorf("rows read back differ from the brute-force result:\n%s", d)
	}
}

// memProbe is a GenerationStore that drops what it is given and, on the
// first Put (when every pair and every list is in memory), records the
// heap in use.
type memProbe struct{ heap uint64 }

func (p *memProbe) Begin(context.Context, *larder.View, larder.BeginOptions) (larder.GenerationWriter, error) {
	return &memProbeWriter{p: p}, nil
}

type memProbeWriter struct {
	p    *memProbe
	puts int
}

func (w *memProbeWriter) ID() int64 { return 1 }
func (w *memProbeWriter) Put(context.Context, larder.Key, larder.Row) error {
	if w.puts == 0 {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		w.p.heap = ms.HeapAlloc
	}
	w.puts++
	return nil
}
func (w *memProbeWriter) Abort(context.Context) error { return nil }
func (w *memProbeWriter) Publish(context.Context) (larder.Generation, error) {
	return larder.Generation{ID: 1}, nil
}

// BenchmarkCandidates1M materializes a candidates view from 1M scored pairs
// (10k users, 100 distinct items each out of 100k, top 50) into a no-op store, and
// reports rows/s and the heap held per distinct pair.
func BenchmarkCandidates1M(b *testing.B) {
	const users, perUser = 10_000, 100
	dir := b.TempDir()
	rng := rand.New(rand.NewPCG(5, 5))
	rows := make([]intPair, 0, users*perUser)
	for u := range users {
		for i := range perUser {
			rows = append(rows, intPair{
				UserID: ptr(int64(u)), ItemID: ptr(int64(rng.IntN(1000))*100 + int64(i)),
				Score: ptr(rng.Float64()), TS: ptr(baseTime.Add(-time.Duration(rng.IntN(86400)) * time.Second)),
			})
		}
	}
	rng.Shuffle(len(rows), func(i, j int) { rows[i], rows[j] = rows[j], rows[i] })
	writeParquet(b, filepath.Join(dir, "pairs.parquet"), rows)
	rows = nil
	p := candProject(b, dir, "pairs.parquet", larder.TypeInt64, larder.TypeInt64, "", 50)
	probe := &memProbe{}
	m := materializer.New(p, probe, materializer.Options{Now: fixedClock(baseTime)})
	b.ReportAllocs()
	var perPair float64
	cpu0 := candCPU(b)
	for b.Loop() {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		if _, err := m.Run(context.Background(), "v"); err != nil {
			b.Fatal(err)
		}
		perPair = float64(probe.heap-min(probe.heap, ms.HeapAlloc)) / (users * perUser)
	}
	// The CPU time, which includes the forced collections, is the steadier
	// figure on a shared machine.
	b.ReportMetric(float64(users*perUser)*float64(b.N)/b.Elapsed().Seconds(), "rows/s")
	b.ReportMetric(float64(users*perUser)*float64(b.N)/(candCPU(b)-cpu0).Seconds(), "rows/cpu-s")
	b.ReportMetric(perPair, "heap-B/pair")
}

// candCPU returns the CPU time the process has used.
func candCPU(tb testing.TB) time.Duration {
	tb.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
