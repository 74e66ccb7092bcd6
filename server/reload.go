package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"sync"
	"time"

	"github.com/larder-dev/larder"
)

// LoadModelFunc loads the model file of ranker r, checked against r's inputs
// and output. The caller owns the model it returns.
type LoadModelFunc func(r *larder.Ranker) (Model, error)

// ModelRefusedError is returned by SwapModel and Reload when a new model is
// not swapped in: it could not be loaded, it does not fit the ranker, or its
// trial run failed. The ranker keeps serving with its current model.
type ModelRefusedError struct {
	Ranker string
	Err    error
}

func (e *ModelRefusedError) Error() string {
	return fmt.Sprintf("ranker %q: new model refused, the current one keeps serving: %v", e.Ranker, e.Err)
}

func (e *ModelRefusedError) Unwrap() error { return e.Err }

// errNoLoader is the reason a Reload is refused by a Service built without
// Config.LoadModel.
var errNoLoader = errors.New("this server has no model loader (server.Config.LoadModel), so it cannot reload models")

// modelState is what a ranker's plan keeps about its model besides the
// slot: reloads of one ranker run one at a time under mu, and loadedAt says
// when the current model was swapped in.
type modelState struct {
	mu       sync.Mutex
	path     string
	loadedAt time.Time
}

// trialMinTimeout is the least time a new model's trial run is given: the
// first run of a fresh session is slower than the runs after it.
const trialMinTimeout = time.Second

// SwapModel makes m the model of the named ranker and returns the version of
// the model it replaces. Rank requests already scoring with the old model
// finish on it; the old model is then closed, if it is an io.Closer.
//
// Before the swap, m scores one row of zeros, which must succeed with a
// finite score within ten times the ranker's model timeout (at least a
// second); this also warms its session. On success the Service owns m. On
// error m is not used and the caller keeps it: the error is an
// *larder.InvalidError for an unknown ranker, and a *ModelRefusedError
// otherwise.
func (s *Service) SwapModel(ctx context.Context, ranker string, m Model) (old string, err error) {
	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	plan, err := s.plan(ranker)
	if err != nil {
		return "", err
	}
	st := plan.state
	st.mu.Lock()
	defer st.mu.Unlock()
	return s.swapLocked(ctx, plan, st, m)
}

// Reload loads the ranker's model file with Config.LoadModel and swaps it in
// as SwapModel does, returning the versions of the old and the new model. A
// model that is refused is closed, the refusal is logged and counted, and the
// error is a *ModelRefusedError; an unknown ranker is an
// *larder.InvalidError.
func (s *Service) Reload(ctx context.Context, ranker string) (old, current string, err error) {
	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	plan, err := s.plan(ranker)
	if err != nil {
		return "", "", err
	}
	st := plan.state
	if s.loadModel == nil {
		return "", "", s.refuse(ctx, ranker, errNoLoader)
	}
	st.mu.Lock()
	defer st.mu.Unlock()
	m, err := s.loadModel(plan.ranker)
	if err != nil {
		return "", "", s.refuse(ctx, ranker, err)
	}
	if m == nil {
		return "", "", s.refuse(ctx, ranker, errors.New("the model loader returned no model"))
	}
	if old, err = s.swapLocked(ctx, plan, st, m); err != nil {
		if c, ok := m.(io.Closer); ok {
			_ = c.Close()
		}
		return "", "", err
	}
	return old, m.Version(), nil
}

// Models returns the model each ranker currently serves with, by ranker
// name. A server that swaps models closes the replaced ones itself; at
// shutdown, once no request is in flight, its owner closes these.
func (s *Service) Models() map[string]Model {
	rankers := s.serving().rankers
	ms := make(map[string]Model, len(rankers))
	for name, plan := range rankers {
		ms[name] = plan.slot.current()
	}
	return ms
}

// ModelInfo describes the model a ranker serves with.
type ModelInfo struct {
	Ranker   string
	Version  string
	Path     string    // the model file, as resolved against the project folder
	LoadedAt time.Time // when the current model was loaded or swapped in
}

// ListModels describes the model of every ranker, in project order.
func (s *Service) ListModels() []ModelInfo {
	c := s.serving()
	infos := make([]ModelInfo, 0, len(c.project.Rankers))
	for _, r := range c.project.Rankers {
		plan := c.rankers[r.Name]
		if plan == nil {
			continue
		}
		st := plan.state
		st.mu.Lock()
		infos = append(infos, ModelInfo{Ranker: r.Name, Version: plan.slot.current().Version(), Path: st.path, LoadedAt: st.loadedAt})
		st.mu.Unlock()
	}
	return infos
}

// plan returns the plan of the named ranker, or an *larder.InvalidError.
func (s *Service) plan(ranker string) (*rankerPlan, error) {
	c := s.serving()
	plan := c.rankers[ranker]
	if plan == nil {
		if ranker == "" {
			return nil, larder.Invalidf("ranker: is required%s", knownRankers(c.project))
		}
		if msg := checkName(ranker, larder.MaxNameBytes); msg != "" {
			return nil, larder.Invalidf("ranker: %s%s", msg, knownRankers(c.project))
		}
		return nil, larder.Invalidf("ranker: unknown ranker %s%s", echo(ranker), knownRankers(c.project))
	}
	return plan, nil
}

// swapLocked checks m and swaps it into plan's slot; st.mu is held.
func (s *Service) swapLocked(ctx context.Context, plan *rankerPlan, st *modelState, m Model) (string, error) {
	r := plan.ranker
	if m == nil {
		return "", s.refuse(ctx, r.Name, errors.New("no model"))
	}
	if err := trialRun(ctx, m, len(r.Inputs), max(10*modelTimeout(r), trialMinTimeout)); err != nil {
		return "", s.refuse(ctx, r.Name, err)
	}
	wrapped, err := batchModel(r, m)
	if err != nil {
		return "", s.refuse(ctx, r.Name, err)
	}
	old := plan.slot.current().Version()
	plan.slot.swap(wrapped)
	st.loadedAt = s.now()
	s.metrics.modelSwapped(r.Name, old, m.Version(), st.loadedAt)
	s.logger.InfoContext(ctx, "model swapped in", "ranker", r.Name, "old_version", old, "new_version", m.Version())
	return old, nil
}

// refuse logs and counts a refused model and returns the error to report.
func (s *Service) refuse(ctx context.Context, ranker string, err error) error {
	s.metrics.modelRefused(ranker)
	s.logger.ErrorContext(ctx, "new model refused; the current one keeps serving", "ranker", ranker, "err", err)
	return &ModelRefusedError{Ranker: ranker, Err: err}
}

// trialRun scores one row of zeros with m within timeout.
func trialRun(ctx context.Context, m Model, features int, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	out := make([]float32, 1)
	if err := m.Score(ctx, make([]float32, features), 1, out); err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return fmt.Errorf("trial run on one row of zeros: no score within %s: %w", timeout, err)
		}
		return fmt.Errorf("trial run on one row of zeros: %w", err)
	}
	if f := float64(out[0]); math.IsNaN(f) || math.IsInf(f, 0) {
		return fmt.Errorf("trial run on one row of zeros: the score is %v, want a finite number", out[0])
	}
	return nil
}
