package models

import (
	"errors"
	"fmt"
	"os"

	"google.golang.org/protobuf/encoding/protowire"

	"github.com/larder-dev/larder/models/internal/ort"
)

// TypeProto's fields other than tensor_type, and the ONNX Runtime value
// types they are reported as.
var onnxTypes = map[protowire.Number]ort.ONNXType{
	typeTensorType: ort.ONNXTypeTensor,
	4:              2, // sequence_type: ONNX_TYPE_SEQUENCE
	5:              3, // map_type: ONNX_TYPE_MAP
	8:              5, // sparse_tensor_type: ONNX_TYPE_SPARSETENSOR
	9:              6, // optional_type: ONNX_TYPE_OPTIONAL
}

// CheckFile checks the ONNX model file at path against spec without ONNX
// Runtime: it reads the inputs and outputs the file's graph declares, and
// returns a *SpecError, as Runtime.Load would, when they do not match. An
// input that an initializer of the graph feeds is not one the caller
// gives, and is left out, as ONNX Runtime leaves it out. A file that is not
// an ONNX model gets an error saying so. That the file matches does not
// prove that ONNX Runtime can run it (an operator it lacks, say): Load
// does.
func CheckFile(path string, spec Spec) error {
	if err := spec.validate(); err != nil {
		return fmt.Errorf("models: check %s: %w", path, err)
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("models: check model: %w", err)
	}
	ins, outs, err := readIO(data)
	if err != nil {
		return fmt.Errorf("models: %s is not an ONNX model: %w", path, err)
	}
	// What the file leaves open, ONNX Runtime infers when it loads the
	// model: a missing shape, or a named dimension past the batch one. Here
	// it is taken to be what spec asks, so that only what the file states
	// can be found wrong.
	for i := range ins {
		if ins[i].Name == spec.Input {
			fillOpen(&ins[i], []int64{-1, int64(spec.Features)})
		}
	}
	for i := range outs {
		if outs[i].Name == spec.Output {
			fillOpen(&outs[i], []int64{-1, int64(spec.outputs())})
		}
	}
	_, err = checkSpec(path, spec, ins, outs)
	return err
}

// fillOpen sets the dimensions info leaves open to want's: all of them
// when it declares no shape, else those past the first that have no value.
func fillOpen(info *ort.InputOutputInfo, want []int64) {
	switch {
	case info.OrtValueType != ort.ONNXTypeTensor:
	case len(info.Dimensions) == 0:
		info.Dimensions = append(ort.Shape(nil), want...)
	case len(info.Dimensions) == len(want):
		for i := 1; i < len(want); i++ {
			if info.Dimensions[i] < 0 {
				info.Dimensions[i] = want[i]
			}
		}
	}
}

