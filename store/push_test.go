package store_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/larder-dev/larder"
	"github.com/larder-dev/larder/store"
	"github.com/redis/go-redis/v9"
)

var pushT0 = time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)

func pushPriceRow(at time.Time, price float64) larder.Row {
	return larder.Row{EventTime: at, Values: []larder.Value{larder.Float64Value(price)}}
}

func pushed(key string, at time.Time, price float64) larder.PushRow {
	return larder.PushRow{Key: larder.StringKey(key), Row: pushPriceRow(at, price)}
}

// publishPrices publishes a generation of the items view with the given
// prices, at event time at.
func publishPrices(tb testing.TB, s *store.Store, v *larder.View, at time.Time, prices map[string]float64) larder.Generation {
	tb.Helper()
	ctx := context.Background()
	w, err := s.BeginSized(ctx, v, -1)
	if err != nil {
		tb.Fatal(err)
	}
	for k, p := range prices {
		if err := w.Put(ctx, larder.StringKey(k), pushPriceRow(at, p)); err != nil {
			tb.Fatal(err)
		}
	}
	g, err := w.Publish(ctx)
	if err != nil {
		tb.Fatal(err)
	}
	return g
}

// pushedPrices reads the items view's price of each key: NaN-free, -1 when not
// found.
func pushedPrices(tb testing.TB, s *store.Store, v *larder.View, keys ...string) map[string]float64 {
	tb.Helper()
	l := larder.Lookup{View: v}
	for _, k := range keys {
		l.Keys = append(l.Keys, larder.StringKey(k))
	}
	if err := s.Read(context.Background(), []*larder.Lookup{&l}); err != nil {
		tb.Fatal(err)
	}
	out := make(map[string]float64, len(keys))
	for i, k := range keys {
		if !l.Found[i] {
			out[k] = -1
			continue
		}
		out[k] = l.Rows[i].Values[0].Float64()
	}
	return out
}

// TestPush pushes rows into a latest view: a newer row is written, an
// older one is left out, a new entity is added, an invalid row is refused
// with its reason while the others are written; a view that is not
// latest, or never published, is refused whole.
func TestPush(t *testing.T) { forEachBackend(t, testPush) }

