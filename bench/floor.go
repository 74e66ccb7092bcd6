package bench

import (
	"context"
	"math/rand/v2"
	"sync"

	"google.golang.org/grpc"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/emptypb"
	"google.golang.org/protobuf/types/known/wrapperspb"

	"github.com/larder-dev/larder/server"
)

// The composed floors. empty-call, redis-1 and model-100 are each measured
// alone, and a larder call's goal is held against their sum. But a larder
// call composes them: its handler waits on Redis inside a gRPC call, and
// then answers. That costs more than the sum, because the process goes
// idle while Redis answers, and the wake-ups that follow (the handler, the
// server's writer, the client's reader) are each paid in full. The composed
// floors are gRPC methods of the same server, whose handlers do the raw
// work of a larder call and nothing else, so that larder's figure over
// theirs is larder's own cost.
const floorService = "larder.bench.Floor"

// floorMethods returns the composed floors' methods, served by w in the
// server process, and those that start and stop its CPU profile.
func (w *benchWorld) floorMethods() *grpc.ServiceDesc {
	return &grpc.ServiceDesc{
		ServiceName: floorService,
		HandlerType: (*any)(nil),
		Methods: []grpc.MethodDesc{
			floorMethod("Read", func(ctx context.Context, _ *emptypb.Empty) (*wrapperspb.BytesValue, error) { return w.floorRead(ctx) }),
			floorMethod("Rank", func(ctx context.Context, _ *emptypb.Empty) (*wrapperspb.BytesValue, error) {
				return w.floorRank(ctx, w.model)
			}),
			floorMethod("ProfileStart", w.profileStart),
			floorMethod("ProfileStop", w.profileStop),
		},
	}
}

// floorMethod makes a unary method of fn, through the server's
// interceptors as every method is.
func floorMethod[In any, PIn interface {
	*In
	proto.Message
}, Out proto.Message](name string, fn func(context.Context, PIn) (Out, error)) grpc.MethodDesc {
	info := &grpc.UnaryServerInfo{FullMethod: "/" + floorService + "/" + name}
	handler := func(ctx context.Context, in any) (any, error) { return fn(ctx, in.(PIn)) }
	return grpc.MethodDesc{
		MethodName: name,
		Handler: func(_ any, ctx context.Context, dec func(any) error, intercept grpc.UnaryServerInterceptor) (any, error) {
			in := PIn(new(In))
			if err := dec(in); err != nil {
				return nil, err
			}
			if intercept == nil {
				return handler(ctx, in)
			}
			return intercept(ctx, in, info, handler)
		},
	}
}

// floorRead reads one random user's row raw, as redis-1 does, and answers
// with its bytes.
func (w *benchWorld) floorRead(ctx context.Context) (*wrapperspb.BytesValue, error) {
	var buf [20]byte
	pipe := w.raw.Pipeline()
	row, _ := w.queueReads(ctx, pipe, rand.Int64N, false, buf[:0])
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, err
	}
	return &wrapperspb.BytesValue{Value: []byte(row.Val())}, nil
}

// floorBatch is a prepared 100×20 model input and its scores.
type floorBatch struct{ x, out []float32 }

var floorBatches = sync.Pool{New: func() any {
	b := &floorBatch{x: make([]float32, benchCandidates*2*benchRankInputs), out: make([]float32, benchCandidates)}
	for i := range b.x {
		b.x[i] = float32(rand.NormFloat64())
	}
	return b
}}

// floorRank reads a random user's and 100 random items' rows raw, as
// redis-101 does, then scores a prepared batch with model, as model-100
// does.
func (w *benchWorld) floorRank(ctx context.Context, model server.Model) (*wrapperspb.BytesValue, error) {
	var buf [20]byte
	pipe := w.raw.Pipeline()
	w.queueReads(ctx, pipe, rand.Int64N, true, buf[:0])
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, err
	}
	b := floorBatches.Get().(*floorBatch)
	defer floorBatches.Put(b)
	if err := model.Score(ctx, b.x, benchCandidates, b.out); err != nil {
		return nil, err
	}
	return &wrapperspb.BytesValue{}, nil
}

// floorCaller calls method of the composed floors.
func (w *benchWorld) floorCaller(method string) func(i int) func(context.Context) error {
	full := "/" + floorService + "/" + method
	return func(i int) func(context.Context) error {
		conn, in := w.conn(i), &emptypb.Empty{}
		return func(ctx context.Context) error {
			return conn.Invoke(ctx, full, in, new(wrapperspb.BytesValue))
		}
	}
}