// readIO returns the inputs (less those an initializer feeds) and the
// outputs that an ONNX ModelProto's graph declares.
func readIO(model []byte) (ins, outs []ort.InputOutputInfo, err error) {
	var graph []byte
	err = fields(model, func(num protowire.Number, typ protowire.Type, v []byte) error {
		if num == modelGraph && typ == protowire.BytesType {
			graph = v
		}
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	if graph == nil {
		return nil, nil, errors.New("it has no graph")
	}
	initialized := map[string]bool{}
	err = fields(graph, func(num protowire.Number, typ protowire.Type, v []byte) error {
		if typ != protowire.BytesType {
			return nil
		}
		switch num {
		case graphInitializer:
			name, err := stringField(v, tensorName)
			initialized[name] = true
			return err
		case graphSparseInitializer:
			// A SparseTensorProto, named by its values' TensorProto.
			values, err := bytesField(v, sparseValues)
			if err != nil {
				return err
			}
			name, err := stringField(values, tensorName)
			initialized[name] = true
			return err
		case graphInput, graphOutput:
			info, err := readValueInfo(v)
			if err != nil {
				return err
			}
			if num == graphInput {
				ins = append(ins, info)
			} else {
				outs = append(outs, info)
			}
		}
		return nil
	})
	if err != nil {
		return nil, nil, err
	}
	kept := ins[:0]
	for _, in := range ins {
		if !initialized[in.Name] {
			kept = append(kept, in)
		}
	}
	return kept, outs, nil
}

// readValueInfo reads a ValueInfoProto: its name, its value type and, for
// a tensor, its element type and dimensions (-1 for one without a value).
func readValueInfo(b []byte) (ort.InputOutputInfo, error) {
	var info ort.InputOutputInfo
	err := fields(b, func(num protowire.Number, typ protowire.Type, v []byte) error {
		if typ != protowire.BytesType {
			return nil
		}
		switch num {
		case valueInfoName:
			info.Name = string(v)
		case valueInfoType:
			return fields(v, func(num protowire.Number, typ protowire.Type, v []byte) error {
				t, ok := onnxTypes[num]
				if !ok || typ != protowire.BytesType {
					return nil
				}
				info.OrtValueType = t
				if num == typeTensorType {
					return readTensorType(v, &info)
				}
				return nil
			})
		}
		return nil
	})
	return info, err
}

// readTensorType reads a TypeProto.Tensor into info: its element type
// and, when it has a shape, its dimensions.
func readTensorType(b []byte, info *ort.InputOutputInfo) error {
	return fields(b, func(num protowire.Number, typ protowire.Type, v []byte) error {
		switch {
		case num == tensorElemType && typ == protowire.VarintType:
			n, _ := protowire.ConsumeVarint(v)
			info.DataType = ort.TensorElementDataType(n)
		case num == tensorShape && typ == protowire.BytesType:
			shape, err := readShape(v)
			info.Dimensions = shape
			return err
		}
		return nil
	})
}

// readShape reads a TensorShapeProto: its dimensions, -1 for one without a
// value (named, or left open).
func readShape(b []byte) (ort.Shape, error) {
	shape := ort.Shape{}
	err := fields(b, func(num protowire.Number, typ protowire.Type, v []byte) error {
		if num != shapeDim || typ != protowire.BytesType {
			return nil
		}
		d := int64(-1)
		err := fields(v, func(num protowire.Number, typ protowire.Type, v []byte) error {
			if num == dimValue && typ == protowire.VarintType {
				n, _ := protowire.ConsumeVarint(v)
				d = int64(n)
			}
			return nil
		})
		shape = append(shape, d)
		return err
	})
	return shape, err
}

// graphSparseInitializer is GraphProto's sparse_initializer, and
// sparseValues SparseTensorProto's values.
const (
	graphSparseInitializer = 15
	sparseValues           = 1
)

// bytesField returns the last value of the length-delimited field num of
// message b.
func bytesField(b []byte, num protowire.Number) ([]byte, error) {
	var m []byte
	err := fields(b, func(n protowire.Number, typ protowire.Type, v []byte) error {
		if n == num && typ == protowire.BytesType {
			m = v
		}
		return nil
	})
	return m, err
}

// stringField returns the last value of the string field num of message b.
func stringField(b []byte, num protowire.Number) (string, error) {
	v, err := bytesField(b, num)
	return string(v), err
}

// fields calls f with each field of the protobuf message b: its number, its
// wire type and its value, the bytes of a length-delimited field without
// their length, the encoded varint of a varint field, nil otherwise.
func fields(b []byte, f func(protowire.Number, protowire.Type, []byte) error) error {
	for len(b) > 0 {
		num, typ, n := protowire.ConsumeTag(b)
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		var v []byte
		switch typ {
		case protowire.BytesType:
			v, n = protowire.ConsumeBytes(b)
		case protowire.VarintType:
			_, n = protowire.ConsumeVarint(b)
			if n >= 0 {
				v = b[:n]
			}
		default:
			n = protowire.ConsumeFieldValue(num, typ, b)
		}
		if n < 0 {
			return protowire.ParseError(n)
		}
		b = b[n:]
		if err := f(num, typ, v); err != nil {
			return err
		}
	}
	return nil
}
