package store_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strings"
	"testing"
	"time"

	"github.com/larder-dev/larder"
	"github.com/larder-dev/larder/redistest"
	"github.com/larder-dev/larder/store"
	"github.com/redis/go-redis/v9"
)

// incrementalSuite runs on a standalone redis-server and on miniredis (the
// Test functions below) and on a Redis Cluster (TestIncrementalCluster).
var incrementalSuite = []struct {
	name string
	test func(t *testing.T, client redis.UniversalClient)
}{
	{"WriteIfNewer", testWriteIfNewer},
	{"EventTimeOrder", testEventTimeOrder},
	{"Watermark", testWatermark},
	{"IncrementalErrors", testIncrementalErrors},
	{"IncrementalSuperseded", testIncrementalSuperseded},
	{"IncrementalScriptFlushed", testIncrementalScriptFlushed},
	{"Runs", testRuns},
	{"RunsHistoryAndOrder", testRunsHistoryAndOrder},
}

// TestIncrementalCluster runs the incremental and run-record tests on a
// Redis Cluster of three masters, flushed between tests: every command they
// send must stay within one slot.
func TestIncrementalCluster(t *testing.T) {
	if testing.Short() {
		t.Skip("starts a Redis Cluster")
	}
	cluster := redistest.StartCluster(t, 3)
	client := cluster.Client()
	for _, c := range incrementalSuite {
		t.Run(c.name, func(t *testing.T) {
			err := client.ForEachMaster(context.Background(), func(ctx context.Context, n *redis.Client) error {
				return n.FlushAll(ctx).Err()
			})
			if err != nil {
				t.Fatal(err)
			}
			c.test(t, client)
		})
	}
}

// priceRow is a row of the items view: one float64 price.
func priceRow(at time.Time, price float64) larder.Row {
	return larder.Row{EventTime: at, Values: []larder.Value{larder.Float64Value(price)}}
}

// putRows puts rows into w in order and fails the test on error.
func putRows(tb testing.TB, w larder.GenerationWriter, rows []keyedRow) {
	tb.Helper()
	for _, r := range rows {
		if err := w.Put(context.Background(), larder.StringKey(r.key), r.row); err != nil {
			tb.Fatal(err)
		}
	}
}

type keyedRow struct {
	key string
	row larder.Row
}

// publishItems publishes a full generation of the items view with rows.
func publishItems(tb testing.TB, s *store.Store, v *larder.View, rows []keyedRow) larder.Generation {
	tb.Helper()
	w, err := s.BeginSized(context.Background(), v, -1)
	if err != nil {
		tb.Fatal(err)
	}
	putRows(tb, w, rows)
	g, err := w.Publish(context.Background())
	if err != nil {
		tb.Fatal(err)
	}
	return g
}

// readPrices reads the price and event time of each key from a fresh Store,
// as a server would; a missing row reads as NaN at the zero time.
func readPrices(tb testing.TB, client redis.UniversalClient, v *larder.View, keys ...string) ([]float64, []time.Time) {
	tb.Helper()
	r := store.New(client, "test", store.Options{})
	prices := make([]float64, len(keys))
	times := make([]time.Time, len(keys))
	for i, k := range keys {
		row, found, err := r.GetRow(context.Background(), v, larder.StringKey(k))
		if err != nil {
			tb.Fatal(err)
		}
		prices[i] = math.NaN()
		if found {
			prices[i], times[i] = row.Values[0].Float64(), row.EventTime
		}
	}
	return prices, times
}

func TestWriteIfNewer(t *testing.T) { forEachBackend(t, testWriteIfNewer) }

