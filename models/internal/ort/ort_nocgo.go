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

func (t TensorElementDataType) String() string { return "element type " + strconv.Itoa(int(t)) }

func (t ONNXType) String() string { return "ONNX type " + strconv.Itoa(int(t)) }
