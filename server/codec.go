package server

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"

	"google.golang.org/grpc"
	"google.golang.org/grpc/encoding"
	protoenc "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
	"google.golang.org/protobuf/proto"

	"github.com/larder-dev/larder"
)

// vtMessage is a message with the methods that protoc-gen-go-vtproto
// generates for larder's API (proto/larder/v1/*_vtproto.pb.go): encoding and
// decoding code written out per message, without protobuf's reflection.
type vtMessage interface {
	SizeVT() int
	MarshalToSizedBufferVT(dst []byte) (int, error)
	UnmarshalVT(src []byte) error
}

// Codec is the gRPC codec (encoding.CodecV2) of larder's server and of its
// own clients. Messages of larder's API are encoded and decoded by their
// generated MarshalVT and UnmarshalVT code; any other message (health,
// reflection) goes to gRPC's standard protobuf codec. The wire format is
// protobuf either way, so a peer with the standard codec reads and writes
// the same bytes.
//
// The zero Codec is ready to use. It is passed to the server and to
// clients as an option, never registered: registered as "proto", it would
// find itself as its own fallback.
type Codec struct{}

var _ encoding.CodecV2 = Codec{}

// CodecDialOption makes a client connection encode requests and decode
// responses with Codec. larder's own clients (bench, demo, reload) dial
// with it; other clients need nothing: the bytes on the wire are the same.
func CodecDialOption() grpc.DialOption {
	return grpc.WithDefaultCallOptions(grpc.ForceCodecV2(Codec{}))
}

// Name returns "", so that calls carry the plain content type
// "application/grpc", which means protobuf, as with gRPC's own codec; a
// name would be sent as a content subtype, built anew for every call.
func (Codec) Name() string { return "" }

// Marshal encodes v. Messages larger than gRPC's pooling threshold are
// encoded into a buffer of gRPC's pool, which gRPC frees once it is sent.
func (Codec) Marshal(v any) (mem.BufferSlice, error) {
	m, ok := v.(vtMessage)
	if !ok {
		return fallback().Marshal(v)
	}
	size := m.SizeVT()
	if mem.IsBelowBufferPoolingThreshold(size) {
		buf := make([]byte, size)
		if _, err := m.MarshalToSizedBufferVT(buf); err != nil {
			return nil, fmt.Errorf("marshal %T: %w", v, err)
		}
		return mem.BufferSlice{mem.SliceBuffer(buf)}, nil
	}
	pool := mem.DefaultBufferPool()
	buf := pool.Get(size)
	if _, err := m.MarshalToSizedBufferVT((*buf)[:size]); err != nil {
		pool.Put(buf)
		return nil, fmt.Errorf("marshal %T: %w", v, err)
	}
	return mem.BufferSlice{mem.NewBuffer(buf, pool)}, nil
}

// Unmarshal decodes data into v, which gRPC passes new and empty. The
// generated code copies strings and bytes out of data, so v does not refer
// to gRPC's buffers once Unmarshal returns.
func (Codec) Unmarshal(data mem.BufferSlice, v any) error {
	m, ok := v.(vtMessage)
	if !ok {
		return fallback().Unmarshal(data, v)
	}
	// A message that arrived in one buffer is decoded in place; one in
	// several is first gathered into a buffer of the pool.
	buf := data.MaterializeToBuffer(mem.DefaultBufferPool())
	defer buf.Free()
	if err := m.UnmarshalVT(buf.ReadOnlyData()); err != nil {
		return fmt.Errorf("unmarshal %T: %w", v, err)
	}
	return nil
}

// fallback returns gRPC's standard protobuf codec, which the import of
// its package registers, for messages without vtprotobuf methods.
func fallback() encoding.CodecV2 { return encoding.GetCodecV2(protoenc.Name) }

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
