package server_test

import (
	"context"
	"errors"
	"math"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/larder-dev/larder"
	"github.com/larder-dev/larder/models"
	larderv1 "github.com/larder-dev/larder/proto/larder/v1"
	"github.com/larder-dev/larder/server"
)

// fakeModel scores every row with a constant. Tests switch it to failing or
// to blocking, and it records its closing and any run after it.
type fakeModel struct {
	version string
	score   float32
	fail    atomic.Bool
	block   atomic.Bool
	closes  atomic.Int32
	// lateRuns counts runs after Close: a swap must never allow one.
	lateRuns atomic.Int32
	// entered, when not nil, receives once per run as it starts; release,
	// when not nil, is waited on before the run finishes.
	entered chan struct{}
	release chan struct{}
}

func newFakeModel(version string, score float32) *fakeModel {
	return &fakeModel{version: version, score: score}
}

func (m *fakeModel) Score(ctx context.Context, _ []float32, n int, out []float32) error {
	if m.closes.Load() > 0 {
		m.lateRuns.Add(1)
		return errors.New("fake: run after close")
	}
	if m.entered != nil {
		m.entered <- struct{}{}
	}
	if m.release != nil {
		<-m.release
	}
	if m.block.Load() {
		<-ctx.Done()
		return ctx.Err()
	}
	if m.fail.Load() {
		return errors.New("fake: run failed")
	}
	for i := range out[:n] {
		out[i] = m.score
	}
	return nil
}

func (m *fakeModel) Version() string { return m.version }

func (m *fakeModel) Close() error {
	m.closes.Add(1)
	return nil
}

// nanModel scores every row NaN.
type nanModel struct{}

func (nanModel) Score(_ context.Context, _ []float32, n int, out []float32) error {
	for i := range out[:n] {
		out[i] = float32(math.NaN())
	}
	return nil
}

func (nanModel) Version() string { return "nan-1" }

// opsConfig publishes the fixture's data for the test project in a real
// redis-server and returns a server.Config over it, without models, at the
// fixture's time.
func opsConfig(tb testing.TB, edit func(*larder.Project)) server.Config {
	tb.Helper()
	p := testProject(tb, edit)
	st, _ := newStore(tb, p)
	t0 := time.Now().UTC().Truncate(time.Microsecond)
	data := fixtureData(t0)
	for _, view := range []string{"user_profile", "user_stats", "item_info"} {
		publish(tb, st, p, view, data[view])
	}
	return server.Config{Project: p, Store: st, Now: newClock(t0).Now}
}

