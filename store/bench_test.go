package store_test

import (
	"context"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/larder-dev/larder"
	"github.com/larder-dev/larder/redistest"
	"github.com/larder-dev/larder/store"
	"github.com/redis/go-redis/v9"
)

// benchEntities is the size of the view the read benchmarks read from.
const benchEntities = 10_000

// readFixture is a real redis-server holding one generation of the wide view.
type readFixture struct {
	client *redis.Client
	store  *store.Store
	view   *larder.View
}

func newReadFixture(b *testing.B) *readFixture {
	b.Helper()
	p := testProject(b)
	client := redistest.Start(b).Client()
	s := store.New(client, p.Name, store.Options{})
	writeWide(b, s, p.View("wide"), benchEntities)
	return &readFixture{client: client, store: s, view: p.View("wide")}
}

// keys returns n distinct random keys of the view.
func (f *readFixture) keys(n int) []larder.Key {
	rng := rand.New(rand.NewPCG(3, 4))
	keys := make([]larder.Key, n)
	for i, id := range rng.Perm(benchEntities)[:n] {
		keys[i] = larder.Int64Key(int64(id + 1))
	}
	return keys
}

// redisKeys returns the bucket key and field of each key, found by scanning,
// for the raw go-redis floor.
func (f *readFixture) redisKeys(b *testing.B, keys []larder.Key) (hashes, fields []string) {
	b.Helper()
	where := map[string]string{}
	err := f.store.Scan(context.Background(), store.ScanOptions{View: "wide"}, func(k store.KeyInfo) error {
		where[k.EntityKey] = k.RedisKey
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	for _, k := range keys {
		fields = append(fields, k.String())
		hashes = append(hashes, where[k.String()])
	}
	return hashes, fields
}

func benchRead(b *testing.B, n int) {
	f := newReadFixture(b)
	keys := f.keys(n)
	ctx := context.Background()

	b.Run("larder", func(b *testing.B) {
		l := &larder.Lookup{View: f.view, Keys: keys}
		lookups := []*larder.Lookup{l}
		b.ReportAllocs()
		for b.Loop() {
			if err := f.store.Read(ctx, lookups); err != nil {
				b.Fatal(err)
			}
		}
		if !l.Found[n-1] {
			b.Fatal("row not found")
		}
	})
	b.Run("larder-parallel16", func(b *testing.B) {
		b.ReportAllocs()
		b.SetParallelism(8) // 16 goroutines on 2 cores
		b.RunParallel(func(pb *testing.PB) {
			l := &larder.Lookup{View: f.view, Keys: keys}
			lookups := []*larder.Lookup{l}
			for pb.Next() {
				if err := f.store.Read(ctx, lookups); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
	// The floor: the same HGETs in one go-redis pipeline, no key building
	// and no decoding.
	hashes, fields := f.redisKeys(b, keys)
	b.Run("go-redis-floor", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			pipe := f.client.Pipeline()
			for i := range hashes {
				pipe.HGet(ctx, hashes[i], fields[i])
			}
			if _, err := pipe.Exec(ctx); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkRead1x20 reads one entity of a 20-float64 view.
func BenchmarkRead1x20(b *testing.B) { benchRead(b, 1) }

// BenchmarkRead101x20 reads 101 entities of a 20-float64 view, the lookup
// of a Rank over 100 candidates plus the context entity.
func BenchmarkRead101x20(b *testing.B) { benchRead(b, 101) }

// BenchmarkWrite writes and publishes generations of 20-float64 rows and
// reports rows per second.
func BenchmarkWrite(b *testing.B) {
	const rows = 20_000
	p := testProject(b)
	client := redistest.Start(b).Client()
	s := store.New(client, p.Name, store.Options{})
	v := p.View("wide")
	rng := rand.New(rand.NewPCG(5, 6))
	prepared := make([]larder.Row, 1000)
	for i := range prepared {
		prepared[i] = randomWideRow(rng, time.Now())
	}
	ctx := context.Background()
	b.ReportAllocs()
	start := time.Now()
	for b.Loop() {
		w, err := s.BeginSized(ctx, v, rows)
		if err != nil {
			b.Fatal(err)
		}
		for id := range rows {
			if err := w.Put(ctx, larder.Int64Key(int64(id)), prepared[id%len(prepared)]); err != nil {
				b.Fatal(err)
			}
		}
		if _, err := w.Publish(ctx); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(rows*b.N)/time.Since(start).Seconds(), "rows/s")
	b.ReportMetric(0, "ns/op")
}
