package larderv1

import (
	"fmt"

	"google.golang.org/grpc/encoding"
	protoenc "google.golang.org/grpc/encoding/proto"
	"google.golang.org/grpc/mem"
)

// vtMessage is a message with the methods that protoc-gen-go-vtproto
// generates for larder's API (the *_vtproto.pb.go files): encoding and
// decoding code written out per message, without protobuf's reflection.
type vtMessage interface {
	SizeVT() int
	MarshalToSizedBufferVT(dst []byte) (int, error)
	UnmarshalVT(src []byte) error
}

// Codec is the gRPC codec (encoding.CodecV2) of larder's server and of its
// Go clients. Messages of larder's API are encoded and decoded by their
// generated MarshalVT and UnmarshalVT code; any other message (health,
// reflection) goes to gRPC's standard protobuf codec. The wire format is
// protobuf either way, so a peer with the standard codec reads and writes
// the same bytes.
//
// The zero Codec is ready to use. It is passed to servers and clients as
// an option (grpc.ForceCodecV2, grpc.ForceServerCodecV2), never
// registered: registered as "proto", it would find itself as its own
// fallback.
type Codec struct{}

var _ encoding.CodecV2 = Codec{}

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
// to gRPC's buffers once Unmarshal returns. An error wraps the decoder's,
// after a prefix naming v's type.
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
