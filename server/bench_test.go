package server_test

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"syscall"
	"testing"
	"time"

	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/trace"
	healthpb "google.golang.org/grpc/health/grpc_health_v1"

	"github.com/larder-dev/larder"
	"github.com/larder-dev/larder/models"
	larderv1 "github.com/larder-dev/larder/proto/larder/v1"
	"github.com/larder-dev/larder/server"
)

// Sizes of the benchmark project.
const (
	benchEntities = 1000
	benchFeatures = 20
)

// benchServer serves a project of 1000 users and 1000 items, each with one
// view of 20 float64 features, from a real redis-server, with a ranker
// "bench" over 10 user features, 20 item features and one request feature,
// scored by a random 31→64→1 MLP in ONNX Runtime.
func benchServer(tb testing.TB) *running { return benchServerTraced(tb, nil) }

// benchServerTraced is benchServer tracing with tp, when not nil.
func benchServerTraced(tb testing.TB, tp trace.TracerProvider) *running {
	tb.Helper()
	feats := make([]larder.Feature, benchFeatures)
	for i := range feats {
		feats[i] = larder.Feature{Name: fmt.Sprintf("f%02d", i), Type: larder.TypeFloat64}
	}
	var inputs []larder.RankerInput
	for i := 0; i < 10; i++ {
		inputs = append(inputs, larder.RankerInput{Ref: fmt.Sprintf("user_f:f%02d", i)})
	}
	for i := 0; i < benchFeatures; i++ {
		inputs = append(inputs, larder.RankerInput{Ref: fmt.Sprintf("item_f:f%02d", i), Default: -1})
	}
	inputs = append(inputs, larder.RankerInput{Ref: "request:hour"})
	p := &larder.Project{
		Name: "srvbench",
		Entities: []*larder.Entity{
			{Name: "user", Key: "user_id", KeyType: larder.TypeInt64},
			{Name: "item", Key: "item_id", KeyType: larder.TypeInt64},
		},
		Sources: []*larder.Source{{Name: "events", Path: "events.parquet", EventTime: "ts"}},
		Views: []*larder.View{
			{Name: "user_f", Kind: larder.KindLatest, Entity: "user", Source: "events", MaxAge: time.Hour, Features: feats},
			{Name: "item_f", Kind: larder.KindLatest, Entity: "item", Source: "events", MaxAge: time.Hour, Features: slices.Clone(feats)},
		},
		Rankers: []*larder.Ranker{{Name: "bench", Model: "bench.onnx", Context: "user", Candidate: "item", Inputs: inputs}},
	}
	p.SetDefaults()
	if err := p.Validate(); err != nil {
		tb.Fatal(err)
	}

	st, _ := newStore(tb, p)
	now := time.Now()
	for _, view := range []string{"user_f", "item_f"} {
		rows := make(map[larder.Key]larder.Row, benchEntities)
		for id := int64(1); id <= benchEntities; id++ {
			vals := make([]larder.Value, benchFeatures)
			for i := range vals {
				vals[i] = larder.Float64Value(float64(id) + float64(i)/100)
			}
			rows[larder.Int64Key(id)] = larder.Row{EventTime: now, Values: vals}
		}
		publish(tb, st, p, view, rows)
	}
	r := p.Ranker("bench")
	net, err := models.NewRandomMLP(len(r.Inputs), []int{64}, 1)
	if err != nil {
		tb.Fatal(err)
	}
	m := loadNet(tb, net, r)
	return serve(tb, server.Config{Project: p, Store: st, Models: map[string]server.Model{"bench": m}, Tracing: tp}, 5*time.Second)
}

// latencies records the duration of each call and reports p50 and p99.
type latencies []time.Duration

func (l *latencies) report(b *testing.B) {
	b.Helper()
	if len(*l) == 0 {
		return
	}
	slices.Sort(*l)
	at := func(q float64) float64 { return float64((*l)[int(q*float64(len(*l)-1))].Nanoseconds()) / 1e3 }
	b.ReportMetric(at(0.50), "p50-µs")
	b.ReportMetric(at(0.99), "p99-µs")
}

// run calls call b.N times, timing each call.
func run(b *testing.B, call func(context.Context) error) {
	b.Helper()
	ctx := context.Background()
	if err := call(ctx); err != nil { // warm the connection and the caches
		b.Fatal(err)
	}
	lat := make(latencies, 0, b.N)
	b.ReportAllocs()
	cpu0 := processCPU(b)
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		start := time.Now()
		if err := call(ctx); err != nil {
			b.Fatal(err)
		}
		lat = append(lat, time.Since(start))
	}
	b.StopTimer()
	lat.report(b)
	// The CPU the process (client and server, not Redis) spent per call:
	// steadier than the latencies when other processes share the machine.
	b.ReportMetric(float64((processCPU(b)-cpu0).Nanoseconds())/1e3/float64(b.N), "cpu-µs/op")
}

