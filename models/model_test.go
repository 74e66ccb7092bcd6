//go:build cgo

package models

import (
	"context"
	"errors"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	ort "github.com/yalue/onnxruntime_go"
)

func TestTrainExportScore(t *testing.T) {
	const features, rows = 20, 2000
	x, y := synthData(rows, features, 42)
	rt := newRuntime(t)
	tests := []struct {
		name    string
		cfg     TrainConfig
		minAcc  float64
		outName string
	}{
		{name: "logistic", cfg: TrainConfig{Seed: 1, Epochs: 30}, minAcc: 0.85, outName: "score"},
		{name: "mlp", cfg: TrainConfig{Hidden: 16, Seed: 1, Epochs: 30}, minAcc: 0.9, outName: "score"},
		{name: "mlp full batch", cfg: TrainConfig{Hidden: 8, Seed: 2, Epochs: 300, BatchSize: rows, LearningRate: 0.05}, minAcc: 0.85, outName: "p"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			net, err := Train(x, y, features, tt.cfg)
			if err != nil {
				t.Fatal(err)
			}
			want := make([]float32, rows)
			net.Forward(x, rows, want)
			correct := 0
			for i, p := range want {
				if (p >= 0.5) == (y[i] == 1) {
					correct++
				}
			}
			acc := float64(correct) / rows
			t.Logf("training accuracy %.3f", acc)
			if acc < tt.minAcc {
				t.Errorf("training accuracy %.3f, want at least %.2f", acc, tt.minAcc)
			}

			m, err := rt.Load(writeNet(t, net, "features", tt.outName), Spec{Input: "features", Output: tt.outName, Features: features})
			if err != nil {
				t.Fatal(err)
			}
			defer m.Close()
			if v := m.Version(); !strings.HasPrefix(v, "sha256:") || len(v) != len("sha256:")+12 {
				t.Errorf("Version() = %q, want sha256: and 12 hex digits", v)
			}
			got := make([]float32, rows+3) // longer than needed: only [:rows] is written
			for i := rows; i < len(got); i++ {
				got[i] = -1
			}
			if err := m.Score(context.Background(), x, rows, got); err != nil {
				t.Fatal(err)
			}
			maxDiff := 0.0
			for i := 0; i < rows; i++ {
				d := math.Abs(float64(got[i] - want[i]))
				if d > 1e-5 {
					t.Fatalf("row %d: ONNX Runtime %v, Forward %v (diff %g)", i, got[i], want[i], d)
				}
				maxDiff = max(maxDiff, d)
			}
			t.Logf("largest difference between ONNX Runtime and Forward: %g", maxDiff)
			for i := rows; i < len(got); i++ {
				if got[i] != -1 {
					t.Fatalf("out[%d] = %v was written, want only out[:%d]", i, got[i], rows)
				}
			}
		})
	}
}

func TestScoreArguments(t *testing.T) {
	rt := newRuntime(t)
	_, m := trainedModel(t, rt, 4, 3)
	tests := []struct {
		name    string
		x       []float32
		n       int
		out     []float32
		wantErr string
	}{
		{name: "zero rows", x: nil, n: 0, out: nil},
		{name: "one row", x: make([]float32, 4), n: 1, out: make([]float32, 1)},
		{name: "negative rows", x: nil, n: -1, out: nil, wantErr: "negative row count -1"},
		{name: "short x", x: make([]float32, 7), n: 2, out: make([]float32, 2), wantErr: "x has 7 values, want n × features = 2 × 4 = 8"},
		{name: "long x", x: make([]float32, 9), n: 2, out: make([]float32, 2), wantErr: "x has 9 values"},
		{name: "short out", x: make([]float32, 8), n: 2, out: make([]float32, 1), wantErr: "out has room for 1 scores, want n = 2"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := m.Score(context.Background(), tt.x, tt.n, tt.out)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatalf("Score: %v", err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("Score error = %v, want it to contain %q", err, tt.wantErr)
			}
		})
	}
}

func TestScoreSizes(t *testing.T) {
	// Row counts around the pool's size classes, and past the largest one
	// (a one-off run), each scored twice so the second reuses pooled tensors.
	const features = 3
	rt := newRuntime(t)
	net, m := trainedModel(t, rt, features, 5)
	for _, n := range []int{1, 7, 8, 9, 100, 1 << maxClass, 1<<maxClass + 1} {
		t.Run(strconv.Itoa(n), func(t *testing.T) {
			x, _ := synthData(n, features, uint64(n))
			want, got := make([]float32, n), make([]float32, n)
			net.Forward(x, n, want)
			for range 2 {
				clear(got)
				if err := m.Score(context.Background(), x, n, got); err != nil {
					t.Fatal(err)
				}
				for i := range want {
					if d := math.Abs(float64(got[i] - want[i])); d > 1e-5 {
						t.Fatalf("row %d: ONNX Runtime %v, Forward %v", i, got[i], want[i])
					}
				}
			}
		})
	}
}

