package main

import (
	"bytes"
	"strings"
	"testing"
)

func TestParseAndWrite(t *testing.T) {
	in := `goos: linux
BenchmarkRead1x20/larder-2         	   30000	     40000 ns/op	     500 B/op	      19 allocs/op
BenchmarkRead1x20/go-redis-floor-2 	   30000	     32000 ns/op
BenchmarkLatest1M/materialize-2    	       1	 500000000 ns/op	   2000000 rows/s
BenchmarkLatest1M/floor-generic-reader-2 	1	 900000000 ns/op	   1000000 rows/s
PASS
`
	results, err := parse(strings.NewReader(in), nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := results["Read1x20/larder"]["allocs/op"]; got != 19 {
		t.Errorf("allocs = %v, want 19", got)
	}
	var out bytes.Buffer
	write(&out, results)
	for _, want := range []string{"1.25× the floor", "200% of the floor", "| GetFeatures, 1 × 20 (gRPC) | not run |"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, out.String())
		}
	}
}

func TestHeavyFloors(t *testing.T) {
	const run = `BenchmarkHeavy/latest/events=10M/procs=2-2 	1	0 ns/op	4000000 rows/s	3000000 rows/cpu-s	120.0 peak-MiB
BenchmarkHeavy/latest/events=10M/procs=1-2 	1	0 ns/op	2500000 rows/s	2500000 rows/cpu-s	110.0 peak-MiB
BenchmarkHeavy/floor-decode/events=10M-2 	1	0 ns/op	16000000 rows/cpu-s	20000000 rows/s
BenchmarkHeavy/floor-write-2             	1	0 ns/op	500000 rows/cpu-s	400000 rows/s
BenchmarkHeavy/latest-redis/events=10M-2 	1	0 ns/op	50000 entities/s	3000000 rows/cpu-s	5000000 rows/s
`
	tests := []struct {
		name string
		in   string
		want []string
	}{
		{
			name: "all run",
			in:   run,
			want: []string{
				// procs=max picks procs=2: 4M / 20M.
				"| materialize latest, 10M events → 100k entities, no-op store (vs page decode) | 4.00M rows/s | 20.00M rows/s | 20% of the floor |",
				"| materialize latest, 10M events into Redis (entities/s vs rows/s) | 50.0k entities/s | 400.0k rows/s | 12% of the floor |",
				// decode floor: 20M events/s × 100 events per entity = 200k
				// entities/s, below the write floor's 400k.
				"| materialize latest, 10M events into Redis (vs the lower floor) | 50.0k entities/s | 200.0k entities/s | 25% of the floor |",
				"| Heavy/latest-redis/events=10M entities/s | 50000 |",
				// 10M events at 5M rows/s: 2 s; the floor: decode 0.5 s,
				// write 100k rows at 400k rows/s 0.25 s.
				"| materialize latest, 10M events into Redis (seconds) | 2.00 s | 0.50 s | 4.00× the floor |",
			},
		},
		{
			name: "floors not run",
			in:   "BenchmarkHeavy/latest-redis/events=10M-2 	1	0 ns/op	50000 entities/s	5000000 rows/s\n",
			want: []string{
				"| materialize latest, 10M events into Redis (vs the lower floor) | 50.0k entities/s | not run |",
				"| materialize latest, 10M events → 100k entities, no-op store (vs page decode) | not run |",
				"| materialize latest, 10M events into Redis (seconds) | 2.00 s | not run |",
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			results, err := parse(strings.NewReader(tt.in), nil)
			if err != nil {
				t.Fatal(err)
			}
			var out bytes.Buffer
			write(&out, results)
			for _, want := range tt.want {
				if !strings.Contains(out.String(), want) {
					t.Errorf("table lacks %q:\n%s", want, out.String())
				}
			}
		})
	}
}

func TestRoundsTakeTheMedian(t *testing.T) {
	const in = `BenchmarkHeavy/floor-write-2     	1	0 ns/op	400000 rows/s
BenchmarkHeavy/floor-write#01-2  	1	0 ns/op	100000 rows/s
BenchmarkHeavy/floor-write#02-2  	1	0 ns/op	900000 rows/s
BenchmarkRead1x20/larder-2       	30000	40000 ns/op
BenchmarkRead1x20/larder-2       	30000	50000 ns/op
`
	results, err := parse(strings.NewReader(in), nil)
	if err != nil {
		t.Fatal(err)
	}
	if got := results["Heavy/floor-write"]["rows/s"]; got != 400000 {
		t.Errorf("floor-write = %v rows/s, want the median 400000", got)
	}
	if got := results["Read1x20/larder"]["ns/op"]; got != 45000 {
		t.Errorf("Read1x20 = %v ns/op, want the median 45000", got)
	}
	if _, ok := results["Heavy/floor-write#01"]; ok {
		t.Error("a round kept its own name")
	}
}

