package materializer_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/larder-dev/larder"
	"github.com/larder-dev/larder/materializer"
	"github.com/larder-dev/larder/redistest"
	"github.com/parquet-go/parquet-go"
)

// The heavy benchmark materializes 1M and 10M events over the same 100k
// entities, each run in a child process of its own so that the peak
// resident memory of one run does not hide that of another:
//
//	go test ./materializer -run '^$' -bench Heavy -benchtime 1x
//
// The sources are generated once and cached in the user's cache folder,
// os.UserCacheDir()/larder/bench/events-<rows>-<entities>-v<version>/ (see
// heavyCacheDir), so that every checkout on the machine reuses them; a new
// heavyGeneratorVersion makes new ones. Generating them (11M events, about
// 200 MB) takes a few seconds and reports its progress on standard error;
// `make bench` does it before the benchmarks run, with the test binary's
// -heavy.prepare flag (see TestMain).

// heavyRow is an event of the heavy benchmark: a purchase of a quantity of
// something of a category for an amount, by a user.
type heavyRow struct {
	UserID   int64    `parquet:"user_id"`
	TS       int64    `parquet:"ts,timestamp(microsecond)"`
	Amount   *float64 `parquet:"amount,optional"`
	Quantity int64    `parquet:"quantity"`
	Category string   `parquet:"category,dict"`
}

const (
	// heavyGeneratorVersion names the generator of the heavy sources in
	// their cache folder: change it whenever heavySource would write other
	// files.
	heavyGeneratorVersion = 1
	heavyEntities         = 100_000
	heavyRowsPerFile      = 1_000_000
	heavyRowsPerGroup     = 128 << 10
	heavyChildEnv         = "LARDER_HEAVY_CHILD"
)

// heavyRunTime is the run time of the heavy benchmark's views; events span
// the 35 days before it.
var heavyRunTime = time.Date(2025, 6, 1, 0, 0, 0, 0, time.UTC)

// heavySizes are the sources the heavy benchmark reads, in events.
var heavySizes = []int{1_000_000, 10_000_000}

// heavyCacheDir returns the folder the heavy sources are cached in:
// os.UserCacheDir()/larder/bench, or os.TempDir()/larder-bench when the
// system names no cache folder.
func heavyCacheDir() string {
	if dir, err := os.UserCacheDir(); err == nil {
		return filepath.Join(dir, "larder", "bench")
	}
	return filepath.Join(os.TempDir(), "larder-bench")
}

// heavyDir returns the cache folder of the source of rows events.
func heavyDir(rows int) string {
	return filepath.Join(heavyCacheDir(), fmt.Sprintf("events-%d-%d-v%d", rows, heavyEntities, heavyGeneratorVersion))
}

// heavySource returns the folder of a source of rows events over
// heavyEntities entities, generating it unless it is cached already.
func heavySource(tb testing.TB, rows int) string {
	tb.Helper()
	dir, err := ensureHeavySource(rows, os.Stderr)
	if err != nil {
		tb.Fatal(err)
	}
	return dir
}

// ensureHeavySource returns the folder of a source of rows events over
// heavyEntities entities, generating it unless it is cached already, and
// writing its progress to progress. A folder is complete once it holds the
// file _COMPLETE: an interrupted generation is started again.
func ensureHeavySource(rows int, progress io.Writer) (string, error) {
	dir := heavyDir(rows)
	if _, err := os.Stat(filepath.Join(dir, "_COMPLETE")); err == nil {
		return dir, nil
	}
	start := time.Now()
	tmp := dir + ".tmp"
	if err := os.RemoveAll(tmp); err != nil {
		return "", err
	}
	if err := os.MkdirAll(tmp, 0o755); err != nil {
		return "", err
	}
	files := (rows + heavyRowsPerFile - 1) / heavyRowsPerFile
	fmt.Fprintf(progress, "heavy benchmark: generating %d events over %d entities in %d files into %s (once: they are cached)\n",
		rows, heavyEntities, files, dir)
	rng := rand.New(rand.NewPCG(uint64(rows), 3))
	span := (35 * 24 * time.Hour).Microseconds()
	end := heavyRunTime.UnixMicro()
	batch := make([]heavyRow, 0, 1<<16)
	for file, first := 0, 0; first < rows; file, first = file+1, first+heavyRowsPerFile {
		n := min(heavyRowsPerFile, rows-first)
		if err := writeHeavyFile(filepath.Join(tmp, fmt.Sprintf("part-%05d.parquet", file)), first, n, rng, span, end, batch); err != nil {
			return "", err
		}
		fmt.Fprintf(progress, "heavy benchmark: %d/%d files, %s\n", file+1, files, time.Since(start).Round(time.Second))
	}
	if err := os.WriteFile(filepath.Join(tmp, "_COMPLETE"), nil, 0o644); err != nil {
		return "", err
	}
	if err := os.RemoveAll(dir); err != nil {
		return "", err
	}
	if err := os.Rename(tmp, dir); err != nil {
		return "", err
	}
	fmt.Fprintf(progress, "heavy benchmark: generated %d events in %s\n", rows, time.Since(start).Round(time.Second))
	return dir, nil
}

