package server_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/larder-dev/larder"
	larderv1 "github.com/larder-dev/larder/proto/larder/v1"
	"github.com/larder-dev/larder/server"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// applyFixture is a Service over the test project whose model loader
// hands out next, counting its calls.
type applyFixture struct {
	svc   *server.Service
	first *fakeModel
	next  atomic.Pointer[fakeModel]
	loads atomic.Int32
}

func newApplyFixture(t *testing.T) *applyFixture {
	f := &applyFixture{first: newFakeModel("v1", 1)}
	f.svc = newOpsService(t, f.first, func(cfg *server.Config) {
		cfg.LoadModel = func(r *larder.Ranker) (server.Model, error) {
			f.loads.Add(1)
			if m := f.next.Load(); m != nil {
				return m, nil
			}
			return nil, errors.New("models: load model: no such file")
		}
	})
	return f
}

// TestApplyProject gives a running Service edited projects: a removed view
// and a changed ranker setting apply without loading a model; a ranker
// with another model file loads it and closes the old one; a project whose
// model fails, or of another name, is refused and the previous one keeps
// serving; a removed ranker is refused by Rank.
func TestApplyProject(t *testing.T) {
	ctx := t.Context()
	f := newApplyFixture(t)
	svc := f.svc

	// A view removed and the ranker's top_k changed: the model stays.
	p := testProject(t, func(p *larder.Project) {
		p.Views = p.Views[:len(p.Views)-1] // user_never
		p.Rankers[0].TopK = 2
	})
	if err := svc.ApplyProject(ctx, p); err != nil {
		t.Fatalf("ApplyProject: %v", err)
	}
	if n := f.loads.Load(); n != 0 {
		t.Errorf("%d model loads for an unchanged model, want 0", n)
	}
	_, err := svc.GetFeatures(ctx, &larderv1.GetFeaturesRequest{Keys: []*larderv1.EntityKey{intKey(1)}, Features: []string{"user_never:x"}})
	if status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "unknown view") {
		t.Errorf("GetFeatures of the removed view = %v, want INVALID_ARGUMENT unknown view", err)
	}
	if _, err := svc.GetFeatures(ctx, &larderv1.GetFeaturesRequest{Keys: []*larderv1.EntityKey{intKey(1)}, Features: []string{"user_profile:age"}}); err != nil {
		t.Errorf("GetFeatures after the change: %v", err)
	}
	if v := rankWith(t, svc).GetModelVersion(); v != "v1" || f.first.closes.Load() != 0 {
		t.Errorf("Rank with model %q, v1 closed %d times; want v1, open", v, f.first.closes.Load())
	}

	// Another model file: loaded, tried, swapped in; the old model closed.
	withModel := func(path string) *larder.Project {
		return testProject(t, func(p *larder.Project) { p.Rankers[0].Model = path })
	}
	f.next.Store(newFakeModel("v2", 2))
	if err := svc.ApplyProject(ctx, withModel("reco2.onnx")); err != nil {
		t.Fatalf("ApplyProject with another model: %v", err)
	}
	if v := rankWith(t, svc).GetModelVersion(); v != "v2" || f.first.closes.Load() != 1 {
		t.Errorf("Rank with model %q, v1 closed %d times; want v2, closed once", v, f.first.closes.Load())
	}
	if infos := svc.ListModels(); len(infos) != 1 || !strings.HasSuffix(infos[0].Path, "reco2.onnx") {
		t.Errorf("ListModels = %+v, want reco from reco2.onnx", infos)
	}

	// Refused: a model that fails its trial run, no model at all, another
	// project. The previous configuration keeps serving.
	bad := newFakeModel("bad", 1)
	bad.fail.Store(true)
	f.next.Store(bad)
	err = svc.ApplyProject(ctx, withModel("reco3.onnx"))
	if err == nil || !strings.Contains(err.Error(), `ranker "reco"`) || bad.closes.Load() != 1 {
		t.Errorf("ApplyProject with a failing model = %v, closed %d times; want a refusal naming reco, closed once", err, bad.closes.Load())
	}
	f.next.Store(nil)
	if err := svc.ApplyProject(ctx, withModel("reco3.onnx")); err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Errorf("ApplyProject with a missing model = %v, want the loader's error", err)
	}
	other := testProject(t, func(p *larder.Project) { p.Name = "elsewhere" })
	if err := svc.ApplyProject(ctx, other); err == nil || !strings.Contains(err.Error(), "elsewhere") {
		t.Errorf("ApplyProject of another project = %v, want a refusal naming it", err)
	}
	if v := rankWith(t, svc).GetModelVersion(); v != "v2" {
		t.Errorf("Rank with model %q after refusals, want v2", v)
	}
	_, err = svc.GetFeatures(ctx, &larderv1.GetFeaturesRequest{Keys: []*larderv1.EntityKey{intKey(1)}, Features: []string{"user_never:x"}})
	if status.Code(err) == codes.InvalidArgument {
		t.Errorf("GetFeatures of user_never after refusals = %v: the applied project should still have it", err)
	}

	// The ranker removed: Rank refuses it, and its model is closed.
	current := f.svc.Models()["reco"].(*fakeModel)
	if err := svc.ApplyProject(ctx, testProject(t, func(p *larder.Project) { p.Rankers = nil })); err != nil {
		t.Fatalf("ApplyProject without rankers: %v", err)
	}
	if _, err := svc.Rank(ctx, rankRequest("i1")); status.Code(err) != codes.InvalidArgument || !strings.Contains(err.Error(), "unknown ranker") {
		t.Errorf("Rank of the removed ranker = %v, want INVALID_ARGUMENT unknown ranker", err)
	}
	if current.closes.Load() != 1 {
		t.Errorf("the removed ranker's model was closed %d times, want once", current.closes.Load())
	}
}

