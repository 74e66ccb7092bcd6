package materializer_test

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"path/filepath"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"

	"github.com/larder-dev/larder"
	"github.com/larder-dev/larder/materializer"
	"github.com/larder-dev/larder/redistest"
	"github.com/larder-dev/larder/store"
)

// click is one event of the streaming aggregate view's source.
type click struct {
	UserID int64     `parquet:"user_id"`
	TS     time.Time `parquet:"ts,timestamp(millisecond)"`
}

// tileT0 is a tile end, the origin of the streaming tests' times.
var tileT0 = time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)

// streamingWorld is a streaming aggregate view, user_clicks (tile 1m,
// horizon 1h: counts of clicks over 1h and 1d), fed by the Parquet files
// of a folder and by a stream, in a real redis-server, with one clock for
// the runs and the store.
type streamingWorld struct {
	t    *testing.T
	dir  string
	p    *larder.Project
	v    *larder.View
	st   *store.Store
	now  time.Time
	next int
}

func newStreamingWorld(t *testing.T) *streamingWorld {
	t.Helper()
	w := &streamingWorld{t: t, dir: t.TempDir(), now: tileT0}
	windows := make([]larder.Window, 2)
	for i, s := range []string{"1h", "1d"} {
		var err error
		if windows[i], err = larder.ParseWindow(s); err != nil {
			t.Fatal(err)
		}
	}
	w.p = &larder.Project{
		Name:     "tilerun",
		Dir:      w.dir,
		Entities: []*larder.Entity{{Name: "user", Key: "user_id", KeyType: larder.TypeInt64}},
		Sources:  []*larder.Source{{Name: "clicks", Path: "data", EventTime: "ts"}},
		Views: []*larder.View{{
			Name: "user_clicks", Kind: larder.KindAggregate, Entity: "user", Source: "clicks", MaxAge: time.Hour, Tile: time.Minute,
			Aggregations: []larder.Aggregation{{Name: "clicks", Functions: []larder.AggFunc{larder.AggCount}, Windows: windows}},
		}},
		Streams: []*larder.Stream{{Name: "clicks", View: "user_clicks", RedisStream: "events:clicks"}},
	}
	w.p.SetDefaults()
	if err := w.p.Validate(); err != nil {
		t.Fatal(err)
	}
	w.v = w.p.View("user_clicks")
	w.st = store.New(redistest.Start(t).Client(), w.p.Name, store.Options{Now: func() time.Time { return w.now }})
	return w
}

// land writes clicks as the next Parquet file of the source.
func (w *streamingWorld) land(clicks ...click) { w.landWith(nil, clicks...) }

// landWith writes clicks as the next Parquet file of the source, with the
// writer's options opts.
func (w *streamingWorld) landWith(opts []parquet.WriterOption, clicks ...click) {
	w.t.Helper()
	writeParquet(w.t, filepath.Join(w.dir, "data", fmt.Sprintf("part-%d.parquet", w.next)), clicks, opts...)
	w.next++
}

// run materializes the view as of now.
func (w *streamingWorld) run() materializer.Report {
	w.t.Helper()
	rep, err := materializer.New(w.p, w.st, materializer.Options{Now: func() time.Time { return w.now }}).Run(context.Background(), "user_clicks")
	if err != nil {
		w.t.Fatal(err)
	}
	return rep
}

// stream adds one event of user at each time, with ids of their own, and
// returns the outcomes.
func (w *streamingWorld) stream(user int64, at ...time.Time) []larder.PushResult {
	w.t.Helper()
	var events []larder.TileEvent
	for _, t := range at {
		events = append(events, larder.TileEvent{Key: larder.Int64Key(user), ID: fmt.Sprintf("%d-%d", t.UnixMilli(), user), Time: t, Values: []larder.Value{larder.Null}})
	}
	out, err := w.st.AddEvents(context.Background(), w.v, events)
	if err != nil {
		w.t.Fatal(err)
	}
	res := make([]larder.PushResult, len(out))
	for i, o := range out {
		res[i] = o.Result
	}
	return res
}

// counts reads user's clicks over 1h and 1d as of now, and the row's event
// time.
func (w *streamingWorld) counts(user int64) (hour, day int64, at time.Time) {
	w.t.Helper()
	l := &larder.Lookup{View: w.v, Keys: []larder.Key{larder.Int64Key(user)}}
	if err := w.st.Read(context.Background(), []*larder.Lookup{l}); err != nil {
		w.t.Fatal(err)
	}
	if !l.Found[0] {
		return 0, 0, time.Time{}
	}
	row := l.Rows[0]
	return row.Values[0].Int64(), row.Values[1].Int64(), row.EventTime
}