// newOpsService returns a Service over opsConfig with model m for reco.
func newOpsService(tb testing.TB, m server.Model, edit func(*server.Config)) *server.Service {
	tb.Helper()
	cfg := opsConfig(tb, nil)
	cfg.Models = map[string]server.Model{"reco": m}
	if edit != nil {
		edit(&cfg)
	}
	svc, err := server.New(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	return svc
}

// rankWith calls svc.Rank and fails tb unless the model answered.
func rankWith(tb testing.TB, svc *server.Service) *larderv1.RankResponse {
	tb.Helper()
	resp, err := svc.Rank(context.Background(), rankRequest("i1", "i2", "i3"))
	if err != nil {
		tb.Fatalf("Rank: %v", err)
	}
	if resp.GetDegraded() {
		tb.Fatalf("Rank degraded: %s", resp.GetDegradedReason())
	}
	return resp
}

// TestSwapModel swaps one real ONNX model for another and checks that Rank
// scores with the new one and that the old one is closed.
func TestSwapModel(t *testing.T) {
	cfg := opsConfig(t, nil)
	r := cfg.Project.Ranker("reco")
	_, first := trainRanker(t, r)
	net, err := models.NewRandomMLP(len(r.Inputs), []int{4}, 3)
	if err != nil {
		t.Fatal(err)
	}
	second := loadNet(t, net, r)
	cfg.Models = map[string]server.Model{"reco": first}
	svc, err := server.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if v := rankWith(t, svc).GetModelVersion(); v != first.Version() {
		t.Fatalf("model version %q before the swap, want %q", v, first.Version())
	}
	old, err := svc.SwapModel(t.Context(), "reco", second)
	if err != nil || old != first.Version() {
		t.Fatalf("SwapModel = %q, %v; want %q, nil", old, err, first.Version())
	}
	if v := rankWith(t, svc).GetModelVersion(); v != second.Version() {
		t.Errorf("model version %q after the swap, want %q", v, second.Version())
	}
	if err := first.Score(t.Context(), make([]float32, len(r.Inputs)), 1, make([]float32, 1)); !errors.Is(err, models.ErrClosed) {
		t.Errorf("the replaced model scores: %v; want it closed", err)
	}
	if got := svc.Models()["reco"]; got != server.Model(second) {
		t.Errorf("Models()[reco] = %v, want the new model", got)
	}
}

// TestSwapModelInFlight checks that a request scoring with the old model
// finishes on it, and that the old model is closed only after it.
func TestSwapModelInFlight(t *testing.T) {
	old := newFakeModel("old", 1)
	old.entered, old.release = make(chan struct{}, 1), make(chan struct{})
	svc := newOpsService(t, old, nil)
	done := make(chan *larderv1.RankResponse, 1)
	go func() {
		resp, _ := svc.Rank(context.Background(), rankRequest("i1", "i2"))
		done <- resp
	}()
	<-old.entered
	if _, err := svc.SwapModel(t.Context(), "reco", newFakeModel("new", 2)); err != nil {
		t.Fatal(err)
	}
	if n := old.closes.Load(); n != 0 {
		t.Fatalf("the old model was closed %d times with a request still scoring on it", n)
	}
	close(old.release)
	resp := <-done
	if resp.GetModelVersion() != "old" || resp.GetDegraded() {
		t.Errorf("the request in flight: version %q, degraded %v; want old, false", resp.GetModelVersion(), resp.GetDegraded())
	}
	if n := old.closes.Load(); n != 1 {
		t.Errorf("the old model was closed %d times once its last request ended, want 1", n)
	}
	if v := rankWith(t, svc).GetModelVersion(); v != "new" {
		t.Errorf("version %q after the swap, want new", v)
	}
}

// TestSwapModelRefused checks that a model that fails its trial run is
// refused with the reason, left to the caller, and that the old model keeps
// serving.
func TestSwapModelRefused(t *testing.T) {
	cfg := opsConfig(t, nil)
	r := cfg.Project.Ranker("reco")
	// A real model with one input too few for the ranker.
	narrow := *r
	narrow.Name, narrow.Inputs = "narrow", r.Inputs[:len(r.Inputs)-1]
	net, err := models.NewRandomMLP(len(narrow.Inputs), []int{4}, 3)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		model  server.Model
		reason string
	}{
		{"run fails", failingModel{}, "trial run on one row of zeros: onnxruntime: run failed"},
		{"NaN score", nanModel{}, "the score is NaN, want a finite number"},
		{"wrong width", loadNet(t, net, &narrow), "x has 8 values, want n × features = 1 × 7 = 7"},
		{"no answer", stuckModel{}, "no score within 1s"},
		{"no model", nil, "no model"},
	}
	current := newFakeModel("current", 1)
	cfg.Models = map[string]server.Model{"reco": current}
	svc, err := server.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			old, err := svc.SwapModel(t.Context(), "reco", tc.model)
			var refused *server.ModelRefusedError
			if !errors.As(err, &refused) || refused.Ranker != "reco" || !strings.Contains(err.Error(), tc.reason) {
				t.Fatalf("SwapModel = %q, %v; want a *ModelRefusedError for reco saying %q", old, err, tc.reason)
			}
			if v := rankWith(t, svc).GetModelVersion(); v != "current" {
				t.Errorf("version %q after a refused swap, want current", v)
			}
		})
	}
	if current.closes.Load() != 0 {
		t.Errorf("the current model was closed by a refused swap")
	}
	if _, err := svc.SwapModel(t.Context(), "nope", newFakeModel("x", 1)); !larder.IsInvalid(err) || !strings.Contains(err.Error(), "(the server's project srvtest has rankers: reco)") {
		t.Errorf("SwapModel of an unknown ranker = %v, want an invalid-argument error listing the rankers", err)
	}
}

