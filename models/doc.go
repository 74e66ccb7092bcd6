// Package models runs the ONNX re-rank models larder serves, and trains and
// exports the bundled example models.
//
// It is the only package in larder that uses cgo: it wraps
// github.com/yalue/onnxruntime_go, which loads the ONNX Runtime C library at
// run time. The library is not vendored; [EnsureLibrary] fetches the
// linux/x64 build of ONNX Runtime [ORTVersion] from the npm package
// onnxruntime-node into the user's cache folder, and [LibraryPath] finds it
// again (or the file named by the ONNXRUNTIME_LIB environment variable).
//
// Serving a model takes three steps:
//
//	lib, err := models.LibraryPath()       // or EnsureLibrary at setup time
//	rt, err := models.NewRuntime(lib)      // once per process (see Runtime)
//	m, err := rt.Load("ranker.onnx", models.Spec{Input: "features", Output: "score", Features: 20})
//	err = m.Score(ctx, x, n, out)          // many goroutines at once
//
// A ranker model takes one float32 input of shape [N, F], N dynamic, and
// gives one float32 output of shape [N, 1] or [N]; the model of a prediction
// view gives K values per row, an output of shape [N, K] ([Spec.Outputs]).
// [Runtime.Load] checks this against a [Spec] and refuses a model file that
// does not match.
//
// [Train], [Net.Forward] and [Net.WriteONNX] build the example models: a
// logistic regression or a one-hidden-layer MLP trained in pure Go, written
// as an ONNX file that takes raw (unstandardised) features. [NewRandomNet]
// builds untrained nets with several outputs, for tests and benchmarks.
//
// The package imports no other larder package: it takes and returns plain
// values, and the callers map them to the domain.
package models
