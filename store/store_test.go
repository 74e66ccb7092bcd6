package store_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/larder-dev/larder"
	"github.com/larder-dev/larder/redistest"
	"github.com/larder-dev/larder/store"
	"github.com/redis/go-redis/v9"
)

func TestWritePublishRead(t *testing.T) { forEachBackend(t, testWritePublishRead) }

func testWritePublishRead(t *testing.T, client redis.UniversalClient) {
	ctx := context.Background()
	p := testProject(t)
	s := store.New(client, p.Name, store.Options{})
	at := time.Date(2026, 2, 3, 4, 5, 6, 7000, time.UTC)

	mixed := p.View("mixed")
	mixedRow := func(id int64) larder.Row {
		if id%5 == 0 {
			return larder.Row{EventTime: at, Values: make([]larder.Value, 7)}
		}
		return larder.Row{EventTime: at, Values: []larder.Value{
			larder.Int64Value(-id), larder.Float64Value(float64(id) / 7), larder.Float32Value(float32(id)),
			larder.BoolValue(id%2 == 0), larder.StringValue(fmt.Sprintf("user-%d", id)),
			larder.BytesValue([]byte{byte(id)}), larder.Float32VectorValue([]float32{float32(id), math.MaxFloat32}),
		}}
	}
	const n = 2500 // several write batches
	gMixed := publish(t, s, mixed, n, func(id, _ int64) larder.Row { return mixedRow(id) })
	gWide := publish(t, s, p.View("wide"), 300, func(id, gen int64) larder.Row { return wideRow(id, gen, at) })
	if gMixed.Rows != n || gWide.Rows != 300 {
		t.Fatalf("rows = %d and %d, want %d and 300", gMixed.Rows, gWide.Rows, n)
	}

	w, err := s.BeginSized(ctx, p.View("items"), -1)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"apple", "", "päär:*?"} {
		if err := w.Put(ctx, larder.StringKey(k), larder.Row{EventTime: at, Values: []larder.Value{larder.Float64Value(float64(len(k)))}}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := w.Publish(ctx); err != nil {
		t.Fatal(err)
	}

	// Read through a second Store, as a server would.
	r := store.New(client, p.Name, store.Options{})
	lookups := []*larder.Lookup{
		{View: mixed, Keys: []larder.Key{larder.Int64Key(1), larder.Int64Key(n + 1), larder.Int64Key(5), larder.Int64Key(n)}},
		{View: p.View("wide"), Keys: []larder.Key{larder.Int64Key(300), larder.Int64Key(0)}},
		{View: p.View("items"), Keys: []larder.Key{larder.StringKey("päär:*?"), larder.StringKey(""), larder.StringKey("pear")}},
		{View: mixed},
	}
	for round := range 2 { // the second round reuses the lookups' slices
		if err := r.Read(ctx, lookups); err != nil {
			t.Fatal(err)
		}
		if lookups[0].Generation != gMixed.ID || lookups[1].Generation != gWide.ID {
			t.Errorf("round %d: generations %d %d, want %d %d", round, lookups[0].Generation, lookups[1].Generation, gMixed.ID, gWide.ID)
		}
		wantFound := [][]bool{{true, false, true, true}, {true, false}, {true, true, false}, {}}
		for i, l := range lookups {
			if !slices.Equal(l.Found, wantFound[i]) {
				t.Errorf("round %d lookup %d: found %v, want %v", round, i, l.Found, wantFound[i])
			}
		}
		checkRow(t, lookups[0].Rows[0], mixedRow(1))
		checkRow(t, lookups[0].Rows[2], mixedRow(5))
		checkRow(t, lookups[0].Rows[3], mixedRow(n))
		checkRow(t, lookups[1].Rows[0], wideRow(300, gWide.ID, at))
		checkRow(t, lookups[2].Rows[0], larder.Row{EventTime: at, Values: []larder.Value{larder.Float64Value(9)}})
		if len(lookups[0].Rows[1].Values) != 0 {
			t.Errorf("a missing row has values: %v", lookups[0].Rows[1].Values)
		}
	}

	live, err := r.Live(ctx, mixed)
	if err != nil {
		t.Fatal(err)
	}
	if live.ID != gMixed.ID || live.Rows != n || live.Fingerprint != mixed.Fingerprint() || live.PublishedAt.IsZero() {
		t.Errorf("Live = %+v, want generation %d with %d rows", live, gMixed.ID, n)
	}
	views, err := r.Views(ctx)
	if err != nil || !slices.Equal(views, []string{"items", "mixed", "wide"}) {
		t.Errorf("Views = %v, %v", views, err)
	}
	gens, err := r.Generations(ctx, "mixed")
	if err != nil || len(gens) != 1 || !gens[0].Live || gens[0].State != "live" || gens[0].Rows != n {
		t.Errorf("Generations = %+v, %v", gens, err)
	}
	row, found, err := r.GetRow(ctx, mixed, larder.Int64Key(2))
	if err != nil || !found {
		t.Fatalf("GetRow: found=%v err=%v", found, err)
	}
	checkRow(t, row, mixedRow(2))
}

func checkRow(tb testing.TB, got, want larder.Row) {
	tb.Helper()
	if !got.EventTime.Equal(want.EventTime.Truncate(time.Microsecond)) {
		tb.Errorf("event time %v, want %v", got.EventTime, want.EventTime)
	}
	if len(got.Values) != len(want.Values) {
		tb.Fatalf("%d values, want %d", len(got.Values), len(want.Values))
	}
	for i := range got.Values {
		if !got.Values[i].Equal(want.Values[i]) {
			tb.Errorf("value %d = %v, want %v", i, got.Values[i], want.Values[i])
		}
	}
}

func TestReadErrors(t *testing.T) { forEachBackend(t, testReadErrors) }

func testReadErrors(t *testing.T, client redis.UniversalClient) {
	ctx := context.Background()
	p := testProject(t)
	s := store.New(client, p.Name, store.Options{})
	wide := p.View("wide")

	l := &larder.Lookup{View: wide, Keys: []larder.Key{larder.Int64Key(1)}}
	if err := s.Read(ctx, []*larder.Lookup{l}); !errors.Is(err, larder.ErrNoGeneration) {
		t.Fatalf("read before publish: %v, want ErrNoGeneration", err)
	}
	if _, err := s.Live(ctx, wide); !errors.Is(err, larder.ErrNoGeneration) {
		t.Fatalf("Live before publish: %v, want ErrNoGeneration", err)
	}

	publish(t, s, wide, 10, func(id, gen int64) larder.Row { return wideRow(id, gen, time.Now()) })
	// A fresh store sees it; the first one cached "none" and sees it
	// once the refresh interval passes (tested with Watch).
	fresh := store.New(client, p.Name, store.Options{})
	if err := fresh.Read(ctx, []*larder.Lookup{l}); err != nil || !l.Found[0] {
		t.Fatalf("read after publish: found=%v err=%v", l.Found, err)
	}

	// The same view name with another schema: a deploy that changed
	// larder.yaml before materializing.
	changed := *wide
	changed.Features = append(slices.Clone(wide.Features), larder.Feature{Name: "extra", Type: larder.TypeInt64})
	l2 := &larder.Lookup{View: &changed, Keys: []larder.Key{larder.Int64Key(1)}}
	if err := fresh.Read(ctx, []*larder.Lookup{l, l2}); !errors.Is(err, larder.ErrSchemaChanged) {
		t.Fatalf("read with a changed schema: %v, want ErrSchemaChanged", err)
	}

	// A corrupt value names the view and the key.
	if err := client.HSet(ctx, "larder:test:wide:1:"+bucketOfKey(t, client, 1), "1", "garbage").Err(); err != nil {
		t.Fatal(err)
	}
	err := fresh.Read(ctx, []*larder.Lookup{l})
	if !errors.Is(err, store.ErrCorruptRow) || !strings.Contains(err.Error(), "wide") {
		t.Fatalf("read of a corrupt value: %v, want ErrCorruptRow naming the view", err)
	}

	canceled, cancel := context.WithCancel(ctx)
	cancel()
	if err := fresh.Read(canceled, []*larder.Lookup{l}); !errors.Is(err, context.Canceled) {
		t.Fatalf("read with a cancelled context: %v", err)
	}
}

// bucketOfKey finds the bucket key suffix holding user id in generation 1 of
// the wide view.
func bucketOfKey(tb testing.TB, client redis.UniversalClient, id int64) string {
	tb.Helper()
	for _, k := range keysOf(tb, client, "larder:test:wide:1:*") {
		if ok, _ := client.HExists(context.Background(), k, fmt.Sprint(id)).Result(); ok {
			return k[strings.LastIndexByte(k, ':')+1:]
		}
	}
	tb.Fatalf("no bucket holds user %d", id)
	return ""
}

func TestRedisDown(t *testing.T) {
	ctx := context.Background()
	srv := redistest.Start(t)
	client := redis.NewClient(&redis.Options{Addr: srv.Addr, MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
	defer client.Close()
	p := testProject(t)
	s := store.New(client, p.Name, store.Options{})
	wide := p.View("wide")
	publish(t, s, wide, 10, func(id, gen int64) larder.Row { return wideRow(id, gen, time.Now()) })

	srv.Stop()
	l := &larder.Lookup{View: wide, Keys: []larder.Key{larder.Int64Key(1)}}
	if err := s.Read(ctx, []*larder.Lookup{l}); !errors.Is(err, larder.ErrUnavailable) {
		t.Fatalf("read with Redis down: %v, want ErrUnavailable", err)
	}
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	if _, err := s.BeginSized(short, wide, -1); !errors.Is(err, larder.ErrUnavailable) && !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("begin with Redis down: %v", err)
	}
}

// TestAtomicPublish checks the central promise: a reader never sees a mix
// of two generations, nor a missing entity, while generations are
// published back to back.
func TestAtomicPublish(t *testing.T) { forEachBackend(t, testAtomicPublish) }

func testAtomicPublish(t *testing.T, client redis.UniversalClient) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	p := testProject(t)
	wide := p.View("wide")
	const entities, generations = 200, 20
	at := time.Now()
	writer := store.New(client, p.Name, store.Options{BatchSize: 64, Buckets: 7})
	first := publish(t, writer, wide, entities, func(id, gen int64) larder.Row { return wideRow(id, gen, at) })

	reader := store.New(client, p.Name, store.Options{})
	go func() { _ = reader.Watch(ctx) }()
	keys := make([]larder.Key, entities)
	for i := range keys {
		keys[i] = larder.Int64Key(int64(i + 1))
	}

	var reads, switches atomic.Int64
	var wg sync.WaitGroup
	errc := make(chan error, 4)
	for _, s := range []*store.Store{reader, writer} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l := &larder.Lookup{View: wide, Keys: keys}
			last := first.ID
			for ctx.Err() == nil {
				if err := s.Read(ctx, []*larder.Lookup{l}); err != nil {
					if ctx.Err() == nil {
						errc <- err
					}
					return
				}
				reads.Add(1)
				if l.Generation < last {
					errc <- fmt.Errorf("generation went back from %d to %d", last, l.Generation)
					return
				}
				if l.Generation != last {
					switches.Add(1)
					last = l.Generation
				}
				for i, row := range l.Rows {
					if !l.Found[i] {
						errc <- fmt.Errorf("generation %d: entity %d missing", l.Generation, i+1)
						return
					}
					if g := int64(row.Values[0].Float64() / 1e6); g != l.Generation {
						errc <- fmt.Errorf("read of generation %d holds entity %d of generation %d", l.Generation, i+1, g)
						return
					}
				}
			}
		}()
	}
	var lastGen larder.Generation
	for range generations {
		lastGen = publish(t, writer, wide, entities, func(id, gen int64) larder.Row { return wideRow(id, gen, at) })
	}
	// Let the reader catch the last publish before stopping.
	waitFor(t, 5*time.Second, func() bool {
		g, err := reader.Live(ctx, wide)
		return err == nil && g.ID == lastGen.ID
	})
	cancel()
	wg.Wait()
	close(errc)
	for err := range errc {
		t.Error(err)
	}
	t.Logf("%d reads of %d entities, %d generation switches seen", reads.Load(), entities, switches.Load())
	if reads.Load() < generations {
		t.Errorf("only %d reads ran during %d publishes", reads.Load(), generations)
	}
}

