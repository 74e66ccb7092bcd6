package materializer_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/larder-dev/larder"
	"github.com/larder-dev/larder/materializer"
	"github.com/parquet-go/parquet-go"
)

// benchRow is a row of the benchmark source: a key, an event time and 20
// float64 features.
type benchRow struct {
	UserID int64   `parquet:"user_id"`
	TS     int64   `parquet:"ts,timestamp(microsecond)"`
	F00    float64 `parquet:"f00"`
	F01    float64 `parquet:"f01"`
	F02    float64 `parquet:"f02"`
	F03    float64 `parquet:"f03"`
	F04    float64 `parquet:"f04"`
	F05    float64 `parquet:"f05"`
	F06    float64 `parquet:"f06"`
	F07    float64 `parquet:"f07"`
	F08    float64 `parquet:"f08"`
	F09    float64 `parquet:"f09"`
	F10    float64 `parquet:"f10"`
	F11    float64 `parquet:"f11"`
	F12    float64 `parquet:"f12"`
	F13    float64 `parquet:"f13"`
	F14    float64 `parquet:"f14"`
	F15    float64 `parquet:"f15"`
	F16    float64 `parquet:"f16"`
	F17    float64 `parquet:"f17"`
	F18    float64 `parquet:"f18"`
	F19    float64 `parquet:"f19"`
}

const (
	benchRows     = 1_000_000
	benchEntities = 100_000
)

// writeBenchSource writes benchRows rows over benchEntities entities, with
// event times spread over 30 days in random order, in row groups of 256k
// rows, snappy-compressed as most writers do by default.
func writeBenchSource(tb testing.TB, path string) {
	tb.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		tb.Fatal(err)
	}
	f, err := os.Create(path)
	if err != nil {
		tb.Fatal(err)
	}
	w := parquet.NewGenericWriter[benchRow](f, parquet.MaxRowsPerRowGroup(256<<10), parquet.Compression(&parquet.Snappy))
	rng := rand.New(rand.NewPCG(1, 2))
	start := baseTime.Add(-30 * 24 * time.Hour).UnixMicro()
	span := (30 * 24 * time.Hour).Microseconds()
	batch := make([]benchRow, 0, 1<<16)
	for i := range benchRows {
		key := int64(rng.IntN(benchEntities))
		if i%10 == 0 {
			key = int64(i / 10) // every entity has rows
		}
		r := benchRow{UserID: key, TS: start + rng.Int64N(span)}
		fs := [...]*float64{&r.F00, &r.F01, &r.F02, &r.F03, &r.F04, &r.F05, &r.F06, &r.F07, &r.F08, &r.F09,
			&r.F10, &r.F11, &r.F12, &r.F13, &r.F14, &r.F15, &r.F16, &r.F17, &r.F18, &r.F19}
		for j, p := range fs {
			*p = float64(i%1000) + float64(j)/100
		}
		batch = append(batch, r)
		if len(batch) == cap(batch) || i == benchRows-1 {
			if _, err := w.Write(batch); err != nil {
				tb.Fatal(err)
			}
			batch = batch[:0]
		}
	}
	if err := w.Close(); err != nil {
		tb.Fatal(err)
	}
	if err := f.Close(); err != nil {
		tb.Fatal(err)
	}
}

// nopStore is a GenerationStore that drops what it is given, to measure the
// reading and the computation alone.
type nopStore struct{}

func (nopStore) Begin(context.Context, *larder.View, larder.BeginOptions) (larder.GenerationWriter, error) {
	return nopWriter{}, nil
}

type nopWriter struct{}

func (nopWriter) ID() int64                                         { return 1 }
func (nopWriter) Put(context.Context, larder.Key, larder.Row) error { return nil }
func (nopWriter) Abort(context.Context) error                       { return nil }
func (nopWriter) Publish(context.Context) (larder.Generation, error) {
	return larder.Generation{ID: 1}, nil
}

