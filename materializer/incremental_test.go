package materializer_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/larder-dev/larder"
	"github.com/larder-dev/larder/materializer"
	"github.com/larder-dev/larder/redistest"
	"github.com/larder-dev/larder/store"
	"github.com/parquet-go/parquet-go"
	"github.com/redis/go-redis/v9"
)

// incrementalFixture is a latest view "v" over the folder data/ of a
// temporary project, fully materialized into a real redis-server as of
// at(100). The folder holds two files in event-time order, cut into row
// groups of 500 rows:
//
//	a.parquet  users    0-999   at(0)-at(29)   both row groups older than the watermark
//	b.parquet  users 1000-1999  at(30)-at(49)  the second row group holds the watermark, at(49)
type incrementalFixture struct {
	dir    string
	p      *larder.Project
	client *redis.Client
	st     *store.Store
	// full is what the full run stored: the expected rows before any
	// incremental run.
	full map[larder.Key]larder.Row
	gen  int64
	// records are the rows of a and b, in read order.
	records []record
}

func newIncrementalFixture(tb testing.TB) *incrementalFixture {
	tb.Helper()
	f := &incrementalFixture{dir: tb.TempDir()}
	var a, b []scoreRow
	for i := range 1000 {
		a = append(a, scoreRow{int64(i), at(i * 30 / 1000), float64(i)})
		b = append(b, scoreRow{int64(1000 + i), at(30 + i*20/1000), float64(1000 + i)})
	}
	writeParquet(tb, f.path("a.parquet"), a, parquet.MaxRowsPerRowGroup(500))
	writeParquet(tb, f.path("b.parquet"), b, parquet.MaxRowsPerRowGroup(500))
	f.p = projectFor(tb, f.dir, "data", larder.TypeInt64, scoreFeature)
	f.client = redistest.Start(tb).Client()
	f.st = store.New(f.client, f.p.Name, store.Options{})

	rep, err := f.materializer(at(100), nil).Run(context.Background(), "v")
	if err != nil {
		tb.Fatalf("full run: %v", err)
	}
	f.gen = rep.Generation
	f.records = append(scoreRecords(a), scoreRecords(b)...)
	f.full, _ = bruteLatest(f.records, at(100))
	if wm := f.watermark(tb); !wm.Equal(at(49)) {
		tb.Fatalf("watermark after the full run = %v, want %v", wm, at(49))
	}
	return f
}

func (f *incrementalFixture) path(name string) string { return filepath.Join(f.dir, "data", name) }

func (f *incrementalFixture) materializer(now time.Time, progress func(materializer.Progress)) *materializer.Materializer {
	return materializer.New(f.p, f.st, materializer.Options{Now: fixedClock(now), Progress: progress})
}

func (f *incrementalFixture) watermark(tb testing.TB) time.Time {
	tb.Helper()
	wm, err := store.New(f.client, f.p.Name, store.Options{}).Watermark(context.Background(), f.p.View("v"))
	if err != nil {
		tb.Fatalf("Watermark: %v", err)
	}
	return wm
}

// check fails tb unless the live generation is f.gen and holds exactly want.
func (f *incrementalFixture) check(tb testing.TB, want map[larder.Key]larder.Row) {
	tb.Helper()
	got, gen := readAll(tb, f.client, f.p, keysOf(want, larder.Int64Key(-1), larder.Int64Key(99999)))
	if gen.ID != f.gen || gen.Rows != int64(len(want)) {
		tb.Errorf("live generation %d with %d rows, want generation %d with %d", gen.ID, gen.Rows, f.gen, len(want))
	}
	if d := diffRows(got, want); d != "" {
		tb.Errorf("live rows differ:\n%s", d)
	}
}

func scoreRecords(rows []scoreRow) []record {
	out := make([]record, len(rows))
	for i, r := range rows {
		out[i] = record{key: ptr(larder.Int64Key(r.UserID)), ts: ptr(r.TS), values: []larder.Value{larder.Float64Value(r.Score)}}
	}
	return out
}

// merge returns base updated with the rows of newer that are not older than
// base's: write-if-newer.
func merge(base, newer map[larder.Key]larder.Row) map[larder.Key]larder.Row {
	out := make(map[larder.Key]larder.Row, len(base)+len(newer))
	for k, r := range base {
		out[k] = r
	}
	for k, r := range newer {
		if cur, ok := out[k]; !ok || !r.EventTime.Before(cur.EventTime) {
			out[k] = r
		}
	}
	return out
}