func waitFor(tb testing.TB, d time.Duration, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("condition not met within %s", d)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestGracePeriod(t *testing.T) { forEachBackend(t, testGracePeriod) }

func testGracePeriod(t *testing.T, client redis.UniversalClient) {
	ctx := context.Background()
	p := testProject(t)
	wide := p.View("wide")
	clock := newFakeClock()
	const grace = time.Minute
	s := store.New(client, p.Name, store.Options{Now: clock.Now, GracePeriod: grace, Buckets: 3})
	row := func(id, gen int64) larder.Row { return wideRow(id, gen, clock.Now()) }

	g1 := publish(t, s, wide, 50, row)
	clock.Advance(time.Second)
	g2 := publish(t, s, wide, 50, row)
	g1Keys := keysOf(t, client, fmt.Sprintf("larder:test:wide:%d:*", g1.ID))
	if len(g1Keys) != 3 {
		t.Fatalf("generation 1 has keys %v, want 3 buckets", g1Keys)
	}

	gens, err := s.Generations(ctx, "wide")
	if err != nil || len(gens) != 2 || gens[0].State != "retired" || !gens[0].DeleteAfter.Equal(clock.Now().Add(grace)) || !gens[1].Live {
		t.Fatalf("Generations after the second publish = %+v, %v", gens, err)
	}

	// A reader that cached generation 1 still reads it during the grace period.
	clock.Advance(grace - time.Second)
	if _, err := s.Cleanup(ctx, store.CleanupOptions{}); err != nil {
		t.Fatal(err)
	}
	if n := len(keysOf(t, client, fmt.Sprintf("larder:test:wide:%d:*", g1.ID))); n != 3 {
		t.Fatalf("generation 1 lost buckets before its grace period ended: %d left", n)
	}

	clock.Advance(2 * time.Second)
	if _, err := s.Cleanup(ctx, store.CleanupOptions{}); err != nil {
		t.Fatal(err)
	}
	if left := keysOf(t, client, fmt.Sprintf("larder:test:wide:%d:*", g1.ID)); len(left) != 0 {
		t.Fatalf("generation 1 not deleted after its grace period: %v", left)
	}
	if left := keysOf(t, client, fmt.Sprintf("larder:test:{wide}:g:%d", g1.ID)); len(left) != 0 {
		t.Fatalf("metadata of generation 1 not deleted: %v", left)
	}
	gens, err = s.Generations(ctx, "wide")
	if err != nil || len(gens) != 1 || gens[0].ID != g2.ID {
		t.Fatalf("Generations after cleanup = %+v, %v", gens, err)
	}
	l := &larder.Lookup{View: wide, Keys: []larder.Key{larder.Int64Key(50)}}
	if err := s.Read(ctx, []*larder.Lookup{l}); err != nil || !l.Found[0] || l.Generation != g2.ID {
		t.Fatalf("live generation damaged by cleanup: %+v %v", l, err)
	}
}

func TestAbortAndAbandon(t *testing.T) { forEachBackend(t, testAbortAndAbandon) }

func testAbortAndAbandon(t *testing.T, client redis.UniversalClient) {
	ctx := context.Background()
	p := testProject(t)
	wide := p.View("wide")
	clock := newFakeClock()
	s := store.New(client, p.Name, store.Options{Now: clock.Now, BatchSize: 10})
	row := func(id, gen int64) larder.Row { return wideRow(id, gen, clock.Now()) }
	g1 := publish(t, s, wide, 100, row)

	checkLive := func(want int64) {
		t.Helper()
		r := store.New(client, p.Name, store.Options{})
		l := &larder.Lookup{View: wide, Keys: []larder.Key{larder.Int64Key(7)}}
		if err := r.Read(ctx, []*larder.Lookup{l}); err != nil || !l.Found[0] || l.Generation != want {
			t.Fatalf("live generation: %d found=%v err=%v, want %d", l.Generation, l.Found, err, want)
		}
		if got := int64(l.Rows[0].Values[0].Float64() / 1e6); got != want {
			t.Fatalf("row of generation %d read, want %d", got, want)
		}
	}

	// Aborted: its data is gone, the live generation serves on.
	w, err := s.BeginSized(ctx, wide, -1)
	if err != nil {
		t.Fatal(err)
	}
	for id := int64(1); id <= 100; id++ {
		if err := w.Put(ctx, larder.Int64Key(id), row(id, w.ID())); err != nil {
			t.Fatal(err)
		}
	}
	canceled, cancel := context.WithCancel(ctx)
	cancel() // an interrupted run aborts with its dead context
	if err := w.Abort(canceled); err != nil {
		t.Fatal(err)
	}
	if left := keysOf(t, client, fmt.Sprintf("larder:test:wide:%d:*", w.ID())); len(left) != 0 {
		t.Fatalf("aborted generation left keys: %v", left)
	}
	if left := keysOf(t, client, fmt.Sprintf("larder:test:{wide}:g:%d", w.ID())); len(left) != 0 {
		t.Fatalf("aborted generation left metadata: %v", left)
	}
	if err := w.Put(ctx, larder.Int64Key(1), row(1, 1)); err == nil {
		t.Error("Put after Abort succeeded")
	}
	checkLive(g1.ID)

	// Abandoned (the run was killed): live serves on, the next run
	// publishes, and cleanup deletes the leftover once its lease lapses.
	dead, err := s.BeginSized(ctx, wide, -1)
	if err != nil {
		t.Fatal(err)
	}
	for id := int64(1); id <= 25; id++ {
		if err := dead.Put(ctx, larder.Int64Key(id), row(id, dead.ID())); err != nil {
			t.Fatal(err)
		}
	}
	// Its flushes run in the background: wait until the first rows are in
	// Redis, so that the check below, after the next publish, means
	// something.
	waitFor(t, 5*time.Second, func() bool {
		return len(keysOf(t, client, fmt.Sprintf("larder:test:wide:%d:*", dead.ID()))) > 0
	})
	checkLive(g1.ID)
	g3 := publish(t, s, wide, 100, row)
	checkLive(g3.ID)
	if left := keysOf(t, client, fmt.Sprintf("larder:test:wide:%d:*", dead.ID())); len(left) == 0 {
		t.Fatal("the abandoned generation was deleted while it may still be running")
	}
	if _, err := s.Cleanup(ctx, store.CleanupOptions{}); err != nil {
		t.Fatal(err)
	}
	if left := keysOf(t, client, fmt.Sprintf("larder:test:wide:%d:*", dead.ID())); len(left) == 0 {
		t.Fatal("cleanup deleted a generation whose writer still renews its lease")
	}
	// The process dies: nothing renews the lease, which lapses.
	dead.Kill()
	if err := client.Del(ctx, dead.LeaseKey()).Err(); err != nil {
		t.Fatal(err)
	}
	clock.Advance(s.Options().GracePeriod + time.Minute)
	rep, err := s.Cleanup(ctx, store.CleanupOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if left := keysOf(t, client, fmt.Sprintf("larder:test:wide:%d:*", dead.ID())); len(left) != 0 {
		t.Fatalf("abandoned generation not cleaned: %v", left)
	}
	if n := rep.Count(store.CleanedAbandoned); n != 1 {
		t.Errorf("cleanup reports %d abandoned generations, want 1: %+v", n, rep)
	}
	runs, err := s.Runs(ctx, "wide", 1)
	if err != nil || len(runs) != 1 || runs[0].State != larder.RunAbandoned || runs[0].Generation != dead.ID() {
		t.Errorf("the abandoned run is not recorded: %+v, %v", runs, err)
	}
	checkLive(g3.ID)
	// g1 was retired by g3's publish and its grace (10m) is over too.
	if left := keysOf(t, client, fmt.Sprintf("larder:test:wide:%d:*", g1.ID)); len(left) != 0 {
		t.Fatalf("retired generation not cleaned: %v", left)
	}
}

func TestSuperseded(t *testing.T) { forEachBackend(t, testSuperseded) }

func testSuperseded(t *testing.T, client redis.UniversalClient) {
	ctx := context.Background()
	p := testProject(t)
	wide := p.View("wide")
	s := store.New(client, p.Name, store.Options{})
	older, err := s.BeginSized(ctx, wide, -1)
	if err != nil {
		t.Fatal(err)
	}
	if err := older.Put(ctx, larder.Int64Key(1), wideRow(1, older.ID(), time.Now())); err != nil {
		t.Fatal(err)
	}
	newer := publish(t, s, wide, 5, func(id, gen int64) larder.Row { return wideRow(id, gen, time.Now()) })
	if _, err := older.Publish(ctx); !errors.Is(err, store.ErrSuperseded) {
		t.Fatalf("publishing an older generation after a newer one: %v, want ErrSuperseded", err)
	}
	if g, err := store.New(client, p.Name, store.Options{}).Live(ctx, wide); err != nil || g.ID != newer.ID {
		t.Fatalf("live = %d, %v; want %d", g.ID, err, newer.ID)
	}
	if left := keysOf(t, client, fmt.Sprintf("larder:test:wide:%d:*", older.ID())); len(left) != 0 {
		t.Fatalf("superseded generation left keys: %v", left)
	}
}

func TestPutErrors(t *testing.T) {
	ctx := context.Background()
	p := testProject(t)
	s := store.New(startMiniredis(t), p.Name, store.Options{})
	tests := []struct {
		name string
		key  larder.Key
		row  larder.Row
	}{
		{"key of the wrong type", larder.StringKey("1"), wideRow(1, 1, time.Now())},
		{"missing key", larder.Key{}, wideRow(1, 1, time.Now())},
		{"too few values", larder.Int64Key(1), larder.Row{Values: []larder.Value{larder.Float64Value(1)}}},
		{"value of the wrong type", larder.Int64Key(1), larder.Row{Values: slices.Repeat([]larder.Value{larder.Int64Value(1)}, 20)}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			w, err := s.BeginSized(ctx, p.View("wide"), -1)
			if err != nil {
				t.Fatal(err)
			}
			defer w.Abort(ctx)
			if err := w.Put(ctx, tt.key, tt.row); !larder.IsInvalid(err) {
				t.Fatalf("Put: %v, want an InvalidError", err)
			}
			if _, err := w.Publish(ctx); err == nil {
				t.Fatal("a generation with a failed Put was published")
			}
		})
	}
}

func TestWatch(t *testing.T) { forEachBackend(t, testWatch) }

func testWatch(t *testing.T, client redis.UniversalClient) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	p := testProject(t)
	wide := p.View("wide")
	row := func(id, gen int64) larder.Row { return wideRow(id, gen, time.Now()) }
	// A refresh interval of an hour: only the publish message can
	// bring the new generation in time.
	opts := store.Options{RefreshInterval: time.Hour}
	reader := store.New(client, p.Name, opts)
	writer := store.New(client, p.Name, opts)

	done := make(chan error, 1)
	go func() { done <- reader.Watch(ctx) }()

	g1 := publish(t, writer, wide, 10, row)
	// The reader has no cached view yet: its first read loads it.
	if g, err := reader.Live(ctx, wide); err != nil || g.ID != g1.ID {
		t.Fatalf("Live = %d, %v; want %d", g.ID, err, g1.ID)
	}
	start := time.Now()
	g2 := publish(t, writer, wide, 10, row)
	waitFor(t, 2*time.Second, func() bool {
		g, err := reader.Live(ctx, wide)
		return err == nil && g.ID == g2.ID
	})
	t.Logf("publish seen by another store after %s", time.Since(start).Round(time.Microsecond))

	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("Watch returned %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Watch did not return after its context ended")
	}
}