// writeHeavyFile writes n events, the first of which is event number first
// of its source, to a Parquet file at path.
func writeHeavyFile(path string, first, n int, rng *rand.Rand, span, end int64, batch []heavyRow) error {
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer f.Close()
	w := parquet.NewGenericWriter[heavyRow](f, parquet.MaxRowsPerRowGroup(heavyRowsPerGroup), parquet.Compression(&parquet.Snappy))
	for i := range n {
		key := int64(rng.IntN(heavyEntities))
		if r := first + i; r < heavyEntities {
			key = int64(r) // every entity has events
		}
		r := heavyRow{
			UserID:   key,
			TS:       end - rng.Int64N(span),
			Quantity: int64(1 + rng.IntN(5)),
			Category: "category-" + strconv.Itoa(rng.IntN(50)),
		}
		if rng.IntN(20) != 0 {
			r.Amount = ptr(float64(rng.IntN(100_000)) / 100)
		}
		batch = append(batch, r)
		if len(batch) == cap(batch) || i == n-1 {
			if _, err := w.Write(batch); err != nil {
				return fmt.Errorf("write %s: %w", path, err)
			}
			batch = batch[:0]
		}
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return f.Close()
}

// heavyProject returns the project of the heavy benchmark over the source
// in dir: a latest view "latest" of the three value columns, and an
// aggregate view "aggregate" of amount and quantity, each with count, sum,
// mean, max and last over 1h, 1d, 7d and 30d (40 features).
func heavyProject(tb testing.TB, dir string) *larder.Project {
	tb.Helper()
	ws := windows(tb, "1h", "1d", "7d", "30d")
	fns := funcs(larder.AggCount, larder.AggSum, larder.AggMean, larder.AggMax, larder.AggLast)
	p := &larder.Project{
		Name:     "heavy",
		Dir:      dir,
		Entities: []*larder.Entity{{Name: "user", Key: "user_id", KeyType: larder.TypeInt64}},
		Sources:  []*larder.Source{{Name: "events", Path: ".", EventTime: "ts"}},
		Views: []*larder.View{
			{Name: "latest", Kind: larder.KindLatest, Entity: "user", Source: "events", Features: []larder.Feature{
				feature("amount", larder.TypeFloat64, "amount"),
				feature("quantity", larder.TypeInt64, "quantity"),
				feature("category", larder.TypeString, "category"),
			}},
			{Name: "aggregate", Kind: larder.KindAggregate, Entity: "user", Source: "events", Aggregations: []larder.Aggregation{
				{Column: "amount", Type: larder.TypeFloat64, Functions: fns, Windows: ws},
				{Column: "quantity", Type: larder.TypeInt64, Functions: fns, Windows: ws},
			}},
		},
	}
	p.SetDefaults()
	if err := p.Validate(); err != nil {
		tb.Fatalf("invalid heavy project: %v", err)
	}
	return p
}

// warmHeavySource reads every file of the source in dir once, so that the
// first run that reads them does not also measure the disk.
func warmHeavySource(tb testing.TB, dir string) {
	tb.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "*.parquet"))
	if err != nil {
		tb.Fatal(err)
	}
	for _, path := range files {
		f, err := os.Open(path)
		if err != nil {
			tb.Fatal(err)
		}
		_, err = io.Copy(io.Discard, f)
		f.Close()
		if err != nil {
			tb.Fatal(err)
		}
	}
}

// heavyResult is what a child process reports of its run.
type heavyResult struct {
	View     string
	Rows     int64
	Entities int64
	Procs    int
	Seconds  float64
	CPU      float64 // seconds of CPU time of the run
	PeakRSS  int64   // bytes, VmHWM at the end of the run
}