// processCPU returns the user and system CPU time the process has used.
func processCPU(tb testing.TB) time.Duration {
	tb.Helper()
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		tb.Fatal(err)
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func benchGetFeatures(b *testing.B, keys int) { benchGetFeaturesTraced(b, keys, nil) }

func benchGetFeaturesTraced(b *testing.B, keys int, tp trace.TracerProvider) {
	srv := benchServerTraced(b, tp)
	req := &larderv1.GetFeaturesRequest{Keys: make([]*larderv1.EntityKey, keys), Features: []string{"user_f:*"}}
	for i := range req.Keys {
		req.Keys[i] = intKey(int64(1 + i*7%benchEntities))
	}
	run(b, func(ctx context.Context) error {
		resp, err := srv.client.GetFeatures(ctx, req)
		if err == nil && resp.GetRowCount() != int32(keys) {
			err = fmt.Errorf("got %d rows, want %d", resp.GetRowCount(), keys)
		}
		return err
	})
}

// BenchmarkGetFeatures1x20 reads 20 float64 features of one entity.
func BenchmarkGetFeatures1x20(b *testing.B) { benchGetFeatures(b, 1) }

// BenchmarkGetFeatures1x20Traced is BenchmarkGetFeatures1x20 with every
// call traced and its spans dropped: the cost of tracing a call, without an
// exporter's.
func BenchmarkGetFeatures1x20Traced(b *testing.B) {
	tp := sdktrace.NewTracerProvider()
	b.Cleanup(func() { _ = tp.Shutdown(context.Background()) })
	benchGetFeaturesTraced(b, 1, tp)
}

// BenchmarkGetFeatures100x20 reads 20 float64 features of 100 entities.
func BenchmarkGetFeatures100x20(b *testing.B) { benchGetFeatures(b, 100) }

// BenchmarkRank1x100 ranks 100 candidates for one user: 101 reads, a 100×31
// model input and the MLP.
func BenchmarkRank1x100(b *testing.B) {
	srv := benchServer(b)
	req := &larderv1.RankRequest{
		Ranker:          "bench",
		ContextKey:      intKey(42),
		CandidateKeys:   make([]*larderv1.EntityKey, 100),
		RequestFeatures: map[string]*larderv1.Value{"hour": intVal(13)},
	}
	for i := range req.CandidateKeys {
		req.CandidateKeys[i] = intKey(int64(1 + i*9%benchEntities))
	}
	run(b, func(ctx context.Context) error {
		resp, err := srv.client.Rank(ctx, req)
		if err == nil && len(resp.GetCandidates()) != larder.DefaultTopK {
			err = fmt.Errorf("got %d candidates, want %d", len(resp.GetCandidates()), larder.DefaultTopK)
		}
		return err
	})
}

// BenchmarkEmptyCall is the floor under the others: a health check through
// the same server, client and connection.
func BenchmarkEmptyCall(b *testing.B) {
	srv := benchServer(b)
	health := healthpb.NewHealthClient(srv.conn)
	req := &healthpb.HealthCheckRequest{}
	run(b, func(ctx context.Context) error {
		_, err := health.Check(ctx, req)
		return err
	})
}

// runParallel calls call from 64 goroutines (32 per CPU on two), as a
// loaded server sees them, and reports the process's CPU per call.
func runParallel(b *testing.B, call func(context.Context) error) {
	b.Helper()
	ctx := context.Background()
	if err := call(ctx); err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.SetParallelism(max(1, 64/runtime.GOMAXPROCS(0)))
	cpu0 := processCPU(b)
	b.ResetTimer()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			if err := call(ctx); err != nil {
				b.Error(err)
				return
			}
		}
	})
	b.StopTimer()
	b.ReportMetric(float64((processCPU(b)-cpu0).Nanoseconds())/1e3/float64(b.N), "cpu-µs/op")
}

// BenchmarkGetFeatures1x20Concurrent is BenchmarkGetFeatures1x20 from 64
// goroutines: the case where concurrent reads share Redis round trips.
func BenchmarkGetFeatures1x20Concurrent(b *testing.B) {
	srv := benchServer(b)
	req := &larderv1.GetFeaturesRequest{Keys: []*larderv1.EntityKey{intKey(7)}, Features: []string{"user_f:*"}}
	runParallel(b, func(ctx context.Context) error {
		_, err := srv.client.GetFeatures(ctx, req)
		return err
	})
}

// BenchmarkEmptyCallConcurrent is BenchmarkEmptyCall from 64 goroutines.
func BenchmarkEmptyCallConcurrent(b *testing.B) {
	srv := benchServer(b)
	health := healthpb.NewHealthClient(srv.conn)
	req := &healthpb.HealthCheckRequest{}
	runParallel(b, func(ctx context.Context) error {
		_, err := health.Check(ctx, req)
		return err
	})
}