func testPush(t *testing.T, client redis.UniversalClient) {
	ctx := context.Background()
	p := testProject(t)
	v := p.View("items")
	s := store.New(client, p.Name, store.Options{})
	if _, err := s.Push(ctx, v, []larder.PushRow{pushed("a", pushT0, 1)}); !errors.Is(err, larder.ErrNoGeneration) {
		t.Errorf("Push before any publish = %v, want ErrNoGeneration", err)
	}
	publishPrices(t, s, v, pushT0, map[string]float64{"a": 1, "b": 2})

	out, err := s.Push(ctx, v, []larder.PushRow{
		pushed("a", pushT0.Add(time.Minute), 10),                         // newer
		pushed("b", pushT0.Add(-time.Minute), 20),                        // older
		pushed("c", pushT0, 30),                                          // new
		{Key: larder.Int64Key(4), Row: pushPriceRow(pushT0, 1)},          // a key of another type
		{Key: larder.StringKey("d"), Row: larder.Row{EventTime: pushT0}}, // no values
		{Key: larder.StringKey("e\xff"), Row: pushPriceRow(pushT0, 1)},   // not UTF-8
		{Key: larder.StringKey("f"), Row: larder.Row{EventTime: pushT0, Values: []larder.Value{larder.StringValue("x")}}}, // wrong type
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []larder.PushResult{larder.PushWritten, larder.PushOlder, larder.PushWritten, larder.PushInvalid, larder.PushInvalid, larder.PushInvalid, larder.PushInvalid}
	for i, o := range out {
		if o.Result != want[i] || (o.Result == larder.PushInvalid) != (o.Reason != "") {
			t.Errorf("row %d: %v %q, want %v (with a reason when invalid)", i, o.Result, o.Reason, want[i])
		}
	}
	got := pushedPrices(t, s, v, "a", "b", "c", "d", "f")
	if fmt.Sprint(got) != fmt.Sprint(map[string]float64{"a": 10, "b": 2, "c": 30, "d": -1, "f": -1}) {
		t.Errorf("after the push: %v", got)
	}

	agg := *v
	agg.Kind = larder.KindAggregate
	var inv *larder.InvalidError
	if _, err := s.Push(ctx, &agg, []larder.PushRow{pushed("a", pushT0, 1)}); !errors.As(err, &inv) || !strings.Contains(err.Error(), "latest views only") {
		t.Errorf("Push into an aggregate view = %v, want an InvalidError", err)
	}
}

// TestPushRepeatedKeys pushes batches in which keys come more than once
// and many keys share a bucket: the rows of a key apply in their order,
// each with its own outcome, as if pushed one call at a time.
func TestPushRepeatedKeys(t *testing.T) { forEachBackend(t, testPushRepeatedKeys) }

func testPushRepeatedKeys(t *testing.T, client redis.UniversalClient) {
	ctx := context.Background()
	p := testProject(t)
	v := p.View("items")
	s := store.New(client, p.Name, store.Options{})
	publishPrices(t, s, v, pushT0, map[string]float64{"a": 1})

	at := func(m int) time.Time { return pushT0.Add(time.Duration(m) * time.Minute) }
	out, err := s.Push(ctx, v, []larder.PushRow{
		pushed("a", at(5), 5),  // newer than stored
		pushed("b", at(1), 1),  // new
		pushed("a", at(3), 3),  // older than the row before it
		pushed("b", at(2), 2),  // newer than the row before it
		pushed("a", at(7), 7),  // newest
		pushed("a", at(7), 70), // a tie: the later row wins
		pushed("a", at(-1), 0), // older than all
	})
	if err != nil {
		t.Fatal(err)
	}
	want := []larder.PushResult{larder.PushWritten, larder.PushWritten, larder.PushOlder, larder.PushWritten, larder.PushWritten, larder.PushWritten, larder.PushOlder}
	for i, o := range out {
		if o.Result != want[i] {
			t.Errorf("row %d: %v, want %v", i, o.Result, want[i])
		}
	}
	if got := pushedPrices(t, s, v, "a", "b"); fmt.Sprint(got) != fmt.Sprint(map[string]float64{"a": 70, "b": 2}) {
		t.Errorf("after the push: %v", got)
	}

	// Many keys, so that buckets hold several rows of one batch, pushed
	// twice: the second time every row ties and is written again, then
	// older rows are all refused.
	var rows, older []larder.PushRow
	want2 := map[string]float64{}
	for i := range 300 {
		k := fmt.Sprintf("k%d", i)
		rows = append(rows, pushed(k, at(i%7), float64(i)))
		older = append(older, pushed(k, at(i%7-1), -1))
		want2[k] = float64(i)
	}
	for round, batch := range [][]larder.PushRow{rows, rows, older} {
		out, err := s.Push(ctx, v, batch)
		if err != nil {
			t.Fatal(err)
		}
		for i, o := range out {
			if w := map[bool]larder.PushResult{true: larder.PushWritten, false: larder.PushOlder}[round < 2]; o.Result != w {
				t.Fatalf("round %d, row %d: %v, want %v", round, i, o.Result, w)
			}
		}
	}
	keys := make([]string, 0, len(want2))
	for k := range want2 {
		keys = append(keys, k)
	}
	if got := pushedPrices(t, s, v, keys...); fmt.Sprint(got) != fmt.Sprint(want2) {
		t.Errorf("after the batches: %v", got)
	}
}

// TestPushSurvivesFullRun pushes rows while a full run of the view is
// being written: the run's publish replays them into its generation, so
// that they are served after the flip; a pushed row older than the run's
// row of the same entity loses to it; a later publish still has them.
func TestPushSurvivesFullRun(t *testing.T) { forEachBackend(t, testPushSurvivesFullRun) }

func testPushSurvivesFullRun(t *testing.T, client redis.UniversalClient) {
	ctx := context.Background()
	p := testProject(t)
	v := p.View("items")
	s := store.New(client, p.Name, store.Options{})
	g1 := publishPrices(t, s, v, pushT0, map[string]float64{"a": 1, "b": 2})

	w, err := s.BeginSized(ctx, v, -1)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Push(ctx, v, []larder.PushRow{
		pushed("a", pushT0.Add(time.Hour), 100),   // newer than the run's row
		pushed("b", pushT0.Add(-time.Hour), 200),  // older than the run's row
		pushed("p", pushT0.Add(time.Minute), 300), // an entity the run does not have
	}); err != nil {
		t.Fatal(err)
	}
	for k, price := range map[string]float64{"a": 5, "b": 6, "c": 7} {
		if err := w.Put(ctx, larder.StringKey(k), pushPriceRow(pushT0.Add(time.Minute), price)); err != nil {
			t.Fatal(err)
		}
	}
	g2, err := w.Publish(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if g2.ID == g1.ID || g2.Rows != 4 {
		t.Errorf("generation %d with %d rows, want a new one with 4 (3 written, 1 pushed)", g2.ID, g2.Rows)
	}
	want := map[string]float64{"a": 100, "b": 6, "c": 7, "p": 300}
	if got := pushedPrices(t, s, v, "a", "b", "c", "p"); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("after the run's publish: %v, want %v", got, want)
	}
	// The next run replays the pushes again: nothing moves back.
	publishPrices(t, s, v, pushT0.Add(2*time.Minute), map[string]float64{"a": 8, "b": 9})
	want = map[string]float64{"a": 100, "b": 9, "c": -1, "p": 300}
	if got := pushedPrices(t, s, v, "a", "b", "c", "p"); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("after the next publish: %v, want %v", got, want)
	}
}

// TestPushUnderPublishes pushes rows without a pause while full runs
// publish one after another: every push that returned is in the live
// generation at the end, with its value.
func TestPushUnderPublishes(t *testing.T) { forEachBackend(t, testPushUnderPublishes) }

func testPushUnderPublishes(t *testing.T, client redis.UniversalClient) {
	p := testProject(t)
	v := p.View("items")
	s := store.New(client, p.Name, store.Options{})
	publishPrices(t, s, v, pushT0, map[string]float64{"a": 1})
	var counts [2]atomic.Int64
	var wg sync.WaitGroup
	stop := make(chan struct{})
	errs := make(chan error, 2)
	for g := range 2 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				k := fmt.Sprintf("p%d-%d", g, i)
				if _, err := s.Push(context.Background(), v, []larder.PushRow{pushed(k, pushT0.Add(time.Hour), float64(i))}); err != nil {
					errs <- err
					return
				}
				counts[g].Add(1)
			}
		})
	}
	for range 8 {
		publishPrices(t, s, v, pushT0, map[string]float64{"a": 1, "b": 2})
	}
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	var keys []string
	var want []float64
	for g := range 2 {
		for i := range counts[g].Load() {
			keys = append(keys, fmt.Sprintf("p%d-%d", g, i))
			want = append(want, float64(i))
		}
	}
	got := pushedPrices(t, s, v, keys...)
	lost := 0
	for i, k := range keys {
		if got[k] != want[i] {
			lost++
			if lost <= 5 {
				t.Errorf("%s = %v after the publishes, want %v", k, got[k], want[i])
			}
		}
	}
	if lost > 0 {
		t.Errorf("%d of %d pushes lost to the publishes", lost, len(keys))
	}
	done := len(keys)
	t.Logf("%d pushes during 8 publishes", done)
}

// TestPushRetention checks that the push log keeps rows for
// Options.PushRetention: a full run that publishes later than that no
// longer replays them, while newer pushes are replayed.
func TestPushRetention(t *testing.T) {
	forEachBackend(t, func(t *testing.T, client redis.UniversalClient) {
		ctx := context.Background()
		p := testProject(t)
		v := p.View("items")
		s := store.New(client, p.Name, store.Options{PushRetention: 20 * time.Millisecond})
		publishPrices(t, s, v, pushT0, map[string]float64{"a": 1})
		if _, err := s.Push(ctx, v, []larder.PushRow{pushed("old", pushT0, 1)}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(100 * time.Millisecond) // past the retention, by Redis's clock
		if _, err := s.Push(ctx, v, []larder.PushRow{pushed("new", pushT0, 2)}); err != nil {
			t.Fatal(err)
		}
		publishPrices(t, s, v, pushT0, map[string]float64{"a": 1})
		if got := pushedPrices(t, s, v, "old", "new"); got["old"] != -1 || got["new"] != 2 {
			t.Errorf("after a publish past the retention: %v, want old gone and new kept", got)
		}
	})
}
