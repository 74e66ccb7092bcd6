package materializer_test

import (
	"context"
	"path/filepath"
	"testing"
	"time"

	"github.com/larder-dev/larder"
	"github.com/larder-dev/larder/materializer"
	"github.com/larder-dev/larder/models"
	"github.com/larder-dev/larder/redistest"
	"github.com/larder-dev/larder/store"
)

const (
	scoreBenchUsers = 1000
	scoreBenchItems = 5000
	// scoreBenchCandidates is the candidates per user: the input holds
	// users × candidates rows, 100k.
	scoreBenchCandidates = 100
	scoreBenchBatch      = larder.DefaultPredictionBatch
)

// BenchmarkScore100k scores 100k (user, item, request features) rows, a
// user's 100 candidates after each other, with scoreProject's ranker feed
// (9 inputs from two views and the request, a 9→64→1 MLP) on a real
// redis-server, in batches of 1024, next to its floors measured in the same
// run: ONNX Runtime alone on the same input rows in the same batches, and
// the store reads alone of the same batches' keys (each batch's distinct
// users and its items, as numbers, as the job reads them).
func BenchmarkScore100k(b *testing.B) {
	dir := b.TempDir()
	p := scoreProject(b, dir)
	rt := newORT(b)
	writeModel(b, filepath.Join(dir, "ranker.onnx"), 9, 1, 7, 64)
	asOf := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC)
	st := store.New(redistest.Start(b).Client(), p.Name, store.Options{})
	data := scoreTestData(scoreBenchUsers, scoreBenchItems, asOf)
	for _, name := range []string{"user_profile", "item_stats"} {
		publishRows(b, st, p.View(name), data[name])
	}
	in := make([]rankInputRow, scoreBenchUsers*scoreBenchCandidates)
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
	writeParquet(b, filepath.Join(dir, "in.parquet"), in)
	rows := float64(len(in))
	args := larder.ScoreArgs{Ranker: "feed", Input: "in.parquet", Output: "out.parquet", BatchSize: scoreBenchBatch}

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
	})

	r := p.Ranker("feed")
	b.Run("ort-floor", func(b *testing.B) {
		m, err := rt.Load(filepath.Join(dir, "ranker.onnx"), models.Spec{Input: "features", Output: "score", Features: 9})
		if err != nil {
			b.Fatal(err)
		}
		defer m.Close()
		x := make([]float32, 0, 9*len(in))
		for _, row := range in {
			x = append(x, expectedRankInput(r, data, larder.Int64Key(row.UserID), larder.StringKey(row.SKU), requestOf(row), asOf)...)
		}
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
}