func (w *streamingWorld) wantCounts(what string, user, hour, day int64) {
	w.t.Helper()
	h, d, _ := w.counts(user)
	if h != hour || d != day {
		w.t.Errorf("%s: user %d counts %d clicks over 1h and %d over 1d, want %d and %d", what, user, h, d, hour, day)
	}
}

// TestStreamingCutoffIsSourceEnd runs a streaming aggregate view over a
// Parquet source that ends before the run: the run's cutoff is the
// source's newest event rounded down to the tile, so the events streamed
// after it stay counted through the next runs over the same files; once
// the files catch up, the batch takes over the events it now holds and
// none is counted twice.
func TestStreamingCutoffIsSourceEnd(t *testing.T) {
	w := newStreamingWorld(t)
	end := tileT0.Add(-20*time.Minute - 30*time.Second) // the source's newest event, within a tile
	w.land(click{5, tileT0.Add(-50 * time.Minute)}, click{5, end}, click{6, tileT0.Add(-3 * time.Hour)})

	rep := w.run()
	cut := tileT0.Add(-21 * time.Minute)
	if !rep.RunTime.Equal(cut) || !rep.Cutoff.Equal(cut) {
		t.Errorf("run time %s, cutoff %s: want the source's newest event rounded down to the tile, %s", rep.RunTime, rep.Cutoff, cut)
	}
	g, err := w.st.Live(context.Background(), w.v)
	if err != nil || !g.AsOf.Equal(cut) {
		t.Errorf("live generation %+v, %v: want it as of the cutoff %s", g, err, cut)
	}
	// The batch counts the click of 11:10; that of 11:39:30, after the
	// cutoff, is the stream's, and the run says so.
	w.wantCounts("after the first run", 5, 1, 1)
	if want := map[string]int64{materializer.SkipAfterCutoff: 1}; !maps.Equal(rep.Skipped, want) {
		t.Errorf("skipped %v, want %v", rep.Skipped, want)
	}

	// The stream carries every click: those the source holds after the
	// cutoff (its newest, within the cutoff's next tile) and the newer
	// ones; one at or before the cutoff is the batch's.
	got := w.stream(5, tileT0.Add(-25*time.Minute), end, tileT0.Add(-5*time.Minute), tileT0.Add(-30*time.Second))
	want := []larder.PushResult{larder.PushOlder, larder.PushWritten, larder.PushWritten, larder.PushWritten}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("stream outcomes %v, want %v", got, want)
	}
	w.now = tileT0.Add(time.Minute)
	w.wantCounts("streamed", 5, 4, 4)

	// Runs over the same files keep the cutoff, and the streamed clicks
	// (the click of 11:10 has left the hour).
	for i := range 2 {
		w.now = w.now.Add(15 * time.Minute)
		if rep := w.run(); !rep.RunTime.Equal(cut) {
			t.Errorf("run %d: run time %s, want the cutoff %s", i+2, rep.RunTime, cut)
		}
		w.wantCounts(fmt.Sprintf("after run %d over the same files", i+2), 5, 3, 4)
	}

	// The files catch up with two of the streamed clicks: the cutoff moves
	// to the tile before the newest, the batch counts what it holds up to
	// it, the stream the rest.
	w.now = tileT0.Add(35 * time.Minute)
	w.land(click{5, tileT0.Add(-5 * time.Minute)}, click{5, tileT0.Add(-30 * time.Second)})
	if rep := w.run(); !rep.RunTime.Equal(tileT0.Add(-time.Minute)) {
		t.Errorf("caught up: run time %s, want %s", rep.RunTime, tileT0.Add(-time.Minute))
	}
	w.wantCounts("caught up", 5, 3, 4)
	// A replay counts nothing twice: the events now at or before the
	// cutoff are the batch's, and the one after it is held already.
	got = w.stream(5, end, tileT0.Add(-5*time.Minute), tileT0.Add(-30*time.Second))
	if want := []larder.PushResult{larder.PushOlder, larder.PushOlder, larder.PushOlder}; fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("replay outcomes %v, want %v", got, want)
	}
	w.wantCounts("replayed", 5, 3, 4)
	w.wantCounts("batch only", 6, 0, 1)
}

