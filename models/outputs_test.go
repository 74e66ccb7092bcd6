//go:build cgo

package models

import (
	"context"
	"errors"
	"math"
	"strconv"
	"strings"
	"testing"

	ort "github.com/yalue/onnxruntime_go"
)

// TestMultiOutputScore checks a model with K outputs end to end: the
// exported [N, K] graph, loaded with Spec.Outputs = K, gives Forward's
// values row by row, at row counts around the pool's size classes.
func TestMultiOutputScore(t *testing.T) {
	const features = 5
	rt := newRuntime(t)
	for _, k := range []int{2, 3, 7} {
		t.Run("outputs="+strconv.Itoa(k), func(t *testing.T) {
			net, err := NewRandomNet(features, []int{8}, k, uint64(k))
			if err != nil {
				t.Fatal(err)
			}
			if net.Outputs() != k {
				t.Fatalf("Outputs() = %d, want %d", net.Outputs(), k)
			}
			m, err := rt.Load(writeNet(t, net, "x", "y"), Spec{Input: "x", Output: "y", Features: features, Outputs: k})
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			for _, n := range []int{1, 8, 9, 100} {
				x, _ := synthData(n, features, uint64(n))
				// Keep the inputs small so that the sigmoids do not saturate
				// and the comparison means something.
				for i := range x {
					x[i] /= 50
				}
				want := make([]float32, n*k)
				net.Forward(x, n, want)
				got := make([]float32, n*k+2)
				got[n*k], got[n*k+1] = -1, -1
				for range 2 { // the second run reuses pooled tensors
					if err := m.Score(context.Background(), x, n, got); err != nil {
						t.Fatal(err)
					}
					for i := range want {
						if d := math.Abs(float64(got[i] - want[i])); d > 1e-5 {
							t.Fatalf("n %d: value %d (row %d, output %d): ONNX Runtime %v, Forward %v", n, i, i/k, i%k, got[i], want[i])
						}
					}
					if got[n*k] != -1 || got[n*k+1] != -1 {
						t.Fatalf("n %d: Score wrote past out[:n*K]", n)
					}
				}
			}
		})
	}
}

func TestMultiOutputArguments(t *testing.T) {
	rt := newRuntime(t)
	net, err := NewRandomNet(4, []int{3}, 3, 1)
	if err != nil {
		t.Fatal(err)
	}
	m, err := rt.Load(writeNet(t, net, "x", "y"), Spec{Input: "x", Output: "y", Features: 4, Outputs: 3})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	tests := []struct {
		name    string
		n       int
		out     int
		wantErr string
	}{
		{name: "exact", n: 2, out: 6},
		{name: "longer", n: 2, out: 9},
		{name: "room for n only", n: 2, out: 2, wantErr: "out has room for 2 values, want n × outputs = 2 × 3 = 6"},
		{name: "one short", n: 2, out: 5, wantErr: "want n × outputs = 2 × 3 = 6"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := m.Score(context.Background(), make([]float32, tt.n*4), tt.n, make([]float32, tt.out))
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("Score: %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("Score error = %v, want it to contain %q", err, tt.wantErr)
			}
		})
	}
}

func TestLoadOutputsMismatch(t *testing.T) {
	rt := newRuntime(t)
	three, err := NewRandomNet(4, []int{3}, 3, 1)
	if err != nil {
		t.Fatal(err)
	}
	one, err := NewRandomMLP(4, []int{3}, 1)
	if err != nil {
		t.Fatal(err)
	}
	threePath, onePath := writeNet(t, three, "x", "y"), writeNet(t, one, "x", "y")
	tests := []struct {
		name    string
		path    string
		outputs int
		want    string
	}{
		{name: "three outputs as a ranker", path: threePath, outputs: 0,
			want: `output: want float32 tensor "y" [N, 1] or [N], the file has float32 tensor "y" [N, 3]`},
		{name: "three outputs as one", path: threePath, outputs: 1, want: `[N, 1] or [N], the file has float32 tensor "y" [N, 3]`},
		{name: "three outputs as two", path: threePath, outputs: 2, want: `want float32 tensor "y" [N, 2], the file has float32 tensor "y" [N, 3]`},
		{name: "one output as two", path: onePath, outputs: 2, want: `want float32 tensor "y" [N, 2], the file has float32 tensor "y" [N, 1]`},
		{name: "negative", path: threePath, outputs: -1, want: "spec has -1 outputs"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := rt.Load(tt.path, Spec{Input: "x", Output: "y", Features: 4, Outputs: tt.outputs})
			if err == nil {
				m.Close()
				t.Fatal("Load succeeded, want an error")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("Load error:\n  %v\nwant it to contain\n  %s", err, tt.want)
			}
			var se *SpecError
			if wantSpec := tt.outputs >= 0; errors.As(err, &se) != wantSpec {
				t.Errorf("Load error %T, want *SpecError: %v", err, wantSpec)
			}
		})
	}
}

func TestCheckSpecOutputs(t *testing.T) {
	tensor := func(name string, dims ...int64) ort.InputOutputInfo {
		return ort.InputOutputInfo{Name: name, OrtValueType: ort.ONNXTypeTensor, DataType: ort.TensorElementDataTypeFloat, Dimensions: dims}
	}
	ins := []ort.InputOutputInfo{tensor("in", -1, 3)}
	tests := []struct {
		name    string
		outputs int
		out     ort.InputOutputInfo
		wantErr string
	}{
		{name: "[N, 2] for 2", outputs: 2, out: tensor("out", -1, 2)},
		{name: "[N] for 2", outputs: 2, out: tensor("out", -1), wantErr: `want float32 tensor "out" [N, 2], the file has float32 tensor "out" [N]`},
		{name: "[N, ?] for 2", outputs: 2, out: tensor("out", -1, -1), wantErr: `the file has float32 tensor "out" [N, ?]`},
		{name: "[2, 2] for 2", outputs: 2, out: tensor("out", 2, 2), wantErr: `the file has float32 tensor "out" [2, 2]`},
		{name: "[N] for 1", outputs: 1, out: tensor("out", -1)},
		{name: "[N, 1] for 0", outputs: 0, out: tensor("out", -1, 1)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			spec := Spec{Input: "in", Output: "out", Features: 3, Outputs: tt.outputs}
			_, err := checkSpec("m.onnx", spec, ins, []ort.InputOutputInfo{tt.out})
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatal(err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("checkSpec = %v, want an error containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestNewRandomNetErrors(t *testing.T) {
	tests := []struct {
		name     string
		features int
		hidden   []int
		outputs  int
		want     string
	}{
		{name: "no outputs", features: 2, outputs: 0, want: "0 outputs"},
		{name: "no features", features: 0, outputs: 2, want: "0 features"},
		{name: "zero width", features: 2, hidden: []int{0}, outputs: 2, want: "hidden layer 0 has width 0"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if _, err := NewRandomNet(tt.features, tt.hidden, tt.outputs, 1); err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("NewRandomNet = %v, want an error containing %q", err, tt.want)
			}
		})
	}
}
