package ingest_test

import (
	"context"
	"fmt"
	"strconv"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/larder-dev/larder/ingest"
)

// BenchmarkIngestRedis applies 100,000 entries of a Redis stream (one per
// user, three fields) to a latest view with one consumer, and compares it
// with its floor: the same entries read by XREADGROUP in batches of 500,
// each written by one pipelined HSET, then acknowledged, by one reader;
// no mapping, no check of the stored row, no push log.
func BenchmarkIngestRedis(b *testing.B) {
	const events = 100_000
	f := newFixture(b)
	ctx := context.Background()

	b.Run("larder", func(b *testing.B) {
		run := 0
		for b.Loop() {
			b.StopTimer()
			run++
			s := *f.s
			s.RedisStream, s.Group = fmt.Sprintf("bench:%d", run), "g"
			fill(b, f.client, s.RedisStream, events)
			c := &ingest.RedisConsumer{Client: f.client, Stream: &s, Store: f.st, Name: "b", Block: 10 * time.Millisecond}
			cctx, cancel := context.WithCancel(ctx)
			done := make(chan struct{})
			b.StartTimer()
			go func() {
				defer close(done)
				_ = c.Run(cctx)
			}()
			for n := c.Counts(); n.Written+n.Older+n.Dead < events; n = c.Counts() {
				time.Sleep(time.Millisecond)
			}
			b.StopTimer()
			cancel()
			<-done
			if n := c.Counts(); n.Dead != 0 {
				b.Fatalf("%d dead events", n.Dead)
			}
			f.client.Del(ctx, s.RedisStream)
			b.StartTimer()
		}
		b.ReportMetric(float64(events)*float64(b.N)/b.Elapsed().Seconds(), "events/s")
	})

	b.Run("floor", func(b *testing.B) {
		run := 0
		for b.Loop() {
			b.StopTimer()
			run++
			key := fmt.Sprintf("benchfloor:%d", run)
			fill(b, f.client, key, events)
			if err := f.client.XGroupCreate(ctx, key, "g", "0").Err(); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			for done := 0; done < events; {
				res, err := f.client.XReadGroup(ctx, &redis.XReadGroupArgs{Group: "g", Consumer: "f", Streams: []string{key, ">"}, Count: 500}).Result()
				if err != nil {
					b.Fatal(err)
				}
				msgs := res[0].Messages
				pipe := f.client.Pipeline()
				ids := make([]string, len(msgs))
				for i, m := range msgs {
					pipe.HSet(ctx, "benchfloor:rows:"+strconv.Itoa(i%64), m.Values["user_id"], m.Values["clicks"])
					ids[i] = m.ID
				}
				pipe.XAck(ctx, key, "g", ids...)
				if _, err := pipe.Exec(ctx); err != nil {
					b.Fatal(err)
				}
				done += len(msgs)
			}
			b.StopTimer()
			f.client.Del(ctx, key)
			b.StartTimer()
		}
		b.ReportMetric(float64(events)*float64(b.N)/b.Elapsed().Seconds(), "events/s")
	})
}

// fill appends events entries to the stream key in pipelines.
func fill(b *testing.B, client redis.UniversalClient, key string, events int) {
	ctx := context.Background()
	ts := strconv.FormatInt(t0.UnixMilli(), 10)
	for lo := 0; lo < events; lo += 1000 {
		pipe := client.Pipeline()
		for i := lo; i < min(events, lo+1000); i++ {
			pipe.XAdd(ctx, &redis.XAddArgs{Stream: key, Values: []any{"user_id", strconv.Itoa(1000 + i), "ts", ts, "clicks", strconv.Itoa(i), "url", "/p"}})
		}
		if _, err := pipe.Exec(ctx); err != nil {
			b.Fatal(err)
		}
	}
}