func TestIncrementalRun(t *testing.T) {
	ctx := context.Background()
	f := newIncrementalFixture(t)
	v := f.p.View("v")

	// An online write newer than anything in the files, which does not
	// move the watermark: an incremental writer aborted after one flushed
	// row, as a Push would leave it.
	pushed := larder.Row{EventTime: at(400), Values: []larder.Value{larder.Float64Value(400)}}
	pw, err := store.New(f.client, f.p.Name, store.Options{BatchSize: 1}).BeginIncremental(ctx, v)
	if err != nil {
		t.Fatal(err)
	}
	if err := pw.Put(ctx, larder.Int64Key(300), pushed); err != nil {
		t.Fatal(err)
	}
	if err := pw.Abort(ctx); err != nil {
		t.Fatal(err)
	}
	before := merge(f.full, map[larder.Key]larder.Row{larder.Int64Key(300): pushed})

	// The new file, read after the others.
	var c []scoreRow
	for i := range 100 {
		c = append(c, scoreRow{int64(i), at(60 + i%20), float64(-i)}) // newer: updated
	}
	for i := range 100 {
		c = append(c, scoreRow{int64(100 + i), at(10), -1}) // late, before the watermark: left for a full run
	}
	for i := range 50 {
		c = append(c, scoreRow{int64(5000 + i), at(70), float64(5000 + i)}) // new entities
	}
	c = append(c,
		scoreRow{200, at(1000), -1},  // after the run time
		scoreRow{200, at(20), -1},    // before the watermark
		scoreRow{300, at(80), -1},    // older than the pushed row: left out by the store
		scoreRow{1999, at(49), 7777}, // at the watermark, tied with b's row: read last, so it wins
	)
	writeParquet(t, f.path("c.parquet"), c, parquet.MaxRowsPerRowGroup(100))

	// The rows the run uses: those from the watermark to the run time of
	// the row groups it reads (b's second one, then c's), newest per entity.
	var read []record
	for i := 500; i < 1000; i++ {
		read = append(read, scoreRecords([]scoreRow{{int64(1000 + i), at(30 + i*20/1000), float64(1000 + i)}})...)
	}
	read = append(read, scoreRecords(c)...)
	var used []record
	for _, r := range read {
		if !r.ts.Before(at(49)) {
			used = append(used, r)
		}
	}
	newest, _ := bruteLatest(used, at(500))
	want := merge(before, newest)
	want[larder.Int64Key(300)] = pushed

	var phases []string
	rep, err := f.materializer(at(500), func(p materializer.Progress) {
		if len(phases) == 0 || phases[len(phases)-1] != p.Phase {
			phases = append(phases, p.Phase)
		}
		if p.Phase == materializer.PhaseReading && p.RowsTotal != int64(400+len(c)) {
			t.Errorf("progress: %d rows to read, want %d", p.RowsTotal, 400+len(c))
		}
	}).RunIncremental(ctx, "v")
	if err != nil {
		t.Fatalf("RunIncremental: %v", err)
	}
	// Skipped: a's two row groups, b's first, and c's second (the late
	// rows): 400 rows.
	wantRep := materializer.Report{
		View: "v", Generation: f.gen, Files: 2, RowsRead: int64(400 + len(c)),
		// 201 entities put: 50 of b at the watermark (user 1999 then from
		// c), users 0-99, 50 new ones and user 300, which the store left out.
		EntitiesWritten: 200, OlderRows: 1,
		Skipped: map[string]int64{
			materializer.SkipBeforeWatermark: 450 + 1,
			materializer.SkipAfterRunTime:    1,
		},
		RunTime: at(500), Incremental: true, Watermark: at(49),
		FilesSkipped: 1, RowGroupsSkipped: 4,
	}
	checkReport(t, rep, wantRep)
	if strings.Join(phases, ",") != "reading,writing" {
		t.Errorf("progress phases %v, want reading then writing", phases)
	}
	f.check(t, want)
	if wm := f.watermark(t); !wm.Equal(at(80)) {
		t.Errorf("watermark = %v, want the newest event time put, %v", wm, at(80))
	}

	t.Run("again with no new data", func(t *testing.T) {
		rep, err := f.materializer(at(600), nil).RunIncremental(ctx, "v")
		if err != nil {
			t.Fatal(err)
		}
		// a and b are older than the watermark, at(80); of c's three row
		// groups the last holds it.
		if rep.FilesSkipped != 2 || rep.Files != 1 || rep.RowGroupsSkipped != 6 || rep.RowsRead != int64(len(c)-200) {
			t.Errorf("files %d read, %d skipped; %d row groups skipped; %d rows read: want 1, 2, 6, %d",
				rep.Files, rep.FilesSkipped, rep.RowGroupsSkipped, rep.RowsRead, len(c)-200)
		}
		if rep.EntitiesWritten != 0 || rep.OlderRows != 1 {
			t.Errorf("%d entities written, %d older rows: want 0 and 1 (user 300's row at the watermark, again)", rep.EntitiesWritten, rep.OlderRows)
		}
		f.check(t, want)
		if wm := f.watermark(t); !wm.Equal(at(80)) {
			t.Errorf("watermark = %v, want %v", wm, at(80))
		}
	})

	t.Run("a full run still reads everything", func(t *testing.T) {
		rep, err := f.materializer(at(500), nil).Run(ctx, "v")
		if err != nil {
			t.Fatal(err)
		}
		if rep.Incremental || rep.Files != 3 || rep.RowGroupsSkipped != 0 || rep.RowsRead != int64(2000+len(c)) {
			t.Errorf("full run report %+v: want every file read and no incremental fields", rep)
		}
		// The late rows of users 100-199 count now; the online write does not.
		f.gen = rep.Generation
		all, _ := bruteLatest(append(f.records, scoreRecords(c)...), at(500))
		f.check(t, all)
		if wm := f.watermark(t); !wm.Equal(at(80)) {
			t.Errorf("watermark = %v, want %v", wm, at(80))
		}
	})
}