// BenchmarkLatest1M materializes a latest view of 20 float64 features from
// 1M rows over 100k entities into a no-op store, and compares it with two
// floors for the same file: decoding the same pages with nothing done with
// the values, and parquet-go's GenericReader decoding rows into structs.
func BenchmarkLatest1M(b *testing.B) {
	dir := b.TempDir()
	path := filepath.Join(dir, "bench", "events.parquet")
	writeBenchSource(b, path)
	var features []larder.Feature
	for i := range 20 {
		name := "f" + string(rune('0'+i/10)) + string(rune('0'+i%10))
		features = append(features, feature(name, larder.TypeFloat64, name))
	}
	p := projectFor(b, dir, "bench", larder.TypeInt64, features...)

	b.Run("materialize", func(b *testing.B) {
		b.ReportAllocs()
		cpu0 := cpuTime(b)
		m := materializer.New(p, nopStore{}, materializer.Options{Now: fixedClock(baseTime)})
		for b.Loop() {
			rep, err := m.Run(context.Background(), "v")
			if err != nil {
				b.Fatal(err)
			}
			if rep.RowsRead != benchRows || rep.EntitiesWritten != benchEntities {
				b.Fatalf("report = %+v", rep)
			}
		}
		reportRates(b, cpu0)
	})

	b.Run("floor-pages", func(b *testing.B) {
		b.ReportAllocs()
		cpu0 := cpuTime(b)
		for b.Loop() {
			if n := decodePages(b, path); n != benchRows*22 {
				b.Fatalf("decoded %d values", n)
			}
		}
		reportRates(b, cpu0)
	})

	b.Run("floor-generic-reader", func(b *testing.B) {
		b.ReportAllocs()
		cpu0 := cpuTime(b)
		rows := make([]benchRow, 1024)
		for b.Loop() {
			f, err := os.Open(path)
			if err != nil {
				b.Fatal(err)
			}
			r := parquet.NewGenericReader[benchRow](f)
			total := 0
			for {
				n, err := r.Read(rows)
				total += n
				if errors.Is(err, io.EOF) {
					break
				}
				if err != nil {
					b.Fatal(err)
				}
			}
			r.Close()
			f.Close()
			if total != benchRows {
				b.Fatalf("read %d rows", total)
			}
		}
		reportRates(b, cpu0)
	})
}

// typedDecoder decodes every value of a file's columns into typed Go
// slices, reused from page to page: the least work a reader that uses the
// values does.
type typedDecoder struct {
	f64 []float64
	i64 []int64
}

// decode reads every page of every column of the file at path, decodes its
// values with the page's typed reader (float64 and int64 columns only) and
// returns the number of values decoded.
func (d *typedDecoder) decode(tb testing.TB, path string) int {
	if d.f64 == nil {
		d.f64, d.i64 = make([]float64, 4096), make([]int64, 4096)
	}
	n := 0
	eachPage(tb, path, func(p parquet.Page) {
		var k int
		var err error
		switch r := p.Values().(type) {
		case parquet.DoubleReader:
			for err = nil; err == nil; n += k {
				k, err = r.ReadDoubles(d.f64)
			}
		case parquet.Int64Reader:
			for err = nil; err == nil; n += k {
				k, err = r.ReadInt64s(d.i64)
			}
		default:
			tb.Fatalf("%s: page of %s values has no typed reader", path, p.Type())
		}
		if err != io.EOF {
			tb.Fatal(err)
		}
	})
	return n
}

// decodePages reads every page of every column of the file at path and
// returns the number of values decoded: the least work any column reader
// does.
func decodePages(tb testing.TB, path string) int {
	n := 0
	eachPage(tb, path, func(p parquet.Page) { n += int(p.NumValues()) })
	return n
}

// eachPage reads every page of every column of the file at path, in turn,
// and calls fn with each, decompressed, before releasing it.
func eachPage(tb testing.TB, path string, fn func(parquet.Page)) {
	f, err := os.Open(path)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		tb.Fatal(err)
	}
	pf, err := parquet.OpenFile(f, fi.Size(), parquet.SkipPageIndex(true), parquet.SkipBloomFilters(true), parquet.ReadBufferSize(256<<10))
	if err != nil {
		tb.Fatal(err)
	}
	for _, rg := range pf.RowGroups() {
		for _, chunk := range rg.ColumnChunks() {
			pages := chunk.Pages()
			for {
				p, err := pages.ReadPage()
				if err == io.EOF {
					break
				}
				if err != nil {
					tb.Fatal(err)
				}
				fn(p)
				parquet.Release(p)
			}
			pages.Close()
		}
	}
}

// reportRates reports rows per second of wall time, and rows per second of
// the CPU time the process used since cpu0 (all goroutines, GC included),
// which other processes sharing the machine do not skew.
func reportRates(b *testing.B, cpu0 time.Duration) {
	rows := float64(benchRows) * float64(b.N)
	b.ReportMetric(rows/b.Elapsed().Seconds(), "rows/s")
	b.ReportMetric(rows/(cpuTime(b)-cpu0).Seconds(), "rows/cpu-s")
}

