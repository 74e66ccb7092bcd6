package store_test

import (
	"cmp"
	"context"
	"fmt"
	"math/rand/v2"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
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

// BenchmarkWrite100k writes and publishes a generation of 100,000 rows of
// a latest view of three features (float64, int64 and a short string, the
// shape of the heavy benchmark's latest view), keys in random order, and
// compares it with its floor: raw go-redis pipelines of HSETs of the same
// encoded rows into the same bucket hashes, sorted by bucket and cut into
// pipelines of 1,000 rows, over as many connections as the writer uses,
// with every command made before the clock starts. Besides rows/s, it
// reports the CPU seconds the client and redis-server spent per run, which
// other work on the machine skews less than the elapsed time.
func BenchmarkWrite100k(b *testing.B) {
	const rows = 100_000
	p := &larder.Project{
		Name:     "bench",
		Entities: []*larder.Entity{{Name: "user", Key: "user_id", KeyType: larder.TypeInt64}},
		Sources:  []*larder.Source{{Name: "events", Path: "events.parquet", EventTime: "ts"}},
		Views: []*larder.View{{Name: "latest", Kind: larder.KindLatest, Entity: "user", Source: "events", Features: []larder.Feature{
			{Name: "amount", Type: larder.TypeFloat64}, {Name: "quantity", Type: larder.TypeInt64}, {Name: "category", Type: larder.TypeString},
		}}},
	}
	p.SetDefaults()
	if err := p.Validate(); err != nil {
		b.Fatal(err)
	}
	v := p.View("latest")
	rng := rand.New(rand.NewPCG(7, 8))
	keys := make([]larder.Key, rows)
	data := make([]larder.Row, rows)
	now := time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC)
	for i, id := range rng.Perm(rows) {
		keys[i] = larder.Int64Key(int64(id))
		data[i] = larder.Row{EventTime: now.Add(-time.Duration(rng.IntN(3600)) * time.Second), Values: []larder.Value{
			larder.Float64Value(float64(rng.IntN(100_000)) / 100),
			larder.Int64Value(int64(1 + rng.IntN(5))),
			larder.StringValue(fmt.Sprintf("category-%d", rng.IntN(50))),
		}}
	}
	srv := redistest.Start(b)
	client := srv.Client()
	ctx := context.Background()
	s := store.New(client, p.Name, store.Options{Now: func() time.Time { return now }})

	b.Run("larder", func(b *testing.B) {
		b.ReportAllocs()
		m := startCPU(b, client)
		for b.Loop() {
			w, err := s.BeginSized(ctx, v, rows)
			if err != nil {
				b.Fatal(err)
			}
			for i := range keys {
				if err := w.Put(ctx, keys[i], data[i]); err != nil {
					b.Fatal(err)
				}
			}
			g, err := w.Publish(ctx)
			if err != nil {
				b.Fatal(err)
			}
			if g.Rows != rows {
				b.Fatalf("published %d rows, want %d", g.Rows, rows)
			}
		}
		m.report(b, rows)
	})

	// The same rows pushed into the live generation (Push, as the Push RPC
	// and stream ingestion do), in calls of 500 rows from 4 goroutines,
	// as many as the writer's connections: each row is logged for the
	// next full run and written if newer.
	b.Run("push", func(b *testing.B) {
		// A live generation to push into (the sub-benchmarks above end
		// with a flush).
		w, err := s.BeginSized(ctx, v, rows)
		if err == nil {
			_, err = w.Publish(ctx)
		}
		if err != nil {
			b.Fatal(err)
		}
		batches := make(chan []larder.PushRow, rows/500+1)
		all := make([]larder.PushRow, rows)
		for i := range keys {
			all[i] = larder.PushRow{Key: keys[i], Row: data[i]}
		}
		m := startCPU(b, client)
		for b.Loop() {
			for lo := 0; lo < rows; lo += 500 {
				batches <- all[lo:min(rows, lo+500)]
			}
			var wg sync.WaitGroup
			var failed atomic.Value
			for range store.DefaultWriteConnections {
				wg.Go(func() {
					for {
						select {
						case batch := <-batches:
							if _, err := s.Push(ctx, v, batch); err != nil {
								failed.Store(err)
								return
							}
						default:
							return
						}
					}
				})
			}
			wg.Wait()
			if err, _ := failed.Load().(error); err != nil {
				b.Fatal(err)
			}
		}
		m.report(b, rows)
	})

	// The floor of a push: the same batches of 500 rows in the same
	// order, each row one HSET into its bucket hash in a pipeline per
	// batch, from 4 goroutines: what writing rows one at a time costs
	// Redis, without the check of the stored row and the log.
	b.Run("push-floor", func(b *testing.B) {
		cells := pushCells(b, keys, data)
		m := startCPU(b, client)
		run := 0
		for b.Loop() {
			run++
			prefix := fmt.Sprintf("pushfloor:%d:", run)
			inBatches(b, cells, func(batch []pushCell) error {
				pipe := client.Pipeline()
				for _, c := range batch {
					pipe.HSet(ctx, prefix+c.bucket, c.key, c.value)
				}
				_, err := pipe.Exec(ctx)
				return err
			})
		}
		m.report(b, rows)
	})

	// What any server-side script that writes rows one at a time costs:
	// the same batches, each one script call that HSETs every row into
	// its bucket, with no check and no log. Push's own script does the
	// same writes plus, per row, a read of the stored row and a compare.
	b.Run("push-script-floor", func(b *testing.B) {
		script := redis.NewScript(`
for i = 1, #KEYS do
  redis.call('HSET', KEYS[i], ARGV[2 * i - 1], ARGV[2 * i])
end
return #KEYS
`)
		cells := pushCells(b, keys, data)
		m := startCPU(b, client)
		run := 0
		for b.Loop() {
			run++
			scriptBatches(b, client, script, cells, fmt.Sprintf("pushscript:%d:", run))
		}
		m.report(b, rows)
	})

	// The least a write-if-newer in a script costs with this layout: the
	// same batches into buckets that already hold the rows (as Push's
	// live generation does), each one script call that, per row, reads
	// the stored row, compares the event times with the store's own
	// comparison and writes the row, with no log, no grouping by bucket
	// and no check of the live generation. Push's figure over this one
	// is what its log and its bookkeeping cost; this one over push-floor,
	// what checking a row before writing it costs.
	b.Run("push-check-floor", func(b *testing.B) {
		script := redis.NewScript(store.CompareRowsLua + `
local call, version = redis.call, tonumber(ARGV[1])
local out, a = {}, 2
for k = 1, #KEYS do
  local f, row = ARGV[a], ARGV[a + 1]
  local old = call('HGET', KEYS[k], f)
  if old and #old >= 2 and byte(old, 1) == version and compare(row, old) < 0 then
    out[k] = 0
  else
    call('HSET', KEYS[k], f, row)
    if old then out[k] = 1 else out[k] = 2 end
  end
  a = a + 2
end
return out
`)
		cells := pushCells(b, keys, data)
		const prefix = "pushcheck:"
		pipe := client.Pipeline()
		for _, c := range cells {
			pipe.HSet(ctx, prefix+c.bucket, c.key, c.value)
		}
		if _, err := pipe.Exec(ctx); err != nil {
			b.Fatal(err)
		}
		m := startCPU(b, client)
		for b.Loop() {
			scriptBatches(b, client, script, cells, prefix, store.CodecVersion)
		}
		m.report(b, rows)
	})

	b.Run("floor", func(b *testing.B) {
		types := []larder.Type{larder.TypeFloat64, larder.TypeInt64, larder.TypeString}
		buckets := uint32((rows + store.DefaultRowsPerBucket - 1) / store.DefaultRowsPerBucket)
		pipes := floorPipelines(b, keys, data, types, buckets)
		m := startCPU(b, client)
		run := 0
		for b.Loop() {
			run++
			prefix := fmt.Sprintf("floor:%d:", run)
			if n := sendFloor(b, client, pipes, prefix); n != rows {
				b.Fatalf("HSET added %d fields, want %d", n, rows)
			}
		}
		m.report(b, rows)
	})
}

