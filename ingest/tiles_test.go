package ingest_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"
	"github.com/redis/go-redis/v9"
	"github.com/twmb/franz-go/pkg/kfake"
	"github.com/twmb/franz-go/pkg/kgo"

	"github.com/larder-dev/larder"
	"github.com/larder-dev/larder/ingest"
	"github.com/larder-dev/larder/materializer"
	"github.com/larder-dev/larder/redistest"
	"github.com/larder-dev/larder/store"
)

// tileRow is one event of the streaming aggregate tests, as a Parquet row.
type tileRow struct {
	UserID int64     `parquet:"user_id"`
	TS     time.Time `parquet:"ts,timestamp(millisecond)"`
	Amount *float64  `parquet:"amount,optional"`
	Qty    *int64    `parquet:"qty,optional"`
	Flag   *bool     `parquet:"flag,optional"`
	Page   *string   `parquet:"page,optional"`
}

// tileT is the read time of the streaming aggregate tests, a tile end.
var tileT = time.Date(2026, 5, 1, 12, 0, 0, 0, time.UTC)

// tileProject has two aggregate views of the same aggregations: stats,
// fed by the stream ev (Redis, or the Kafka topic on brokers) and by the
// source batch, and ref, batch-only, over the source all.
func tileProject(tb testing.TB, dir string, brokers []string) *larder.Project {
	tb.Helper()
	ws := []larder.Window{}
	for _, s := range []string{"5m", "30m", "2h"} {
		w, err := larder.ParseWindow(s)
		if err != nil {
			tb.Fatal(err)
		}
		ws = append(ws, w)
	}
	aggs := func() []larder.Aggregation {
		return []larder.Aggregation{
			{Column: "amount", Type: larder.TypeFloat64, Windows: ws, Functions: []larder.AggFunc{
				larder.AggCount, larder.AggSum, larder.AggMean, larder.AggMin, larder.AggMax, larder.AggLast}},
			{Column: "qty", Type: larder.TypeInt64, Windows: ws, Functions: []larder.AggFunc{
				larder.AggCount, larder.AggSum, larder.AggMean, larder.AggMin, larder.AggMax, larder.AggLast}},
			{Column: "flag", Type: larder.TypeBool, Windows: ws, Functions: []larder.AggFunc{
				larder.AggCount, larder.AggSum, larder.AggMin, larder.AggMax, larder.AggLast}},
			{Column: "page", Type: larder.TypeString, Windows: ws, Functions: []larder.AggFunc{larder.AggCount, larder.AggLast}},
		}
	}
	p := &larder.Project{
		Name:     "tiles",
		Dir:      dir,
		Entities: []*larder.Entity{{Name: "user", Key: "user_id", KeyType: larder.TypeInt64}},
		Sources: []*larder.Source{
			{Name: "batch", Path: "batch.parquet", EventTime: "ts"},
			{Name: "all", Path: "all.parquet", EventTime: "ts"},
		},
		Views: []*larder.View{
			{Name: "stats", Kind: larder.KindAggregate, Entity: "user", Source: "batch", MaxAge: time.Hour, Tile: time.Minute, Aggregations: aggs()},
			{Name: "ref", Kind: larder.KindAggregate, Entity: "user", Source: "all", Aggregations: aggs()},
		},
		Streams: []*larder.Stream{{Name: "ev", View: "stats", RedisStream: "events"}},
	}
	if brokers != nil {
		p.Streams[0].RedisStream = ""
		p.Streams[0].Kafka = &larder.KafkaTopic{Brokers: brokers, Topic: kafkaTopic}
	}
	p.SetDefaults()
	if err := p.Validate(); err != nil {
		tb.Fatal(err)
	}
	return p
}

