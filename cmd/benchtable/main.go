// Command benchtable reads `go test -bench` output on standard input and
// prints larder's benchmark figures as a table, each next to its floor (the
// raw Redis, gRPC, ONNX Runtime or Parquet cost of the same work) measured in
// the same run, and the ratio between them. The materializations run in a
// child process of their own also show that process's peak resident memory
// (the peak-MiB metric). `make bench` runs it.
package main

import (
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"golang.org/x/perf/benchfmt"
)

// comparison is one row of the table: a larder figure and the floors it is
// measured against. A time figure is compared with the sum of its floors;
// a rate figure with its single floor.
type comparison struct {
	label  string
	larder string
	floors []string
	floor  string // how the floor is made, for the reader
	unit   string // "ns/op" (lower is better) or a rate such as "rows/s"
	// floorUnit is the floors' unit when it differs from unit (a rate of
	// entities against a rate of model rows, say).
	floorUnit string
}

var comparisons = []comparison{
	{"store read, 1 entity × 20 float64", "Read1x20/larder", []string{"Read1x20/go-redis-floor"}, "go-redis HGET, same key", "ns/op", ""},
	{"store read, 101 entities × 20 float64", "Read101x20/larder", []string{"Read101x20/go-redis-floor"}, "go-redis pipeline of 101 HGETs", "ns/op", ""},
	{"GetFeatures, 1 × 20 (gRPC)", "GetFeatures1x20", []string{"EmptyCall", "Read1x20/go-redis-floor"}, "empty gRPC call + raw Redis read", "ns/op", ""},
	{"GetFeatures, 100 × 20 (gRPC)", "GetFeatures100x20", []string{"EmptyCall", "Read101x20/go-redis-floor"}, "empty gRPC call + raw 101-key pipeline", "ns/op", ""},
	{"client: decode a 100 × 20 GetFeatures response, into Features", "Decode100x20/vtproto+Features", []string{"Decode100x20/vtproto"}, "vtprotobuf decode of the same bytes", "ns/op", ""},
	{"generic client (dynamicpb): decode a 100 × 20 GetFeatures response", "Decode100x20/dynamicpb", []string{"Decode100x20/vtproto"}, "vtprotobuf decode of the same bytes", "ns/op", ""},
	{"Rank, 1 + 100 candidates (gRPC)", "Rank1x100", []string{"EmptyCall", "Read101x20/go-redis-floor", "ORTFloor100/AdvancedSession.Run"}, "empty gRPC call + raw 101-key pipeline + raw ONNX run", "ns/op", ""},
	{"model score, 100 rows × 20", "Score100/ctx=cancellable", []string{"ORTFloor100/AdvancedSession.Run"}, "ONNX Runtime session run, tensors made in advance", "ns/op", ""},
	{"materialize latest, 1M rows × 20 float64", "Latest1M/materialize", []string{"Latest1M/floor-generic-reader"}, "parquet-go GenericReader decode of the same file", "rows/s", ""},
	{"materialize latest, 1M rows × 20 float64 (vs page decode)", "Latest1M/materialize", []string{"Latest1M/floor-pages"}, "decoding the same pages, values unused", "rows/s", ""},
	{"export a training set, 1M spine rows × 20 float64 (vs value decode)", "Export1M/export", []string{"Export1M/floor-decode"}, "decoding every value of the spine's and the source's columns into typed slices, one goroutine", "rows/s", ""},
	{"export a training set, 1M spine rows × 20 float64 (vs page decode)", "Export1M/export", []string{"Export1M/floor-pages"}, "decoding the spine's and the source's pages, values unused, one goroutine", "rows/s", ""},
	{"export a training set, 1M spine rows × 20 float64 (vs decode and write)", "Export1M/export", []string{"Export1M/floor-decode-write"}, "the value decode above, then writing the export's columns from columns made in advance, as the export writes, one goroutine", "rows/s", ""},
	{"materialize prediction, 100k entities (entities/s)", "Prediction100k/materialize", []string{"Prediction100k/read-floor"}, "raw store reads of the same inputs", "entities/s", ""},
	{"materialize prediction, model part (entities/s vs rows/s)", "Prediction100k/materialize", []string{"Prediction100k/ort-floor"}, "ONNX Runtime on the same batches", "entities/s", "rows/s"},
	{"batch score with a ranker, 100k rows (vs store reads)", "Score100k/ranker", []string{"Score100k/read-floor"}, "raw store reads of the same batches' keys, one round trip at a time", "rows/s", ""},
	{"batch score with a ranker, model part", "Score100k/ranker", []string{"Score100k/ort-floor"}, "ONNX Runtime on the same batches", "rows/s", ""},
	{"batch score with a ranker, 1M rows (vs store reads)", "Score1M/ranker", []string{"Score1M/read-floor"}, "raw store reads of the same batches' keys, one round trip at a time", "rows/s", ""},
	{"batch score with a ranker, 1M rows, model part", "Score1M/ranker", []string{"Score1M/ort-floor"}, "ONNX Runtime on the same batches", "rows/s", ""},
	{"larder score, demo ranker, 1M rows (vs store reads)", "ScoreJob1M/direct", []string{"ScoreJob1M/read-floor"}, "raw store reads of the same batches' keys, one round trip at a time", "rows/s", ""},
	{"larder score --async --wait, demo ranker, 1M rows, through a worker (vs store reads)", "ScoreJob1M/queued", []string{"ScoreJob1M/read-floor"}, "raw store reads of the same batches' keys, one round trip at a time", "rows/s", ""},
	{"larder score, demo ranker, 1M rows, model part", "ScoreJob1M/direct", []string{"ScoreJob1M/ort-floor"}, "ONNX Runtime on the same batches", "rows/s", ""},
	{"materialize latest, 10M events → 100k entities, no-op store (vs page decode)", "Heavy/latest/events=10M/procs=max", []string{"Heavy/floor-decode/events=10M"}, "parquet-go page decode of the same files, all cores, values unused", "rows/s", ""},
	{"materialize aggregate, 10M events → 100k entities × 40 features, no-op store (vs page decode)", "Heavy/aggregate/events=10M/procs=max", []string{"Heavy/floor-decode/events=10M"}, "parquet-go page decode of the same files, all cores, values unused (5 columns; the view reads 4 of them)", "rows/s", ""},
	{"materialize latest, 10M events into Redis (entities/s vs rows/s)", "Heavy/latest-redis/events=10M", []string{"Heavy/floor-write"}, "pipelined HSETs of the same 100k encoded rows, sorted by bucket, 4 connections", "entities/s", "rows/s"},
	{"store write, 100k rows × 3 features", "Write100k/larder", []string{"Write100k/floor"}, "pipelined HSETs of the same encoded rows, sorted by bucket, 4 connections", "rows/s", ""},
	{"Push, 100k rows × 3 features, 500 per call, 4 at once", "Write100k/push", []string{"Write100k/push-floor"}, "the same batches, one pipelined HSET per row into its bucket, 4 connections", "rows/s", ""},
	{"larder ingest, Redis stream, 100k events, one consumer", "IngestRedis/larder", []string{"IngestRedis/floor"}, "XREADGROUP of 500, one pipelined HSET per entry and XACK, one reader", "events/s", ""},
	{"Push, 100k rows × 3 features (vs a script that only writes)", "Write100k/push", []string{"Write100k/push-script-floor"}, "the same batches, one script call each that HSETs every row, no check, no log", "rows/s", ""},
	{"Push, 100k rows × 3 features (vs a script that checks and writes)", "Write100k/push", []string{"Write100k/push-check-floor"}, "the same batches into stored rows, one script call each that reads, compares and writes every row, no log", "rows/s", ""},
	{"a script that checks and writes, no log (vs the push floor)", "Write100k/push-check-floor", []string{"Write100k/push-floor"}, "the same batches, one pipelined HSET per row into its bucket, 4 connections", "rows/s", ""},
	{"Push, 100k rows × 3 features (vs bulk write floor)", "Write100k/push", []string{"Write100k/floor"}, "pipelined HSETs of the same encoded rows, sorted by bucket, 4 connections", "rows/s", ""},
	{"streaming aggregate: larder ingest, Redis stream, 100k events into 10k users' tiles (51 features)", "StreamingAggregate/ingest/larder", []string{"StreamingAggregate/ingest/floor"}, "XREADGROUP of 500, one pipelined HSET per entry and XACK, one reader", "events/s", ""},
	{"streaming aggregate: GetFeatures p50, 1 entity × 36 features (vs batch-only)", "GetFeaturesStreaming/streaming", []string{"GetFeaturesStreaming/batch-only"}, "GetFeatures of the batch-only aggregate view of the same windows; goal ≤ 1.5×", "p50-µs", ""},
	{"streaming aggregate: GetFeatures p99, 1 entity × 36 features (vs batch-only)", "GetFeaturesStreaming/streaming", []string{"GetFeaturesStreaming/batch-only"}, "GetFeatures of the batch-only aggregate view of the same windows", "p99-µs", ""},
	{"streaming aggregate: store read p50, 1 entity × 51 features (vs batch-only)", "StreamingAggregate/read/streaming", []string{"StreamingAggregate/read/batch-only"}, "the batch-only aggregate view of the same windows; goal ≤ 1.5×", "p50-µs", ""},
	{"streaming aggregate: store read p99, 1 entity × 51 features (vs batch-only)", "StreamingAggregate/read/streaming", []string{"StreamingAggregate/read/batch-only"}, "the batch-only aggregate view of the same windows", "p99-µs", ""},
	{"streaming aggregate: Redis bytes per entity, 10 batch + 10 stream events (vs batch-only)", "StreamingAggregate/memory", []string{"StreamingAggregate/memory"}, "the batch-only aggregate view's row (MEMORY USAGE)", "streaming-bytes/entity", "batch-bytes/entity"},
	{"materialize latest, 100k events, through the job queue", "QueuedRun/queued", []string{"QueuedRun/direct"}, "the same run done directly by the runner, in the same process", "ns/op", ""},
	{"job queue round trip, no-op job", "Job/roundtrip", []string{"Job/floor"}, "go-redis XADD; XREADGROUP; HSET of a status field + XACK + XDEL in one pipeline; one job at a time", "ns/op", ""},
	{"job queue throughput, 1,000 no-op jobs, worker of concurrency 4", "Job/throughput", []string{"Job/throughput-floor"}, "the floor's commands, 4 producers and 4 consumers", "jobs/s", ""},
}

