// Package larder holds the domain of larder, a hybrid precompute-and-serve
// feature and prediction store: entity keys, typed values, the definitions of
// entities, sources, views and rankers, their validation, the domain errors,
// and the small interfaces (ports) that the adapters implement.
//
// The heavy part of a prediction is computed offline by the materializer and
// written to the online store as an atomic generation per view; the server
// answers GetFeatures and Rank from the live generations. Adapters live in
// their own packages (config, store, materializer, models, server) and speak
// only the types defined here. This package imports the standard library only.
package larder
