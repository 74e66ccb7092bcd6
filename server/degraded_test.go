package server_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/larder-dev/larder"
	larderv1 "github.com/larder-dev/larder/proto/larder/v1"
	"github.com/larder-dev/larder/server"
)

// failingModel is a Model whose every run fails, as a model does when ONNX
// Runtime errors.
type failingModel struct{}

func (failingModel) Score(context.Context, []float32, int, []float32) error {
	return errors.New("onnxruntime: run failed")
}

func (failingModel) Version() string { return "broken-1" }

// stuckModel is a Model whose runs never finish by themselves: each blocks
// until its context ends, as a run does that is stuck or far too slow.
type stuckModel struct{}

func (stuckModel) Score(ctx context.Context, _ []float32, _ int, _ []float32) error {
	<-ctx.Done()
	return ctx.Err()
}

func (stuckModel) Version() string { return "stuck-1" }

// missingModel is a Model that cannot run at all, as cmd/larder's stand-in
// when the ONNX Runtime library cannot be loaded.
type missingModel struct{}

func (missingModel) Score(context.Context, []float32, int, []float32) error {
	return fmt.Errorf("%w: ONNX Runtime cannot be loaded: no such file", server.ErrModelUnavailable)
}

func (missingModel) Version() string { return "unavailable" }

// rankRequest is a valid Rank request of the reco ranker for user 1.
func rankRequest(items ...string) *larderv1.RankRequest {
	return &larderv1.RankRequest{
		Ranker: "reco", ContextKey: intKey(1), CandidateKeys: strKeys(items...), TopK: 2,
		RequestFeatures: map[string]*larderv1.Value{"hour": intVal(13), "mobile": boolVal(true)},
	}
}

// TestRankDegraded checks that Rank keeps answering when the model fails:
// the candidates in request order, score 0, flagged degraded with the reason.
func TestRankDegraded(t *testing.T) {
	f := newFixture(t, fixtureConfig{models: map[string]server.Model{"reco": failingModel{}}})
	items := []string{"i3", "i1", "i2"}
	resp, err := f.client.Rank(context.Background(), rankRequest(items...))
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

// TestRankDegradedReasons checks the reason of each way a model can fail to
// answer, and that the model's version is still reported.
func TestRankDegradedReasons(t *testing.T) {
	tests := []struct {
		name    string
		model   server.Model
		timeout time.Duration // the ranker's model_timeout; 0 leaves the default
		reason  string        // the exact reason, or its prefix when it ends in "..."
	}{
		{"model error", failingModel{}, 0, "model failed: onnxruntime: run failed"},
		{"default timeout", stuckModel{}, 0, "model timed out after " + larder.DefaultModelTimeout.String()},
		{"ranker timeout", stuckModel{}, 30 * time.Millisecond, "model timed out after 30ms"},
		{"library missing", missingModel{}, 0, "model unavailable: ONNX Runtime cannot be loaded: no such file"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			f := newFixture(t, fixtureConfig{
				models: map[string]server.Model{"reco": tc.model},
				edit:   func(p *larder.Project) { p.Rankers[0].ModelTimeout = tc.timeout },
			})
			// A model that never answers is cut off by the timeout the
			// reason names; without it, Rank would fail at the server's
			// deadline instead of answering degraded.
			resp, err := f.client.Rank(t.Context(), rankRequest("i1", "i2", "i3"))
			if err != nil {
				t.Fatalf("Rank = %v, want a degraded answer", err)
			}
			if !resp.GetDegraded() || resp.GetDegradedReason() != tc.reason {
				t.Errorf("degraded %v, reason %q; want true, %q", resp.GetDegraded(), resp.GetDegradedReason(), tc.reason)
			}
			if resp.GetModelVersion() != tc.model.Version() || len(resp.GetCandidates()) != 2 {
				t.Errorf("model version %q, %d candidates; want %q, 2", resp.GetModelVersion(), len(resp.GetCandidates()), tc.model.Version())
			}
			if !strings.Contains(f.logs.String(), "rank served without the model") {
				t.Errorf("no warning logged:\n%s", f.logs.String())
			}
		})
	}
}

// TestRankCallerDeadline checks that a model stopped by the caller's own
// deadline, shorter than the model timeout, ends the request with
// DEADLINE_EXCEEDED rather than a degraded answer nobody waits for.
func TestRankCallerDeadline(t *testing.T) {
	f := newFixture(t, fixtureConfig{
		models: map[string]server.Model{"reco": stuckModel{}},
		edit:   func(p *larder.Project) { p.Rankers[0].ModelTimeout = time.Minute },
	})
	ctx, cancel := context.WithTimeout(t.Context(), 300*time.Millisecond)
	defer cancel()
	_, err := f.client.Rank(ctx, rankRequest("i1", "i2"))
	wantCode(t, err, codes.DeadlineExceeded)
}

// noModelTimeout lifts the reco ranker's model timeout out of the way, for
// tests of slow models that are about something else, such as draining.
func noModelTimeout(p *larder.Project) { p.Rankers[0].ModelTimeout = time.Hour }
