package server

import (
	"context"
	"errors"
	"fmt"
	"io"
	"reflect"

	"github.com/larder-dev/larder"
)

// ApplyProject makes the Service serve p, a new version of the project it
// serves: new, removed or changed views and rankers. It is how a running
// server takes an edited larder.yaml.
//
// The change is all or nothing. A ranker whose model (file, input, output,
// input count and batching) is unchanged keeps its loaded model; any other
// ranker's model is loaded with Config.LoadModel and given the trial run
// of SwapModel. If one of them fails, nothing changes, and the error says
// which ranker and why. Otherwise the new configuration replaces the old
// one at once: a request sees the old one or the new one, never a mix.
// The models of removed or changed rankers are closed once the requests
// already scoring with them end.
//
// The server block (listeners, limits, TLS, authentication) is kept from
// the project the Service was made with: changing it needs a restart, and
// ApplyProject logs a warning when p's differs. A project of another name
// is refused.
func (s *Service) ApplyProject(ctx context.Context, p *larder.Project) (err error) {
	s.applyMu.Lock()
	defer s.applyMu.Unlock()
	defer func() { s.metrics.CountConfigReload(err == nil) }()
	if p == nil {
		return errors.New("no project")
	}
	old := s.serving()
	if p.Name != old.project.Name {
		return fmt.Errorf("the project is named %q, not %q: a server serves one project; start another server for another project", p.Name, old.project.Name)
	}
	if !reflect.DeepEqual(p.Server, s.limits) {
		s.logger.Warn("the server block of larder.yaml changed; its settings (listeners, limits, TLS, tokens) apply at the next restart, and the ones this server started with stay in force")
	}

	c := newServingConfig(p)
	type added struct {
		name string
		plan *rankerPlan
	}
	var fresh []added
	// On failure, the models loaded for this configuration are closed.
	defer func() {
		if err == nil {
			return
		}
		for _, a := range fresh {
			if cl, ok := a.plan.slot.current().(io.Closer); ok {
				_ = cl.Close()
			}
		}
	}()
	for _, r := range p.Rankers {
		if prev := old.rankers[r.Name]; prev != nil && sameModel(prev, r, p) {
			c.rankers[r.Name] = s.planRanker(r, prev.slot, prev.state)
			continue
		}
		m, err := s.loadForApply(ctx, r)
		if err != nil {
			return fmt.Errorf("ranker %q: %w", r.Name, err)
		}
		plan := s.planRanker(r, newModelSlot(m), &modelState{path: p.Path(r.Model), loadedAt: s.now()})
		c.rankers[r.Name] = plan
		fresh = append(fresh, added{r.Name, plan})
	}

	s.cfg.Store(c)

	for _, a := range fresh {
		if prev := old.rankers[a.name]; prev != nil {
			s.metrics.modelSwapped(a.name, prev.slot.current().Version(), a.plan.slot.current().Version(), a.plan.state.loadedAt)
		} else {
			s.metrics.initRanker(a.name, a.plan.slot.current().Version(), a.plan.state.loadedAt)
		}
	}
	for name, prev := range old.rankers {
		now := c.rankers[name]
		if now == nil {
			s.metrics.rankerRemoved(name, prev.slot.current().Version())
		}
		if now == nil || now.slot != prev.slot {
			prev.slot.retire(name)
		}
	}
	s.logger.Info("configuration applied", "project", p.Name, "views", len(p.Views), "rankers", len(p.Rankers),
		"models_loaded", len(fresh), "changes", p.ChangesSince(old.project))
	return nil
}

// loadForApply loads, checks and warms the model of ranker r, wrapped for
// batching when r batches.
func (s *Service) loadForApply(ctx context.Context, r *larder.Ranker) (Model, error) {
	if s.loadModel == nil {
		return nil, errNoLoader
	}
	m, err := s.loadModel(r)
	if err != nil {
		return nil, err
	}
	if m == nil {
		return nil, errors.New("the model loader returned no model")
	}
	if err := trialRun(ctx, m, len(r.Inputs), max(10*modelTimeout(r), trialMinTimeout)); err != nil {
		if cl, ok := m.(io.Closer); ok {
			_ = cl.Close()
		}
		return nil, err
	}
	wrapped, err := batchModel(r, m)
	if err != nil {
		if cl, ok := m.(io.Closer); ok {
			_ = cl.Close()
		}
		return nil, err
	}
	return wrapped, nil
}

// sameModel says whether ranker r of project p can keep serving with the
// model of prev, its plan in the configuration being replaced: the same
// file, tensors, input count and batching.
func sameModel(prev *rankerPlan, r *larder.Ranker, p *larder.Project) bool {
	o := prev.ranker
	prev.state.mu.Lock()
	path := prev.state.path
	prev.state.mu.Unlock()
	return path == p.Path(r.Model) &&
		o.ModelInput == r.ModelInput && o.ModelOutput == r.ModelOutput &&
		len(o.Inputs) == len(r.Inputs) &&
		reflect.DeepEqual(o.Batching, r.Batching)
}

// retiredModel is the model of a slot whose ranker was removed or
// replaced by ApplyProject. A request that took the old configuration
// just before the change, and the slot's model just after, scores with it
// and is answered in degraded mode.
type retiredModel struct{ ranker string }

func (m retiredModel) Score(context.Context, []float32, int, []float32) error {
	return fmt.Errorf("ranker %q was reconfigured while this request ran", m.ranker)
}

func (m retiredModel) Version() string { return "retired" }

// retire replaces the slot's model with a retiredModel: the old one is
// closed once the requests scoring with it end.
func (s *modelSlot) retire(ranker string) { s.swap(retiredModel{ranker}) }