// TestHeavyChild is the child process of BenchmarkHeavy, of
// BenchmarkPrediction100k and of the scoring benchmarks: it runs one view
// or job once and prints its heavyResult. heavyChildEnv names the run:
// "view,folder" for a view of the heavy project over the source in folder
// (BenchmarkHeavy), "prediction,folder,address" for the prediction view of
// the project in folder over the redis-server at address (see
// predictionChild), or "score,folder,address" for the scoring job of the
// project in folder (see scoreChild). It is skipped unless heavyChildEnv is
// set.
func TestHeavyChild(t *testing.T) {
	spec := os.Getenv(heavyChildEnv)
	if spec == "" {
		t.Skip("run by BenchmarkHeavy, BenchmarkPrediction100k and the scoring benchmarks")
	}
	view, dir, ok := strings.Cut(spec, ",")
	if !ok {
		t.Fatalf("%s=%q: want view,folder", heavyChildEnv, spec)
	}
	var res heavyResult
	switch view {
	case predChildView:
		res = predictionChild(t, dir)
	case scoreChildView:
		res = scoreChild(t, dir)
	default:
		p := heavyProject(t, dir)
		m := materializer.New(p, nopStore{}, materializer.Options{Now: fixedClock(heavyRunTime)})
		cpu0 := cpuTime(t)
		start := time.Now()
		rep, err := m.Run(context.Background(), view)
		if err != nil {
			t.Fatal(err)
		}
		res = heavyResult{
			View: view, Rows: rep.RowsRead, Entities: rep.EntitiesWritten, Procs: runtime.GOMAXPROCS(0),
			Seconds: time.Since(start).Seconds(), CPU: (cpuTime(t) - cpu0).Seconds(), PeakRSS: peakRSS(t),
		}
	}
	out, err := json.Marshal(res)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Printf("HEAVY %s\n", out)
}

// peakRSS returns the peak resident memory of the process, VmHWM.
func peakRSS(tb testing.TB) int64 {
	tb.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		tb.Skipf("no peak memory on this system: %v", err)
	}
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, err := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			if err != nil {
				tb.Fatalf("VmHWM: %v", err)
			}
			return kb << 10
		}
	}
	tb.Fatal("no VmHWM in /proc/self/status")
	return 0
}

// runHeavyChild runs view over the source in dir in a child process with
// GOMAXPROCS set to procs, and returns what it reports.
func runHeavyChild(tb testing.TB, view, dir string, procs int) heavyResult {
	tb.Helper()
	return runChild(tb, view+","+dir, procs)
}

// runChild runs TestHeavyChild in a child process with heavyChildEnv set to
// spec and GOMAXPROCS set to procs, and returns what it reports.
func runChild(tb testing.TB, spec string, procs int) heavyResult {
	tb.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHeavyChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), heavyChildEnv+"="+spec, "GOMAXPROCS="+strconv.Itoa(procs))
	out, err := cmd.CombinedOutput()
	if err != nil {
		tb.Fatalf("child run %s: %v\n%s", spec, err, out)
	}
	for line := range strings.Lines(string(out)) {
		if js, ok := strings.CutPrefix(line, "HEAVY "); ok {
			var res heavyResult
			if err := json.Unmarshal([]byte(js), &res); err != nil {
				tb.Fatal(err)
			}
			return res
		}
	}
	tb.Fatalf("child run %s reported nothing:\n%s", spec, out)
	return heavyResult{}
}

// BenchmarkHeavy materializes a latest view and an aggregate view (4
// windows × 5 functions × 2 columns) of 1M and 10M events over the same
// 100k entities into a no-op store, with one core and with all of them,
// and reports rows/s, rows per CPU-second and the peak resident memory of
// each run. It fails when the peak of 10M events exceeds 1.3 times that of
// 1M: memory must grow with entities, not rows. Then it measures, in this
// process, the floors of the latest view of 10M events and that view
// written into a real Redis (see heavyFloors).
func BenchmarkHeavy(b *testing.B) {
	sizes := heavySizes
	dirs := make(map[int]string)
	for _, n := range sizes {
		dirs[n] = heavySource(b, n)
	}
	all := runtime.GOMAXPROCS(0)
	procsList := []int{all}
	if all > 1 {
		procsList = append(procsList, 1)
	}
	results := make(map[string]heavyResult)
	var summary strings.Builder
	for _, view := range []string{"latest", "aggregate"} {
		for _, n := range sizes {
			warmHeavySource(b, dirs[n])
			for _, procs := range procsList {
				name := fmt.Sprintf("%s/events=%dM/procs=%d", view, n/1_000_000, procs)
				b.Run(name, func(b *testing.B) {
					var res heavyResult
					for b.Loop() {
						res = runHeavyChild(b, view, dirs[n], procs)
					}
					if res.Rows != int64(n) || res.Entities != heavyEntities {
						b.Fatalf("read %d rows into %d entities, want %d into %d", res.Rows, res.Entities, n, heavyEntities)
					}
					b.ReportMetric(0, "ns/op")
					b.ReportMetric(float64(res.Rows)/res.Seconds, "rows/s")
					b.ReportMetric(float64(res.Rows)/res.CPU, "rows/cpu-s")
					b.ReportMetric(float64(res.PeakRSS)/(1<<20), "peak-MiB")
					results[name] = res
					fmt.Fprintf(&summary, "%-32s %6.2fs %12.0f rows/s %12.0f rows/cpu-s %8.1f MiB peak\n",
						name, res.Seconds, float64(res.Rows)/res.Seconds, float64(res.Rows)/res.CPU, float64(res.PeakRSS)/(1<<20))
				})
			}
		}
		small, large := results[fmt.Sprintf("%s/events=1M/procs=%d", view, all)], results[fmt.Sprintf("%s/events=10M/procs=%d", view, all)]
		if small.PeakRSS > 0 && large.PeakRSS > 0 {
			ratio := float64(large.PeakRSS) / float64(small.PeakRSS)
			fmt.Fprintf(&summary, "%s: peak RSS of 10M events / 1M events = %.2f\n", view, ratio)
			if ratio > 1.3 {
				b.Errorf("%s: peak RSS %d MiB for 10M events is %.2f times the %d MiB for 1M: memory grows with rows",
					view, large.PeakRSS>>20, ratio, small.PeakRSS>>20)
			}
		}
		if one, ok := results[fmt.Sprintf("%s/events=10M/procs=1", view)]; ok && large.Seconds > 0 {
			fmt.Fprintf(&summary, "%s: speed-up of %d cores over 1 for 10M events = %.2f\n", view, all, one.Seconds/large.Seconds)
		}
	}
	heavyFloors(b, dirs[sizes[len(sizes)-1]], sizes[len(sizes)-1], &summary)
	b.Logf("heavy benchmark, %d events over %d entities per source:\n%s", sizes[len(sizes)-1], heavyEntities, summary.String())
}