// checkReport compares the fields of a report that do not depend on timing.
func checkReport(tb testing.TB, got, want materializer.Report) {
	tb.Helper()
	got.Duration, got.RowsPerSecond, got.StartedAt = 0, 0, time.Time{}
	if !equalCounts(got.Skipped, want.Skipped) {
		tb.Errorf("skipped %v, want %v", got.Skipped, want.Skipped)
	}
	got.Skipped, want.Skipped = nil, nil
	if !got.RunTime.Equal(want.RunTime) || !got.Watermark.Equal(want.Watermark) {
		tb.Errorf("run time %v, watermark %v; want %v, %v", got.RunTime, got.Watermark, want.RunTime, want.Watermark)
	}
	got.RunTime, want.RunTime, got.Watermark, want.Watermark = time.Time{}, time.Time{}, time.Time{}, time.Time{}
	if !reflect.DeepEqual(got, want) {
		tb.Errorf("report\n%+v\nwant\n%+v", got, want)
	}
}

func TestIncrementalRefused(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	writeParquet(t, filepath.Join(dir, "data", "a.parquet"), []scoreRow{{1, at(1), 1}})
	w, err := larder.ParseWindow("1h")
	if err != nil {
		t.Fatal(err)
	}
	p := &larder.Project{
		Name:     "test",
		Dir:      dir,
		Entities: []*larder.Entity{{Name: "user", Key: "user_id", KeyType: larder.TypeInt64}},
		Sources:  []*larder.Source{{Name: "events", Path: "data", EventTime: "ts"}},
		Views: []*larder.View{
			{Name: "v", Kind: larder.KindLatest, Entity: "user", Source: "events", Features: []larder.Feature{scoreFeature}},
			{Name: "agg", Kind: larder.KindAggregate, Entity: "user", Source: "events", Aggregations: []larder.Aggregation{
				{Column: "score", Type: larder.TypeFloat64, Functions: []larder.AggFunc{larder.AggCount}, Windows: []larder.Window{w}},
			}},
		},
	}
	p.SetDefaults()
	if err := p.Validate(); err != nil {
		t.Fatal(err)
	}
	st := store.New(redistest.Start(t).Client(), p.Name, store.Options{})

	tests := []struct {
		name  string
		gs    larder.GenerationStore
		view  string
		is    error
		words []string
	}{
		{"before any full run", st, "v", larder.ErrNoGeneration, []string{"materialize v: incremental run:", "run a full `larder materialize v` first"}},
		{"not a latest view", st, "agg", nil, []string{"incremental runs are for latest views", "run a full materialization"}},
		{"unknown view", st, "nope", larder.ErrNotFound, []string{`view "nope"`}},
		{"store without incremental writes", newFakeStore(), "v", nil, []string{"cannot write into a live generation"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := materializer.New(p, tt.gs, materializer.Options{Now: fixedClock(at(100))}).RunIncremental(ctx, tt.view)
			if err == nil {
				t.Fatal("RunIncremental succeeded")
			}
			if tt.is != nil && !errors.Is(err, tt.is) {
				t.Errorf("error %v does not wrap %v", err, tt.is)
			}
			for _, w := range tt.words {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not say %q", err, w)
				}
			}
		})
	}
}

