package models

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"sync"

	"github.com/larder-dev/larder/models/internal/ort"
)

// Spec is what a caller expects of its model: one float32 input named Input
// of shape [N, Features] with N dynamic, and a float32 output named Output of
// shape [N, Outputs]. A ranker's model has one output, which may also be of
// shape [N]. The zero value is not valid: Input, Output and Features are
// required; Outputs 0 means 1.
type Spec struct {
	Input    string
	Output   string
	Features int
	// Outputs is the number of values the model gives per row (K); 0 or 1
	// means one score per row.
	Outputs int
}

func (s Spec) validate() error {
	switch {
	case s.Input == "":
		return errors.New("spec has no input name")
	case s.Output == "":
		return errors.New("spec has no output name")
	case s.Features <= 0:
		return fmt.Errorf("spec has %d features, want at least 1", s.Features)
	case s.Outputs < 0:
		return fmt.Errorf("spec has %d outputs, want at least 1", s.Outputs)
	}
	return nil
}

// outputs returns K, the number of output values per row.
func (s Spec) outputs() int { return max(1, s.Outputs) }

// SpecError is returned by Runtime.Load when a model file does not match the
// Spec it was loaded for.
type SpecError struct {
	Path string // the model file
	Part string // what did not match: "input" or "output"
	Want string // what the spec asks for, e.g. `float32 tensor "features" [N, 20]`
	Got  string // what the file has
}

func (e *SpecError) Error() string {
	return fmt.Sprintf("models: model %s does not match its spec: %s: want %s, the file has %s", e.Path, e.Part, e.Want, e.Got)
}

// Model is a loaded model: one ONNX Runtime session shared by all callers.
// It is safe for concurrent use.
type Model struct {
	rt       *Runtime
	path     string
	spec     Spec
	version  string
	outShape []int64 // the output's declared shape: [-1, K] or [-1]

	// mu is held for reading by Score and for writing by Close, so Close
	// waits for runs in flight and no run starts on a released session.
	mu   sync.RWMutex
	sess *ort.DynamicAdvancedSession // nil once closed
	pool runPool
}

// Load reads the ONNX model at path, checks it against spec, and creates its
// session (one intra-op and one inter-op thread: requests run in parallel on
// their own goroutines, not inside one run).
//
// An error is returned if spec is incomplete, the file cannot be read or is
// not a model ONNX Runtime accepts, or r is closed (ErrClosed). If the
// model's input or output does not match spec, the error is a *SpecError
// naming the file, what was expected and what the file has.
func (r *Runtime) Load(path string, spec Spec) (*Model, error) {
	if err := spec.validate(); err != nil {
		return nil, fmt.Errorf("models: load %s: %w", path, err)
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	if r.closed {
		return nil, ErrClosed
	}
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("models: load model: %w", err)
	}
	ins, outs, err := ort.GetInputOutputInfoWithONNXData(data)
	if err != nil {
		return nil, fmt.Errorf("models: load %s: not a model ONNX Runtime %s can load: %w", path, ort.GetVersion(), err)
	}
	outShape, err := checkSpec(path, spec, ins, outs)
	if err != nil {
		return nil, err
	}

	opts, err := ort.NewSessionOptions()
	if err != nil {
		return nil, fmt.Errorf("models: load %s: session options: %w", path, err)
	}
	defer opts.Destroy()
	if err := opts.SetIntraOpNumThreads(1); err != nil {
		return nil, fmt.Errorf("models: load %s: %w", path, err)
	}
	if err := opts.SetInterOpNumThreads(1); err != nil {
		return nil, fmt.Errorf("models: load %s: %w", path, err)
	}
	sess, err := ort.NewDynamicAdvancedSessionWithONNXData(data, []string{spec.Input}, []string{spec.Output}, opts)
	if err != nil {
		return nil, fmt.Errorf("models: load %s: %w", path, err)
	}
	sum := sha256.Sum256(data)
	m := &Model{
		rt:       r,
		path:     path,
		spec:     spec,
		version:  "sha256:" + hex.EncodeToString(sum[:6]),
		outShape: outShape,
		sess:     sess,
	}
	m.pool.init(spec.Features, spec.outputs(), outShape)
	r.track(m)
	return m, nil
}

// checkSpec compares a model's inputs and outputs with spec and returns the
// declared output shape.
func checkSpec(path string, spec Spec, ins, outs []ort.InputOutputInfo) ([]int64, error) {
	wantIn := fmt.Sprintf("float32 tensor %q [N, %d]", spec.Input, spec.Features)
	in, ok := findInfo(ins, spec.Input)
	switch {
	case !ok:
		return nil, &SpecError{Path: path, Part: "input", Want: wantIn, Got: describeAll("inputs", ins)}
	case len(ins) != 1:
		return nil, &SpecError{Path: path, Part: "input", Want: "exactly one input, " + wantIn, Got: describeAll("inputs", ins)}
	case in.OrtValueType != ort.ONNXTypeTensor || in.DataType != ort.TensorElementDataTypeFloat ||
		len(in.Dimensions) != 2 || in.Dimensions[0] >= 0 || in.Dimensions[1] != int64(spec.Features):
		return nil, &SpecError{Path: path, Part: "input", Want: wantIn, Got: describe(in)}
	}

	k := spec.outputs()
	wantOut := fmt.Sprintf("float32 tensor %q [N, %d]", spec.Output, k)
	if k == 1 {
		wantOut += " or [N]"
	}
	out, ok := findInfo(outs, spec.Output)
	if !ok {
		return nil, &SpecError{Path: path, Part: "output", Want: wantOut, Got: describeAll("outputs", outs)}
	}
	d := out.Dimensions
	shapeOK := (k == 1 && len(d) == 1 && d[0] < 0) || (len(d) == 2 && d[0] < 0 && d[1] == int64(k))
	if out.OrtValueType != ort.ONNXTypeTensor || out.DataType != ort.TensorElementDataTypeFloat || !shapeOK {
		return nil, &SpecError{Path: path, Part: "output", Want: wantOut, Got: describe(out)}
	}
	return append([]int64(nil), d...), nil
}

