package materializer_test

import (
	"context"
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
	predBenchEntities = 100_000
	// predChildView is the view name by which heavyChildEnv asks
	// TestHeavyChild for a run of predictionChild.
	predChildView = "prediction"
)

// predBenchRunTime is the run time of BenchmarkPrediction100k's runs.
var predBenchRunTime = time.Date(2026, 2, 1, 12, 0, 0, 0, time.UTC)

// predBenchStore returns the store of BenchmarkPrediction100k's project p on
// client. A short grace period: each run's replaced generation is deleted by
// the next publish, so Redis memory stays flat over b.N runs.
func predBenchStore(client redis.UniversalClient, p *larder.Project) *store.Store {
	return store.New(client, p.Name, store.Options{GracePeriod: time.Millisecond})
}

// BenchmarkPrediction100k materializes the test prediction view (5 inputs
// from two views, a 5→64→2 MLP, batches of 1024) over 100k entities on a
// real redis-server, next to its floors: ONNX Runtime alone on the same
// input rows in the same batches, and the store reads alone.
//
// materialize runs the view in this process, which also holds the inputs'
// data; materialize-child runs it once in a child process of its own (see
// predictionChild), over the same redis-server and model, and reports that
// process's peak resident memory (peak-MiB) next to its entities/s.
func BenchmarkPrediction100k(b *testing.B) {
	dir := b.TempDir()
	p := predProject(b, dir, nil)
	rt := newORT(b)
	writeModel(b, filepath.Join(dir, "model.onnx"), 5, 2, 1, 64)
	runTime := predBenchRunTime
	srv := redistest.Start(b)
	client := srv.Client()
	st := predBenchStore(client, p)
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

	b.Run("materialize-child", func(b *testing.B) {
		var res heavyResult
		for b.Loop() {
			res = runChild(b, predChildView+","+dir+","+srv.Addr, runtime.GOMAXPROCS(0))
		}
		if res.Entities != entities {
			b.Fatalf("child run wrote %d entities, want %d", res.Entities, entities)
		}
		b.ReportMetric(0, "ns/op")
		b.ReportMetric(float64(res.Entities)/res.Seconds, "entities/s")
		b.ReportMetric(float64(res.Entities)/res.CPU, "entities/cpu-s")
		b.ReportMetric(float64(res.PeakRSS)/(1<<20), "peak-MiB")
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

// predictionChild is the child process of BenchmarkPrediction100k's
// materialize-child, run by TestHeavyChild with spec "folder,address": it
// loads ONNX Runtime, materializes the prediction view of the project in
// folder (predProject, with its model.onnx) once from the input views
// already published on the redis-server at address, and returns what it
// measured, the process's peak resident memory included.
func predictionChild(t *testing.T, spec string) heavyResult {
	dir, addr, ok := strings.Cut(spec, ",")
	if !ok {
		t.Fatalf("%s=%s,%q: want %s,folder,address", heavyChildEnv, predChildView, spec, predChildView)
	}
	p := predProject(t, dir, nil)
	rt := newORT(t)
	client := redis.NewClient(&redis.Options{Addr: addr, ContextTimeoutEnabled: true})
	t.Cleanup(func() { client.Close() })
	st := predBenchStore(client, p)
	m := materializer.New(p, st, materializer.Options{
		Now: fixedClock(predBenchRunTime), Models: modelLoader(rt), Reader: st,
	})
	cpu0 := cpuTime(t)
	start := time.Now()
	rep, err := m.Run(context.Background(), "pred")
	if err != nil {
		t.Fatal(err)
	}
	return heavyResult{
		View: "pred", Rows: rep.RowsRead, Entities: rep.EntitiesWritten, Procs: runtime.GOMAXPROCS(0),
		Seconds: time.Since(start).Seconds(), CPU: (cpuTime(t) - cpu0).Seconds(), PeakRSS: peakRSS(t),
	}
}
