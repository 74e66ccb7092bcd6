// Module gen pins the protoc plugins that generate proto/larder/v1's Go code,
// apart from buf so that building them costs seconds, not buf's hundreds of
// megabytes of modules. Both generators use them:
//
//	make proto: buf generate, through buf.gen.yaml
//	go test ./proto/...: Debian's protoc, with the options buf.gen.yaml gives
//
// protoc-gen-go is pinned at the commit that generated the committed files
// (it calls itself v1.36.12-devel in their headers).
module github.com/larder-dev/larder/tools/gen

go 1.26.8

tool (
	github.com/grpc-ecosystem/grpc-gateway/v2/protoc-gen-grpc-gateway
	github.com/planetscale/vtprotobuf/cmd/protoc-gen-go-vtproto
	google.golang.org/grpc/cmd/protoc-gen-go-grpc
	google.golang.org/protobuf/cmd/protoc-gen-go
)

require (
	github.com/grpc-ecosystem/grpc-gateway/v2 v2.33.0 // indirect
	github.com/planetscale/vtprotobuf v0.6.1-0.20240319094008-0393e58bdf10 // indirect
	go.yaml.in/yaml/v3 v3.0.5 // indirect
	golang.org/x/text v0.43.0 // indirect
	google.golang.org/genproto/googleapis/api v0.0.0-20261026165753-2ffab32bce7e // indirect
	google.golang.org/grpc v1.84.0 // indirect
	google.golang.org/grpc/cmd/protoc-gen-go-grpc v1.6.2 // indirect
	google.golang.org/protobuf v1.36.13-0.20261016172727-e9ee2a76ab8e // indirect
)
