package server

import (
	"runtime"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"
)

// serverOptions are the gRPC server options NewGRPC (and NewFeatureGRPC and
// NewAdminGRPC) start from; options passed to them come after, and so win.
//
// Stream workers run each request's handler on a goroutine that lives on,
// instead of a new goroutine per request whose stack has to grow (copied
// each time) through the handler, the store's Redis client and the
// protobuf codec: that growth cost about 5% of the CPU of a GetFeatures.
// A request that finds every worker busy still gets a goroutine of its own.
//
// codec encodes and decodes the API's messages with their generated
// vtprotobuf code instead of protobuf's reflection; see Codec and
// serverCodec.
//
// Clients may ping an idle connection every 15s to keep it open through
// load balancers and to notice a dead peer (the client package pings
// every 30s); gRPC's default closes a connection pinged more often than
// every 5 minutes.
func serverOptions(codec *serverCodec) []grpc.ServerOption {
	return []grpc.ServerOption{
		grpc.NumStreamWorkers(uint32(4 * runtime.GOMAXPROCS(0))),
		grpc.ForceServerCodecV2(codec),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 15 * time.Second, PermitWithoutStream: true}),
	}
}