// tileEvents returns n random events of users 1..25 with times in
// (from, tileT + 10m], many on tile and window edges, none of one user at
// the same time (so that last has one answer whatever the order).
func tileEvents(rng *rand.Rand, n int, from time.Time) []tileRow {
	seen := map[[2]int64]bool{}
	span := int(tileT.Add(10*time.Minute).Sub(from) / time.Second)
	var out []tileRow
	for len(out) < n {
		var at time.Time
		switch rng.IntN(3) {
		case 0: // anywhere
			at = from.Add(time.Duration(1+rng.IntN(span)) * time.Second)
		default: // on a minute, or just after one: tile and window edges
			m := 1 + rng.IntN(span/60)
			at = from.Add(time.Duration(m)*time.Minute + time.Duration(rng.IntN(2))*time.Millisecond)
		}
		r := tileRow{UserID: 1 + rng.Int64N(25), TS: at}
		if seen[[2]int64{r.UserID, at.UnixMilli()}] {
			continue
		}
		seen[[2]int64{r.UserID, at.UnixMilli()}] = true
		if rng.IntN(6) > 0 {
			a := math.Round(rng.Float64()*10000) / 100
			r.Amount = &a
		}
		if rng.IntN(6) > 0 {
			q := rng.Int64N(2000) - 500
			r.Qty = &q
		}
		if rng.IntN(6) > 0 {
			b := rng.IntN(2) == 0
			r.Flag = &b
		}
		if rng.IntN(6) > 0 {
			s := fmt.Sprintf("/p%d", rng.IntN(40))
			r.Page = &s
		}
		out = append(out, r)
	}
	return out
}

func writeTileParquet(tb testing.TB, path string, rows []tileRow) {
	tb.Helper()
	f, err := os.Create(path)
	if err != nil {
		tb.Fatal(err)
	}
	w := parquet.NewGenericWriter[tileRow](f)
	if _, err := w.Write(rows); err != nil {
		tb.Fatal(err)
	}
	if err := w.Close(); err != nil {
		tb.Fatal(err)
	}
	if err := f.Close(); err != nil {
		tb.Fatal(err)
	}
}

// redisFields returns the fields of a Redis stream entry of r.
func redisFields(r tileRow) []any {
	out := []any{"user_id", strconv.FormatInt(r.UserID, 10), "ts", strconv.FormatInt(r.TS.UnixMilli(), 10)}
	if r.Amount != nil {
		out = append(out, "amount", strconv.FormatFloat(*r.Amount, 'g', -1, 64))
	}
	if r.Qty != nil {
		out = append(out, "qty", strconv.FormatInt(*r.Qty, 10))
	}
	if r.Flag != nil {
		out = append(out, "flag", strconv.FormatBool(*r.Flag))
	}
	if r.Page != nil {
		out = append(out, "page", *r.Page)
	}
	return out
}