func TestScoreContextDone(t *testing.T) {
	rt := newRuntime(t)
	_, m := trainedModel(t, rt, 4, 3)
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	expired, cancel2 := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel2()
	tests := []struct {
		name string
		ctx  context.Context
		want error
	}{
		{name: "cancelled", ctx: cancelled, want: context.Canceled},
		{name: "deadline exceeded", ctx: expired, want: context.DeadlineExceeded},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out := make([]float32, 2)
			if err := m.Score(tt.ctx, make([]float32, 8), 2, out); !errors.Is(err, tt.want) {
				t.Fatalf("Score = %v, want %v", err, tt.want)
			}
		})
	}
}

// TestScoreCancelDuringRun checks that cancelling the context during a long
// run stops it through the run options' terminate flag, and that the pooled
// run options work again afterwards. The context is live when Score starts
// and Score returns a finished run's scores, so context.Canceled can only
// come from ONNX Runtime abandoning the run.
func TestScoreCancelDuringRun(t *testing.T) {
	const features, rows = 64, 4096
	rt := newRuntime(t)
	// Many mid-sized layers: ONNX Runtime checks the flag between nodes.
	net, err := NewRandomMLP(features, []int{512, 512, 512, 512, 512, 512, 512, 512}, 3)
	if err != nil {
		t.Fatal(err)
	}
	m, err := rt.Load(writeNet(t, net, "x", "y"), Spec{Input: "x", Output: "y", Features: features})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	x := make([]float32, rows*features)
	for i := range x {
		x[i] = float32(i%13) / 13
	}
	out := make([]float32, rows)

	start := time.Now()
	if err := m.Score(context.Background(), x, rows, out); err != nil {
		t.Fatal(err)
	}
	full := time.Since(start)

	ctx, cancel := context.WithCancel(context.Background())
	const after = 10 * time.Millisecond
	time.AfterFunc(after, cancel)
	start = time.Now()
	err = m.Score(ctx, x, rows, out)
	t.Logf("full run %v; cancelled after %v, Score returned after %v", full, after, time.Since(start))
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Score = %v, want context.Canceled", err)
	}

	// The same pooled run options must not stay terminated.
	clear(out)
	if err := m.Score(context.Background(), x, rows, out); err != nil {
		t.Fatalf("Score after a cancelled run: %v", err)
	}
	want := make([]float32, 4)
	net.Forward(x[:4*features], 4, want)
	for i := range want {
		if d := math.Abs(float64(out[i] - want[i])); d > 1e-4 {
			t.Errorf("row %d: ONNX Runtime %v, Forward %v", i, out[i], want[i])
		}
	}
}

func TestScoreConcurrent(t *testing.T) {
	const features, goroutines, iterations = 20, 16, 40
	rt := newRuntime(t)
	net, m := trainedModel(t, rt, features, 16)
	x, _ := synthData(300, features, 9)
	want := make([]float32, 300)
	net.Forward(x, 300, want)

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	for g := 0; g < goroutines; g++ {
		wg.Add(1)
		go func(g int) {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(g), 0))
			out := make([]float32, 300)
			for it := 0; it < iterations; it++ {
				// Varying row counts and offsets exercise the size classes
				// and the reshaping of pooled tensors.
				lo := rng.IntN(300)
				n := 1 + rng.IntN(300-lo)
				if err := m.Score(ctx, x[lo*features:(lo+n)*features], n, out); err != nil {
					t.Error(err)
					return
				}
				for i := 0; i < n; i++ {
					if d := math.Abs(float64(out[i] - want[lo+i])); d > 1e-5 {
						t.Errorf("goroutine %d: row %d: got %v, want %v", g, lo+i, out[i], want[lo+i])
						return
					}
				}
			}
		}(g)
	}
	wg.Wait()
}

