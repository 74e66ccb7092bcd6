// Package ort is the part of github.com/yalue/onnxruntime_go that package
// models uses, under the same names.
//
// onnxruntime_go needs cgo. With cgo (the default where a C compiler is
// found), the names here are that package's own. Without it
// (CGO_ENABLED=0, as when building for another platform without a C
// cross-compiler), they are stand-ins that load nothing: the environment
// never initialises, and its error says how to build a larder that ranks.
// Such a binary is whole but for ONNX Runtime: it materializes, serves
// GetFeatures and answers Rank degraded, as a larder without the library
// does.
package ort
