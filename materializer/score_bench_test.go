package materializer_test

import (
	"context"
	"math"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/larder-dev/larder"
	"github.com/larder-dev/larder/materializer"
	"github.com/larder-dev/larder/models"
	"github.com/larder-dev/larder/redistest"
	"github.com/larder-dev/larder/store"
	"github.com/redis/go-redis/v9"
)

const (
	scoreBenchItems = 5000
	// scoreBenchCandidates is the candidates per user: the input holds
	// users × candidates rows.
	scoreBenchCandidates = 100
	scoreBenchBatch      = larder.DefaultPredictionBatch
	// scoreChildView is the view name by which heavyChildEnv asks
	// TestHeavyChild for a run of scoreChild.
	scoreChildView = "score"
)

// scoreBenchAsOf is the as-of of the scoring benchmarks' jobs.
var scoreBenchAsOf = time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)

// BenchmarkScore100k scores 100k rows of 1,000 users; see benchScore.
func BenchmarkScore100k(b *testing.B) { benchScore(b, 1000) }

// BenchmarkScore1M scores 1M rows of 10,000 users; see benchScore.
func BenchmarkScore1M(b *testing.B) { benchScore(b, 10_000) }

// benchScore scores users × 100 (user, item, request features) rows, a
// user's 100 candidates after each other, with scoreProject's ranker feed
// (9 inputs from two views and the request, a 9→64→1 MLP) on a real
// redis-server, in batches of 1024, from a Parquet file to a Parquet file,
// next to its floors measured in the same run:
//
//	ranker        the job, in this process
//	ranker-child  the job once in a child process of its own (scoreChild),
//	              for its peak resident memory (peak-MiB)
//	ort-floor     ONNX Runtime alone on the same input rows in the same
//	              batches, the inputs built in advance
//	read-floor    the store reads alone of the same batches' keys (each
//	              batch's distinct users and its items, as numbers, as the
//	              job reads them), one round trip at a time
//
// Once ranker has run, the job's output is checked against the scores of
// ONNX Runtime on the inputs built the obvious way (expectedRankInput): a
// single differing bit fails the benchmark.
func benchScore(b *testing.B, users int) {
	dir := b.TempDir()
	p := scoreProject(b, dir)
	rt := newORT(b)
	writeModel(b, filepath.Join(dir, "ranker.onnx"), 9, 1, 7, 64)
	asOf := scoreBenchAsOf
	srv := redistest.Start(b)
	st := store.New(srv.Client(), p.Name, store.Options{})
	data := scoreTestData(users, scoreBenchItems, asOf)
	for _, name := range []string{"user_profile", "item_stats"} {
		publishRows(b, st, p.View(name), data[name])
	}
	in := scoreBenchInput(users)
	writeParquet(b, filepath.Join(dir, "in.parquet"), in)
	rows := float64(len(in))
	args := larder.ScoreArgs{Ranker: "feed", Input: "in.parquet", Output: "out.parquet", BatchSize: scoreBenchBatch}
	r := p.Ranker("feed")
	// The model inputs of every row, built the obvious way: the floor's
	// input, and the check's.
	var x []float32
	inputs := func() []float32 {
		if x == nil {
			x = make([]float32, 0, 9*len(in))
			for _, row := range in {
				x = append(x, expectedRankInput(r, data, larder.Int64Key(row.UserID), larder.StringKey(row.SKU), requestOf(row), asOf)...)
			}
		}
		return x
	}

	scored := false
	b.Run("ranker", func(b *testing.B) {
		m := materializer.New(p, st, materializer.Options{Now: fixedClock(asOf), Models: modelLoader(rt), Reader: st})
		cpu0 := cpuTime(b)
		for b.Loop() {
			rep, err := m.Score(context.Background(), args)
			if err != nil {
				b.Fatal(err)
			}
			if rep.Rows != int64(len(in)) {
				b.Fatalf("%d rows scored, want %d", rep.Rows, len(in))
			}
		}
		b.ReportMetric(rows*float64(b.N)/b.Elapsed().Seconds(), "rows/s")
		b.ReportMetric(rows*float64(b.N)/(cpuTime(b)-cpu0).Seconds(), "rows/cpu-s")
		scored = true
	})

	b.Run("ranker-child", func(b *testing.B) {
		var res heavyResult
		for b.Loop() {
			res = runChild(b, scoreChildView+","+dir+","+srv.Addr, runtime.GOMAXPROCS(0))
		}
		if res.Rows != int64(len(in)) {
			b.Fatalf("child job scored %d rows, want %d", res.Rows, len(in))
		}
		b.ReportMetric(0, "ns/op")
		b.ReportMetric(float64(res.Rows)/res.Seconds, "rows/s")
		b.ReportMetric(float64(res.Rows)/res.CPU, "rows/cpu-s")
		b.ReportMetric(float64(res.PeakRSS)/(1<<20), "peak-MiB")
	})

	b.Run("ort-floor", func(b *testing.B) {
		m, err := rt.Load(filepath.Join(dir, "ranker.onnx"), models.Spec{Input: "features", Output: "score", Features: 9})
		if err != nil {
			b.Fatal(err)
		}
		defer m.Close()
		x := inputs()
		y := make([]float32, scoreBenchBatch)
		ctx := context.Background()
		for b.Loop() {
			for lo := 0; lo < len(in); lo += scoreBenchBatch {
				n := min(scoreBenchBatch, len(in)-lo)
				if err := m.Score(ctx, x[9*lo:9*(lo+n)], n, y); err != nil {
					b.Fatal(err)
				}
			}
		}
		b.ReportMetric(rows*float64(b.N)/b.Elapsed().Seconds(), "rows/s")
	})

	b.Run("read-floor", func(b *testing.B) {
		// The batches' keys, as the job reads them: each batch's distinct
		// users, then its items.
		type batch struct{ users, items []larder.Key }
		var batches []batch
		for lo := 0; lo < len(in); lo += scoreBenchBatch {
			var bt batch
			for _, row := range in[lo:min(lo+scoreBenchBatch, len(in))] {
				u := larder.Int64Key(row.UserID)
				if n := len(bt.users); n == 0 || bt.users[n-1] != u {
					bt.users = append(bt.users, u)
				}
				bt.items = append(bt.items, larder.StringKey(row.SKU))
			}
			batches = append(batches, bt)
		}
		numbers := func(features ...int) *larder.NumberRead {
			return &larder.NumberRead{Features: features, Defaults: make([]float32, len(features))}
		}
		users := &larder.Lookup{View: p.View("user_profile"), Numbers: numbers(0, 1, 2)}
		items := &larder.Lookup{View: p.View("item_stats"), Numbers: numbers(0, 1, 2)}
		lookups := []*larder.Lookup{users, items}
		ctx := context.Background()
		for b.Loop() {
			for _, bt := range batches {
				users.Keys, items.Keys = bt.users, bt.items
				if err := st.Read(ctx, lookups); err != nil {
					b.Fatal(err)
				}
			}
		}
		b.ReportMetric(rows*float64(b.N)/b.Elapsed().Seconds(), "rows/s")
	})

	if scored {
		checkScores(b, rt, filepath.Join(dir, "ranker.onnx"), filepath.Join(dir, "out.parquet"), in, inputs())
	}
}