// inBatches calls write with the cells in batches of 500, from
// store.DefaultWriteConnections goroutines, as Push's benchmark calls Push.
// A goroutine whose write fails reports the error and stops.
func inBatches(b *testing.B, cells []pushCell, write func(batch []pushCell) error) {
	b.Helper()
	next := make(chan int, len(cells)/500+1)
	for lo := 0; lo < len(cells); lo += 500 {
		next <- lo
	}
	close(next)
	var wg sync.WaitGroup
	for range store.DefaultWriteConnections {
		wg.Go(func() {
			for lo := range next {
				if err := write(cells[lo:min(len(cells), lo+500)]); err != nil {
					b.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
}

// scriptBatches runs script on the cells in batches (see inBatches): one
// call per batch, whose keys are the rows' bucket hashes under prefix and
// whose arguments are head, then each row's key and value.
func scriptBatches(b *testing.B, client *redis.Client, script *redis.Script, cells []pushCell, prefix string, head ...any) {
	b.Helper()
	inBatches(b, cells, func(batch []pushCell) error {
		ks := make([]string, len(batch))
		args := make([]any, 0, len(head)+2*len(batch))
		args = append(args, head...)
		for i, c := range batch {
			ks[i] = prefix + c.bucket
			args = append(args, c.key, c.value)
		}
		return script.Run(context.Background(), client, ks, args...).Err()
	})
}

// pushCell is one row of the push floors: its bucket hash's number, the
// entity's canonical key and the encoded row.
type pushCell struct {
	bucket     string
	key, value []byte
}

// pushCells encodes the rows of BenchmarkWrite100k's view (float64, int64,
// string) as the store does, each with its bucket, in their order.
func pushCells(tb testing.TB, keys []larder.Key, rows []larder.Row) []pushCell {
	tb.Helper()
	types := []larder.Type{larder.TypeFloat64, larder.TypeInt64, larder.TypeString}
	buckets := uint32((len(rows) + store.DefaultRowsPerBucket - 1) / store.DefaultRowsPerBucket)
	cells := make([]pushCell, len(rows))
	for i, k := range keys {
		value, err := store.AppendRow(nil, types, rows[i])
		if err != nil {
			tb.Fatal(err)
		}
		key := k.AppendCanonical(nil)
		h := uint32(2166136261) // FNV-1a, the store's bucket hash
		for _, c := range key {
			h = (h ^ uint32(c)) * 16777619
		}
		cells[i] = pushCell{bucket: strconv.FormatUint(uint64(h%buckets), 10), key: key, value: value}
	}
	return cells
}

// floorPipeline is one pipeline of the write floor: one HSET per bucket,
// with the key left to fill.
type floorPipeline struct {
	buckets []uint32
	args    [][]any
}

// floorPipelines encodes the rows as the store does, sorts them by bucket
// and cuts them into pipelines of about 1,000 rows between buckets.
func floorPipelines(tb testing.TB, keys []larder.Key, rows []larder.Row, types []larder.Type, buckets uint32) []floorPipeline {
	tb.Helper()
	type enc struct {
		bucket     uint32
		key, value []byte
	}
	all := make([]enc, len(keys))
	for i, k := range keys {
		value, err := store.AppendRow(nil, types, rows[i])
		if err != nil {
			tb.Fatal(err)
		}
		key := k.AppendCanonical(nil)
		h := uint32(2166136261) // FNV-1a, the store's bucket hash
		for _, c := range key {
			h = (h ^ uint32(c)) * 16777619
		}
		all[i] = enc{bucket: h % buckets, key: key, value: value}
	}
	slices.SortStableFunc(all, func(x, y enc) int { return cmp.Compare(x.bucket, y.bucket) })
	var out []floorPipeline
	for len(all) > 0 {
		n := min(1000, len(all))
		for n < len(all) && all[n].bucket == all[n-1].bucket {
			n++
		}
		var fp floorPipeline
		for i := 0; i < n; {
			bk := all[i].bucket
			args := []any{"hset", ""}
			for ; i < n && all[i].bucket == bk; i++ {
				args = append(args, all[i].key, all[i].value)
			}
			fp.buckets, fp.args = append(fp.buckets, bk), append(fp.args, args)
		}
		out = append(out, fp)
		all = all[n:]
	}
	return out
}

// sendFloor sends the pipelines on store.DefaultWriteConnections
// goroutines into the bucket hashes under prefix, and returns the fields
// HSET added.
func sendFloor(tb testing.TB, client *redis.Client, pipes []floorPipeline, prefix string) int64 {
	tb.Helper()
	ctx := context.Background()
	jobs := make(chan *floorPipeline)
	var added atomic.Int64
	var failed atomic.Value
	var wg sync.WaitGroup
	for range store.DefaultWriteConnections {
		wg.Go(func() {
			for fp := range jobs {
				pipe := client.Pipeline()
				for i, args := range fp.args {
					args[1] = prefix + strconv.FormatUint(uint64(fp.buckets[i]), 10)
					pipe.Do(ctx, args...)
				}
				cmds, err := pipe.Exec(ctx)
				if err != nil {
					failed.Store(err)
					continue
				}
				for _, c := range cmds {
					n, _ := c.(*redis.Cmd).Int64()
					added.Add(n)
				}
			}
		})
	}
	for i := range pipes {
		jobs <- &pipes[i]
	}
	close(jobs)
	wg.Wait()
	if err, ok := failed.Load().(error); ok {
		tb.Fatal(err)
	}
	return added.Load()
}

// cpuMeter measures the CPU time of this process and of a redis-server
// over a benchmark.
type cpuMeter struct {
	client *redis.Client
	self   time.Duration
	redis  float64
}

func startCPU(tb testing.TB, client *redis.Client) *cpuMeter {
	tb.Helper()
	return &cpuMeter{client: client, self: processCPU(tb), redis: redisCPU(tb, client)}
}

// report reports rows/s, and the client's and redis-server's CPU seconds
// per run of rows rows.
func (m *cpuMeter) report(b *testing.B, rows int) {
	b.StopTimer()
	self, red := processCPU(b)-m.self, redisCPU(b, m.client)-m.redis
	b.ReportMetric(float64(rows*b.N)/b.Elapsed().Seconds(), "rows/s")
	b.ReportMetric(self.Seconds()/float64(b.N), "client-cpu-s/op")
	b.ReportMetric(red/float64(b.N), "redis-cpu-s/op")
	if err := m.client.FlushAll(context.Background()).Err(); err != nil {
		b.Fatal(err)
	}
}

// processCPU returns the user and system CPU time of the process so far.
func processCPU(tb testing.TB) time.Duration {
	tb.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// redisCPU returns the CPU seconds redis-server has used so far (INFO cpu).
func redisCPU(tb testing.TB, client *redis.Client) float64 {
	tb.Helper()
	info, err := client.Info(context.Background(), "cpu").Result()
	if err != nil {
		tb.Fatal(err)
	}
	var total float64
	for line := range strings.Lines(info) {
		for _, field := range []string{"used_cpu_user:", "used_cpu_sys:"} {
			if v, ok := strings.CutPrefix(strings.TrimSpace(line), field); ok {
				f, err := strconv.ParseFloat(v, 64)
				if err != nil {
					tb.Fatalf("INFO cpu %s: %v", field, err)
				}
				total += f
			}
		}
	}
	return total
}