// cpuTime returns the user and system CPU time used by the process so far.
func cpuTime(tb testing.TB) time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkAggregate1M materializes an aggregate view (two float64 columns,
// count, sum, mean, min and max over 1h, 1d, 7d and 30d) of the 1M rows of
// BenchmarkLatest1M's source into a no-op store.
func BenchmarkAggregate1M(b *testing.B) {
	dir := b.TempDir()
	path := filepath.Join(dir, "bench", "events.parquet")
	writeBenchSource(b, path)
	fns := funcs(larder.AggCount, larder.AggSum, larder.AggMean, larder.AggMin, larder.AggMax)
	ws := windows(b, "1h", "1d", "7d", "30d")
	p := aggregateProject(b, dir, "bench", larder.TypeInt64,
		larder.Aggregation{Column: "f00", Type: larder.TypeFloat64, Name: "a", Functions: fns, Windows: ws},
		larder.Aggregation{Column: "f01", Type: larder.TypeFloat64, Name: "b", Functions: fns, Windows: ws})
	b.ReportAllocs()
	cpu0 := cpuTime(b)
	m := materializer.New(p, nopStore{}, materializer.Options{Now: fixedClock(baseTime)})
	for b.Loop() {
		rep, err := m.Run(context.Background(), "v")
		if err != nil {
			b.Fatal(err)
		}
		if rep.RowsRead != benchRows || rep.EntitiesWritten != benchEntities {
			b.Fatalf("report = %+v", rep)
		}
	}
	reportRates(b, cpu0)
}

// exportSpineRow is a row of BenchmarkExport1M's spine.
type exportSpineRow struct {
	UserID int64 `parquet:"user_id"`
	At     int64 `parquet:"at,timestamp(microsecond)"`
	Label  int64 `parquet:"label"`
}

// BenchmarkExport1M exports the 20 features of BenchmarkLatest1M's latest
// view as of each row of a spine of 1M rows (keys over the same 100k
// entities, times over the same 30 days) into a training-set file, and
// compares it with two floors of the same run, over the columns it reads,
// the spine's and the source's: decoding their pages with nothing done with
// the values (floor-pages), and decoding every value into typed slices
// (floor-decode). Rates are spine rows per second.
func BenchmarkExport1M(b *testing.B) {
	dir := b.TempDir()
	src := filepath.Join(dir, "bench", "events.parquet")
	writeBenchSource(b, src)
	var features []larder.Feature
	for i := range 20 {
		name := "f" + string(rune('0'+i/10)) + string(rune('0'+i%10))
		features = append(features, feature(name, larder.TypeFloat64, name))
	}
	p := projectFor(b, dir, "bench", larder.TypeInt64, features...)
	rng := rand.New(rand.NewPCG(3, 4))
	start := baseTime.Add(-30 * 24 * time.Hour).UnixMicro()
	span := (30 * 24 * time.Hour).Microseconds()
	spine := make([]exportSpineRow, benchRows)
	for i := range spine {
		spine[i] = exportSpineRow{UserID: int64(rng.IntN(benchEntities)), At: start + rng.Int64N(span), Label: int64(i % 2)}
	}
	spinePath := filepath.Join(dir, "spine.parquet")
	writeParquet(b, spinePath, spine, parquet.MaxRowsPerRowGroup(256<<10), parquet.Compression(&parquet.Snappy))
	spine = nil
	out := filepath.Join(dir, "train.parquet")

	// decodeInputs decodes every value of the source's and the spine's
	// columns with d.
	decodeInputs := func(b *testing.B, d *typedDecoder) {
		if n := d.decode(b, src) + d.decode(b, spinePath); n != benchRows*22+benchRows*3 {
			b.Fatalf("decoded %d values", n)
		}
	}

	b.Run("export", func(b *testing.B) {
		b.ReportAllocs()
		cpu0 := cpuTime(b)
		m := materializer.New(p, nil, materializer.Options{})
		for b.Loop() {
			rep, err := m.Export(context.Background(), materializer.ExportArgs{Spine: spinePath, Output: out, Timestamp: "at", Features: []string{"v:*"}})
			if err != nil {
				b.Fatal(err)
			}
			if rep.SpineRows != benchRows {
				b.Fatalf("report = %+v", rep)
			}
		}
		reportRates(b, cpu0)
	})

	b.Run("floor-pages", func(b *testing.B) {
		b.ReportAllocs()
		cpu0 := cpuTime(b)
		for b.Loop() {
			if n := decodePages(b, src) + decodePages(b, spinePath); n != benchRows*22+benchRows*3 {
				b.Fatalf("decoded %d values", n)
			}
		}
		reportRates(b, cpu0)
	})

	b.Run("floor-decode", func(b *testing.B) {
		b.ReportAllocs()
		cpu0 := cpuTime(b)
		var d typedDecoder
		for b.Loop() {
			decodeInputs(b, &d)
		}
		reportRates(b, cpu0)
	})

	// The least an export of this shape does: floor-decode's work, then
	// writing an output of the export's shape (the spine's 3 columns, 20
	// optional float64 features and a status) from columns made in
	// advance, as the export writes, one goroutine.
	b.Run("floor-decode-write", func(b *testing.B) {
		data := exportFloorRows(benchRows)
		b.ReportAllocs()
		cpu0 := cpuTime(b)
		var d typedDecoder
		for b.Loop() {
			decodeInputs(b, &d)
			writeExportFloor(b, out, data)
		}
		reportRates(b, cpu0)
	})
}

// exportFloorData is the export's output in BenchmarkExport1M, column by
// column: the spine's columns, and the view's 20 features, all null in the
// rows whose view row is missing.
type exportFloorData struct {
	userID, at, label []int64
	f                 [20][]float64
	missing           []bool
}

// exportFloorRows makes n rows of the export's shape: random features,
// missing in one row in 20, as a spine row before its entity's first event
// is.
func exportFloorRows(n int) *exportFloorData {
	rng := rand.New(rand.NewPCG(5, 6))
	d := &exportFloorData{userID: make([]int64, n), at: make([]int64, n), label: make([]int64, n), missing: make([]bool, n)}
	for j := range d.f {
		d.f[j] = make([]float64, n)
	}
	for i := range n {
		d.userID[i], d.at[i], d.label[i] = int64(rng.IntN(benchEntities)), baseTime.UnixMicro()-rng.Int64N(1e12), int64(i%2)
		if d.missing[i] = rng.IntN(20) == 0; !d.missing[i] {
			for j := range d.f {
				d.f[j][i] = rng.Float64() * 1000
			}
		}
	}
	return d
}

// writeExportFloor writes d to path as the export writes: the export's
// columns (the spine's, the features, the status), through parquet-go's
// column writers fed a block of 4,096 rows of values at a time, in the
// export's Snappy and row groups, without page statistics. (parquet-go's
// typed writer, given a struct with a pointer per optional feature, took
// twice as long.)
func writeExportFloor(tb testing.TB, path string, d *exportFloorData) {
	tb.Helper()
	const block, group = 4096, 64 << 10
	fields := parquet.Group{
		"user_id":  parquet.Int(64),
		"at":       parquet.Timestamp(parquet.Microsecond),
		"label":    parquet.Int(64),
		"v:status": parquet.Optional(parquet.String()),
	}
	for j := range 20 {
		fields[fmt.Sprintf("v:f%02d", j)] = parquet.Optional(parquet.Leaf(parquet.DoubleType))
	}
	schema := parquet.NewSchema("export", fields)
	f, err := os.Create(path)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	w := parquet.NewGenericWriter[any](f, schema, parquet.Compression(materializer.FastSnappy()),
		parquet.MaxRowsPerRowGroup(group), parquet.DataPageStatistics(false))
	cols := w.ColumnWriters()
	present, absent := []byte("present"), []byte("missing")
	vals := make([]parquet.Value, block)
	n := len(d.missing)
	for lo := 0; lo < n; lo += block {
		hi := min(n, lo+block)
		missing := d.missing[lo:hi]
		for c, path := range schema.Columns() {
			v := vals[:hi-lo]
			switch name := path[0]; name {
			case "user_id", "at", "label":
				x := d.userID[lo:hi]
				if name == "at" {
					x = d.at[lo:hi]
				} else if name == "label" {
					x = d.label[lo:hi]
				}
				for i := range v {
					v[i] = parquet.Int64Value(x[i]).Level(0, 0, c)
				}
			case "v:status":
				for i := range v {
					if missing[i] {
						v[i] = parquet.ByteArrayValue(absent).Level(0, 1, c)
					} else {
						v[i] = parquet.ByteArrayValue(present).Level(0, 1, c)
					}
				}
			default:
				var j int
				if _, err := fmt.Sscanf(name, "v:f%d", &j); err != nil {
					tb.Fatal(err)
				}
				x := d.f[j][lo:hi]
				for i := range v {
					if missing[i] {
						v[i] = parquet.NullValue().Level(0, 0, c)
					} else {
						v[i] = parquet.DoubleValue(x[i]).Level(0, 1, c)
					}
				}
			}
			if _, err := cols[c].WriteRowValues(v); err != nil {
				tb.Fatal(err)
			}
		}
		if hi%group == 0 || hi == n {
			if err := w.Flush(); err != nil {
				tb.Fatal(err)
			}
		}
	}
	if err := w.Close(); err != nil {
		tb.Fatal(err)
	}
	if err := f.Close(); err != nil {
		tb.Fatal(err)
	}
}