// TestApplyProjectUnderLoad applies projects while requests run: every
// GetFeatures succeeds, every Rank is answered, no model runs after it was
// closed, and no Rank is degraded: one that raced its ranker's change
// starts again on the new configuration. Run it with -race.
func TestApplyProjectUnderLoad(t *testing.T) {
	f := newApplyFixture(t)
	svc := f.svc
	ctx, cancel := context.WithCancel(t.Context())
	var models []*fakeModel
	var mu sync.Mutex
	var wg sync.WaitGroup
	var ranks, gets atomic.Int64
	errs := make(chan error, 8)
	for range 4 {
		wg.Go(func() {
			for ctx.Err() == nil {
				resp, err := svc.Rank(context.Background(), rankRequest("i1", "i2"))
				if err != nil {
					errs <- err
					return
				}
				if resp.GetDegraded() {
					errs <- errors.New("degraded: " + resp.GetDegradedReason())
					return
				}
				ranks.Add(1)
				if _, err := svc.GetFeatures(context.Background(), &larderv1.GetFeaturesRequest{
					Keys: []*larderv1.EntityKey{intKey(1), intKey(2)}, Features: []string{"user_profile:*", "user_stats:clicks"},
				}); err != nil {
					errs <- err
					return
				}
				gets.Add(1)
			}
		})
	}
	for i := range 60 {
		p := testProject(t, func(p *larder.Project) {
			p.Rankers[0].TopK = 2 + i%2
			if i%3 == 0 {
				p.Rankers[0].Model = "reco" + string(rune('a'+i%26)) + ".onnx"
			}
		})
		m := newFakeModel("v", 1)
		mu.Lock()
		models = append(models, m)
		mu.Unlock()
		f.next.Store(m)
		if err := svc.ApplyProject(ctx, p); err != nil {
			t.Fatalf("ApplyProject %d: %v", i, err)
		}
		// Changes come far apart in real life: let a few requests run
		// between two of them.
		for target := ranks.Load() + 8; ranks.Load() < target && len(errs) == 0; {
			time.Sleep(100 * time.Microsecond)
		}
	}
	cancel()
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	for _, m := range append(models, f.first) {
		if n := m.lateRuns.Load(); n > 0 {
			t.Errorf("model %p ran %d times after it was closed", m, n)
		}
	}
	t.Logf("%d Rank and %d GetFeatures during 60 changes", ranks.Load(), gets.Load())
}
