package models

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	ort "github.com/yalue/onnxruntime_go"
)

// TestReadIOMatchesRuntime checks that the inputs and outputs read from a
// model file without ONNX Runtime are those ONNX Runtime reports, for
// models with and without standardisation and with one and several
// outputs, whose initializers are not inputs.
func TestReadIOMatchesRuntime(t *testing.T) {
	newRuntime(t) // ONNX Runtime is loaded
	x, y := synthData(200, 5, 1)
	trained, err := Train(x, y, 5, TrainConfig{Hidden: 4, Epochs: 2, Seed: 1})
	if err != nil {
		t.Fatal(err)
	}
	multi, err := NewRandomNet(6, []int{3}, 3, 1)
	if err != nil {
		t.Fatal(err)
	}
	for name, path := range map[string]string{
		"trained": writeNet(t, trained, "features", "score"),
		"multi":   writeNet(t, multi, "x", "y"),
	} {
		data, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		ins, outs, err := readIO(data)
		if err != nil {
			t.Fatalf("%s: readIO: %v", name, err)
		}
		wantIns, wantOuts, err := ort.GetInputOutputInfoWithONNXData(data)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(ins, wantIns) || !reflect.DeepEqual(outs, wantOuts) {
			t.Errorf("%s: readIO = %+v, %+v; ONNX Runtime reports %+v, %+v", name, ins, outs, wantIns, wantOuts)
		}
	}
}

// TestCheckFile checks a model file against specs without ONNX Runtime:
// it answers as Load does.
func TestCheckFile(t *testing.T) {
	rt := newRuntime(t)
	net, err := NewRandomNet(4, []int{3}, 1, 1)
	if err != nil {
		t.Fatal(err)
	}
	path := writeNet(t, net, "x", "y")
	garbage := filepath.Join(t.TempDir(), "garbage.onnx")
	if err := os.WriteFile(garbage, []byte("not a model at all"), 0o644); err != nil {
		t.Fatal(err)
	}
	for _, tt := range []struct {
		name string
		path string
		spec Spec
		want string // "" for no error
	}{
		{"fits", path, Spec{Input: "x", Output: "y", Features: 4}, ""},
		{"features", path, Spec{Input: "x", Output: "y", Features: 5}, `input: want float32 tensor "x" [N, 5], the file has float32 tensor "x" [N, 4]`},
		{"input name", path, Spec{Input: "features", Output: "y", Features: 4}, `input: want float32 tensor "features" [N, 4], the file has inputs float32 tensor "x" [N, 4]`},
		{"outputs", path, Spec{Input: "x", Output: "y", Features: 4, Outputs: 2}, `output: want float32 tensor "y" [N, 2]`},
		{"garbage", garbage, Spec{Input: "x", Output: "y", Features: 4}, "is not an ONNX model"},
		{"missing", filepath.Join(t.TempDir(), "none.onnx"), Spec{Input: "x", Output: "y", Features: 4}, "no such file"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckFile(tt.path, tt.spec)
			if tt.want == "" {
				if err != nil {
					t.Fatalf("CheckFile: %v", err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Fatalf("CheckFile: %v, want an error saying %q", err, tt.want)
			}
			var se *SpecError
			if errors.As(err, &se) {
				// Load answers the same.
				_, lerr := rt.Load(tt.path, tt.spec)
				if lerr == nil || lerr.Error() != err.Error() {
					t.Errorf("CheckFile: %v\nLoad:      %v", err, lerr)
				}
			}
		})
	}
}