func TestIncrementalFailureKeepsWatermark(t *testing.T) {
	ctx := context.Background()
	f := newIncrementalFixture(t)

	// 5000 new entities, so that writing reports progress (and can be
	// cancelled) before it is done.
	var c []scoreRow
	for i := range 5000 {
		c = append(c, scoreRow{int64(10000 + i), at(60 + i%30), float64(i)})
	}
	writeParquet(t, f.path("c.parquet"), c, parquet.MaxRowsPerRowGroup(1000))
	good, err := os.ReadFile(f.path("c.parquet"))
	if err != nil {
		t.Fatal(err)
	}

	t.Run("corrupt new file", func(t *testing.T) {
		bad := append([]byte(nil), good...)
		for i := len(bad) / 2; i < len(bad)/2+16; i++ {
			bad[i] ^= 0x5a
		}
		if err := os.WriteFile(f.path("c.parquet"), bad, 0o644); err != nil {
			t.Fatal(err)
		}
		_, err := f.materializer(at(500), nil).RunIncremental(ctx, "v")
		if err == nil || !strings.Contains(err.Error(), f.path("c.parquet")) {
			t.Fatalf("RunIncremental error = %v, want one naming %s", err, f.path("c.parquet"))
		}
		f.check(t, f.full)
		if wm := f.watermark(t); !wm.Equal(at(49)) {
			t.Errorf("watermark = %v, want it unchanged at %v", wm, at(49))
		}
	})

	if err := os.WriteFile(f.path("c.parquet"), good, 0o644); err != nil {
		t.Fatal(err)
	}
	newer, _ := bruteLatest(scoreRecords(c), at(500))
	want := merge(f.full, newer)

	t.Run("cancelled while writing", func(t *testing.T) {
		cctx, cancel := context.WithCancel(ctx)
		defer cancel()
		_, err := f.materializer(at(500), func(p materializer.Progress) {
			if p.Phase == materializer.PhaseWriting && p.EntitiesWritten > 0 {
				cancel()
			}
		}).RunIncremental(cctx, "v")
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("RunIncremental error = %v, want context.Canceled", err)
		}
		if wm := f.watermark(t); !wm.Equal(at(49)) {
			t.Errorf("watermark = %v, want it unchanged at %v", wm, at(49))
		}
		// What was flushed stays, each row newer than the one it replaced;
		// nothing else changed.
		got, _ := readAll(t, f.client, f.p, keysOf(want))
		for k, r := range got {
			if w := want[k]; !r.EventTime.Equal(w.EventTime) || !r.Values[0].Equal(w.Values[0]) {
				t.Errorf("key %v: %v, want %v", k, r, w)
			}
		}
		for k := range f.full {
			if _, ok := got[k]; !ok {
				t.Errorf("key %v of the full run is gone", k)
			}
		}
	})

	t.Run("the next run completes it", func(t *testing.T) {
		rep, err := f.materializer(at(500), nil).RunIncremental(ctx, "v")
		if err != nil {
			t.Fatal(err)
		}
		if rep.RowsRead != int64(500+len(c)) || rep.RowGroupsSkipped != 3 {
			t.Errorf("%d rows read, %d row groups skipped; want %d and 3", rep.RowsRead, rep.RowGroupsSkipped, 500+len(c))
		}
		f.check(t, want)
		if wm := f.watermark(t); !wm.Equal(at(89)) {
			t.Errorf("watermark = %v, want %v", wm, at(89))
		}
	})
}

func TestIncrementalReadsRowGroupsWithoutStatistics(t *testing.T) {
	ctx := context.Background()
	f := newIncrementalFixture(t)
	// Old rows, and newer ones, in a file whose footer has no bounds for
	// the event-time column: every row group is read.
	var c []scoreRow
	for i := range 300 {
		c = append(c, scoreRow{int64(i), at(i % 40), -1})
	}
	c = append(c, scoreRow{7, at(90), 90})
	writeParquet(t, f.path("c.parquet"), c, parquet.MaxRowsPerRowGroup(100), parquet.SkipPageBounds("ts"))

	rep, err := f.materializer(at(500), nil).RunIncremental(ctx, "v")
	if err != nil {
		t.Fatal(err)
	}
	if rep.Files != 2 || rep.FilesSkipped != 1 || rep.RowGroupsSkipped != 3 || rep.RowsRead != int64(500+len(c)) {
		t.Errorf("files %d read, %d skipped; %d row groups skipped; %d rows read: want 2, 1, 3, %d",
			rep.Files, rep.FilesSkipped, rep.RowGroupsSkipped, rep.RowsRead, 500+len(c))
	}
	if n := rep.Skipped[materializer.SkipBeforeWatermark]; n != 450+300 {
		t.Errorf("%d rows skipped before the watermark, want %d", n, 450+300)
	}
	want := merge(f.full, map[larder.Key]larder.Row{larder.Int64Key(7): {EventTime: at(90), Values: []larder.Value{larder.Float64Value(90)}}})
	f.check(t, want)
}
