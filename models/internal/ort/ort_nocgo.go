//go:build !cgo

package ort

import (
	"errors"
	"strconv"
)

// Supported reports whether this build can load ONNX Runtime.
const Supported = false

// errNoCgo is what every stand-in returns.
var errNoCgo = errors.New("this larder was built without cgo (CGO_ENABLED=0), so it cannot load ONNX Runtime; build it with cgo and a C compiler (make build) to rank and score models")

type (
	Shape                 []int64
	ONNXType              int
	TensorElementDataType int
	EnvironmentOption     func()
)

// The values of the ONNX Runtime C API's enums, so that messages name
// types as a build with cgo does.
const (
	ONNXTypeTensor               ONNXType              = 1
	TensorElementDataTypeFloat   TensorElementDataType = 1
	TensorElementDataTypeInt32   TensorElementDataType = 6
	TensorElementDataTypeInt64   TensorElementDataType = 7
	TensorElementDataTypeFloat16 TensorElementDataType = 10
	TensorElementDataTypeDouble  TensorElementDataType = 11
)

type InputOutputInfo struct {
	Name         string
	OrtValueType ONNXType
	Dimensions   Shape
	DataType     TensorElementDataType
}

type Value interface{ Destroy() error }

type Tensor[T any] struct{ data []T }

func (t *Tensor[T]) GetData() []T   { return t.data }
func (t *Tensor[T]) Destroy() error { return nil }

type RunOptions struct{}

func (*RunOptions) Terminate() error      { return errNoCgo }
func (*RunOptions) UnsetTerminate() error { return errNoCgo }
func (*RunOptions) Destroy() error        { return nil }

type SessionOptions struct{}

func (*SessionOptions) SetIntraOpNumThreads(int) error { return errNoCgo }
func (*SessionOptions) SetInterOpNumThreads(int) error { return errNoCgo }
func (*SessionOptions) Destroy() error                 { return nil }

type DynamicAdvancedSession struct{}

func (*DynamicAdvancedSession) RunWithOptions(_, _ []Value, _ *RunOptions) error { return errNoCgo }
func (*DynamicAdvancedSession) Destroy() error                                   { return nil }

func GetVersion() string                                     { return "" }
func SetSharedLibraryPath(string)                            {}
func IsInitialized() bool                                    { return false }
func InitializeEnvironment(...EnvironmentOption) error       { return errNoCgo }
func DestroyEnvironment() error                              { return nil }
func WithLogLevelError() EnvironmentOption                   { return func() {} }
func NewShape(dimensions ...int64) Shape                     { return Shape(dimensions) }
func NewRunOptions() (*RunOptions, error)                    { return nil, errNoCgo }
func NewSessionOptions() (*SessionOptions, error)            { return nil, errNoCgo }
func NewTensor[T any](_ Shape, data []T) (*Tensor[T], error) { return nil, errNoCgo }

func GetInputOutputInfoWithONNXData([]byte) ([]InputOutputInfo, []InputOutputInfo, error) {
	return nil, nil, errNoCgo
}

func NewDynamicAdvancedSessionWithONNXData([]byte, []string, []string, *SessionOptions) (*DynamicAdvancedSession, error) {
	return nil, errNoCgo
}

// Err is the error of a build without cgo.
func Err() error { return errNoCgo }

// The names ONNX Runtime gives the types a message may name.
var elementNames = map[TensorElementDataType]string{
	TensorElementDataTypeFloat: "ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT", 2: "ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT8",
	3: "ONNX_TENSOR_ELEMENT_DATA_TYPE_INT8", 4: "ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT16", 5: "ONNX_TENSOR_ELEMENT_DATA_TYPE_INT16",
	TensorElementDataTypeInt32: "ONNX_TENSOR_ELEMENT_DATA_TYPE_INT32", TensorElementDataTypeInt64: "ONNX_TENSOR_ELEMENT_DATA_TYPE_INT64",
	8: "ONNX_TENSOR_ELEMENT_DATA_TYPE_STRING", 9: "ONNX_TENSOR_ELEMENT_DATA_TYPE_BOOL",
	TensorElementDataTypeFloat16: "ONNX_TENSOR_ELEMENT_DATA_TYPE_FLOAT16", TensorElementDataTypeDouble: "ONNX_TENSOR_ELEMENT_DATA_TYPE_DOUBLE",
	12: "ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT32", 13: "ONNX_TENSOR_ELEMENT_DATA_TYPE_UINT64", 16: "ONNX_TENSOR_ELEMENT_DATA_TYPE_BFLOAT16",
}

var typeNames = map[ONNXType]string{
	0: "ONNX_TYPE_UNKNOWN", ONNXTypeTensor: "ONNX_TYPE_TENSOR", 2: "ONNX_TYPE_SEQUENCE", 3: "ONNX_TYPE_MAP",
	4: "ONNX_TYPE_OPAQUE", 5: "ONNX_TYPE_SPARSETENSOR", 6: "ONNX_TYPE_OPTIONAL",
}

func (t TensorElementDataType) String() string {
	if n, ok := elementNames[t]; ok {
		return n
	}
	return "Unknown tensor element data type " + strconv.Itoa(int(t))
}

func (t ONNXType) String() string {
	if n, ok := typeNames[t]; ok {
		return n
	}
	return "Unknown ONNX type " + strconv.Itoa(int(t))
}