func TestWatchSurvivesRestart(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	srv := redistest.Start(t)
	client := redis.NewClient(&redis.Options{Addr: srv.Addr, MaxRetries: -1, DialTimeout: 200 * time.Millisecond})
	defer client.Close()
	p := testProject(t)
	wide := p.View("wide")
	row := func(id, gen int64) larder.Row { return wideRow(id, gen, time.Now()) }
	reader := store.New(client, p.Name, store.Options{RefreshInterval: time.Hour})
	writer := store.New(client, p.Name, store.Options{})
	publish(t, writer, wide, 5, row)
	if _, err := reader.Live(ctx, wide); err != nil {
		t.Fatal(err)
	}
	go func() { _ = reader.Watch(ctx) }()
	time.Sleep(50 * time.Millisecond)

	srv.Restart() // data lost: the generation counter starts again at 1
	time.Sleep(300 * time.Millisecond)
	g := publish(t, writer, wide, 5, row)
	// The resubscription re-reads the pointer, and later messages arrive.
	waitFor(t, 5*time.Second, func() bool {
		got, err := reader.Live(ctx, wide)
		return err == nil && got.ID == g.ID && got.PublishedAt.Equal(g.PublishedAt)
	})
}

func TestScan(t *testing.T) { forEachBackend(t, testScan) }