func testWriteIfNewer(t *testing.T, client redis.UniversalClient) {
	ctx := context.Background()
	p := testProject(t)
	items := p.View("items")
	s := store.New(client, p.Name, store.Options{})
	at := time.Date(2026, 4, 1, 12, 0, 0, 0, time.UTC)
	us := time.Microsecond

	full := publishItems(t, s, items, []keyedRow{
		{"older", priceRow(at, 1)}, {"equal", priceRow(at, 1)}, {"newer", priceRow(at, 1)},
		{"dup-older", priceRow(at, 1)}, {"dup-equal", priceRow(at, 1)},
	})
	w, err := s.BeginIncrementalWriter(ctx, items)
	if err != nil {
		t.Fatal(err)
	}
	if w.ID() != full.ID {
		t.Errorf("incremental writer ID = %d, want the live generation %d", w.ID(), full.ID)
	}
	putRows(t, w, []keyedRow{
		{"older", priceRow(at.Add(-us), 2)},
		{"equal", priceRow(at, 3)},
		{"newer", priceRow(at.Add(us), 4)},
		{"added", priceRow(at.Add(-time.Hour), 5)},
		// Two rows of one key in one batch: the stored row is compared with
		// the first, then the second with the first.
		{"dup-older", priceRow(at.Add(2*us), 6)}, {"dup-older", priceRow(at.Add(us), 7)},
		{"dup-equal", priceRow(at.Add(us), 8)}, {"dup-equal", priceRow(at.Add(us), 9)},
	})
	g, err := w.Publish(ctx)
	if err != nil {
		t.Fatal(err)
	}

	tests := []struct {
		key   string
		price float64
		at    time.Time
	}{
		{"older", 1, at},                 // an older row never replaces a newer one
		{"equal", 3, at},                 // on equal event times the new row wins
		{"newer", 4, at.Add(us)},         // a newer row replaces
		{"added", 5, at.Add(-time.Hour)}, // a new entity is added, however old
		{"dup-older", 6, at.Add(2 * us)},
		{"dup-equal", 9, at.Add(us)},
	}
	for _, tc := range tests {
		t.Run(tc.key, func(t *testing.T) {
			prices, times := readPrices(t, client, items, tc.key)
			if prices[0] != tc.price || !times[0].Equal(tc.at) {
				t.Errorf("%s = %v at %v, want %v at %v", tc.key, prices[0], times[0], tc.price, tc.at)
			}
		})
	}
	if n := w.OlderRows(); n != 2 {
		t.Errorf("OlderRows = %d, want 2 (older, and the second dup-older)", n)
	}
	if g.ID != full.ID || g.Rows != 6 || g.PublishedAt.Before(full.PublishedAt) {
		t.Errorf("published %+v, want generation %d with 6 rows", g, full.ID)
	}
	if g.StartedAt != full.StartedAt || g.Fingerprint != full.Fingerprint {
		t.Errorf("published %+v, want the full run's start time and fingerprint (%+v)", g, full)
	}
	// Readers that never saw the incremental run read the new row count.
	live, err := store.New(client, p.Name, store.Options{}).Live(ctx, items)
	if err != nil || live.Rows != 6 || live.ID != full.ID {
		t.Errorf("Live = %+v, %v; want generation %d with 6 rows", live, err, full.ID)
	}
}

func TestEventTimeOrder(t *testing.T) { forEachBackend(t, testEventTimeOrder) }

// testEventTimeOrder checks the script's byte-wise comparison of event times
// across signs, varint lengths and magnitudes that a float64 cannot tell
// apart.
func testEventTimeOrder(t *testing.T, client redis.UniversalClient) {
	ctx := context.Background()
	p := testProject(t)
	items := p.View("items")
	s := store.New(client, p.Name, store.Options{})
	u := time.UnixMicro
	const big = 1 << 53 // float64 cannot tell big from big+1
	pairs := []struct{ stored, put time.Time }{
		{u(0), u(1)}, {u(1), u(0)}, {u(0), u(-1)}, {u(-1), u(0)}, {u(-1), u(-2)}, {u(-2), u(-1)},
		{u(63), u(64)}, {u(64), u(63)}, {u(-64), u(-65)}, {u(-65), u(-64)}, // zigzag 127/128: one byte to two
		{u(100), u(-100)}, {u(-100), u(100)},
		{u(big), u(big + 1)}, {u(big + 1), u(big)}, {u(-big), u(-big - 1)}, {u(-big - 1), u(-big)},
		{u(math.MaxInt64), u(math.MaxInt64 - 1)}, {u(math.MaxInt64 - 1), u(math.MaxInt64)},
		{u(math.MinInt64), u(math.MinInt64 + 1)}, {u(math.MinInt64 + 1), u(math.MinInt64)},
		{u(math.MinInt64), u(math.MaxInt64)}, {u(math.MaxInt64), u(math.MinInt64)},
		{time.Time{}, u(0)}, {u(0), time.Time{}},
		{u(1_700_000_000_000_000), u(1_700_000_000_000_001)}, {u(1_700_000_000_000_001), u(1_700_000_000_000_000)},
		{u(1_700_000_000_000_000), u(1_700_000_000_000_000)},
		{u(1 << 20), u(1<<20 + 128)}, {u(1<<20 + 128), u(1 << 20)}, // same length, the high group decides
	}
	var stored, put []keyedRow
	keys := make([]string, len(pairs))
	for i, pr := range pairs {
		keys[i] = fmt.Sprint(i)
		stored = append(stored, keyedRow{keys[i], priceRow(pr.stored, 1)})
		put = append(put, keyedRow{keys[i], priceRow(pr.put, 2)})
	}
	publishItems(t, s, items, stored)
	w, err := s.BeginIncremental(ctx, items)
	if err != nil {
		t.Fatal(err)
	}
	putRows(t, w, put)
	if _, err := w.Publish(ctx); err != nil {
		t.Fatal(err)
	}
	prices, _ := readPrices(t, client, items, keys...)
	for i, pr := range pairs {
		want := 1.0
		if !pr.put.Before(pr.stored) {
			want = 2
		}
		if prices[i] != want {
			t.Errorf("stored at %d µs, put at %d µs: price %v, want %v", pr.stored.UnixMicro(), pr.put.UnixMicro(), prices[i], want)
		}
	}
}