func findInfo(infos []ort.InputOutputInfo, name string) (ort.InputOutputInfo, bool) {
	for _, info := range infos {
		if info.Name == name {
			return info, true
		}
	}
	return ort.InputOutputInfo{}, false
}

func describeAll(what string, infos []ort.InputOutputInfo) string {
	parts := make([]string, len(infos))
	for i := range infos {
		parts[i] = describe(infos[i])
	}
	if len(infos) == 0 {
		return "no " + what
	}
	return what + " " + strings.Join(parts, "; ")
}

// describe formats an input or output the way Spec errors state
// expectations, e.g. `float32 tensor "x" [N, 20]`.
func describe(info ort.InputOutputInfo) string {
	if info.OrtValueType != ort.ONNXTypeTensor {
		return fmt.Sprintf("%s %q", info.OrtValueType, info.Name)
	}
	var typ string
	switch info.DataType {
	case ort.TensorElementDataTypeFloat:
		typ = "float32"
	case ort.TensorElementDataTypeDouble:
		typ = "float64"
	case ort.TensorElementDataTypeFloat16:
		typ = "float16"
	case ort.TensorElementDataTypeInt64:
		typ = "int64"
	case ort.TensorElementDataTypeInt32:
		typ = "int32"
	default:
		typ = info.DataType.String()
	}
	dims := make([]string, len(info.Dimensions))
	for i, d := range info.Dimensions {
		switch {
		case d >= 0:
			dims[i] = strconv.FormatInt(d, 10)
		case i == 0:
			dims[i] = "N"
		default:
			dims[i] = "?"
		}
	}
	return fmt.Sprintf("%s tensor %q [%s]", typ, info.Name, strings.Join(dims, ", "))
}

// Path returns the file the model was loaded from.
func (m *Model) Path() string { return m.path }

// Spec returns the spec the model was checked against.
func (m *Model) Spec() Spec { return m.spec }

// Version returns a short hash of the model file's content, such as
// "sha256:0123456789ab"; two files with the same version are the same model.
func (m *Model) Version() string { return m.version }

// Score runs the model on n rows of features and writes the n × K outputs
// (K = Spec.Outputs, at least 1) to out[:n*K], row by row: the K values of
// row i are out[i*K : (i+1)*K]. x holds the rows one after another
// (n × Features values, row-major); out may be longer than n × K. x and out
// are not retained.
//
// Score is safe to call from many goroutines; they share the session and
// pooled buffers, so a steady stream of requests does not allocate its
// tensors. If ctx is done before the run starts, Score returns ctx.Err(); if
// it becomes done during the run, ONNX Runtime is asked to stop between
// nodes, and Score returns ctx.Err() if the run did stop. An error is also
// returned if len(x) is not n × Features or out is shorter than n × K, if the
// model is closed (ErrClosed), or if ONNX Runtime fails. n == 0 does nothing.
func (m *Model) Score(ctx context.Context, x []float32, n int, out []float32) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	f, k := m.spec.Features, m.spec.outputs()
	switch {
	case n < 0:
		return fmt.Errorf("models: score %s: negative row count %d", m.path, n)
	case len(x) != n*f:
		return fmt.Errorf("models: score %s: x has %d values, want n × features = %d × %d = %d", m.path, len(x), n, f, n*f)
	case len(out) < n*k && k == 1:
		return fmt.Errorf("models: score %s: out has room for %d scores, want n = %d", m.path, len(out), n)
	case len(out) < n*k:
		return fmt.Errorf("models: score %s: out has room for %d values, want n × outputs = %d × %d = %d", m.path, len(out), n, k, n*k)
	case n == 0:
		return nil
	}

	m.mu.RLock()
	defer m.mu.RUnlock()
	if m.sess == nil {
		return ErrClosed
	}
	r, err := m.pool.get(n)
	if err != nil {
		return fmt.Errorf("models: score %s: %w", m.path, err)
	}
	copy(r.in.GetData(), x)

	var stop func() bool
	if ctx.Done() != nil {
		stop = context.AfterFunc(ctx, r.terminate)
	}
	err = m.sess.RunWithOptions(r.inputs, r.outputs, r.opts)
	if stop != nil && !stop() {
		// The terminate callback started: wait for it before the run
		// options go back to the pool, then clear the flag.
		<-r.terminated
		if uerr := r.opts.UnsetTerminate(); uerr != nil {
			m.pool.discard(r)
			return fmt.Errorf("models: score %s: reset run options: %w", m.path, uerr)
		}
		if err != nil {
			m.pool.put(r)
			return ctx.Err()
		}
	}
	if err != nil {
		m.pool.put(r)
		return fmt.Errorf("models: score %s: %w", m.path, err)
	}
	copy(out[:n*k], r.out.GetData())
	m.pool.put(r)
	return nil
}

// Close releases the model's session and buffers, after waiting for Score
// calls in flight. Later calls to Score return ErrClosed. Calling Close again
// returns nil.
func (m *Model) Close() error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.sess == nil {
		return nil
	}
	m.pool.drain()
	err := m.sess.Destroy()
	m.sess = nil
	m.rt.forget(m)
	if err != nil {
		return fmt.Errorf("models: close %s: %w", m.path, err)
	}
	return nil
}
