package server_test

import (
	"context"
	"errors"
	"slices"
	"testing"

	larderv1 "github.com/larder-dev/larder/proto/larder/v1"
	"github.com/larder-dev/larder/server"
)

// failingModel is a Model whose every run fails, as a model does when ONNX
// Runtime errors or its library cannot be loaded.
type failingModel struct{}

func (failingModel) Score(context.Context, []float32, int, []float32) error {
	return errors.New("onnxruntime: run failed")
}

func (failingModel) Version() string { return "broken-1" }

// TestRankDegraded checks that Rank keeps answering when the model fails:
// the candidates in request order, score 0, flagged degraded with the reason.
func TestRankDegraded(t *testing.T) {
	f := newFixture(t, fixtureConfig{models: map[string]server.Model{"reco": failingModel{}}})
	items := []string{"i3", "i1", "i2"}
	resp, err := f.client.Rank(context.Background(), &larderv1.RankRequest{
		Ranker: "reco", ContextKey: intKey(1), CandidateKeys: strKeys(items...), TopK: 2,
		RequestFeatures: map[string]*larderv1.Value{"hour": intVal(13), "mobile": boolVal(true)},
	})
	if err != nil {
		t.Fatalf("Rank with a failing model = %v, want a degraded answer", err)
	}
	if !resp.GetDegraded() || resp.GetDegradedReason() == "" {
		t.Errorf("degraded = %v, reason %q; want true and a reason", resp.GetDegraded(), resp.GetDegradedReason())
	}
	var got []string
	for _, c := range resp.GetCandidates() {
		got = append(got, c.GetKey().GetStringValue())
		if c.GetScore() != 0 {
			t.Errorf("%s scored %v in degraded mode, want 0", c.GetKey().GetStringValue(), c.GetScore())
		}
	}
	if want := items[:2]; !slices.Equal(got, want) {
		t.Errorf("degraded candidates %q, want the request order %q cut to top_k", got, want)
	}
}
