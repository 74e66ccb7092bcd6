// Package larderv1 is the Go code generated from larder/v1/larder.proto,
// larder/v1/ingest.proto, larder/v1/admin.proto and larder/v1/jobs.proto: the
// messages of larder's public gRPC API, and the clients and servers of its
// FeatureService, IngestService, AdminService and JobService.
//
// The .proto files are the reference for what every message and field means.
// The generated types belong at the server edge: the server converts them to
// and from the root package's domain types, and they never reach the store or
// the materializer.
//
// The *.pb.gw.go files are grpc-gateway's HTTP/JSON handlers of the routes
// in larder_http.yaml, which the server's HTTP gateway serves.
//
// Codec (codec.go, written by hand) is the gRPC codec that encodes and
// decodes these messages with their generated vtprotobuf code; larder's
// server and its Go client (package client) use it.
//
// Do not edit the *.pb.go files: change the .proto files, then run `make proto`
// (go tool -modfile=tools/go.mod buf generate, from the repository root). A
// test fails while the committed code is older than the .proto.
package larderv1