// TestStreamingCutoffEmptySource runs a streaming aggregate view over a
// source with no event: the first run's cutoff is its as-of, and a later
// run over a source still empty keeps it, so the events streamed since
// stay counted.
func TestStreamingCutoffEmptySource(t *testing.T) {
	w := newStreamingWorld(t)
	w.land()
	w.now = tileT0.Add(30 * time.Second)
	if rep := w.run(); !rep.RunTime.Equal(tileT0) {
		t.Errorf("run time %s, want the as-of rounded down to the tile, %s", rep.RunTime, tileT0)
	}
	if got := w.stream(5, tileT0.Add(-time.Minute), tileT0.Add(40*time.Second), tileT0.Add(4*time.Minute)); fmt.Sprint(got) != fmt.Sprint([]larder.PushResult{larder.PushOlder, larder.PushWritten, larder.PushWritten}) {
		t.Errorf("stream outcomes %v", got)
	}
	w.now = tileT0.Add(5 * time.Minute)
	w.wantCounts("streamed", 5, 2, 2)
	if rep := w.run(); !rep.RunTime.Equal(tileT0) {
		t.Errorf("second run: run time %s, want the live cutoff %s", rep.RunTime, tileT0)
	}
	w.wantCounts("after a run over the empty source", 5, 2, 2)
}

// TestStreamingCutoffPastHorizon runs a streaming aggregate view over a
// source whose newest event is older than the view's horizon: the read
// answers the batch's values as of the cutoff, which the row's event time
// says (and max_age reports stale), rather than values that leave out the
// events between the source's end and now. The source's file has no
// statistics of its event times: the run reads them.
func TestStreamingCutoffPastHorizon(t *testing.T) {
	w := newStreamingWorld(t)
	w.landWith([]parquet.WriterOption{parquet.SkipPageBounds("ts")},
		click{5, tileT0.Add(-3*time.Hour - 90*time.Second)}, click{5, tileT0.Add(-3*time.Hour - 10*time.Minute)})
	cut := tileT0.Add(-3*time.Hour - 2*time.Minute)
	if rep := w.run(); !rep.RunTime.Equal(cut) {
		t.Errorf("run time %s, want %s", rep.RunTime, cut)
	}
	hour, day, at := w.counts(5)
	if hour != 1 || day != 1 || !at.Equal(cut) {
		t.Errorf("user 5: %d and %d clicks as of %s, want 1 and 1 as of the cutoff %s", hour, day, at, cut)
	}
}

// TestStreamingCutoffShards runs a streaming aggregate view in shards: the
// sharded generation is as of the source's cutoff, and every shard
// computes its part as of it, even when new files land between the start
// of the run and its shards.
func TestStreamingCutoffShards(t *testing.T) {
	w := newStreamingWorld(t)
	ctx := context.Background()
	w.v.Shards = 2
	w.land(click{5, tileT0.Add(-50 * time.Minute)}, click{6, tileT0.Add(-20*time.Minute - 30*time.Second)})
	cut := tileT0.Add(-21 * time.Minute)
	r := materializer.NewRunner(w.p, w.st, materializer.RunnerOptions{Now: func() time.Time { return w.now }})
	job := &fakeJob{id: "job-1"}
	if _, err := r.RunJob(ctx, larder.MaterializeArgs{Views: []string{"user_clicks"}, AsOf: tileT0}, job); err != nil {
		t.Fatal(err)
	}
	if len(job.submitted) != 2 {
		t.Fatalf("%d jobs submitted, want 2 shards", len(job.submitted))
	}
	w.land(click{5, tileT0.Add(-5 * time.Minute)})
	for _, spec := range job.submitted {
		var sa larder.ShardArgs
		if err := json.Unmarshal(spec.Args, &sa); err != nil {
			t.Fatal(err)
		}
		if !sa.AsOf.Equal(tileT0) || !sa.Cutoff.Equal(cut) {
			t.Errorf("shard %d: as of %s, cutoff %s; want %s and %s", sa.Shard, sa.AsOf, sa.Cutoff, tileT0, cut)
		}
		if _, err := r.RunShard(ctx, sa, &fakeJob{id: fmt.Sprint("shard-", sa.Shard)}); err != nil {
			t.Fatal(err)
		}
	}
	g, err := w.st.Live(ctx, w.v)
	// User 6's click, after the cutoff, is the stream's.
	if err != nil || g.Rows != 1 || !g.AsOf.Equal(cut) {
		t.Fatalf("live generation %+v, %v; want user 5's row as of %s", g, err, cut)
	}
	w.wantCounts("sharded", 5, 1, 1)
}