func TestWatermark(t *testing.T) { forEachBackend(t, testWatermark) }

func testWatermark(t *testing.T, client redis.UniversalClient) {
	ctx := context.Background()
	p := testProject(t)
	items := p.View("items")
	// Batches of two rows: of five rows Put, four are flushed before
	// Publish or Abort, and the fifth is still buffered.
	s := store.New(client, p.Name, store.Options{BatchSize: 2})
	at := time.Date(2026, 4, 1, 12, 0, 0, 0, time.UTC)

	watermark := func(tb testing.TB) time.Time {
		tb.Helper()
		wm, err := s.Watermark(ctx, items)
		if err != nil {
			tb.Fatal(err)
		}
		return wm
	}
	rows := func(from time.Time, price float64) []keyedRow {
		var out []keyedRow
		for i := range 5 {
			// The newest event time is the first row's, not the last's.
			out = append(out, keyedRow{fmt.Sprint("k", i), priceRow(from.Add(-time.Duration(i)*time.Minute), price)})
		}
		return out
	}

	publishItems(t, s, items, rows(at, 1))
	if wm := watermark(t); !wm.Equal(at) {
		t.Fatalf("watermark after the full run = %v, want %v, the newest event time Put", wm, at)
	}

	steps := []struct {
		name  string
		from  time.Time
		price float64
		abort bool
		// wantWM is the watermark after the step; wantPrices the prices of
		// k0..k4.
		wantWM     time.Time
		wantPrices []float64
	}{
		{"abort keeps the watermark and the flushed rows", at.Add(time.Hour), 2, true,
			at, []float64{2, 2, 2, 2, 1}},
		{"publish advances the watermark", at.Add(2 * time.Hour), 3, false,
			at.Add(2 * time.Hour), []float64{3, 3, 3, 3, 3}},
		{"older rows never move it back", at.Add(-time.Hour), 4, false,
			at.Add(2 * time.Hour), []float64{3, 3, 3, 3, 3}},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			before := watermark(t)
			w, err := s.BeginIncremental(ctx, items)
			if err != nil {
				t.Fatal(err)
			}
			putRows(t, w, rows(st.from, st.price))
			if wm := watermark(t); !wm.Equal(before) {
				t.Errorf("watermark before Publish = %v, want it unchanged at %v", wm, before)
			}
			if st.abort {
				err = w.Abort(ctx)
			} else {
				_, err = w.Publish(ctx)
			}
			if err != nil {
				t.Fatal(err)
			}
			if wm := watermark(t); !wm.Equal(st.wantWM) {
				t.Errorf("watermark = %v, want %v", wm, st.wantWM)
			}
			prices, _ := readPrices(t, client, items, "k0", "k1", "k2", "k3", "k4")
			for i, want := range st.wantPrices {
				if prices[i] != want {
					t.Errorf("prices = %v, want %v", prices, st.wantPrices)
					break
				}
			}
		})
	}

	t.Run("an empty full run has no watermark", func(t *testing.T) {
		publishItems(t, s, items, nil)
		if wm := watermark(t); !wm.IsZero() {
			t.Errorf("watermark = %v, want the zero time", wm)
		}
	})
}