// scoreBenchInput returns the input rows of benchScore: users × 100 rows,
// each user's candidates after each other, every third discount null.
func scoreBenchInput(users int) []rankInputRow {
	in := make([]rankInputRow, users*scoreBenchCandidates)
	for r := range in {
		row := rankInputRow{UserID: int64(1 + r/scoreBenchCandidates), SKU: itemKey(1 + (r*7919)%scoreBenchItems).Str()}
		h := int32(r % 24)
		row.Hour = &h
		if r%3 != 0 {
			d := float64(r%5) / 4
			row.Discount = &d
		}
		in[r] = row
	}
	return in
}

// checkScores checks the scoring output at out, row by row, against the
// input rows in and ONNX Runtime's scores of the model at model on x, their
// model inputs.
func checkScores(b *testing.B, rt *models.Runtime, model, out string, in []rankInputRow, x []float32) {
	b.Helper()
	m, err := rt.Load(model, models.Spec{Input: "features", Output: "score", Features: 9})
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	want := make([]float32, len(in))
	ctx := context.Background()
	for lo := 0; lo < len(in); lo += scoreBenchBatch {
		n := min(scoreBenchBatch, len(in)-lo)
		if err := m.Score(ctx, x[9*lo:9*(lo+n)], n, want[lo:lo+n]); err != nil {
			b.Fatal(err)
		}
	}
	got, _ := readOutput[rankOutputRow](b, out)
	if len(got) != len(in) {
		b.Fatalf("the output holds %d rows, want %d", len(got), len(in))
	}
	for i, o := range got {
		if o.UserID != in[i].UserID || o.SKU != in[i].SKU {
			b.Fatalf("output row %d is (%d, %s), want (%d, %s)", i, o.UserID, o.SKU, in[i].UserID, in[i].SKU)
		}
		if math.Float32bits(o.Score) != math.Float32bits(want[i]) {
			b.Fatalf("output row %d (%d, %s): score %v, want %v", i, o.UserID, o.SKU, o.Score, want[i])
		}
	}
	b.Logf("the job's output equals ONNX Runtime's scores of the same inputs, all %d rows", len(got))
}

// scoreChild is the child process of benchScore's ranker-child, run by
// TestHeavyChild with spec "folder,address": it loads ONNX Runtime and runs
// the job of benchScore once, from in.parquet in folder to out-child.parquet
// there, reading the views already published on the redis-server at
// address, and returns what it measured, the process's peak resident
// memory included.
func scoreChild(t *testing.T, spec string) heavyResult {
	dir, addr, ok := strings.Cut(spec, ",")
	if !ok {
		t.Fatalf("%s=%s,%q: want %s,folder,address", heavyChildEnv, scoreChildView, spec, scoreChildView)
	}
	p := scoreProject(t, dir)
	rt := newORT(t)
	client := redis.NewClient(&redis.Options{Addr: addr, ContextTimeoutEnabled: true})
	t.Cleanup(func() { client.Close() })
	st := store.New(client, p.Name, store.Options{})
	m := materializer.New(p, st, materializer.Options{Now: fixedClock(scoreBenchAsOf), Models: modelLoader(rt), Reader: st})
	cpu0 := cpuTime(t)
	start := time.Now()
	rep, err := m.Score(context.Background(), larder.ScoreArgs{Ranker: "feed", Input: "in.parquet", Output: "out-child.parquet", BatchSize: scoreBenchBatch})
	if err != nil {
		t.Fatal(err)
	}
	return heavyResult{
		View: "feed", Rows: rep.Rows, Procs: runtime.GOMAXPROCS(0),
		Seconds: time.Since(start).Seconds(), CPU: (cpuTime(t) - cpu0).Seconds(), PeakRSS: peakRSS(t),
	}
}
