package store_test

import (
	"context"
	"fmt"
	"math"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/larder-dev/larder"
	"github.com/larder-dev/larder/store"
)

// tileView returns a project with aggregate view stats (count and sum of
// n over 10m, tile 1m, max_age 30m) fed by a stream.
func tileView(tb testing.TB) *larder.Project {
	tb.Helper()
	w, err := larder.ParseWindow("10m")
	if err != nil {
		tb.Fatal(err)
	}
	p := &larder.Project{
		Name:     "tl",
		Entities: []*larder.Entity{{Name: "user", Key: "user_id", KeyType: larder.TypeInt64}},
		Sources:  []*larder.Source{{Name: "ev", Path: "ev.parquet", EventTime: "ts"}},
		Views: []*larder.View{{Name: "stats", Kind: larder.KindAggregate, Entity: "user", Source: "ev", MaxAge: 30 * time.Minute,
			Aggregations: []larder.Aggregation{{Column: "n", Type: larder.TypeInt64, Windows: []larder.Window{w},
				Functions: []larder.AggFunc{larder.AggCount, larder.AggSum}}}}},
		Streams: []*larder.Stream{{Name: "ev", View: "stats", RedisStream: "events"}},
	}
	p.SetDefaults()
	if err := p.Validate(); err != nil {
		tb.Fatal(err)
	}
	return p
}

// TestTiles (and the cluster conformance run) writes a generation with batch tiles, adds stream events, and
// reads: within the horizon, the windows slide over the batch tiles and
// count the stream's (an entity only the stream knows included), once per
// event id; past it, the batch row is answered as of the cutoff.
func TestTiles(t *testing.T) { forEachBackend(t, testTiles) }

// beginWithRow begins a generation of v as of cut in st and writes user
// 1's batch row into it: 3 and 6, as of cut.
func beginWithRow(tb testing.TB, st *store.Store, v *larder.View, cut time.Time) larder.GenerationWriter {
	tb.Helper()
	ctx := context.Background()
	w, err := st.Begin(ctx, v, larder.BeginOptions{Run: larder.RunInfo{AsOf: cut}})
	if err != nil {
		tb.Fatal(err)
	}
	if err := w.Put(ctx, larder.Int64Key(1), larder.Row{EventTime: cut, Values: []larder.Value{larder.Int64Value(3), larder.Int64Value(6)}}); err != nil {
		tb.Fatal(err)
	}
	return w
}

// tilesCut is the cutoff of the tiles tests' runs.
var tilesCut = time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)

// tileFixture returns the tiles tests' project (tileView), its view
// "stats", and a store of it whose clock reads *now, which starts at
// tilesCut.
func tileFixture(t *testing.T, client redis.UniversalClient) (*larder.Project, *larder.View, *store.Store, *time.Time) {
	p := tileView(t)
	now := tilesCut
	return p, p.View("stats"), store.New(client, p.Name, store.Options{Now: func() time.Time { return now }}), &now
}

// publishRow publishes a generation of v as of tilesCut with entity 1's
// row, and returns its id.
func publishRow(t *testing.T, st *store.Store, v *larder.View) int64 {
	t.Helper()
	w := beginWithRow(t, st, v, tilesCut)
	if _, err := w.Publish(context.Background()); err != nil {
		t.Fatal(err)
	}
	return w.ID()
}

// publishTwoTiles publishes a generation of v as of tilesCut with entity
// 1's row and two batch tiles of it: tile c − 9 (2 events, sum 5) and tile
// c (1 event, sum 1), c being the cutoff's tile.
func publishTwoTiles(t *testing.T, st *store.Store, v *larder.View) {
	t.Helper()
	ctx := context.Background()
	c := tilesCut.Unix() / 60
	w := beginWithRow(t, st, v, tilesCut)
	tiles := larder.EntityTiles{Key: larder.Int64Key(1), Aggs: []larder.AggTiles{{
		Tiles: []larder.Tile{{End: c - 9, Partial: larder.Partial{Count: 2, Sum: 5}}, {End: c, Partial: larder.Partial{Count: 1, Sum: 1}}},
		Rest:  []larder.Partial{{}},
	}}}
	if err := st.PutTiles(ctx, v, w.ID(), tilesCut, []larder.EntityTiles{tiles}); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Publish(ctx); err != nil {
		t.Fatal(err)
	}
}