// childSuffix names the run of a benchmark in a child process of its own:
// a larder figure measured in a process that also holds other data (the
// inputs of a prediction view, say) takes its peak resident memory from the
// benchmark of the same name with this suffix.
const childSuffix = "-child"

// peak returns the peak resident memory, in MiB, of the run of the larder
// benchmark name: its own peak-MiB metric, or that of its child run. It
// returns false when neither reports one.
func peak(results map[string]result, name string) (float64, bool) {
	for _, n := range []string{name, name + childSuffix} {
		if v, ok := results[resolve(results, n)]["peak-MiB"]; ok {
			return v, true
		}
	}
	return 0, false
}

// peakText formats the peak resident memory of the run of the larder
// benchmark name for the table, or "-" when it has none.
func peakText(results map[string]result, name string) string {
	if v, ok := peak(results, name); ok {
		return fmt.Sprintf("%.0f MiB", v)
	}
	return "-"
}

// lowerFloor is a row of the table that compares a larder figure with the
// lower of several floors, each counting other things than the figure: a
// floor is first converted into the figure's unit.
type lowerFloor struct {
	label  string
	larder string
	unit   string
	floors []scaledFloor
	floor  string
}

// scaledFloor is a floor of a lowerFloor. Its metric unit counts the same
// things as the larder figure's metric per, so it is converted into the
// figure's unit by the figure's own ratio unit/per (events/s into
// entities/s, say, by the entities written per event read).
type scaledFloor struct {
	name, unit, per string
}