func TestLoadRejects(t *testing.T) {
	rt := newRuntime(t)
	x, y := synthData(100, 20, 1)
	net, err := Train(x, y, 20, TrainConfig{Hidden: 4, Epochs: 2})
	if err != nil {
		t.Fatal(err)
	}
	good := writeNet(t, net, "features", "score")
	garbage := filepath.Join(t.TempDir(), "garbage.onnx")
	if err := os.WriteFile(garbage, []byte("this is not a protobuf"), 0o644); err != nil {
		t.Fatal(err)
	}
	missing := filepath.Join(t.TempDir(), "missing.onnx")

	tests := []struct {
		name     string
		path     string
		spec     Spec
		specErr  bool     // want a *SpecError
		contains []string // substrings of the message
	}{
		{
			name: "wrong input name", path: good, specErr: true,
			spec:     Spec{Input: "x", Output: "score", Features: 20},
			contains: []string{good, `input: want float32 tensor "x" [N, 20]`, `the file has inputs float32 tensor "features" [N, 20]`},
		},
		{
			name: "wrong output name", path: good, specErr: true,
			spec:     Spec{Input: "features", Output: "prob", Features: 20},
			contains: []string{good, `output: want float32 tensor "prob" [N, 1] or [N]`, `the file has outputs float32 tensor "score" [N, 1]`},
		},
		{
			name: "wrong feature count", path: good, specErr: true,
			spec:     Spec{Input: "features", Output: "score", Features: 21},
			contains: []string{good, `want float32 tensor "features" [N, 21]`, `the file has float32 tensor "features" [N, 20]`},
		},
		{
			name: "incomplete spec", path: good,
			spec: Spec{Input: "features", Features: 20}, contains: []string{"spec has no output name"},
		},
		{
			name: "zero features", path: good,
			spec: Spec{Input: "features", Output: "score"}, contains: []string{"spec has 0 features"},
		},
		{
			name: "missing file", path: missing,
			spec: Spec{Input: "features", Output: "score", Features: 20}, contains: []string{missing, "no such file"},
		},
		{
			name: "not a model", path: garbage,
			spec: Spec{Input: "features", Output: "score", Features: 20}, contains: []string{garbage, "not a model ONNX Runtime"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m, err := rt.Load(tt.path, tt.spec)
			if err == nil {
				m.Close()
				t.Fatal("Load succeeded, want an error")
			}
			t.Log(err)
			var se *SpecError
			if errors.As(err, &se) != tt.specErr {
				t.Errorf("Load error %T, want *SpecError: %v", err, tt.specErr)
			}
			for _, s := range tt.contains {
				if !strings.Contains(err.Error(), s) {
					t.Errorf("Load error:\n  %v\nwant it to contain\n  %s", err, s)
				}
			}
		})
	}
}

func TestCheckSpec(t *testing.T) {
	// Shapes and types the exporter never writes, checked on the metadata
	// ONNX Runtime reports.
	spec := Spec{Input: "in", Output: "out", Features: 3}
	tensor := func(name string, dt int, dims ...int64) ort.InputOutputInfo {
		return ort.InputOutputInfo{Name: name, OrtValueType: ort.ONNXTypeTensor, DataType: ort.TensorElementDataType(dt), Dimensions: dims}
	}
	const f32, f64 = 1, 11
	tests := []struct {
		name    string
		ins     []ort.InputOutputInfo
		outs    []ort.InputOutputInfo
		wantErr string
	}{
		{name: "output [N, 1]", ins: []ort.InputOutputInfo{tensor("in", f32, -1, 3)}, outs: []ort.InputOutputInfo{tensor("out", f32, -1, 1)}},
		{name: "output [N]", ins: []ort.InputOutputInfo{tensor("in", f32, -1, 3)}, outs: []ort.InputOutputInfo{tensor("out", f32, -1)}},
		{name: "extra output", ins: []ort.InputOutputInfo{tensor("in", f32, -1, 3)}, outs: []ort.InputOutputInfo{tensor("logit", f32, -1, 1), tensor("out", f32, -1)}},
		{name: "float64 input", ins: []ort.InputOutputInfo{tensor("in", f64, -1, 3)}, outs: []ort.InputOutputInfo{tensor("out", f32, -1)},
			wantErr: `the file has float64 tensor "in" [N, 3]`},
		{name: "fixed batch", ins: []ort.InputOutputInfo{tensor("in", f32, 1, 3)}, outs: []ort.InputOutputInfo{tensor("out", f32, -1)},
			wantErr: `want float32 tensor "in" [N, 3], the file has float32 tensor "in" [1, 3]`},
		{name: "rank 3 input", ins: []ort.InputOutputInfo{tensor("in", f32, -1, 3, 1)}, outs: []ort.InputOutputInfo{tensor("out", f32, -1)},
			wantErr: `the file has float32 tensor "in" [N, 3, 1]`},
		{name: "two inputs", ins: []ort.InputOutputInfo{tensor("in", f32, -1, 3), tensor("mask", f32, -1, 3)}, outs: []ort.InputOutputInfo{tensor("out", f32, -1)},
			wantErr: `want exactly one input`},
		{name: "output two columns", ins: []ort.InputOutputInfo{tensor("in", f32, -1, 3)}, outs: []ort.InputOutputInfo{tensor("out", f32, -1, 2)},
			wantErr: `output: want float32 tensor "out" [N, 1] or [N], the file has float32 tensor "out" [N, 2]`},
		{name: "float64 output", ins: []ort.InputOutputInfo{tensor("in", f32, -1, 3)}, outs: []ort.InputOutputInfo{tensor("out", f64, -1, 1)},
			wantErr: `the file has float64 tensor "out" [N, 1]`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := checkSpec("m.onnx", spec, tt.ins, tt.outs)
			switch {
			case tt.wantErr == "" && err != nil:
				t.Fatal(err)
			case tt.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tt.wantErr)):
				t.Fatalf("checkSpec = %v, want an error containing %q", err, tt.wantErr)
			}
		})
	}
}

