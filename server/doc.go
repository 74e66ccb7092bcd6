// Package server is larder's gRPC edge: it implements the FeatureService,
// the AdminService and the JobService of proto/larder/v1 on top of the
// domain ports (larder.FeatureStore, a Model per ranker, larder.JobQueue),
// converts between the generated protobuf types and the domain types, and
// maps domain errors to gRPC status codes in one table.
//
// Generated protobuf types do not leave this package: the store, the
// materializer and the models speak only the root package's types.
package server