func TestPeakRSSAndAggregate(t *testing.T) {
	const in = `BenchmarkHeavy/latest/events=10M/procs=2-2 	1	0 ns/op	4000000 rows/s	3000000 rows/cpu-s	36.4 peak-MiB
BenchmarkHeavy/aggregate/events=10M/procs=2-2 	1	0 ns/op	8000000 rows/s	5000000 rows/cpu-s	61.2 peak-MiB
BenchmarkHeavy/aggregate/events=10M/procs=1-2 	1	0 ns/op	5000000 rows/s	5000000 rows/cpu-s	59.0 peak-MiB
BenchmarkHeavy/floor-decode/events=10M-2 	1	0 ns/op	16000000 rows/cpu-s	20000000 rows/s
BenchmarkPrediction100k/materialize-2 	5	200000000 ns/op	240000 entities/s	250000 entities/cpu-s	400000 allocs/op
BenchmarkPrediction100k/materialize-child-2 	1	0 ns/op	200000 entities/s	210000 entities/cpu-s	90.6 peak-MiB
BenchmarkPrediction100k/ort-floor-2 	100	10000000 ns/op	20000000 rows/s
BenchmarkPrediction100k/read-floor-2 	10	100000000 ns/op	400000 entities/s
`
	results, err := parse(strings.NewReader(in), nil)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	write(&out, results)
	for _, want := range []string{
		"| figure | larder | floor | ratio | larder peak RSS | larder allocs/op | floor measured as |",
		// procs=max picks procs=2: 8M / 20M, with its own peak.
		"| materialize aggregate, 10M events → 100k entities × 40 features, no-op store (vs page decode) | 8.00M rows/s | 20.00M rows/s | 40% of the floor | 61 MiB | - |",
		"| materialize latest, 10M events → 100k entities, no-op store (vs page decode) | 4.00M rows/s | 20.00M rows/s | 20% of the floor | 36 MiB | - |",
		// The in-process run's rate, the child run's peak.
		"| materialize prediction, 100k entities (entities/s) | 240.0k entities/s | 400.0k entities/s | 60% of the floor | 91 MiB | 400000 |",
		"| materialize prediction, model part (entities/s vs rows/s) | 240.0k entities/s | 20.00M rows/s | 1% of the floor | 91 MiB | 400000 |",
		// No run of its own: no peak.
		"| store read, 1 entity × 20 float64 | not run | | | | | go-redis HGET, same key |",
		"| Prediction100k/materialize-child entities/s | 200000 | | | | | |",
		"| Prediction100k/materialize-child peak-MiB | 91 | | | | | |",
		"| Heavy/aggregate/events=10M/procs=1 peak-MiB | 59 | | | | | |",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, out.String())
		}
	}
	// Every row has the header's columns.
	for line := range strings.Lines(out.String()) {
		if got := strings.Count(line, "|"); got != 8 {
			t.Errorf("row has %d cells, want 7: %s", got-1, line)
		}
	}
}

func TestJobQueueRows(t *testing.T) {
	const in = `BenchmarkJob/roundtrip-2         	    2332	    507792 ns/op	       281.0 client-cpu-µs/job	      1969 jobs/s	       234.7 redis-cpu-µs/job	   10485 B/op	     236 allocs/op
BenchmarkJob/floor-2             	   10000	    107621 ns/op	        68.45 client-cpu-µs/job	      9292 jobs/s	        42.52 redis-cpu-µs/job	    2712 B/op	      58 allocs/op
BenchmarkJob/throughput-2        	       3	 419853578 ns/op	       232.6 client-cpu-µs/job	      2382 jobs/s	       184.8 redis-cpu-µs/job	10170869 B/op	  229815 allocs/op
BenchmarkJob/throughput-floor-2  	       9	 123455898 ns/op	        94.17 client-cpu-µs/job	      8100 jobs/s	        55.72 redis-cpu-µs/job	 2693149 B/op	   57056 allocs/op
`
	results, err := parse(strings.NewReader(in), nil)
	if err != nil {
		t.Fatal(err)
	}
	// A floor's name is its figure's with a suffix: both are kept apart.
	if got := results["Job/throughput-floor"]["jobs/s"]; got != 8100 {
		t.Errorf("Job/throughput-floor = %v jobs/s, want 8100", got)
	}
	var out bytes.Buffer
	write(&out, results)
	for _, want := range []string{
		"| job queue round trip, no-op job | 507.8 µs | 107.6 µs | 4.72× the floor | - | 236 |",
		"| job queue throughput, 1,000 no-op jobs, worker of concurrency 4 | 2.4k jobs/s | 8.1k jobs/s | 29% of the floor | - | 229815 |",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, out.String())
		}
	}
}