func testTiles(t *testing.T, client redis.UniversalClient) {
	ctx := context.Background()
	_, v, st, now := tileFixture(t, client)
	cut := tilesCut

	publishTwoTiles(t, st, v)

	*now = cut.Add(time.Minute)
	out, err := st.AddEvents(ctx, v, []larder.TileEvent{
		{Key: larder.Int64Key(1), ID: "a", Time: cut.Add(30 * time.Second), Values: []larder.Value{larder.Int64Value(10)}},
		{Key: larder.Int64Key(2), ID: "b", Time: cut.Add(90 * time.Second), Values: []larder.Value{larder.Int64Value(7)}},
		{Key: larder.Int64Key(1), ID: "a", Time: cut.Add(30 * time.Second), Values: []larder.Value{larder.Int64Value(10)}},
		{Key: larder.Int64Key(1), ID: "c", Time: cut.Add(-time.Second), Values: []larder.Value{larder.Int64Value(100)}},
		{Key: larder.Int64Key(1), ID: "d", Time: cut.Add(40 * time.Second), Values: []larder.Value{larder.Null}},
		{Key: larder.StringKey("x"), ID: "e", Time: cut, Values: []larder.Value{larder.Int64Value(1)}},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []larder.PushResult{larder.PushWritten, larder.PushWritten, larder.PushOlder, larder.PushOlder, larder.PushWritten, larder.PushInvalid}
	for i, o := range out {
		if o.Result != want[i] {
			t.Errorf("event %d: %v (%s), want %v", i, o.Result, o.Reason, want[i])
		}
	}

	read := func(numbers bool) *larder.Lookup {
		t.Helper()
		l := &larder.Lookup{View: v, Keys: []larder.Key{larder.Int64Key(1), larder.Int64Key(2), larder.Int64Key(3)}}
		if numbers {
			l.Numbers = &larder.NumberRead{Features: []int{0, 1}, Defaults: []float32{-1, -1}}
		}
		if err := st.Read(ctx, []*larder.Lookup{l}); err != nil {
			t.Fatal(err)
		}
		return l
	}
	*now = cut.Add(2*time.Minute + 5*time.Second)
	l := read(false)
	T := cut.Add(2 * time.Minute)
	// (T − 10m, T] leaves tile c − 9 out: 1 + 10 over 2 values.
	if !l.TileTime.Equal(T) || !l.Found[0] || l.Rows[0].Values[0].Int64() != 2 || l.Rows[0].Values[1].Int64() != 11 || !l.Rows[0].EventTime.Equal(T) {
		t.Errorf("user 1 at %s: %v %v, T %s", T, l.Found[0], l.Rows[0], l.TileTime)
	}
	if !l.Streamed[0].Equal(cut.Add(40 * time.Second)) {
		t.Errorf("user 1 streamed at %s, want the newest event's time", l.Streamed[0])
	}
	if !l.Found[1] || l.Rows[1].Values[0].Int64() != 1 || l.Rows[1].Values[1].Int64() != 7 {
		t.Errorf("user 2, only streamed: %v %v", l.Found[1], l.Rows[1])
	}
	if l.Found[2] || !l.Streamed[2].IsZero() {
		t.Errorf("user 3, unknown: %v", l.Rows[2])
	}
	if n := read(true).Numbers.Values; n[0] != 2 || n[1] != 11 || n[2] != 1 || n[3] != 7 || n[4] != -1 {
		t.Errorf("numbers %v, want 2 11 1 7 -1 -1", n)
	}

	// Before T reaches tile c + 1, the stream's first event is not in.
	*now = cut.Add(59 * time.Second)
	if l := read(false); l.Rows[0].Values[0].Int64() != 3 || l.Rows[0].Values[1].Int64() != 6 || l.Found[1] {
		t.Errorf("at the cutoff: %v, user 2 found %v", l.Rows[0], l.Found[1])
	}

	// Past the horizon: the batch row as of the cutoff, which max_age
	// reports stale.
	*now = cut.Add(31 * time.Minute)
	l = read(false)
	if !l.Rows[0].EventTime.Equal(cut) || l.Rows[0].Values[0].Int64() != 3 || l.Found[1] {
		t.Errorf("past the horizon: %v, user 2 found %v", l.Rows[0], l.Found[1])
	}
	if v.Status(true, l.Rows[0].EventTime, *now) != larder.StatusStale {
		t.Errorf("past the horizon the row is %v, want stale", v.Status(true, l.Rows[0].EventTime, *now))
	}
}

// TestTilesConcurrent (and the cluster conformance run) has four writers
// add events to the same entities at once, each event twice: every event
// counts once, whichever writer's write lands first.
func TestTilesConcurrent(t *testing.T) { forEachBackend(t, testTilesConcurrent) }

func testTilesConcurrent(t *testing.T, client redis.UniversalClient) {
	ctx := context.Background()
	p := tileView(t)
	v := p.View("stats")
	cut := time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)
	now := cut.Add(5 * time.Minute)
	st := store.New(client, p.Name, store.Options{Now: func() time.Time { return now }})
	w, err := st.Begin(ctx, v, larder.BeginOptions{Run: larder.RunInfo{AsOf: cut}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := w.Publish(ctx); err != nil {
		t.Fatal(err)
	}
	const writers, perWriter, users = 4, 200, 5
	var wg sync.WaitGroup
	errs := make(chan error, writers)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for lo := 0; lo < perWriter; lo += 20 {
				var evs []larder.TileEvent
				for i := lo; i < lo+20; i++ {
					// Writers w and w+1 (mod writers) both send event i of w.
					for _, from := range []int{w, (w + writers - 1) % writers} {
						evs = append(evs, larder.TileEvent{Key: larder.Int64Key(int64(1 + i%users)), ID: fmt.Sprintf("%d-%d", from, i),
							Time: cut.Add(time.Duration(1+i) * time.Second), Values: []larder.Value{larder.Int64Value(int64(from + 1))}})
					}
				}
				if _, err := st.AddEvents(ctx, v, evs); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	l := &larder.Lookup{View: v}
	for u := int64(1); u <= users; u++ {
		l.Keys = append(l.Keys, larder.Int64Key(u))
	}
	if err := st.Read(ctx, []*larder.Lookup{l}); err != nil {
		t.Fatal(err)
	}
	var count, sum int64
	for j := range l.Keys {
		count += l.Rows[j].Values[0].Int64()
		sum += l.Rows[j].Values[1].Int64()
	}
	// Each writer's perWriter events count once: values 1..writers.
	if count != writers*perWriter || sum != perWriter*writers*(writers+1)/2 {
		t.Errorf("count %d sum %d, want %d %d", count, sum, writers*perWriter, perWriter*writers*(writers+1)/2)
	}
}

// TestTilesOldFormat reads an entity whose tiles hash an earlier release
// wrote, in its text format (b<gen>, bg, lo, a field per stream tile,
// ids beside it): the read answers the batch row as of the cutoff, with
// no error, and the next batch write drops the old fields.
func TestTilesOldFormat(t *testing.T) { forEachBackend(t, testTilesOldFormat) }

func testTilesOldFormat(t *testing.T, client redis.UniversalClient) {
	ctx := context.Background()
	_, v, st, now := tileFixture(t, client)
	cut := tilesCut
	c := cut.Unix() / 60
	gen := publishRow(t, st, v)
	key := "larder:tl:{stats:1}:t"
	tile := strconv.FormatInt(c+1, 10)
	at := strconv.FormatInt(cut.Add(30*time.Second).UnixNano(), 10)
	if err := client.HSet(ctx, key, "b"+strconv.FormatInt(gen, 10), "\x01\x13\x02\x00", "bg", strconv.FormatInt(gen, 10),
		"lo", tile, tile, at+"|1,10,10,10,10,"+at).Err(); err != nil {
		t.Fatal(err)
	}
	if err := client.ZAdd(ctx, "larder:tl:{stats:1}:d", redis.Z{Score: float64(cut.UnixMilli()), Member: "a"}).Err(); err != nil {
		t.Fatal(err)
	}

	*now = cut.Add(2 * time.Minute)
	l := &larder.Lookup{View: v, Keys: []larder.Key{larder.Int64Key(1)}}
	if err := st.Read(ctx, []*larder.Lookup{l}); err != nil {
		t.Fatal(err)
	}
	if !l.Found[0] || !l.Rows[0].EventTime.Equal(cut) || l.Rows[0].Values[0].Int64() != 3 || l.Rows[0].Values[1].Int64() != 6 {
		t.Errorf("old format: %v %v, want the batch row as of the cutoff", l.Found[0], l.Rows[0])
	}

	// A stream event and the next run's tiles: the old fields go.
	if _, err := st.AddEvents(ctx, v, []larder.TileEvent{{Key: larder.Int64Key(1), ID: "a", Time: cut.Add(40 * time.Second), Values: []larder.Value{larder.Int64Value(5)}}}); err != nil {
		t.Fatal(err)
	}
	if err := st.PutTiles(ctx, v, gen+1, cut, []larder.EntityTiles{{Key: larder.Int64Key(1), Aggs: []larder.AggTiles{{Rest: []larder.Partial{{}}}}}}); err != nil {
		t.Fatal(err)
	}
	fields, err := client.HKeys(ctx, key).Result()
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(fields)
	if want := []string{"g" + strconv.FormatInt(gen+1, 10), "s"}; !slices.Equal(fields, want) {
		t.Errorf("fields after a new run's tiles: %q, want %q", fields, want)
	}
}

// TestTilesFarTimes (and the miniredis run) adds events whose times are
// outside the range of int64 nanoseconds since the epoch (before 1678,
// after 2262): one 2^64 ns, about 584 years, before an event in the
// window, whose nanoseconds wrap around to that event's. The past one is
// older than the horizon and left out, the future one refused; neither
// counts in a window.
func TestTilesFarTimes(t *testing.T) { forEachBackend(t, testTilesFarTimes) }

func testTilesFarTimes(t *testing.T, client redis.UniversalClient) {
	ctx := context.Background()
	_, v, st, now := tileFixture(t, client)
	cut := tilesCut
	publishRow(t, st, v)

	*now = cut.Add(time.Minute)
	in := cut.Add(30 * time.Second)
	past := in.Add(-math.MaxInt64).Add(-math.MaxInt64).Add(-2) // 1442: in − 2^64 ns
	future := in.Add(math.MaxInt64).Add(math.MaxInt64).Add(2)  // 2611: in + 2^64 ns
	if past.UnixNano() != in.UnixNano() || future.UnixNano() != in.UnixNano() {
		t.Fatalf("the times do not wrap around to %s's nanoseconds: %d %d", in, past.UnixNano(), future.UnixNano())
	}
	out, err := st.AddEvents(ctx, v, []larder.TileEvent{
		{Key: larder.Int64Key(5), ID: "past", Time: past, Values: []larder.Value{larder.Int64Value(100)}},
		{Key: larder.Int64Key(5), ID: "future", Time: future, Values: []larder.Value{larder.Int64Value(1000)}},
	})
	if err != nil {
		t.Fatal(err)
	}
	if out[0].Result != larder.PushOlder {
		t.Errorf("an event of %s: %v (%s), want older", past.Format(time.RFC3339), out[0].Result, out[0].Reason)
	}
	if out[1].Result != larder.PushInvalid || !strings.Contains(out[1].Reason, "2262") {
		t.Errorf("an event of %s: %v (%s), want invalid, naming the last year tiles hold", future.Format(time.RFC3339), out[1].Result, out[1].Reason)
	}

	*now = cut.Add(2*time.Minute + 5*time.Second)
	l := &larder.Lookup{View: v, Keys: []larder.Key{larder.Int64Key(5)}}
	if err := st.Read(ctx, []*larder.Lookup{l}); err != nil {
		t.Fatal(err)
	}
	if l.Found[0] {
		t.Errorf("user 5, whose events are centuries away, is read as %v", l.Rows[0])
	}
}

// TestTilesOtherDefinition (and the miniredis run) adds stream events to
// a view, then changes its aggregations (int64 n becomes float64 n, with a
// max) and publishes a generation of the new definition. The stream tiles
// written under the old one are not read as the new one's, where they
// would fail to decode or, worse, decode as other numbers: a read answers
// the batch's values, and the stream's events added under the new
// definition.
func TestTilesOtherDefinition(t *testing.T) { forEachBackend(t, testTilesOtherDefinition) }

func testTilesOtherDefinition(t *testing.T, client redis.UniversalClient) {
	ctx := context.Background()
	_, v, st, now := tileFixture(t, client)
	cut := tilesCut
	publishRow(t, st, v)
	*now = cut.Add(time.Minute)
	if _, err := st.AddEvents(ctx, v, []larder.TileEvent{
		{Key: larder.Int64Key(1), ID: "a", Time: cut.Add(30 * time.Second), Values: []larder.Value{larder.Int64Value(10)}},
		{Key: larder.Int64Key(2), ID: "b", Time: cut.Add(30 * time.Second), Values: []larder.Value{larder.Int64Value(7)}},
	}); err != nil {
		t.Fatal(err)
	}

	p2 := tileView(t)
	v2 := p2.View("stats")
	v2.Aggregations[0].Type = larder.TypeFloat64
	v2.Aggregations[0].Functions = append(v2.Aggregations[0].Functions, larder.AggMax)
	p2.SetDefaults()
	if err := p2.Validate(); err != nil {
		t.Fatal(err)
	}
	st2 := store.New(client, p2.Name, store.Options{Now: func() time.Time { return *now }})
	w2, err := st2.Begin(ctx, v2, larder.BeginOptions{Run: larder.RunInfo{AsOf: cut}})
	if err != nil {
		t.Fatal(err)
	}
	if err := w2.Put(ctx, larder.Int64Key(1), larder.Row{EventTime: cut, Values: []larder.Value{larder.Int64Value(3), larder.Float64Value(6), larder.Float64Value(4)}}); err != nil {
		t.Fatal(err)
	}
	if _, err := w2.Publish(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := st2.AddEvents(ctx, v2, []larder.TileEvent{
		{Key: larder.Int64Key(2), ID: "c", Time: cut.Add(50 * time.Second), Values: []larder.Value{larder.Float64Value(2.5)}},
	}); err != nil {
		t.Fatal(err)
	}

	*now = cut.Add(2 * time.Minute)
	l := &larder.Lookup{View: v2, Keys: []larder.Key{larder.Int64Key(1), larder.Int64Key(2)}}
	if err := st2.Read(ctx, []*larder.Lookup{l}); err != nil {
		t.Fatalf("read after the view's aggregations changed: %v", err)
	}
	if !l.Found[0] || l.Rows[0].Values[0].Int64() != 3 || l.Rows[0].Values[1].Float64() != 6 || l.Rows[0].Values[2].Float64() != 4 {
		t.Errorf("user 1: %v %v, want the batch's 3, 6, 4: no event of the old definition", l.Found[0], l.Rows[0])
	}
	if !l.Found[1] || l.Rows[1].Values[0].Int64() != 1 || l.Rows[1].Values[1].Float64() != 2.5 || l.Rows[1].Values[2].Float64() != 2.5 {
		t.Errorf("user 2: %v %v, want 1, 2.5, 2.5: the one event of the new definition", l.Found[1], l.Rows[1])
	}
}

// TestTilesOtherTile (and the miniredis run) publishes a generation with
// batch tiles of 1 minute, then reads it as a view whose tile is 2
// minutes, as a server does once larder.yaml changes it: the schema is
// the same, but the batch tiles are not of that tile, and read as such
// they would give other windows. The read answers the row as the run
// wrote it, as of the cutoff.
func TestTilesOtherTile(t *testing.T) { forEachBackend(t, testTilesOtherTile) }

func testTilesOtherTile(t *testing.T, client redis.UniversalClient) {
	ctx := context.Background()
	_, v, st, now := tileFixture(t, client)
	cut := tilesCut
	publishTwoTiles(t, st, v)

	for _, tc := range []struct {
		name   string
		change func(v *larder.View)
	}{
		{"tile 2m", func(v *larder.View) { v.Tile = 2 * time.Minute }},
	} {
		p2 := tileView(t)
		v2 := p2.View("stats")
		tc.change(v2)
		if err := p2.Validate(); err != nil {
			t.Fatal(err)
		}
		if v2.Fingerprint() != v.Fingerprint() {
			t.Fatalf("%s: the schema changed", tc.name)
		}
		st2 := store.New(client, p2.Name, store.Options{Now: func() time.Time { return *now }})
		*now = cut.Add(4 * time.Minute)
		l := &larder.Lookup{View: v2, Keys: []larder.Key{larder.Int64Key(1)}}
		if err := st2.Read(ctx, []*larder.Lookup{l}); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if !l.Found[0] || l.Rows[0].Values[0].Int64() != 3 || l.Rows[0].Values[1].Int64() != 6 || !l.Rows[0].EventTime.Equal(cut) {
			t.Errorf("%s: user 1 read as %v, want the run's row, 3 and 6 as of %s", tc.name, l.Rows[0], cut)
		}
	}
}

// TestTilesOtherHorizon (and the miniredis run) publishes a generation of
// a view whose 10m window is longer than its horizon (max_age 5m): the
// run keeps, in the window's rest, the tiles that stay in it for the
// horizon. Read as a view whose max_age is 30m, as a server does once
// larder.yaml changes it (the schema is the same), 7 minutes past the
// cutoff the rest would still count a tile that left the window 1 minute
// before, as fresh. The read answers the row as the run wrote it, as of
// the cutoff, which max_age reports stale past the old horizon.
func TestTilesOtherHorizon(t *testing.T) { forEachBackend(t, testTilesOtherHorizon) }

func testTilesOtherHorizon(t *testing.T, client redis.UniversalClient) {
	ctx := context.Background()
	p, v, st, now := tileFixture(t, client)
	v.MaxAge = 5 * time.Minute
	if err := p.Validate(); err != nil {
		t.Fatal(err)
	}
	cut := tilesCut
	c := cut.Unix() / 60
	w, err := st.Begin(ctx, v, larder.BeginOptions{Run: larder.RunInfo{AsOf: cut}})
	if err != nil {
		t.Fatal(err)
	}
	// Events in tiles c − 9 (2, sum 5), c − 4 (4, sum 40) and c (1, sum 1).
	if err := w.Put(ctx, larder.Int64Key(1), larder.Row{EventTime: cut, Values: []larder.Value{larder.Int64Value(7), larder.Int64Value(46)}}); err != nil {
		t.Fatal(err)
	}
	tiles := larder.EntityTiles{Key: larder.Int64Key(1), Aggs: []larder.AggTiles{{
		Tiles: []larder.Tile{{End: c - 9, Partial: larder.Partial{Count: 2, Sum: 5}}},
		Rest:  []larder.Partial{{Count: 5, Sum: 41}},
	}}}
	if err := st.PutTiles(ctx, v, w.ID(), cut, []larder.EntityTiles{tiles}); err != nil {
		t.Fatal(err)
	}
	if _, err := w.Publish(ctx); err != nil {
		t.Fatal(err)
	}

	p2 := tileView(t) // max_age 30m
	v2 := p2.View("stats")
	if v2.Fingerprint() != v.Fingerprint() {
		t.Fatal("the schema changed")
	}
	st2 := store.New(client, p2.Name, store.Options{Now: func() time.Time { return *now }})
	*now = cut.Add(7 * time.Minute)
	l := &larder.Lookup{View: v2, Keys: []larder.Key{larder.Int64Key(1)}}
	if err := st2.Read(ctx, []*larder.Lookup{l}); err != nil {
		t.Fatal(err)
	}
	if !l.Found[0] || l.Rows[0].Values[0].Int64() != 7 || l.Rows[0].Values[1].Int64() != 46 || !l.Rows[0].EventTime.Equal(cut) {
		t.Errorf("user 1 read as %v, want the run's row, 7 and 46 as of %s (not 5 and 41, which count tile c − 4 past its window)", l.Rows[0], cut)
	}
}
