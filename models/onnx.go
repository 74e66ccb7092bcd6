package models

import (
	"encoding/binary"
	"fmt"
	"io"
	"math"
	"strconv"
	"strings"

	"google.golang.org/protobuf/encoding/protowire"
)

// The ONNX format written by WriteONNX.
const (
	onnxIRVersion = 8  // ONNX 1.10+
	onnxOpset     = 13 // default domain
	onnxFloat     = 1  // TensorProto.DataType FLOAT
)

// Field numbers from onnx.proto, for the messages WriteONNX encodes.
const (
	modelIRVersion   = 1 // ModelProto
	modelProducer    = 2
	modelDocString   = 6
	modelGraph       = 7
	modelOpsetImport = 8

	opsetDomain  = 1 // OperatorSetIdProto
	opsetVersion = 2

	graphNode        = 1 // GraphProto
	graphName        = 2
	graphInitializer = 5
	graphInput       = 11
	graphOutput      = 12

	nodeInput  = 1 // NodeProto
	nodeOutput = 2
	nodeName   = 3
	nodeOpType = 4

	tensorDims     = 1 // TensorProto
	tensorDataType = 2
	tensorName     = 8
	tensorRawData  = 9

	valueInfoName = 1 // ValueInfoProto
	valueInfoType = 2

	typeTensorType = 1 // TypeProto
	tensorElemType = 1 // TypeProto.Tensor
	tensorShape    = 2
	shapeDim       = 1 // TensorShapeProto
	dimValue       = 1 // TensorShapeProto.Dimension
	dimParam       = 2
)

// WriteONNX writes the net to w as an ONNX model (IR version 8, opset 13):
// a float32 input named input of shape [N, Features] (N symbolic), Sub and
// Mul nodes that standardise it (for a trained net), one Gemm node per layer
// with Relu between them and a Sigmoid at the end, giving a float32 output
// named output of shape [N, Outputs]. The weights are float32
// initializers. The same net gives the same bytes.
//
// An error is returned if input or output is empty, they are equal or clash
// with the graph's internal names ("layerK.*", "standardize.*"), or writing
// to w fails.
func (n *Net) WriteONNX(w io.Writer, input, output string) error {
	b, err := n.appendONNX(nil, input, output)
	if err != nil {
		return err
	}
	if _, err := w.Write(b); err != nil {
		return fmt.Errorf("models: write ONNX model: %w", err)
	}
	return nil
}

