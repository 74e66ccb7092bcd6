//go:build cgo

package models

import (
	"context"
	"testing"

	ort "github.com/yalue/onnxruntime_go"
)

const (
	benchRows     = 100
	benchFeatures = 20
	benchHidden   = 64
)

// benchModel returns the example ranker shape (20 features, 64 hidden)
// exported to a file, with a batch of rows.
func benchModel(b *testing.B) (net *Net, path string, x []float32) {
	b.Helper()
	x, y := synthData(1000, benchFeatures, 1)
	net, err := Train(x, y, benchFeatures, TrainConfig{Hidden: benchHidden, Epochs: 2, Seed: 1})
	if err != nil {
		b.Fatal(err)
	}
	return net, writeNet(b, net, "features", "score"), x[:benchRows*benchFeatures]
}

// BenchmarkScore100 scores 100 rows of 20 features with a 20→64→1 MLP
// through Model.Score.
func BenchmarkScore100(b *testing.B) {
	_, path, x := benchModel(b)
	rt := newRuntime(b)
	m, err := rt.Load(path, Spec{Input: "features", Output: "score", Features: benchFeatures})
	if err != nil {
		b.Fatal(err)
	}
	defer m.Close()
	cancellable, cancel := context.WithCancel(context.Background())
	defer cancel()
	for _, bc := range []struct {
		name string
		ctx  context.Context
	}{
		{"ctx=background", context.Background()},
		{"ctx=cancellable", cancellable}, // as a gRPC request's context is
	} {
		b.Run(bc.name, func(b *testing.B) {
			out := make([]float32, benchRows)
			b.ReportAllocs()
			for b.Loop() {
				if err := m.Score(bc.ctx, x, benchRows, out); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			out := make([]float32, benchRows)
			for pb.Next() {
				if err := m.Score(cancellable, x, benchRows, out); err != nil {
					b.Error(err)
					return
				}
			}
		})
	})
}

// BenchmarkORTFloor100 runs the same model straight through onnxruntime_go
// with tensors made once: the floor under Model.Score.
func BenchmarkORTFloor100(b *testing.B) {
	_, path, x := benchModel(b)
	newRuntime(b) // sets up the environment
	opts, err := ort.NewSessionOptions()
	if err != nil {
		b.Fatal(err)
	}
	defer opts.Destroy()
	opts.SetIntraOpNumThreads(1)
	opts.SetInterOpNumThreads(1)
	in, err := ort.NewTensor(ort.NewShape(benchRows, benchFeatures), append([]float32(nil), x...))
	if err != nil {
		b.Fatal(err)
	}
	defer in.Destroy()
	out, err := ort.NewEmptyTensor[float32](ort.NewShape(benchRows, 1))
	if err != nil {
		b.Fatal(err)
	}
	defer out.Destroy()

	b.Run("AdvancedSession.Run", func(b *testing.B) {
		s, err := ort.NewAdvancedSession(path, []string{"features"}, []string{"score"}, []ort.Value{in}, []ort.Value{out}, opts)
		if err != nil {
			b.Fatal(err)
		}
		defer s.Destroy()
		b.ReportAllocs()
		for b.Loop() {
			if err := s.Run(); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("DynamicAdvancedSession.RunWithOptions", func(b *testing.B) {
		s, err := ort.NewDynamicAdvancedSession(path, []string{"features"}, []string{"score"}, opts)
		if err != nil {
			b.Fatal(err)
		}
		defer s.Destroy()
		ro, err := ort.NewRunOptions()
		if err != nil {
			b.Fatal(err)
		}
		defer ro.Destroy()
		ins, outs := []ort.Value{in}, []ort.Value{out}
		b.ReportAllocs()
		for b.Loop() {
			if err := s.RunWithOptions(ins, outs, ro); err != nil {
				b.Fatal(err)
			}
		}
	})
}

// BenchmarkForward100 is the pure-Go forward pass, for comparison.
func BenchmarkForward100(b *testing.B) {
	net, _, x := benchModel(b)
	out := make([]float32, benchRows)
	b.ReportAllocs()
	for b.Loop() {
		net.Forward(x, benchRows, out)
	}
}