var lowerFloors = []lowerFloor{
	{
		"materialize latest, 10M events into Redis (vs the lower floor)", "Heavy/latest-redis/events=10M", "entities/s",
		[]scaledFloor{
			{"Heavy/floor-decode/events=10M", "rows/s", "rows/s"},
			{"Heavy/floor-write", "rows/s", "entities/s"},
		},
		"the slower of page decode (10M rows) and pipelined HSETs (100k rows); goal ≥ 50%",
	},
}

// resolve returns the name of the result that name stands for: a name
// ending in "/procs=max" stands for the result of the same prefix with the
// most procs. It returns "" when there is none.
func resolve(results map[string]result, name string) string {
	prefix, ok := strings.CutSuffix(name, "procs=max")
	if !ok {
		return name
	}
	best, bestProcs := "", 0
	for n := range results {
		v, ok := strings.CutPrefix(n, prefix+"procs=")
		if !ok {
			continue
		}
		if procs, err := strconv.Atoi(v); err == nil && procs > bestProcs {
			best, bestProcs = n, procs
		}
	}
	return best
}

// result holds the metrics of one benchmark, by unit.
type result map[string]float64

var (
	procSuffix = regexp.MustCompile(`-\d+$`)
	// runSuffix marks a benchmark run again under the same name, as the
	// heavy benchmark's rounds are.
	runSuffix = regexp.MustCompile(`#\d+$`)
)

