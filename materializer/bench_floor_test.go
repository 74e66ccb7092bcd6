package materializer_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/larder-dev/larder"
	"github.com/larder-dev/larder/materializer"
	"github.com/larder-dev/larder/store"
	"github.com/parquet-go/parquet-go"
	"github.com/redis/go-redis/v9"
)

// The floors of the heavy benchmark: what parquet-go and Redis cost for the
// same work as the latest view of 10M events, measured in the same run so
// that cmd/benchtable can print each larder figure next to its floor.

const (
	// heavyFloorConns is the number of connections the write floor uses,
	// store.DefaultWriteConnections like the store's writer.
	heavyFloorConns = store.DefaultWriteConnections
	// heavyFloorBatch is the rows per pipeline of the write floor, about
	// those of the store's writer.
	heavyFloorBatch = 1000
)

// decodeFilePages reads every page of every column of the Parquet file at
// path, doing nothing with the values, and returns the number of rows and
// of values decoded. The heavy source holds only the columns that the
// latest and aggregate views read. It returns the first error of opening or
// reading the file.
func decodeFilePages(path string) (rows, values int64, err error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return 0, 0, err
	}
	pf, err := parquet.OpenFile(f, fi.Size(), parquet.SkipPageIndex(true), parquet.SkipBloomFilters(true), parquet.ReadBufferSize(256<<10))
	if err != nil {
		return 0, 0, fmt.Errorf("open %s: %w", path, err)
	}
	for _, rg := range pf.RowGroups() {
		rows += rg.NumRows()
		for _, chunk := range rg.ColumnChunks() {
			pages := chunk.Pages()
			for {
				p, err := pages.ReadPage()
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil {
					pages.Close()
					return 0, 0, fmt.Errorf("read %s: %w", path, err)
				}
				values += p.NumValues()
				parquet.Release(p)
			}
			pages.Close()
		}
	}
	return rows, values, nil
}