// TestReload checks Reload through Config.LoadModel: a load error and a
// model that fails its trial are refused (and the refused model closed), a
// good model is swapped in, and a Service without a loader refuses.
func TestReload(t *testing.T) {
	var next atomic.Pointer[fakeModel]
	loadErr := errors.New("models: load model: open reco.onnx: no such file or directory")
	load := func(r *larder.Ranker) (server.Model, error) {
		if r.Name != "reco" {
			t.Errorf("LoadModel(%q), want reco", r.Name)
		}
		m := next.Load()
		if m == nil {
			return nil, loadErr
		}
		return m, nil
	}
	svc := newOpsService(t, newFakeModel("v1", 1), func(cfg *server.Config) { cfg.LoadModel = load })

	_, _, err := svc.Reload(t.Context(), "reco")
	if !errors.Is(err, loadErr) {
		t.Errorf("Reload with a load error = %v, want it wrapped", err)
	}
	bad := newFakeModel("bad", 1)
	bad.fail.Store(true)
	next.Store(bad)
	if _, _, err := svc.Reload(t.Context(), "reco"); err == nil || bad.closes.Load() != 1 {
		t.Errorf("Reload of a failing model = %v, closed %d times; want an error and closed once", err, bad.closes.Load())
	}
	next.Store(newFakeModel("v2", 2))
	old, current, err := svc.Reload(t.Context(), "reco")
	if err != nil || old != "v1" || current != "v2" {
		t.Fatalf("Reload = %q, %q, %v; want v1, v2, nil", old, current, err)
	}
	if v := rankWith(t, svc).GetModelVersion(); v != "v2" {
		t.Errorf("version %q after Reload, want v2", v)
	}
	infos := svc.ListModels()
	if len(infos) != 1 || infos[0].Ranker != "reco" || infos[0].Version != "v2" || !strings.HasSuffix(infos[0].Path, "reco.onnx") || infos[0].LoadedAt.IsZero() {
		t.Errorf("ListModels = %+v, want reco at v2 from reco.onnx with a load time", infos)
	}

	noLoader := newOpsService(t, newFakeModel("v1", 1), nil)
	if _, _, err := noLoader.Reload(t.Context(), "reco"); err == nil || !strings.Contains(err.Error(), "no model loader") {
		t.Errorf("Reload without a loader = %v, want a refusal naming the missing loader", err)
	}
}

// TestSwapModelConcurrent swaps models while requests rank: every request
// must be answered by the model, no model may run after it was closed, and
// every replaced model must be closed exactly once. Run it with -race.
func TestSwapModelConcurrent(t *testing.T) {
	first := newFakeModel("m0", 0)
	svc := newOpsService(t, first, nil)
	all := []*fakeModel{first}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var ranked, degraded atomic.Int64
	for range 4 {
		wg.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				resp, err := svc.Rank(context.Background(), rankRequest("i1", "i2", "i3"))
				switch {
				case err != nil:
					t.Errorf("Rank: %v", err)
					return
				case resp.GetDegraded():
					degraded.Add(1)
				}
				ranked.Add(1)
			}
		})
	}
	for i := 1; i <= 50; i++ {
		m := newFakeModel("m"+string(rune('0'+i%10)), float32(i))
		all = append(all, m)
		if _, err := svc.SwapModel(t.Context(), "reco", m); err != nil {
			t.Fatal(err)
		}
		time.Sleep(time.Millisecond)
	}
	close(stop)
	wg.Wait()
	if degraded.Load() != 0 || ranked.Load() == 0 {
		t.Errorf("%d of %d requests degraded, want none of at least one", degraded.Load(), ranked.Load())
	}
	for i, m := range all {
		want := int32(1)
		if i == len(all)-1 {
			want = 0 // still current
		}
		if m.closes.Load() != want || m.lateRuns.Load() != 0 {
			t.Errorf("model %d: closed %d times, %d runs after close; want %d and 0", i, m.closes.Load(), m.lateRuns.Load(), want)
		}
	}
}