func testScan(t *testing.T, client redis.UniversalClient) {
	ctx := context.Background()
	p := testProject(t)
	s := store.New(client, p.Name, store.Options{})
	row := func(id, gen int64) larder.Row { return wideRow(id, gen, time.Now()) }
	publish(t, s, p.View("wide"), 30, row)
	g2 := publish(t, s, p.View("wide"), 30, row) // the first stays in its grace period
	publish(t, s, p.View("mixed"), 12, func(id, _ int64) larder.Row {
		return larder.Row{EventTime: time.UnixMicro(0), Values: make([]larder.Value, 7)} // 3 bytes
	})
	// Another project's keys are never visited.
	publish(t, store.New(client, "other", store.Options{}), p.View("wide"), 5, row)

	collect := func(opts store.ScanOptions) []store.KeyInfo {
		t.Helper()
		var out []store.KeyInfo
		if err := s.Scan(ctx, opts, func(k store.KeyInfo) error { out = append(out, k); return nil }); err != nil {
			t.Fatal(err)
		}
		return out
	}
	tests := []struct {
		name  string
		opts  store.ScanOptions
		want  int
		check func(store.KeyInfo) bool
	}{
		{"everything", store.ScanOptions{}, 72, func(k store.KeyInfo) bool { return strings.HasPrefix(k.RedisKey, "larder:test:") }},
		{"one view", store.ScanOptions{View: "mixed"}, 12, func(k store.KeyInfo) bool { return k.View == "mixed" && k.Live && k.Size == 3 }},
		{"match", store.ScanOptions{View: "wide", Match: "1?"}, 20, func(k store.KeyInfo) bool {
			return len(k.EntityKey) == 2 && k.EntityKey[0] == '1' && k.Live == (k.Generation == g2.ID)
		}},
		{"limit", store.ScanOptions{Limit: 7}, 7, func(store.KeyInfo) bool { return true }},
		{"unknown view", store.ScanOptions{View: "nope"}, 0, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := collect(tt.opts)
			if len(got) != tt.want {
				t.Fatalf("%d keys, want %d", len(got), tt.want)
			}
			for _, k := range got {
				if !tt.check(k) {
					t.Errorf("unexpected key %+v", k)
				}
			}
		})
	}

	stop := errors.New("stop")
	if err := s.Scan(ctx, store.ScanOptions{}, func(store.KeyInfo) error { return stop }); err != stop {
		t.Fatalf("Scan returned %v, want fn's error", err)
	}
}

