package ingest_test

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/larder-dev/larder"
	"github.com/larder-dev/larder/ingest"
	"github.com/larder-dev/larder/materializer"
	"github.com/larder-dev/larder/redistest"
	"github.com/larder-dev/larder/store"
)

// benchEntities is the number of users of the streaming aggregate
// benchmarks; each has benchPerEntity events in Parquet and as many in the
// stream.
const (
	benchEntities  = 10_000
	benchPerEntity = 10
)

// BenchmarkStreamingAggregate measures the streaming aggregate view of the
// equivalence test (4 aggregations, 17 functions over 5m, 30m and 2h:
// 51 features), fed by 10,000 users × 10 events in Parquet (a batch run 30
// minutes before T) and 10 more each through the stream, against the
// batch-only view of the same windows over the same Parquet events:
//
//   - ingest: a consumer applying 100,000 Redis stream entries to the
//     view's tiles, against its floor, the same entries read by
//     XREADGROUP in batches of 500, each written by one pipelined HSET,
//     then acknowledged (as BenchmarkIngestRedis's floor);
//   - read: a store read of 1 entity, p50 and p99, streaming against
//     batch-only (the gRPC layer above it is the same for both);
//   - memory: Redis bytes per entity (MEMORY USAGE): the generation's row,
//     plus, for the streaming view, its tiles hash.
func BenchmarkStreamingAggregate(b *testing.B) {
	ctx := context.Background()
	dir := b.TempDir()
	rng := rand.New(rand.NewPCG(1, 2))
	cut := tileT.Add(-30 * time.Minute)
	var rows []tileRow
	for u := int64(1); u <= benchEntities; u++ {
		for range benchPerEntity {
			a, q, f, s := float64(rng.IntN(10000))/100, rng.Int64N(1000), rng.IntN(2) == 0, "/p"+strconv.Itoa(rng.IntN(40))
			rows = append(rows, tileRow{UserID: u, TS: cut.Add(-time.Duration(rng.IntN(150*60)) * time.Second), Amount: &a, Qty: &q, Flag: &f, Page: &s})
		}
	}
	writeTileParquet(b, filepath.Join(dir, "batch.parquet"), rows)
	writeTileParquet(b, filepath.Join(dir, "all.parquet"), rows)
	srv := redistest.Start(b)
	client := srv.Client()
	p := tileProject(b, dir, nil)
	st := store.New(client, p.Name, store.Options{Now: func() time.Time { return tileT.Add(30 * time.Second) }})
	if _, err := materializer.New(p, st, materializer.Options{AsOf: cut}).Run(ctx, "stats"); err != nil {
		b.Fatal(err)
	}
	if _, err := materializer.New(p, st, materializer.Options{AsOf: cut}).Run(ctx, "ref"); err != nil {
		b.Fatal(err)
	}
	v := p.View("stats")
	// The stream's events, for the memory and read figures: 10 per user.
	events := make([]larder.TileEvent, 0, 1000)
	for i := range benchEntities * benchPerEntity {
		u := int64(i%benchEntities + 1)
		at := cut.Add(time.Duration(1+rng.IntN(30*60)) * time.Second)
		events = append(events, larder.TileEvent{Key: larder.Int64Key(u), ID: "m" + strconv.Itoa(i), Time: at, Values: []larder.Value{
			larder.Float64Value(float64(rng.IntN(10000)) / 100), larder.Int64Value(rng.Int64N(1000)), larder.BoolValue(rng.IntN(2) == 0), larder.StringValue("/q"),
		}})
		if len(events) == cap(events) {
			if _, err := st.AddEvents(ctx, v, events); err != nil {
				b.Fatal(err)
			}
			events = events[:0]
		}
	}

	b.Run("memory", func(b *testing.B) {
		for b.Loop() {
			ref, n, err := st.MemoryUsage(ctx, "ref")
			if err != nil {
				b.Fatal(err)
			}
			gen, _, err := st.MemoryUsage(ctx, "stats")
			if err != nil {
				b.Fatal(err)
			}
			var tiles int64
			for u := int64(1); u <= benchEntities; u++ {
				key := fmt.Sprintf("larder:%s:{stats:%d}:t", p.Name, u)
				m, err := client.MemoryUsage(ctx, key, 0).Result()
				if err != nil {
					b.Fatal(err)
				}
				tiles += m
			}
			b.ReportMetric(float64(ref)/float64(n), "batch-bytes/entity")
			b.ReportMetric(float64(gen+tiles)/float64(n), "streaming-bytes/entity")
		}
	})

	read := func(b *testing.B, view string) {
		var lat latencies
		l := &larder.Lookup{View: p.View(view), Keys: []larder.Key{{}}}
		i := 0
		for b.Loop() {
			i++
			l.Keys[0] = larder.Int64Key(int64(i%benchEntities + 1))
			start := time.Now()
			if err := st.Read(ctx, []*larder.Lookup{l}); err != nil {
				b.Fatal(err)
			}
			lat = append(lat, time.Since(start))
			if !l.Found[0] {
				b.Fatal("no row")
			}
		}
		lat.report(b)
	}
	b.Run("read/streaming", func(b *testing.B) { read(b, "stats") })
	b.Run("read/batch-only", func(b *testing.B) { read(b, "ref") })

	const n = 100_000
	fillTiles := func(b *testing.B, key string, run int) {
		for lo := 0; lo < n; lo += 1000 {
			pipe := client.Pipeline()
			for i := lo; i < min(n, lo+1000); i++ {
				at := cut.Add(time.Duration(1+(i*7+run)%(30*60)) * time.Second)
				pipe.XAdd(ctx, &redis.XAddArgs{Stream: key, Values: []any{
					"user_id", strconv.Itoa(i%benchEntities + 1), "ts", strconv.FormatInt(at.UnixMilli(), 10),
					"amount", "12.5", "qty", strconv.Itoa(i % 100), "flag", "true", "page", "/r",
				}})
			}
			if _, err := pipe.Exec(ctx); err != nil {
				b.Fatal(err)
			}
		}
	}
	b.Run("ingest/larder", func(b *testing.B) {
		run := 0
		for b.Loop() {
			b.StopTimer()
			run++
			s := *p.Stream("ev")
			s.RedisStream, s.Group = fmt.Sprintf("benchtiles:%d", run), "g"
			fillTiles(b, s.RedisStream, run)
			c := &ingest.RedisConsumer{Client: client, Stream: &s, Store: st, Name: "b", Block: 10 * time.Millisecond}
			cctx, cancel := context.WithCancel(ctx)
			done := make(chan struct{})
			b.StartTimer()
			go func() {
				defer close(done)
				_ = c.Run(cctx)
			}()
			for got := c.Counts(); got.Written+got.Older+got.Dead < n; got = c.Counts() {
				time.Sleep(time.Millisecond)
			}
			b.StopTimer()
			cancel()
			<-done
			if got := c.Counts(); got.Dead != 0 || got.Written != n {
				b.Fatalf("counts %+v, want %d written", got, n)
			}
			client.Del(ctx, s.RedisStream)
			b.StartTimer()
		}
		b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "events/s")
	})
	b.Run("ingest/floor", func(b *testing.B) {
		run := 0
		for b.Loop() {
			b.StopTimer()
			run++
			key := fmt.Sprintf("benchtilesfloor:%d", run)
			fillTiles(b, key, run)
			if err := client.XGroupCreate(ctx, key, "g", "0").Err(); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			for done := 0; done < n; {
				res, err := client.XReadGroup(ctx, &redis.XReadGroupArgs{Group: "g", Consumer: "f", Streams: []string{key, ">"}, Count: 500}).Result()
				if err != nil {
					b.Fatal(err)
				}
				msgs := res[0].Messages
				pipe := client.Pipeline()
				ids := make([]string, len(msgs))
				for i, m := range msgs {
					pipe.HSet(ctx, "benchtilesfloor:rows:"+strconv.Itoa(i%64), m.Values["user_id"], m.Values["amount"])
					ids[i] = m.ID
				}
				pipe.XAck(ctx, key, "g", ids...)
				if _, err := pipe.Exec(ctx); err != nil {
					b.Fatal(err)
				}
				done += len(msgs)
			}
			b.StopTimer()
			client.Del(ctx, key)
			b.StartTimer()
		}
		b.ReportMetric(float64(n)*float64(b.N)/b.Elapsed().Seconds(), "events/s")
	})
}

// latencies records the duration of each call and reports p50 and p99.
type latencies []time.Duration

func (l *latencies) report(b *testing.B) {
	b.Helper()
	if len(*l) == 0 {
		return
	}
	slices.Sort(*l)
	at := func(q float64) float64 { return float64((*l)[int(q*float64(len(*l)-1))].Nanoseconds()) / 1e3 }
	b.ReportMetric(at(0.50), "p50-µs")
	b.ReportMetric(at(0.99), "p99-µs")
}
