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

const predBenchEntities = 100_000

// BenchmarkPrediction100k materializes the test prediction view (5 inputs
// from two views, a 5→64→2 MLP, batches of 1024) over 100k entities on a
// real redis-server, next to its floors: ONNX Runtime alone on the same
// input rows in the same batches, and the store reads alone.
func BenchmarkPrediction100k(b *testing.B) {
	dir := b.TempDir()
	p := predProject(b, dir, nil)
	rt := newORT(b)
	writeModel(b, filepath.Join(dir, "model.onnx"), 5, 2, 1, 64)
	runTime := time.Date(2026, 2, 1, 12, 0, 0, 0, time.UTC)
	client := redistest.Start(b).Client()
	// A short grace period: each run's replaced generation is deleted by
	// the next publish, so Redis memory stays flat over b.N runs.
	st := store.New(client, p.Name, store.Options{GracePeriod: time.Millisecond})
	data := randomPredData(predBenchEntities, 0, runTime, 1)
	for _, name := range []string{"profile", "stats"} {
		publishRows(b, st, p.View(name), data[name])
	}
	pr := p.View("pred").Prediction
	entities := int64(len(data["profile"]))

	b.Run("materialize", func(b *testing.B) {
		m := materializer.New(p, st, materializer.Options{
			Now: fixedClock(runTime), Models: modelLoader(rt), Reader: st,
		})
		cpu0 := cpuTime(b)
		for b.Loop() {
			rep, err := m.Run(context.Background(), "pred")
			if err != nil {
				b.Fatal(err)
			}
			if rep.EntitiesWritten != entities {
				b.Fatalf("%d entities written, want %d", rep.EntitiesWritten, entities)
			}
		}
		n := float64(entities) * float64(b.N)
		b.ReportMetric(n/b.Elapsed().Seconds(), "entities/s")
		b.ReportMetric(n/(cpuTime(b)-cpu0).Seconds(), "entities/cpu-s")
	})

	keys := storedKeys(b, client, p, "profile")
	batch := pr.BatchSize
	b.Run("ort-floor", func(b *testing.B) {
		m, err := rt.Load(filepath.Join(dir, "model.onnx"), models.Spec{Input: "features", Output: "score", Features: 5, Outputs: 2})
		if err != nil {
			b.Fatal(err)
		}
		defer m.Close()
		x := expectedInputs(pr, data, keys, runTime)
		y := make([]float32, 2*batch)
		ctx := context.Background()
		for b.Loop() {
			for lo := 0; lo < len(keys); lo += batch {
				n := min(batch, len(keys)-lo)
				if err := m.Score(ctx, x[5*lo:5*(lo+n)], n, y); err != nil {
					b.Fatal(err)
				}
			}
		}
		b.ReportMetric(float64(len(keys))*float64(b.N)/b.Elapsed().Seconds(), "rows/s")
	})

	b.Run("read-floor", func(b *testing.B) {
		lookups := []*larder.Lookup{{View: p.View("profile")}, {View: p.View("stats")}}
		ctx := context.Background()
		for b.Loop() {
			for lo := 0; lo < len(keys); lo += batch {
				ks := keys[lo:min(lo+batch, len(keys))]
				lookups[0].Keys, lookups[1].Keys = ks, ks
				if err := st.Read(ctx, lookups); err != nil {
					b.Fatal(err)
				}
			}
		}
		b.ReportMetric(float64(len(keys))*float64(b.N)/b.Elapsed().Seconds(), "entities/s")
	})
}