func TestConnect(t *testing.T) {
	srv := redistest.Start(t)
	tests := []struct {
		name    string
		redis   larder.Redis
		wantErr string
		check   func(t *testing.T, c redis.UniversalClient)
	}{
		{name: "embedded", redis: larder.Redis{}, wantErr: "embedded"},
		{name: "cluster with a database", redis: larder.Redis{Addrs: []string{"a:1", "b:2"}, DB: 2}, wantErr: "redis.db"},
		{name: "standalone", redis: larder.Redis{Addrs: []string{srv.Addr}, DB: 3}, check: func(t *testing.T, c redis.UniversalClient) {
			if _, ok := c.(*redis.Client); !ok {
				t.Fatalf("client is %T, want *redis.Client", c)
			}
			if err := c.Set(context.Background(), "k", "v", 0).Err(); err != nil {
				t.Fatal(err)
			}
			if n, _ := srv.Client().Do(context.Background(), "select", 3).Result(); n != "OK" {
				t.Fatal("select failed")
			}
		}},
		{name: "cluster", redis: larder.Redis{Addrs: []string{"a:1", "b:2"}}, check: func(t *testing.T, c redis.UniversalClient) {
			if _, ok := c.(*redis.ClusterClient); !ok {
				t.Fatalf("client is %T, want *redis.ClusterClient", c)
			}
		}},
		{name: "sentinel with TLS", redis: larder.Redis{Addrs: []string{"a:1"}, MasterName: "m", TLS: true, Username: "u", Password: "p"}, check: func(t *testing.T, c redis.UniversalClient) {
			opts := c.(*redis.Client).Options()
			if opts.TLSConfig == nil || opts.Username != "u" || opts.Password != "p" {
				t.Fatalf("options not applied: TLS %v user %q", opts.TLSConfig != nil, opts.Username)
			}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, err := store.Connect(tt.redis)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want one mentioning %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			tt.check(t, c)
		})
	}
}

// TestDeadline checks that a request's deadline bounds its Redis calls: a
// server that accepts connections and never answers must not hold a read
// for longer than its context allows.
func TestDeadline(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close() // silent: reads and never answers
			go io.Copy(io.Discard, c)
		}
	}()
	client, err := store.Connect(larder.Redis{Addrs: []string{ln.Addr().String()}})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	p := testProject(t)
	s := store.New(client, p.Name, store.Options{})

	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	l := &larder.Lookup{View: p.View("wide"), Keys: []larder.Key{larder.Int64Key(1)}}
	err = s.Read(ctx, []*larder.Lookup{l})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("read from a silent server: %v, want DeadlineExceeded", err)
	}
	// Generous, for a busy machine: a read that ignored its deadline would
	// wait for an answer that never comes.
	if took := time.Since(start); took > 20*time.Second {
		t.Fatalf("read took %s with a 100ms deadline", took)
	}
}
