package server

import (
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/keepalive"
)

// streamWorkers is the number of stream workers of a gRPC server.
const streamWorkers = 128

// serverOptions are the gRPC server options NewGRPC (and NewFeatureGRPC and
// NewAdminGRPC) start from; options passed to them come after, and so win.
//
// Stream workers run each request's handler on a goroutine that lives on,
// instead of a new goroutine per request whose stack has to grow (copied
// each time) through the handler, the store's Redis client and the
// protobuf codec. A request that finds every worker busy gets a goroutine
// of its own, and pays for that growth: with a few workers per core, most
// requests of a busy server did, and stack copying took 8% of the CPU of a
// GetFeatures at 64 callers. streamWorkers covers that many requests in
// progress; its cost is the workers' stacks, a few megabytes.
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
		grpc.NumStreamWorkers(streamWorkers),
		grpc.ForceServerCodecV2(codec),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 15 * time.Second, PermitWithoutStream: true}),
	}
}