func TestIncrementalErrors(t *testing.T) { forEachBackend(t, testIncrementalErrors) }

func testIncrementalErrors(t *testing.T, client redis.UniversalClient) {
	ctx := context.Background()
	p := testProject(t)
	items := p.View("items")
	s := store.New(client, p.Name, store.Options{})

	if _, err := s.BeginIncremental(ctx, items); !errors.Is(err, larder.ErrNoGeneration) {
		t.Errorf("BeginIncremental before any full run: %v, want ErrNoGeneration", err)
	} else if want := "run a full `larder materialize items` first"; !strings.Contains(err.Error(), want) {
		t.Errorf("BeginIncremental before any full run: %q, want it to say %q", err, want)
	}
	if _, err := s.Watermark(ctx, items); !errors.Is(err, larder.ErrNoGeneration) {
		t.Errorf("Watermark before any full run: %v, want ErrNoGeneration", err)
	}

	publishItems(t, s, items, []keyedRow{{"a", priceRow(time.Unix(100, 0), 1)}})
	retyped := *items
	retyped.Features = []larder.Feature{{Name: "price", Type: larder.TypeFloat32}}
	if _, err := s.BeginIncremental(ctx, &retyped); !errors.Is(err, larder.ErrSchemaChanged) {
		t.Errorf("BeginIncremental with another schema: %v, want ErrSchemaChanged", err)
	}

	// A key of the wrong type fails the writer, like a full one.
	w, err := s.BeginIncremental(ctx, items)
	if err != nil {
		t.Fatal(err)
	}
	if err := w.Put(ctx, larder.Int64Key(1), priceRow(time.Unix(200, 0), 2)); !larder.IsInvalid(err) {
		t.Errorf("Put of an int64 key into a string-keyed view: %v, want an *InvalidError", err)
	}
	if _, err := w.Publish(ctx); err == nil {
		t.Error("Publish after a failed Put succeeded")
	}
	if err := w.Abort(ctx); err != nil {
		t.Errorf("Abort: %v", err)
	}
	if wm, err := s.Watermark(ctx, items); err != nil || !wm.Equal(time.Unix(100, 0)) {
		t.Errorf("watermark after the failed run = %v, %v; want %v", wm, err, time.Unix(100, 0).UTC())
	}
}

func TestIncrementalSuperseded(t *testing.T) { forEachBackend(t, testIncrementalSuperseded) }

// testIncrementalSuperseded: a full run that publishes while an incremental
// run writes wins; the incremental run fails and leaves the new generation
// alone.
func testIncrementalSuperseded(t *testing.T, client redis.UniversalClient) {
	ctx := context.Background()
	p := testProject(t)
	items := p.View("items")
	at := time.Date(2026, 4, 1, 12, 0, 0, 0, time.UTC)

	tests := []struct {
		name      string
		batchSize int // 1: the incremental run meets the new generation at a flush
	}{
		{"at publish", 0},
		{"at a flush", 1},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := store.New(client, p.Name, store.Options{BatchSize: tc.batchSize})
			publishItems(t, s, items, []keyedRow{{"a", priceRow(at, 1)}})
			w, err := s.BeginIncremental(ctx, items)
			if err != nil {
				t.Fatal(err)
			}
			full := publishItems(t, s, items, []keyedRow{{"a", priceRow(at.Add(time.Minute), 2)}})

			var putErr error
			for i := range 3 {
				if putErr = w.Put(ctx, larder.StringKey(fmt.Sprint("b", i)), priceRow(at.Add(time.Hour), 3)); putErr != nil {
					break
				}
			}
			_, err = w.Publish(ctx)
			if !errors.Is(err, store.ErrSuperseded) {
				t.Errorf("Publish after a full run replaced the generation: %v (Put: %v), want ErrSuperseded", err, putErr)
			}
			_ = w.Abort(ctx)

			wm, err := s.Watermark(ctx, items)
			if err != nil || !wm.Equal(at.Add(time.Minute)) {
				t.Errorf("watermark = %v, %v; want the full run's %v", wm, err, at.Add(time.Minute))
			}
			prices, _ := readPrices(t, client, items, "a", "b0")
			if prices[0] != 2 || !math.IsNaN(prices[1]) {
				t.Errorf("a, b0 = %v, want the full run's 2 and no b0", prices)
			}
			live, err := store.New(client, p.Name, store.Options{}).Live(ctx, items)
			if err != nil || live.ID != full.ID || live.Rows != 1 {
				t.Errorf("live = %+v, %v; want generation %d with 1 row", live, err, full.ID)
			}
		})
	}
}