// parse reads `go test -bench` output with golang.org/x/perf/benchfmt:
// each result's name (without the Benchmark prefix and the -GOMAXPROCS
// suffix) and its metrics in the units the benchmark reported them in. A
// benchmark run several times (with -count, or in rounds named name#01,
// name#02, …) gets the median of each of its metrics. Lines that are not
// results (test output, PASS, ok) are skipped, as benchfmt does; echo, when
// not nil, gets every line read.
func parse(r io.Reader, echo io.Writer) (map[string]result, error) {
	if echo != nil {
		r = io.TeeReader(r, echo)
	}
	runs := map[string]map[string][]float64{}
	br := benchfmt.NewReader(r, "standard input")
	for br.Scan() {
		res, ok := br.Result().(*benchfmt.Result)
		if !ok {
			continue // a configuration line, unit metadata or a syntax error
		}
		name := strings.TrimPrefix(res.Name.String(), "Benchmark")
		name = procSuffix.ReplaceAllString(name, "")
		name = runSuffix.ReplaceAllString(name, "")
		if runs[name] == nil {
			runs[name] = map[string][]float64{}
		}
		for _, v := range res.Values {
			unit, value := v.Unit, v.Value
			if v.OrigUnit != "" {
				unit, value = v.OrigUnit, v.OrigValue
			}
			runs[name][unit] = append(runs[name][unit], value)
		}
	}
	if err := br.Err(); err != nil {
		return nil, err
	}
	results := make(map[string]result, len(runs))
	for name, metrics := range runs {
		res := result{}
		for unit, vs := range metrics {
			res[unit] = median(vs)
		}
		results[name] = res
	}
	return results, nil
}

// median returns the median of vs, which must not be empty.
func median(vs []float64) float64 {
	s := slices.Clone(vs)
	slices.Sort(s)
	if n := len(s); n%2 == 0 {
		return (s[n/2-1] + s[n/2]) / 2
	}
	return s[len(s)/2]
}

func main() {
	var echo io.Writer
	if len(os.Args) > 1 && os.Args[1] == "-echo" {
		echo = os.Stderr
	}
	results, err := parse(os.Stdin, echo)
	if err != nil {
		fmt.Fprintln(os.Stderr, "benchtable:", err)
		os.Exit(1)
	}
	if len(results) == 0 {
		fmt.Fprintln(os.Stderr, "benchtable: no benchmark results on standard input")
		os.Exit(1)
	}
	write(os.Stdout, results)
}

func write(w io.Writer, results map[string]result) {
	fmt.Fprintln(w, "| figure | larder | floor | ratio | larder peak RSS | larder allocs/op | floor measured as |")
	fmt.Fprintln(w, "|---|---|---|---|---|---|---|")
	for _, c := range comparisons {
		got, ok := results[resolve(results, c.larder)]
		if !ok {
			fmt.Fprintf(w, "| %s | not run | | | | | %s |\n", c.label, c.floor)
			continue
		}
		var floor float64
		missing := false
		for _, f := range c.floors {
			r, ok := results[resolve(results, f)]
			if !ok {
				missing = true
				break
			}
			unit := c.unit
			if c.floorUnit != "" {
				unit = c.floorUnit
			}
			floor += r[unit]
		}
		peakMiB := peakText(results, c.larder)
		allocs := "-"
		if a, ok := got["allocs/op"]; ok {
			allocs = strconv.FormatFloat(a, 'f', 0, 64)
		}
		if missing || floor == 0 {
			fmt.Fprintf(w, "| %s | %s | not run | | %s | %s | %s |\n", c.label, format(got[c.unit], c.unit), peakMiB, allocs, c.floor)
			continue
		}
		ratio := got[c.unit] / floor
		ratioText := fmt.Sprintf("%.2f× the floor", ratio)
		if !lowerIsBetter(c.unit) {
			ratioText = fmt.Sprintf("%.0f%% of the floor", 100*ratio)
		}
		floorUnit := c.unit
		if c.floorUnit != "" {
			floorUnit = c.floorUnit
		}
		fmt.Fprintf(w, "| %s | %s | %s | %s | %s | %s | %s |\n", c.label, format(got[c.unit], c.unit), format(floor, floorUnit), ratioText, peakMiB, allocs, c.floor)
	}
	for _, c := range lowerFloors {
		writeLowerFloor(w, results, c)
	}
	writeHeavySeconds(w, results)
	// Figures with no floor of their own, printed for the record: writes,
	// latencies, and the heavy and prediction materializations with their
	// peak memory.
	names := []string{"Write", "IncrementalWrite", "GetFeatures1x20", "Rank1x100", "Candidates1M", "Prediction100k/materialize" + childSuffix, "ScoreJob1M/queued"}
	var heavy []string
	for name := range results {
		if strings.HasPrefix(name, "Heavy/") {
			heavy = append(heavy, name)
		}
	}
	slices.Sort(heavy)
	for _, name := range append(names, heavy...) {
		r, ok := results[name]
		if !ok {
			continue
		}
		for _, unit := range []string{"rows/s", "job-rows/s", "entities/s", "p50-µs", "p99-µs", "peak-MiB"} {
			if v, ok := r[unit]; ok {
				fmt.Fprintf(w, "| %s %s | %s | | | | | |\n", name, unit, strconv.FormatFloat(v, 'f', 0, 64))
			}
		}
	}
}

