package main

import (
	"context"
	"fmt"

	"github.com/larder-dev/larder"
	"github.com/larder-dev/larder/models"
)

// lazyModels loads models for prediction views, starting ONNX Runtime (and
// fetching its library if needed, but never in serve) only when a view
// needs a model, so that projects without prediction views never touch it.
type lazyModels struct {
	ctx context.Context
	a   *app
	rt  *models.Runtime
}

// load implements larder.ModelLoader. The materializer closes each model it
// loads when its run ends.
func (l *lazyModels) load(spec larder.ModelSpec) (larder.Model, error) {
	if l.rt == nil {
		var lib string
		var err error
		if l.a.noFetch {
			lib, err = models.LibraryPath()
		} else {
			lib, err = models.EnsureLibrary(l.ctx, l.a.stderr)
		}
		if err != nil {
			return nil, fmt.Errorf("prediction views and scoring need the ONNX Runtime library: %w", err)
		}
		if l.rt, err = models.NewRuntime(lib); err != nil {
			return nil, err
		}
	}
	m, err := l.rt.Load(spec.Path, models.Spec{Input: spec.Input, Output: spec.Output, Features: spec.Features, Outputs: spec.Outputs})
	if err != nil {
		return nil, err // a nil interface, not a nil *models.Model
	}
	return m, nil
}

// close releases the runtime, if one was started.
func (l *lazyModels) close() {
	if l.rt != nil {
		_ = l.rt.Close()
	}
}