// heavyRounds is the number of times heavyFloors measures each of its
// figures, in turn, so that a burst of other work on the machine falls on
// the floors and on larder alike; cmd/benchtable takes the median of each.
const heavyRounds = 5

// heavyFloors runs, after the child runs, the floors of the latest view of
// the events in dir and that view materialized into a real Redis, in
// heavyRounds rounds of:
//
//	Heavy/floor-decode/events=<n>M  raw page decoding of the same files
//	Heavy/floor-write               raw pipelined HSETs of the view's
//	                                encoded rows over 4 connections
//	Heavy/latest-redis/events=<n>M  the latest view into store.New on a
//	                                redis-server, in this process
//
// and adds the medians of their figures to summary.
func heavyFloors(b *testing.B, dir string, events int, summary *strings.Builder) {
	label := fmt.Sprintf("events=%dM", events/1_000_000)
	srv := redistest.Start(b)
	client := srv.Client()
	rows := heavyLatestRows(b, dir)
	if len(rows.keys) != heavyEntities {
		b.Fatalf("latest view wrote %d rows, want %d", len(rows.keys), heavyEntities)
	}
	var decodeRates, writeRates, redisSeconds []float64
	for range heavyRounds {
		b.Run("floor-decode/"+label, func(b *testing.B) {
			decodeRates = append(decodeRates, benchFloorDecode(b, dir, events))
		})
		b.Run("floor-write", func(b *testing.B) {
			writeRates = append(writeRates, benchFloorWrite(b, client, rows))
		})
		b.Run("latest-redis/"+label, func(b *testing.B) {
			redisSeconds = append(redisSeconds, benchLatestRedis(b, client, dir, events))
		})
	}
	if len(decodeRates) == 0 || len(writeRates) == 0 || len(redisSeconds) == 0 {
		return
	}
	decodeRate, writeRate, seconds := median(decodeRates), median(writeRates), median(redisSeconds)
	// The floors cost of the whole job, each alone: the slower one is the
	// lower floor.
	floorSeconds := max(float64(events)/decodeRate, float64(heavyEntities)/writeRate)
	fmt.Fprintf(summary, "floor-decode %d events: %12.0f rows/s (median of %d)\n", events, decodeRate, len(decodeRates))
	fmt.Fprintf(summary, "floor-write %d rows: %12.0f rows/s (median of %d)\n", heavyEntities, writeRate, len(writeRates))
	fmt.Fprintf(summary, "latest-redis %d events: %6.2fs %12.0f rows/s %12.0f entities/s (median of %d); %.2f× the lower floor (%.2fs)\n",
		events, seconds, float64(events)/seconds, float64(heavyEntities)/seconds, len(redisSeconds), seconds/floorSeconds, floorSeconds)
}

// median returns the median of xs, which must not be empty.
func median(xs []float64) float64 {
	s := slices.Clone(xs)
	slices.Sort(s)
	if n := len(s); n%2 == 0 {
		return (s[n/2-1] + s[n/2]) / 2
	}
	return s[len(s)/2]
}