// kafkaValue returns the JSON value of a Kafka record of r.
func kafkaValue(tb testing.TB, r tileRow) []byte {
	m := map[string]any{"user_id": r.UserID, "ts": r.TS.UnixMilli()}
	if r.Amount != nil {
		m["amount"] = *r.Amount
	}
	if r.Qty != nil {
		m["qty"] = *r.Qty
	}
	if r.Flag != nil {
		m["flag"] = *r.Flag
	}
	if r.Page != nil {
		m["page"] = *r.Page
	}
	b, err := json.Marshal(m)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// tileCase is a run of the equivalence test: a transport, and where the
// batch's source ends (events up to it go to Parquet; the stream carries
// those after the batch's cutoff, and some of the others too, which the
// batch covers).
type tileCase struct {
	name  string
	kafka bool
	// cutBack is how long before tileT the batch's source ends; from is
	// how long before tileT events start.
	cutBack, from time.Duration
}

// TestStreamingAggregateEquivalence replays randomized events (out of
// order, late, on tile and window edges, with nulls) through a Redis
// stream and through Kafka into a streaming aggregate view, and checks
// that every value read at T equals a batch run of the same events as of
// T: integers exact, floats within 1e-9 relative. Some events go through
// a batch run with an earlier cutoff, the rest through the stream. Then
// it replays the whole stream through a new consumer group, and checks
// that nothing is counted twice and no value moves.
func TestStreamingAggregateEquivalence(t *testing.T) {
	for _, tc := range []tileCase{
		{name: "redis/stream only", cutBack: time.Hour, from: time.Hour},
		{name: "redis/batch and stream", cutBack: 40 * time.Minute, from: 3 * time.Hour},
		{name: "kafka/stream only", kafka: true, cutBack: time.Hour, from: time.Hour},
		{name: "kafka/batch and stream", kafka: true, cutBack: 25 * time.Minute, from: 3 * time.Hour},
	} {
		t.Run(tc.name, func(t *testing.T) { testTileEquivalence(t, tc) })
	}
}

func testTileEquivalence(t *testing.T, tc tileCase) {
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(uint64(len(tc.name)), uint64(tc.cutBack)))
	cut := tileT.Add(-tc.cutBack)
	events := tileEvents(rng, 700, tileT.Add(-tc.from))

	dir := t.TempDir()
	var batch, streamed []tileRow
	for _, e := range events {
		if !e.TS.After(cut) {
			batch = append(batch, e)
		}
	}
	// The batch run's cutoff is its source's newest event rounded down to
	// the tile: the stream carries every event after it, and some before.
	if len(batch) > 0 {
		newest := batch[0].TS
		for _, e := range batch {
			if e.TS.After(newest) {
				newest = e.TS
			}
		}
		cut = larder.TileFloor(newest, time.Minute)
	}
	for _, e := range events {
		if e.TS.After(cut) || rng.IntN(4) == 0 {
			streamed = append(streamed, e) // at or before cut: late, the batch covers it
		}
	}
	rng.Shuffle(len(streamed), func(i, j int) { streamed[i], streamed[j] = streamed[j], streamed[i] })
	writeTileParquet(t, filepath.Join(dir, "batch.parquet"), batch)
	writeTileParquet(t, filepath.Join(dir, "all.parquet"), events)

	srv := redistest.Start(t)
	client := srv.Client()
	var brokers []string
	if tc.kafka {
		cluster, err := kfake.NewCluster(kfake.NumBrokers(1), kfake.SeedTopics(3, kafkaTopic))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(cluster.Close)
		brokers = cluster.ListenAddrs()
	}
	p := tileProject(t, dir, brokers)
	now := tileT.Add(30 * time.Second)
	st := store.New(client, p.Name, store.Options{Now: func() time.Time { return now }})
	if _, err := materializer.New(p, st, materializer.Options{AsOf: cut.Add(20 * time.Second)}).Run(ctx, "stats"); err != nil {
		t.Fatal(err)
	}
	if _, err := materializer.New(p, st, materializer.Options{AsOf: tileT}).Run(ctx, "ref"); err != nil {
		t.Fatal(err)
	}

	s := p.Stream("ev")
	consume := func(group string) ingest.Counts {
		t.Helper()
		sc := *s
		sc.Group = group
		if tc.kafka {
			c := &ingest.KafkaConsumer{Client: client, Stream: &sc, Store: st, Batch: 64,
				Opts: []kgo.Opt{kgo.HeartbeatInterval(100 * time.Millisecond), kgo.FetchMaxWait(100 * time.Millisecond)}}
			stop := run(t, c)
			waitFor(t, "the events applied", func() bool { return handled(c.Counts()) >= int64(len(streamed)) })
			stop()
			return c.Counts()
		}
		c := &ingest.RedisConsumer{Client: client, Stream: &sc, Store: st, Name: "c", Batch: 64, Block: 50 * time.Millisecond}
		cctx, cancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() { defer close(done); _ = c.Run(cctx) }()
		waitFor(t, "the events applied", func() bool { return handled(c.Counts()) >= int64(len(streamed)) })
		cancel()
		<-done
		return c.Counts()
	}
	if tc.kafka {
		prod, err := kgo.NewClient(kgo.SeedBrokers(brokers...))
		if err != nil {
			t.Fatal(err)
		}
		defer prod.Close()
		for _, e := range streamed {
			r := &kgo.Record{Topic: kafkaTopic, Key: []byte(strconv.FormatInt(e.UserID, 10)), Value: kafkaValue(t, e)}
			if err := prod.ProduceSync(ctx, r).FirstErr(); err != nil {
				t.Fatal(err)
			}
		}
	} else {
		for _, e := range streamed {
			if err := client.XAdd(ctx, &redis.XAddArgs{Stream: s.RedisStream, Values: redisFields(e)}).Err(); err != nil {
				t.Fatal(err)
			}
		}
	}
	first := consume(s.Group)
	late := 0
	for _, e := range streamed {
		if !e.TS.After(cut) {
			late++
		}
	}
	if first.Dead != 0 || first.Written != int64(len(streamed)-late) || first.Older != int64(late) {
		t.Errorf("first pass: %+v; want %d written, %d older (covered by the batch)", first, len(streamed)-late, late)
	}
	got := readTiles(t, st, p)
	compareTiles(t, p, got, readRef(t, st, p))

	// A replay of the whole stream, by a group that starts at its start.
	again := consume("replay")
	if again.Written != 0 || again.Dead != 0 {
		t.Errorf("replay: %+v; want every event left out", again)
	}
	for k, row := range readTiles(t, st, p) {
		for i, x := range row {
			if !x.Equal(got[k][i]) {
				t.Errorf("user %d feature %s moved on replay: %v, was %v", k, p.View("stats").Features[i].Name, x, got[k][i])
			}
		}
	}
}