// decodeSourcePages decodes every page of the Parquet files in dir on
// GOMAXPROCS goroutines, as many as the materializer reads with, a file at
// a time each, and returns the rows and values decoded.
func decodeSourcePages(tb testing.TB, dir string) (rows, values int64) {
	tb.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.parquet"))
	if err != nil || len(files) == 0 {
		tb.Fatalf("no Parquet files in %s (%v)", dir, err)
	}
	jobs := make(chan string, len(files))
	for _, f := range files {
		jobs <- f
	}
	close(jobs)
	var (
		mu       sync.Mutex
		firstErr error
		wg       sync.WaitGroup
	)
	for range min(runtime.GOMAXPROCS(0), len(files)) {
		wg.Go(func() {
			for path := range jobs {
				r, v, err := decodeFilePages(path)
				mu.Lock()
				rows, values = rows+r, values+v
				if err != nil && firstErr == nil {
					firstErr = err
				}
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	if firstErr != nil {
		tb.Fatal(firstErr)
	}
	return rows, values
}

// benchFloorDecode is Heavy/floor-decode: raw parquet-go page decoding of
// the source in dir, which holds events rows of 5 columns. It reports and
// returns rows/s.
func benchFloorDecode(b *testing.B, dir string, events int) float64 {
	var rows int64
	cpu0 := cpuTime(b)
	for b.Loop() {
		r, v := decodeSourcePages(b, dir)
		if r != int64(events) || v != 5*int64(events) {
			b.Fatalf("decoded %d rows, %d values; want %d rows, %d values", r, v, events, 5*events)
		}
		rows += r
	}
	b.ReportMetric(0, "ns/op")
	rate := float64(rows) / b.Elapsed().Seconds()
	b.ReportMetric(rate, "rows/s")
	b.ReportMetric(float64(rows)/(cpuTime(b)-cpu0).Seconds(), "rows/cpu-s")
	return rate
}

// encodedRows is a view's rows as the store encodes them: canonical keys
// and AppendRow values.
type encodedRows struct {
	keys, values [][]byte
}

// captureStore is a GenerationStore that keeps the encoding of every row it
// is given, to replay them as the write floor.
type captureStore struct {
	rows *encodedRows
}

func (s captureStore) Begin(_ context.Context, v *larder.View, _ larder.BeginOptions) (larder.GenerationWriter, error) {
	types := make([]larder.Type, len(v.Features))
	for i, f := range v.Features {
		types[i] = f.Type
	}
	return &captureWriter{rows: s.rows, types: types}, nil
}

type captureWriter struct {
	rows  *encodedRows
	types []larder.Type
}

func (w *captureWriter) ID() int64 { return 1 }

func (w *captureWriter) Put(_ context.Context, key larder.Key, row larder.Row) error {
	value, err := store.AppendRow(nil, w.types, row)
	if err != nil {
		return err
	}
	w.rows.keys = append(w.rows.keys, key.AppendCanonical(nil))
	w.rows.values = append(w.rows.values, value)
	return nil
}

func (w *captureWriter) Abort(context.Context) error { return nil }

func (w *captureWriter) Publish(context.Context) (larder.Generation, error) {
	return larder.Generation{ID: 1}, nil
}

// heavyLatestRows materializes the latest view of the heavy source in dir
// and returns its rows as the store encodes them, in the order the
// materializer writes them.
func heavyLatestRows(tb testing.TB, dir string) *encodedRows {
	tb.Helper()
	rows := &encodedRows{}
	m := materializer.New(heavyProject(tb, dir), captureStore{rows: rows}, materializer.Options{Now: fixedClock(heavyRunTime)})
	if _, err := m.Run(context.Background(), "latest"); err != nil {
		tb.Fatal(err)
	}
	return rows
}

// fnv1a is the bucket hash of the store's layout: 32-bit FNV-1a of the
// canonical key.
func fnv1a(b []byte) uint32 {
	h := uint32(2166136261)
	for _, c := range b {
		h ^= uint32(c)
		h *= 16777619
	}
	return h
}

// floorBatch is one pipeline of the write floor: HSET argument lists, one
// per bucket its rows fall in, made before the clock starts.
type floorBatch struct {
	buckets []uint32
	args    [][]any // args[i] is "hset", <key>, field, value, … with the key left to fill
}

// planFloorWrites sorts rows by bucket of buckets (keeping their order
// within a bucket) and cuts them into pipelines of about heavyFloorBatch
// rows, between buckets, each with one HSET per bucket: the fewest commands
// that write the rows in pipelines of that size. The store's writer sorts
// its rows likewise, but a window at a time. The floor sends the same
// commands with none of the work of making them.
func planFloorWrites(rows *encodedRows, buckets uint32) []floorBatch {
	idx := make([]int, len(rows.keys))
	bucket := make([]uint32, len(rows.keys))
	for i := range idx {
		idx[i], bucket[i] = i, fnv1a(rows.keys[i])%buckets
	}
	slices.SortStableFunc(idx, func(x, y int) int { return int(bucket[x]) - int(bucket[y]) })
	var out []floorBatch
	for len(idx) > 0 {
		n := min(heavyFloorBatch, len(idx))
		for n < len(idx) && bucket[idx[n]] == bucket[idx[n-1]] {
			n++
		}
		var fb floorBatch
		for i := 0; i < n; {
			bk := bucket[idx[i]]
			args := []any{"hset", ""}
			for ; i < n && bucket[idx[i]] == bk; i++ {
				args = append(args, rows.keys[idx[i]], rows.values[idx[i]])
			}
			fb.buckets = append(fb.buckets, bk)
			fb.args = append(fb.args, args)
		}
		out = append(out, fb)
		idx = idx[n:]
	}
	return out
}

// writeFloor sends the batches, each as one pipeline, on heavyFloorConns
// goroutines into the bucket hashes under prefix, and returns the fields
// HSET reports added.
func writeFloor(ctx context.Context, client *redis.Client, batches []floorBatch, prefix string) (int64, error) {
	jobs := make(chan *floorBatch)
	var (
		mu       sync.Mutex
		added    int64
		firstErr error
		wg       sync.WaitGroup
	)
	for range heavyFloorConns {
		wg.Go(func() {
			var n int64
			var err error
			for fb := range jobs {
				if err != nil {
					continue
				}
				pipe := client.Pipeline()
				for i, args := range fb.args {
					args[1] = prefix + strconv.FormatUint(uint64(fb.buckets[i]), 10)
					pipe.Do(ctx, args...)
				}
				var cmds []redis.Cmder
				if cmds, err = pipe.Exec(ctx); err != nil {
					continue
				}
				for _, c := range cmds {
					k, _ := c.(*redis.Cmd).Int64()
					n += k
				}
			}
			mu.Lock()
			added += n
			if err != nil && firstErr == nil {
				firstErr = err
			}
			mu.Unlock()
		})
	}
	for i := range batches {
		jobs <- &batches[i]
	}
	close(jobs)
	wg.Wait()
	return added, firstErr
}

// benchFloorWrite is Heavy/floor-write: raw pipelined HSETs of the latest
// view's encoded rows into bucket hashes of the store's layout (about
// store.DefaultRowsPerBucket rows a bucket), each run into fresh keys. It
// reports and returns rows/s.
func benchFloorWrite(b *testing.B, client *redis.Client, rows *encodedRows) float64 {
	ctx := context.Background()
	buckets := uint32(max(1, (len(rows.keys)+store.DefaultRowsPerBucket-1)/store.DefaultRowsPerBucket))
	batches := planFloorWrites(rows, buckets)
	var written int64
	cpu0 := cpuTime(b)
	run := 0
	for b.Loop() {
		run++
		prefix := fmt.Sprintf("floor:heavy:latest:%d:", run)
		n, err := writeFloor(ctx, client, batches, prefix)
		if err != nil {
			b.Fatal(err)
		}
		if n != int64(len(rows.keys)) {
			b.Fatalf("HSET added %d fields, want %d", n, len(rows.keys))
		}
		written += n
	}
	b.StopTimer()
	if err := client.FlushAll(ctx).Err(); err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(0, "ns/op")
	rate := float64(written) / b.Elapsed().Seconds()
	b.ReportMetric(rate, "rows/s")
	b.ReportMetric(float64(written)/(cpuTime(b)-cpu0).Seconds(), "rows/cpu-s")
	return rate
}

// benchLatestRedis is Heavy/latest-redis: the latest view of the source in
// dir materialized into a real store on client, in this process. It reports
// events read per second and entities written per second, and returns the
// seconds of the last run.
func benchLatestRedis(b *testing.B, client *redis.Client, dir string, events int) float64 {
	ctx := context.Background()
	p := heavyProject(b, dir)
	st := store.New(client, p.Name, store.Options{Now: fixedClock(heavyRunTime)})
	m := materializer.New(p, st, materializer.Options{Now: fixedClock(heavyRunTime)})
	var rows, entities int64
	var last float64
	cpu0 := cpuTime(b)
	for b.Loop() {
		start := time.Now()
		rep, err := m.Run(ctx, "latest")
		if err != nil {
			b.Fatal(err)
		}
		last = time.Since(start).Seconds()
		if rep.RowsRead != int64(events) || rep.EntitiesWritten != heavyEntities {
			b.Fatalf("read %d rows into %d entities, want %d into %d", rep.RowsRead, rep.EntitiesWritten, events, heavyEntities)
		}
		rows += rep.RowsRead
		entities += rep.EntitiesWritten
	}
	b.StopTimer()
	gen, err := st.Live(ctx, p.View("latest"))
	if err != nil {
		b.Fatal(err)
	}
	if gen.Rows != heavyEntities {
		b.Fatalf("live generation holds %d rows, want %d", gen.Rows, heavyEntities)
	}
	if err := client.FlushAll(ctx).Err(); err != nil {
		b.Fatal(err)
	}
	secs := b.Elapsed().Seconds()
	b.ReportMetric(0, "ns/op")
	b.ReportMetric(float64(rows)/secs, "rows/s")
	b.ReportMetric(float64(entities)/secs, "entities/s")
	b.ReportMetric(float64(rows)/(cpuTime(b)-cpu0).Seconds(), "rows/cpu-s")
	return last
}