func (n *Net) appendONNX(b []byte, input, output string) ([]byte, error) {
	if input == "" || output == "" || input == output {
		return nil, fmt.Errorf("models: write ONNX model: input %q and output %q must be two distinct, non-empty names", input, output)
	}
	for i := range n.layers {
		p := "layer" + strconv.Itoa(i) + "."
		if strings.HasPrefix(input, p) || strings.HasPrefix(output, p) {
			return nil, fmt.Errorf("models: write ONNX model: input %q and output %q must not start with %q, which names values inside the graph", input, output, p)
		}
	}
	var graph []byte
	prev := input
	if n.mean != nil {
		if strings.HasPrefix(input, "standardize.") || strings.HasPrefix(output, "standardize.") {
			return nil, fmt.Errorf("models: write ONNX model: input %q and output %q must not start with \"standardize.\", which names values inside the graph", input, output)
		}
		dims := []int64{int64(n.features)}
		graph = appendMessage(graph, graphInitializer, appendTensor(nil, "standardize.mean", dims, n.mean))
		graph = appendMessage(graph, graphInitializer, appendTensor(nil, "standardize.inv_scale", dims, n.invScale))
		graph = appendMessage(graph, graphNode, appendNode(nil, "standardize.sub", "Sub", []string{input, "standardize.mean"}, "standardize.centered"))
		graph = appendMessage(graph, graphNode, appendNode(nil, "standardize.mul", "Mul", []string{"standardize.centered", "standardize.inv_scale"}, "standardize.out"))
		prev = "standardize.out"
	}
	for i, l := range n.layers {
		p := "layer" + strconv.Itoa(i) + "."
		graph = appendMessage(graph, graphInitializer, appendTensor(nil, p+"weight", []int64{int64(l.in), int64(l.out)}, l.w))
		graph = appendMessage(graph, graphInitializer, appendTensor(nil, p+"bias", []int64{int64(l.out)}, l.b))
		z := p + "gemm"
		graph = appendMessage(graph, graphNode, appendNode(nil, p+"gemm", "Gemm", []string{prev, p + "weight", p + "bias"}, z))
		if i < len(n.layers)-1 {
			graph = appendMessage(graph, graphNode, appendNode(nil, p+"relu", "Relu", []string{z}, p+"relu"))
			prev = p + "relu"
		} else {
			graph = appendMessage(graph, graphNode, appendNode(nil, "sigmoid", "Sigmoid", []string{z}, output))
		}
	}
	graph = appendString(graph, graphName, "larder_ranker")
	graph = appendMessage(graph, graphInput, appendValueInfo(nil, input, int64(n.features)))
	graph = appendMessage(graph, graphOutput, appendValueInfo(nil, output, int64(n.Outputs())))

	kind := "logistic regression"
	if len(n.layers) > 1 {
		kind = fmt.Sprintf("MLP, hidden layers %v", n.Hidden())
	}
	b = appendInt(b, modelIRVersion, onnxIRVersion)
	b = appendString(b, modelProducer, "larder")
	doc := fmt.Sprintf("larder example ranker: %s over %d raw features, sigmoid score", kind, n.features)
	if k := n.Outputs(); k > 1 {
		doc = fmt.Sprintf("larder example model: %s over %d raw features, %d sigmoid outputs", kind, n.features, k)
	}
	b = appendString(b, modelDocString, doc)
	b = appendMessage(b, modelGraph, graph)
	opset := appendString(nil, opsetDomain, "")
	opset = appendInt(opset, opsetVersion, onnxOpset)
	b = appendMessage(b, modelOpsetImport, opset)
	return b, nil
}

func appendTensor(b []byte, name string, dims []int64, data []float32) []byte {
	for _, d := range dims {
		b = appendInt(b, tensorDims, d)
	}
	b = appendInt(b, tensorDataType, onnxFloat)
	b = appendString(b, tensorName, name)
	raw := make([]byte, 4*len(data))
	for i, v := range data {
		binary.LittleEndian.PutUint32(raw[4*i:], math.Float32bits(v))
	}
	return appendMessage(b, tensorRawData, raw) // bytes: same wire form as a message
}

func appendNode(b []byte, name, op string, inputs []string, output string) []byte {
	for _, in := range inputs {
		b = appendString(b, nodeInput, in)
	}
	b = appendString(b, nodeOutput, output)
	b = appendString(b, nodeName, name)
	return appendString(b, nodeOpType, op)
}

// appendValueInfo encodes a float32 tensor of shape [N, cols].
func appendValueInfo(b []byte, name string, cols int64) []byte {
	var shape []byte
	shape = appendMessage(shape, shapeDim, appendString(nil, dimParam, "N"))
	shape = appendMessage(shape, shapeDim, appendInt(nil, dimValue, cols))
	tensor := appendInt(nil, tensorElemType, onnxFloat)
	tensor = appendMessage(tensor, tensorShape, shape)
	b = appendString(b, valueInfoName, name)
	return appendMessage(b, valueInfoType, appendMessage(nil, typeTensorType, tensor))
}

func appendInt(b []byte, num protowire.Number, v int64) []byte {
	b = protowire.AppendTag(b, num, protowire.VarintType)
	return protowire.AppendVarint(b, uint64(v))
}

func appendString(b []byte, num protowire.Number, s string) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendString(b, s)
}

func appendMessage(b []byte, num protowire.Number, msg []byte) []byte {
	b = protowire.AppendTag(b, num, protowire.BytesType)
	return protowire.AppendBytes(b, msg)
}