// readTiles reads stats for users 1..25 at the store's time, checking the
// answer's T.
func readTiles(t *testing.T, st *store.Store, p *larder.Project) map[int64][]larder.Value {
	t.Helper()
	l := &larder.Lookup{View: p.View("stats")}
	for id := int64(1); id <= 25; id++ {
		l.Keys = append(l.Keys, larder.Int64Key(id))
	}
	if err := st.Read(context.Background(), []*larder.Lookup{l}); err != nil {
		t.Fatal(err)
	}
	if !l.TileTime.Equal(tileT) {
		t.Errorf("read as of %s, want %s", l.TileTime, tileT)
	}
	out := map[int64][]larder.Value{}
	for j, k := range l.Keys {
		if l.Found[j] {
			if !l.Rows[j].EventTime.Equal(tileT) {
				t.Errorf("user %s: event time %s, want T", k, l.Rows[j].EventTime)
			}
			out[k.Int64()] = slices.Clone(l.Rows[j].Values)
		}
	}
	return out
}

func readRef(t *testing.T, st *store.Store, p *larder.Project) map[int64][]larder.Value {
	t.Helper()
	l := &larder.Lookup{View: p.View("ref")}
	for id := int64(1); id <= 25; id++ {
		l.Keys = append(l.Keys, larder.Int64Key(id))
	}
	if err := st.Read(context.Background(), []*larder.Lookup{l}); err != nil {
		t.Fatal(err)
	}
	out := map[int64][]larder.Value{}
	for j, k := range l.Keys {
		if l.Found[j] {
			out[k.Int64()] = slices.Clone(l.Rows[j].Values)
		}
	}
	return out
}

// compareTiles checks that got equals want for every entity and feature:
// integers and the rest exactly, floats within 1e-9 relative.
func compareTiles(t *testing.T, p *larder.Project, got, want map[int64][]larder.Value) {
	t.Helper()
	feats := p.View("stats").Features
	for k, w := range want {
		g, ok := got[k]
		if !ok {
			// An entity of the reference whose events are all older than
			// every window has a row of nulls and zeros there.
			for i, x := range w {
				if !x.IsNull() && !(x.Type() == larder.TypeInt64 && x.Int64() == 0) {
					t.Errorf("user %d: no row, want %s = %v", k, feats[i].Name, x)
				}
			}
			continue
		}
		for i := range w {
			if !sameValue(g[i], w[i]) {
				t.Errorf("user %d %s: got %v, want %v", k, feats[i].Name, g[i], w[i])
			}
		}
	}
	for k := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("user %d: a row the batch has not", k)
		}
	}
}

func sameValue(a, b larder.Value) bool {
	if a.Type() != b.Type() {
		return false
	}
	if a.Type() == larder.TypeFloat64 {
		x, y := a.Float64(), b.Float64()
		return x == y || math.Abs(x-y) <= 1e-9*math.Max(math.Abs(x), math.Abs(y))
	}
	return a.Equal(b)
}
