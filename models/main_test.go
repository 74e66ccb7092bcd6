//go:build cgo

package models

import (
	"bytes"
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// libPath is the ONNX Runtime library the tests load, set up by TestMain the
// same way the project sets it up (make setup-onnxruntime).
var libPath string

func TestMain(m *testing.M) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	p, err := EnsureLibrary(ctx, os.Stderr)
	cancel()
	if err != nil {
		// Fail, never skip: these tests are how we know models work.
		fmt.Fprintf(os.Stderr, "FAIL: package models tests need the ONNX Runtime library: %v\n", err)
		os.Exit(1)
	}
	libPath = p
	os.Exit(m.Run())
}

// newRuntime returns a Runtime that is closed when the test ends.
func newRuntime(tb testing.TB) *Runtime {
	tb.Helper()
	rt, err := NewRuntime(libPath)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := rt.Close(); err != nil {
			tb.Errorf("close runtime: %v", err)
		}
	})
	return rt
}

// synthData returns n rows of features with assorted offsets and scales
// (so standardisation matters) and labels that a mostly linear rule, a small
// interaction and some noise decide.
func synthData(n, features int, seed uint64) (x, y []float32) {
	rng := rand.New(rand.NewPCG(seed, 7))
	x = make([]float32, n*features)
	y = make([]float32, n)
	z := make([]float64, features)
	for r := 0; r < n; r++ {
		logit := 0.0
		for f := range z {
			z[f] = rng.NormFloat64()
			logit += z[f] * float64(f%5-2) * 0.8
			x[r*features+f] = float32(z[f]*float64(1+f) + float64(10*f) - 30)
		}
		if features > 1 {
			logit += 0.8 * z[0] * z[1]
		}
		logit += 0.3 * rng.NormFloat64()
		if logit > 0 {
			y[r] = 1
		}
	}
	return x, y
}

// writeNet exports net into a temporary folder and returns the file path.
func writeNet(tb testing.TB, net *Net, input, output string) string {
	tb.Helper()
	var buf bytes.Buffer
	if err := net.WriteONNX(&buf, input, output); err != nil {
		tb.Fatal(err)
	}
	path := filepath.Join(tb.TempDir(), "model.onnx")
	if err := os.WriteFile(path, buf.Bytes(), 0o644); err != nil {
		tb.Fatal(err)
	}
	return path
}

// trainedModel trains an MLP on synthetic data, exports it and loads it.
func trainedModel(tb testing.TB, rt *Runtime, features, hidden int) (*Net, *Model) {
	tb.Helper()
	x, y := synthData(500, features, 1)
	net, err := Train(x, y, features, TrainConfig{Hidden: hidden, Epochs: 20, Seed: 1})
	if err != nil {
		tb.Fatal(err)
	}
	m, err := rt.Load(writeNet(tb, net, "features", "score"), Spec{Input: "features", Output: "score", Features: features})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { m.Close() })
	return net, m
}