func TestScoreRows(t *testing.T) {
	const in = `BenchmarkScore1M/ranker-2           	       1	1860547824 ns/op	    736988 rows/cpu-s	    537476 rows/s	74416536 B/op	 2959618 allocs/op
BenchmarkScore1M/ranker-child-2     	       1	        65.47 peak-MiB	    795272 rows/cpu-s	    531397 rows/s	   10768 B/op	      60 allocs/op
BenchmarkScore1M/ort-floor-2        	      16	  65285839 ns/op	  15317257 rows/s	   34536 B/op	    3926 allocs/op
BenchmarkScore1M/read-floor-2       	       1	1525073040 ns/op	    655706 rows/s	55269096 B/op	  951895 allocs/op
BenchmarkScoreJob1M/direct-2 	1	1220082737 ns/op	819617 rows/s
BenchmarkScoreJob1M/queued-2 	1	1508107231 ns/op	910023 job-rows/s	1.000 progress-lines/op	663083 rows/s
BenchmarkScoreJob1M/read-floor-2 	2	764970990 ns/op	1307239 rows/s
BenchmarkScoreJob1M/ort-floor-2 	26	58153207 ns/op	17195956 rows/s
`
	results, err := parse(strings.NewReader(in), nil)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	write(&out, results)
	for _, want := range []string{
		// The in-process run's rate, the child run's peak.
		"| batch score with a ranker, 1M rows (vs store reads) | 537.5k rows/s | 655.7k rows/s | 82% of the floor | 65 MiB | 2959618 |",
		"| batch score with a ranker, 1M rows, model part | 537.5k rows/s | 15.32M rows/s | 4% of the floor | 65 MiB | 2959618 |",
		"| batch score with a ranker, 100k rows (vs store reads) | not run |",
		"| larder score, demo ranker, 1M rows (vs store reads) | 819.6k rows/s | 1.31M rows/s | 63% of the floor | - | - |",
		"| larder score --async --wait, demo ranker, 1M rows, through a worker (vs store reads) | 663.1k rows/s | 1.31M rows/s | 51% of the floor | - | - |",
		"| larder score, demo ranker, 1M rows, model part | 819.6k rows/s | 17.20M rows/s | 5% of the floor | - | - |",
		"| ScoreJob1M/queued job-rows/s | 910023 |",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, out.String())
		}
	}
}

func TestExportFloors(t *testing.T) {
	const in = `BenchmarkExport1M/export-2       	1	1000000000 ns/op	  800000 rows/cpu-s	 1000000 rows/s
BenchmarkExport1M/floor-pages-2  	1	 100000000 ns/op	10000000 rows/cpu-s	10000000 rows/s
BenchmarkExport1M/floor-decode-2 	1	 200000000 ns/op	 5000000 rows/cpu-s	 5000000 rows/s
`
	results, err := parse(strings.NewReader(in), nil)
	if err != nil {
		t.Fatal(err)
	}
	var out bytes.Buffer
	write(&out, results)
	for _, want := range []string{
		"| export a training set, 1M spine rows × 20 float64 (vs value decode) | 1.00M rows/s | 5.00M rows/s | 20% of the floor |",
		"| export a training set, 1M spine rows × 20 float64 (vs page decode) | 1.00M rows/s | 10.00M rows/s | 10% of the floor |",
	} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("table lacks %q:\n%s", want, out.String())
		}
	}
	if i, j := strings.Index(out.String(), "(vs value decode)"), strings.Index(out.String(), "(vs page decode) | 1.00M"); i < 0 || j < i {
		t.Errorf("the export's row against value decode does not come first:\n%s", out.String())
	}
}