func TestRuntimeSharing(t *testing.T) {
	// No other Runtime may be open here: the last test step checks that the
	// environment is torn down and set up again.
	rt1, err := NewRuntime(libPath)
	if err != nil {
		t.Fatal(err)
	}
	rt2, err := NewRuntime(libPath)
	if err != nil {
		t.Fatalf("second Runtime on the same library: %v", err)
	}
	if v := rt1.ORTVersion(); v != ORTVersion {
		t.Errorf("ORTVersion() = %q, want %q", v, ORTVersion)
	}

	// Another file, even a copy of the same library, cannot join.
	data, err := os.ReadFile(libPath)
	if err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(t.TempDir(), "libonnxruntime.so.1")
	if err := os.WriteFile(other, data, 0o755); err != nil {
		t.Fatal(err)
	}
	if rt, err := NewRuntime(other); err == nil || !strings.Contains(err.Error(), "already loaded from") {
		if rt != nil {
			rt.Close()
		}
		t.Errorf("NewRuntime(other library) = %v, want an already-loaded error", err)
	}

	net, err := NewRandomMLP(3, []int{4}, 1)
	if err != nil {
		t.Fatal(err)
	}
	path := writeNet(t, net, "x", "y")
	spec := Spec{Input: "x", Output: "y", Features: 3}
	m1, err := rt1.Load(path, spec)
	if err != nil {
		t.Fatal(err)
	}
	m2, err := rt2.Load(path, spec)
	if err != nil {
		t.Fatal(err)
	}
	if m1.Version() != m2.Version() {
		t.Errorf("same file, versions %s and %s", m1.Version(), m2.Version())
	}

	// Closing rt1 closes m1 but leaves rt2 and m2 working.
	if err := rt1.Close(); err != nil {
		t.Fatal(err)
	}
	if err := rt1.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
	out := make([]float32, 1)
	if err := m1.Score(context.Background(), []float32{1, 2, 3}, 1, out); !errors.Is(err, ErrClosed) {
		t.Errorf("Score on a model of a closed Runtime = %v, want ErrClosed", err)
	}
	if _, err := rt1.Load(path, spec); !errors.Is(err, ErrClosed) {
		t.Errorf("Load on a closed Runtime = %v, want ErrClosed", err)
	}
	if err := m2.Score(context.Background(), []float32{1, 2, 3}, 1, out); err != nil {
		t.Errorf("Score on the other Runtime's model: %v", err)
	}
	if err := m2.Close(); err != nil {
		t.Fatal(err)
	}
	if err := m2.Score(context.Background(), []float32{1, 2, 3}, 1, out); !errors.Is(err, ErrClosed) {
		t.Errorf("Score after Close = %v, want ErrClosed", err)
	}
	if err := rt2.Close(); err != nil {
		t.Fatal(err)
	}

	// The environment is gone now; a new Runtime sets it up again, even
	// from another path.
	rt3, err := NewRuntime(other)
	if err != nil {
		t.Fatalf("NewRuntime after all Runtimes closed: %v", err)
	}
	m3, err := rt3.Load(path, spec)
	if err != nil {
		t.Fatal(err)
	}
	if err := m3.Score(context.Background(), []float32{1, 2, 3}, 1, out); err != nil {
		t.Errorf("Score after re-initialising: %v", err)
	}
	if err := rt3.Close(); err != nil {
		t.Fatal(err)
	}
}

func TestNewRuntimeErrors(t *testing.T) {
	notLib := filepath.Join(t.TempDir(), "libnot.so")
	if err := os.WriteFile(notLib, []byte("not an ELF file"), 0o755); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, path, want string
	}{
		{name: "empty", path: "", want: "no ONNX Runtime library path"},
		{name: "missing", path: "/nonexistent/libonnxruntime.so.1", want: "file does not exist"},
		{name: "not a library", path: notLib, want: "needs ONNX Runtime >= 1.24"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rt, err := NewRuntime(tt.path)
			if err == nil {
				rt.Close()
				t.Fatal("NewRuntime succeeded, want an error")
			}
			if !strings.Contains(err.Error(), tt.want) {
				t.Errorf("NewRuntime error %q, want it to contain %q", err, tt.want)
			}
		})
	}
}
