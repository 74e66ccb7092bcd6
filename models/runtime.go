package models

import (
	"errors"
	"fmt"
	"path/filepath"
	"sync"

	"github.com/larder-dev/larder/models/internal/ort"
)

// ErrClosed is returned by the methods of a Runtime or Model after Close.
var ErrClosed = errors.New("models: closed")

// environment guards onnxruntime_go's process-global state. That package
// keeps one ORT environment and one loaded library per process, and neither
// SetSharedLibraryPath nor InitializeEnvironment is safe to call twice or
// concurrently. This is the package's only package-level state: it mirrors
// the global it guards. Runtimes share the environment and count their
// references; the last Close destroys it and unloads the library.
var environment struct {
	mu   sync.Mutex
	path string // canonical path of the loaded library
	refs int
}

// Runtime is a handle on the process-wide ONNX Runtime environment, from
// which models are loaded.
//
// ONNX Runtime is loaded once per process: any number of Runtimes may exist
// at the same time (tests, several components) as long as they name the same
// library file; they share the environment, and it is torn down when the
// last one is closed. A Runtime is safe for concurrent use.
type Runtime struct {
	libPath string

	// mu is held for reading while a model loads and for writing by Close,
	// so the environment is never torn down under a Load.
	mu     sync.RWMutex
	closed bool

	modelsMu sync.Mutex
	models   map[*Model]struct{}
}

// NewRuntime loads the ONNX Runtime shared library at libPath (see
// LibraryPath and EnsureLibrary) and initialises the process-wide ORT
// environment, or joins it if another Runtime already did. ONNX Runtime's
// own log is limited to errors, which it writes to standard error.
//
// An error is returned if libPath is empty or missing, if the library cannot
// be loaded or lacks C API version 24 (ONNX Runtime older than 1.24), if a
// Runtime with a different library is open in this process, or if the
// environment was initialised by code outside this package.
func NewRuntime(libPath string) (*Runtime, error) {
	if libPath == "" {
		return nil, fmt.Errorf("models: no ONNX Runtime library path; get one from LibraryPath or EnsureLibrary")
	}
	if err := checkFile(libPath); err != nil {
		return nil, fmt.Errorf("models: ONNX Runtime library %s: %w; run %q or set %s", libPath, err, SetupCommand, LibraryEnv)
	}
	canon, err := filepath.Abs(libPath)
	if err != nil {
		return nil, fmt.Errorf("models: ONNX Runtime library %s: %w", libPath, err)
	}
	if p, err := filepath.EvalSymlinks(canon); err == nil {
		canon = p
	}

	environment.mu.Lock()
	defer environment.mu.Unlock()
	switch {
	case environment.refs > 0 && environment.path != canon:
		return nil, fmt.Errorf("models: ONNX Runtime is already loaded from %s in this process; cannot also load %s (one library per process)", environment.path, canon)
	case environment.refs == 0 && ort.IsInitialized():
		return nil, errors.New("models: the ONNX Runtime environment was initialised outside package models; let NewRuntime own it")
	case environment.refs == 0:
		ort.SetSharedLibraryPath(canon)
		if err := ort.InitializeEnvironment(ort.WithLogLevelError()); err != nil {
			return nil, fmt.Errorf("models: load ONNX Runtime from %s (onnxruntime_go v1.27 needs ONNX Runtime >= 1.24, C API version 24): %w", canon, err)
		}
		environment.path = canon
	}
	environment.refs++
	return &Runtime{libPath: canon, models: make(map[*Model]struct{})}, nil
}

// OpenInstalled is NewRuntime of the library LibraryPath finds: ONNX
// Runtime as installed, with nothing fetched. Its error is LibraryPath's
// (wrapping ErrLibraryNotFound when none is installed) or NewRuntime's.
func OpenInstalled() (*Runtime, error) {
	lib, err := LibraryPath()
	if err != nil {
		return nil, err
	}
	return NewRuntime(lib)
}

// LibraryPath returns the absolute path of the loaded ONNX Runtime library.
func (r *Runtime) LibraryPath() string { return r.libPath }

// ORTVersion returns the version string the loaded library reports, such as
// "1.24.1", or "" after Close.
func (r *Runtime) ORTVersion() string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	if r.closed {
		return ""
	}
	return ort.GetVersion()
}

// Close closes every model loaded from r that is still open, and releases
// r's share of the ORT environment; the last Runtime to close tears it down.
// Close waits for Score calls in flight. Calling Close again returns nil.
func (r *Runtime) Close() error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return nil
	}
	r.closed = true
	r.mu.Unlock()

	r.modelsMu.Lock()
	open := make([]*Model, 0, len(r.models))
	for m := range r.models {
		open = append(open, m)
	}
	r.modelsMu.Unlock()
	var errs []error
	for _, m := range open {
		errs = append(errs, m.Close())
	}

	environment.mu.Lock()
	defer environment.mu.Unlock()
	environment.refs--
	if environment.refs == 0 {
		environment.path = ""
		if err := ort.DestroyEnvironment(); err != nil {
			errs = append(errs, fmt.Errorf("models: destroy the ONNX Runtime environment: %w", err))
		}
	}
	return errors.Join(errs...)
}

func (r *Runtime) track(m *Model) {
	r.modelsMu.Lock()
	r.models[m] = struct{}{}
	r.modelsMu.Unlock()
}

func (r *Runtime) forget(m *Model) {
	r.modelsMu.Lock()
	delete(r.models, m)
	r.modelsMu.Unlock()
}
