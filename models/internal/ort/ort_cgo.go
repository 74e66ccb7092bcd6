//go:build cgo

package ort

import ort "github.com/yalue/onnxruntime_go"

// Supported reports whether this build can load ONNX Runtime.
const Supported = true

type (
	Shape                    = ort.Shape
	Value                    = ort.Value
	Tensor[T ort.TensorData] = ort.Tensor[T]
	RunOptions               = ort.RunOptions
	SessionOptions           = ort.SessionOptions
	DynamicAdvancedSession   = ort.DynamicAdvancedSession
	InputOutputInfo          = ort.InputOutputInfo
	ONNXType                 = ort.ONNXType
	TensorElementDataType    = ort.TensorElementDataType
	EnvironmentOption        = ort.EnvironmentOption
)

const (
	ONNXTypeTensor               = ort.ONNXTypeTensor
	TensorElementDataTypeFloat   = ort.TensorElementDataTypeFloat
	TensorElementDataTypeDouble  = ort.TensorElementDataTypeDouble
	TensorElementDataTypeFloat16 = ort.TensorElementDataTypeFloat16
	TensorElementDataTypeInt64   = ort.TensorElementDataTypeInt64
	TensorElementDataTypeInt32   = ort.TensorElementDataTypeInt32
)

func GetVersion() string               { return ort.GetVersion() }
func SetSharedLibraryPath(path string) { ort.SetSharedLibraryPath(path) }
func IsInitialized() bool              { return ort.IsInitialized() }
func InitializeEnvironment(opts ...EnvironmentOption) error {
	return ort.InitializeEnvironment(opts...)
}
func DestroyEnvironment() error                   { return ort.DestroyEnvironment() }
func WithLogLevelError() EnvironmentOption        { return ort.WithLogLevelError() }
func NewShape(dimensions ...int64) Shape          { return ort.NewShape(dimensions...) }
func NewRunOptions() (*RunOptions, error)         { return ort.NewRunOptions() }
func NewSessionOptions() (*SessionOptions, error) { return ort.NewSessionOptions() }

func NewTensor[T ort.TensorData](s Shape, data []T) (*Tensor[T], error) {
	return ort.NewTensor(s, data)
}

func GetInputOutputInfoWithONNXData(data []byte) ([]InputOutputInfo, []InputOutputInfo, error) {
	return ort.GetInputOutputInfoWithONNXData(data)
}

func NewDynamicAdvancedSessionWithONNXData(data []byte, inputs, outputs []string, opts *SessionOptions) (*DynamicAdvancedSession, error) {
	return ort.NewDynamicAdvancedSessionWithONNXData(data, inputs, outputs, opts)
}

// Err is the error of a build that cannot load ONNX Runtime: nil here.
func Err() error { return nil }