// writeLowerFloor writes the row of c: the larder figure, the lowest of its
// floors in the figure's unit, and the ratio between them.
func writeLowerFloor(w io.Writer, results map[string]result, c lowerFloor) {
	got, ok := results[resolve(results, c.larder)]
	if !ok || got[c.unit] == 0 {
		fmt.Fprintf(w, "| %s | not run | | | | | %s |\n", c.label, c.floor)
		return
	}
	peakMiB := peakText(results, c.larder)
	lowest := 0.0
	for _, f := range c.floors {
		r, ok := results[resolve(results, f.name)]
		per := got[f.per]
		if !ok || r[f.unit] == 0 || per == 0 {
			fmt.Fprintf(w, "| %s | %s | not run | | %s | - | %s |\n", c.label, format(got[c.unit], c.unit), peakMiB, c.floor)
			return
		}
		v := r[f.unit] * got[c.unit] / per
		if lowest == 0 || v < lowest {
			lowest = v
		}
	}
	fmt.Fprintf(w, "| %s | %s | %s | %.0f%% of the floor | %s | - | %s |\n",
		c.label, format(got[c.unit], c.unit), format(lowest, c.unit), 100*got[c.unit]/lowest, peakMiB, c.floor)
}

// writeHeavySeconds writes the row of the latest view of 10M events into
// Redis in seconds: the run against the lower floor's time, the longer of
// the raw page decode of the same events and the raw writes of the same
// rows, each alone. The goal is at most twice the floor's time.
func writeHeavySeconds(w io.Writer, results map[string]result) {
	const label = "materialize latest, 10M events into Redis (seconds)"
	const how = "the longer of page decode (10M rows) and pipelined HSETs (100k rows), each alone; goal ≤ 2×"
	const events = 10e6
	const name = "Heavy/latest-redis/events=10M"
	got, ok := results[name]
	if !ok || got["rows/s"] == 0 {
		fmt.Fprintf(w, "| %s | not run | | | | | %s |\n", label, how)
		return
	}
	peakMiB := peakText(results, name)
	seconds := events / got["rows/s"]
	entities := events * got["entities/s"] / got["rows/s"]
	decode, write := results["Heavy/floor-decode/events=10M"]["rows/s"], results["Heavy/floor-write"]["rows/s"]
	if decode == 0 || write == 0 || entities == 0 {
		fmt.Fprintf(w, "| %s | %.2f s | not run | | %s | - | %s |\n", label, seconds, peakMiB, how)
		return
	}
	floor := max(events/decode, entities/write)
	fmt.Fprintf(w, "| %s | %.2f s | %.2f s | %.2f× the floor | %s | - | %s |\n", label, seconds, floor, seconds/floor, peakMiB, how)
}

// lowerIsBetter reports whether a figure in unit is a cost (a time, a
// size), compared with its floor as a multiple, rather than a rate.
func lowerIsBetter(unit string) bool {
	return unit == "ns/op" || strings.HasSuffix(unit, "-µs") || strings.HasSuffix(unit, "bytes/entity")
}

func format(v float64, unit string) string {
	switch {
	case strings.HasSuffix(unit, "-µs"):
		return fmt.Sprintf("%.0f µs", v)
	case strings.HasSuffix(unit, "bytes/entity"):
		return fmt.Sprintf("%.0f B", v)
	}
	if unit == "ns/op" {
		switch {
		case v >= 1e6:
			return fmt.Sprintf("%.2f ms", v/1e6)
		case v >= 1e3:
			return fmt.Sprintf("%.1f µs", v/1e3)
		}
		return fmt.Sprintf("%.0f ns", v)
	}
	if v < 1e6 {
		return fmt.Sprintf("%.1fk %s", v/1e3, unit)
	}
	return fmt.Sprintf("%.2fM %s", v/1e6, unit)
}
