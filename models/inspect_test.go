//go:build cgo

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

// TestCheckFileOpenShapes checks CheckFile on what other exporters write and
// ONNX Runtime accepts: inputs that an initializer or a sparse initializer
// feeds, an output with no shape, and a named output dimension. Only what
// the file states is held against the spec.
func TestCheckFileOpenShapes(t *testing.T) {
	tensorType := func(dims ...any) []byte {
		var shape []byte
		for _, d := range dims {
			switch d := d.(type) {
			case string:
				shape = appendMessage(shape, shapeDim, appendString(nil, dimParam, d))
			case int:
				shape = appendMessage(shape, shapeDim, appendInt(nil, dimValue, int64(d)))
			}
		}
		tensor := appendInt(nil, tensorElemType, onnxFloat)
		if dims != nil {
			tensor = appendMessage(tensor, tensorShape, shape)
		}
		return appendMessage(nil, typeTensorType, tensor)
	}
	valueInfo := func(name string, typ []byte) []byte {
		return appendMessage(appendString(nil, valueInfoName, name), valueInfoType, typ)
	}
	model := func(features int, out []byte) string {
		var g []byte
		g = appendMessage(g, graphInitializer, appendString(nil, tensorName, "w"))
		g = appendMessage(g, graphSparseInitializer, appendMessage(nil, sparseValues, appendString(nil, tensorName, "s")))
		g = appendMessage(g, graphInput, valueInfo("x", tensorType("N", features)))
		g = appendMessage(g, graphInput, valueInfo("w", tensorType(features, 2)))
		g = appendMessage(g, graphInput, valueInfo("s", tensorType(2)))
		g = appendMessage(g, graphOutput, out)
		path := filepath.Join(t.TempDir(), "model.onnx")
		if err := os.WriteFile(path, appendMessage(nil, modelGraph, g), 0o644); err != nil {
			t.Fatal(err)
		}
		return path
	}
	for _, tt := range []struct {
		name     string
		features int
		out      []byte
		outputs  int
		want     string // "" for no error
	}{
		{"an output with no shape", 4, valueInfo("y", tensorType()), 2, ""},
		{"a named output dimension", 4, valueInfo("y", tensorType("N", "K")), 2, ""},
		{"a stated output dimension", 4, valueInfo("y", tensorType("N", 3)), 2, `want float32 tensor "y" [N, 2], the file has float32 tensor "y" [N, 3]`},
		{"a stated input dimension", 5, valueInfo("y", tensorType()), 2, `want float32 tensor "x" [N, 4], the file has float32 tensor "x" [N, 5]`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			err := CheckFile(model(tt.features, tt.out), Spec{Input: "x", Output: "y", Features: 4, Outputs: tt.outputs})
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("CheckFile: %v", err)
			case tt.want != "" && (err == nil || !strings.Contains(err.Error(), tt.want)):
				t.Errorf("CheckFile: %v, want an error saying %q", err, tt.want)
			}
		})
	}
}
