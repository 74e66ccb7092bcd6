package server

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"google.golang.org/grpc"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"

	"github.com/larder-dev/larder"
	larderv1 "github.com/larder-dev/larder/proto/larder/v1"
)

// vtMessage is a message with the methods that protoc-gen-go-vtproto
// generates for larder's API.
type vtMessage interface {
	SizeVT() int
	MarshalToSizedBufferVT(dst []byte) (int, error)
	UnmarshalVT(src []byte) error
}

// Codec is the gRPC codec of larder's server and of its own clients: see
// larderv1.Codec. It is passed to the server and to clients as an option,
// never registered.
type Codec = larderv1.Codec

// CodecDialOption makes a client connection encode requests and decode
// responses with Codec. larder's own clients (bench, demo, reload, the
// client package) dial with it; other clients need nothing: the bytes on
// the wire are the same.
func CodecDialOption() grpc.DialOption {
	return grpc.WithDefaultCallOptions(grpc.ForceCodecV2(Codec{}))
}

// serverCodec is the Codec of a server, which tells the caller of a request
// that cannot be decoded that the request is at fault.
//
// gRPC answers an error of a codec's Unmarshal with INTERNAL, whatever the
// error (grpc-go's recv wraps it in codes.Internal, and the stream writes
// that status before the handler returns). So for the requests of larder's
// API, which are all unary, Unmarshal keeps the error aside and reports
// success; the unary interceptor of the server then finds the error kept
// for the request it is given (decodeError) and answers INVALID_ARGUMENT
// without calling the handler. Other messages (health, reflection, whose
// streams no unary interceptor sees) keep gRPC's answer.
type serverCodec struct {
	Codec
	// failed holds the decoding error of each request message that
	// Unmarshal could not decode, until decodeError takes it; pending
	// counts them, so that a request that decoded costs one atomic load.
	failed  sync.Map
	pending atomic.Int64
}

// Marshal encodes v. A GetFeatures response gives its memory back to the
// pool of responses once encoded (see releaseFeatures): gRPC's server
// touches a message no more once it is encoded (a stats handler is told of
// it, and otelgrpc's does not read it). Two things larder's server does
// not do would read a released response: a stats handler that keeps
// OutPayload.Payload, and grpc.EnableTracing, whose trace prints the
// message later.
func (c *serverCodec) Marshal(v any) (mem.BufferSlice, error) {
	data, err := c.Codec.Marshal(v)
	if resp, ok := v.(*larderv1.GetFeaturesResponse); ok {
		releaseFeatures(resp)
	}
	return data, err
}

// Unmarshal decodes data into v. An error decoding a message of larder's
// API is kept for decodeError, and v is handed on as it is.
func (c *serverCodec) Unmarshal(data mem.BufferSlice, v any) error {
	err := c.Codec.Unmarshal(data, v)
	if err == nil {
		return nil
	}
	if _, ok := v.(vtMessage); !ok {
		return err
	}
	c.pending.Add(1)
	c.failed.Store(v, err)
	return nil
}

// decodeError returns the INVALID_ARGUMENT error of req when Unmarshal
// could not decode it, and forgets it; nil when req was decoded.
func (c *serverCodec) decodeError(req any) error {
	if c.pending.Load() == 0 {
		return nil
	}
	err, ok := c.failed.LoadAndDelete(req)
	if !ok {
		return nil
	}
	c.pending.Add(-1)
	name := fmt.Sprintf("%T", req)
	if m, ok := req.(proto.Message); ok {
		name = string(m.ProtoReflect().Descriptor().FullName())
	}
	cause := err.(error)
	if inner := errors.Unwrap(cause); inner != nil {
		cause = inner // without Unmarshal's "unmarshal *larderv1.X: "
	}
	return toStatus(larder.Invalidf("request: cannot be decoded as a %s: %v", name, cause))
}