func TestIncrementalScriptFlushed(t *testing.T) { forEachBackend(t, testIncrementalScriptFlushed) }

// testIncrementalScriptFlushed: a server that lost its scripts (restart,
// failover, SCRIPT FLUSH) during a run gets them again; and Publish
// announces the new row count.
func testIncrementalScriptFlushed(t *testing.T, client redis.UniversalClient) {
	ctx := context.Background()
	p := testProject(t)
	items := p.View("items")
	s := store.New(client, p.Name, store.Options{})
	at := time.Date(2026, 4, 1, 12, 0, 0, 0, time.UTC)
	g := publishItems(t, s, items, []keyedRow{{"a", priceRow(at, 1)}})

	w, err := s.BeginIncremental(ctx, items)
	if err != nil {
		t.Fatal(err)
	}
	flush := func(ctx context.Context, c redis.Cmdable) error { return c.ScriptFlush(ctx).Err() }
	if cc, ok := client.(*redis.ClusterClient); ok {
		err = cc.ForEachMaster(ctx, func(ctx context.Context, n *redis.Client) error { return flush(ctx, n) })
	} else {
		err = flush(ctx, client)
	}
	if err != nil {
		t.Fatal(err)
	}
	sub := client.Subscribe(ctx, "larder:test:publish")
	defer sub.Close()
	if _, err := sub.Receive(ctx); err != nil { // the subscription confirmation
		t.Fatal(err)
	}

	putRows(t, w, []keyedRow{{"a", priceRow(at.Add(time.Second), 2)}, {"b", priceRow(at, 3)}})
	if _, err := w.Publish(ctx); err != nil {
		t.Fatal(err)
	}
	prices, _ := readPrices(t, client, items, "a", "b")
	if prices[0] != 2 || prices[1] != 3 {
		t.Errorf("a, b = %v, want [2 3]", prices)
	}
	rctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	msg, err := sub.ReceiveMessage(rctx)
	if err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("items %d", g.ID); msg.Payload != want {
		t.Errorf("publish message %q, want %q", msg.Payload, want)
	}
}

// BenchmarkIncrementalWrite writes 10k rows of the wide view into a live
// generation of 10k entities, every row newer than the stored one, next to
// a full write of the same rows into a new generation: the cost of the
// write-if-newer script against plain HSETs.
func BenchmarkIncrementalWrite(b *testing.B) {
	const n = 10_000
	p := testProject(b)
	wide := p.View("wide")
	client := redistest.Start(b).Client()
	s := store.New(client, p.Name, store.Options{})
	writeWide(b, s, wide, n)
	ctx := context.Background()
	at := time.Now()

	run := func(b *testing.B, begin func() (larder.GenerationWriter, error)) {
		row := wideRow(1, 1, at)
		b.ReportAllocs()
		var rows int64
		for b.Loop() {
			w, err := begin()
			if err != nil {
				b.Fatal(err)
			}
			for id := int64(1); id <= n; id++ {
				at = at.Add(time.Microsecond)
				row.EventTime = at
				if err := w.Put(ctx, larder.Int64Key(id), row); err != nil {
					b.Fatal(err)
				}
			}
			if _, err := w.Publish(ctx); err != nil {
				b.Fatal(err)
			}
			rows += n
		}
		b.ReportMetric(float64(rows)/b.Elapsed().Seconds(), "rows/s")
	}
	b.Run("full", func(b *testing.B) {
		run(b, func() (larder.GenerationWriter, error) { return s.BeginSized(ctx, wide, n) })
	})
	b.Run("incremental", func(b *testing.B) {
		run(b, func() (larder.GenerationWriter, error) { return s.BeginIncremental(ctx, wide) })
	})
}
