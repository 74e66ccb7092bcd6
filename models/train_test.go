//go:build cgo

package models

import (
	"bytes"
	"math"
	"reflect"
	"strings"
	"testing"
)

func TestTrainDeterministic(t *testing.T) {
	x, y := synthData(300, 5, 3)
	tests := []struct {
		name string
		a, b TrainConfig
		same bool
	}{
		{name: "logistic same seed", a: TrainConfig{Seed: 1, Epochs: 5}, b: TrainConfig{Seed: 1, Epochs: 5}, same: true},
		{name: "mlp same seed", a: TrainConfig{Hidden: 6, Seed: 1, Epochs: 5}, b: TrainConfig{Hidden: 6, Seed: 1, Epochs: 5}, same: true},
		{name: "mlp other seed", a: TrainConfig{Hidden: 6, Seed: 1, Epochs: 5}, b: TrainConfig{Hidden: 6, Seed: 2, Epochs: 5}, same: false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			export := func(cfg TrainConfig) []byte {
				net, err := Train(x, y, 5, cfg)
				if err != nil {
					t.Fatal(err)
				}
				var buf bytes.Buffer
				if err := net.WriteONNX(&buf, "in", "out"); err != nil {
					t.Fatal(err)
				}
				return buf.Bytes()
			}
			if same := bytes.Equal(export(tt.a), export(tt.b)); same != tt.same {
				t.Errorf("identical models: %v, want %v", same, tt.same)
			}
		})
	}
}

// TestTrainStandardises checks that shifting and scaling a feature
// does not change what the model predicts: standardisation is part of it.
func TestTrainStandardises(t *testing.T) {
	const features, rows = 3, 400
	x, y := synthData(rows, features, 5)
	moved := make([]float32, len(x))
	for i, v := range x {
		if i%features == 1 {
			moved[i] = v*1000 + 5000
		} else {
			moved[i] = v
		}
	}
	cfg := TrainConfig{Hidden: 4, Seed: 9, Epochs: 10}
	a, err := Train(x, y, features, cfg)
	if err != nil {
		t.Fatal(err)
	}
	b, err := Train(moved, y, features, cfg)
	if err != nil {
		t.Fatal(err)
	}
	pa, pb := make([]float32, rows), make([]float32, rows)
	a.Forward(x, rows, pa)
	b.Forward(moved, rows, pb)
	for i := range pa {
		if d := math.Abs(float64(pa[i] - pb[i])); d > 1e-3 {
			t.Fatalf("row %d: %v on the original features, %v on moved ones", i, pa[i], pb[i])
		}
	}
}

func TestTrainErrors(t *testing.T) {
	tests := []struct {
		name     string
		x, y     []float32
		features int
		cfg      TrainConfig
		want     string
	}{
		{name: "no rows", features: 2, want: "no rows"},
		{name: "no features", x: []float32{1}, y: []float32{1}, want: "0 features"},
		{name: "size mismatch", x: []float32{1, 2, 3}, y: []float32{0, 1}, features: 2, want: "x has 3 values, want rows × features = 2 × 2 = 4"},
		{name: "bad label", x: []float32{1, 2}, y: []float32{0, 0.5}, features: 1, want: "label 1 is 0.5, want 0 or 1"},
		{name: "NaN feature", x: []float32{1, float32(math.NaN())}, y: []float32{0, 1}, features: 1, want: "row 1 feature 0 is NaN"},
		{name: "negative hidden", x: []float32{1}, y: []float32{1}, features: 1, cfg: TrainConfig{Hidden: -1}, want: "hidden width -1"},
		{name: "negative rate", x: []float32{1}, y: []float32{1}, features: 1, cfg: TrainConfig{LearningRate: -1}, want: "learning rate -1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Train(tt.x, tt.y, tt.features, tt.cfg)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("Train = %v, want an error containing %q", err, tt.want)
			}
		})
	}
}

func TestNewRandomMLP(t *testing.T) {
	tests := []struct {
		name     string
		features int
		hidden   []int
		want     []int // Hidden()
		wantErr  string
	}{
		{name: "logistic", features: 4, want: []int{}},
		{name: "deep", features: 4, hidden: []int{8, 16, 8}, want: []int{8, 16, 8}},
		{name: "zero width", features: 4, hidden: []int{8, 0}, wantErr: "hidden layer 1 has width 0"},
		{name: "no features", features: 0, wantErr: "0 features"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			net, err := NewRandomMLP(tt.features, tt.hidden, 1)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("NewRandomMLP = %v, want an error containing %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := net.Hidden(); !reflect.DeepEqual(got, tt.want) || net.Features() != tt.features {
				t.Errorf("Hidden() = %v, Features() = %d; want %v, %d", got, net.Features(), tt.want, tt.features)
			}
			out := make([]float32, 2)
			net.Forward(make([]float32, 2*tt.features), 2, out)
			for _, p := range out {
				if !(p > 0 && p < 1) {
					t.Errorf("Forward gave %v, want a probability", p)
				}
			}
		})
	}
}

func TestWriteONNXNames(t *testing.T) {
	net, err := NewRandomMLP(2, []int{3}, 1)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, in, out, want string
	}{
		{name: "ok", in: "features", out: "score"},
		{name: "empty input", in: "", out: "score", want: "two distinct, non-empty names"},
		{name: "same names", in: "x", out: "x", want: "two distinct, non-empty names"},
		{name: "internal name", in: "layer1.relu", out: "score", want: `must not start with "layer1."`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := net.WriteONNX(&bytes.Buffer{}, tt.in, tt.out)
			switch {
			case tt.want == "" && err != nil:
				t.Fatal(err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Fatalf("WriteONNX = %v, want an error containing %q", err, tt.want)
			}
		})
	}
}
