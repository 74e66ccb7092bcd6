package server_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/larder-dev/larder"
	larderv1 "github.com/larder-dev/larder/proto/larder/v1"
)

// BenchmarkRank1x100Explain is BenchmarkRank1x100 with explain set: whole
// rows are read, and each returned candidate carries its model input.
func BenchmarkRank1x100Explain(b *testing.B) {
	srv := benchServer(b)
	req := &larderv1.RankRequest{
		Ranker:          "bench",
		ContextKey:      intKey(42),
		CandidateKeys:   make([]*larderv1.EntityKey, 100),
		RequestFeatures: map[string]*larderv1.Value{"hour": intVal(13)},
		Explain:         true,
	}
	for i := range req.CandidateKeys {
		req.CandidateKeys[i] = intKey(int64(1 + i*9%benchEntities))
	}
	run(b, func(ctx context.Context) error {
		resp, err := srv.client.Rank(ctx, req)
		if err == nil && len(resp.GetCandidates()) != larder.DefaultTopK {
			err = fmt.Errorf("got %d candidates, want %d", len(resp.GetCandidates()), larder.DefaultTopK)
		}
		if err == nil && len(resp.GetCandidates()[0].GetExplanation().GetInputs()) != len(resp.GetInputNames()) {
			err = fmt.Errorf("explanation of %d inputs for %d names", len(resp.GetCandidates()[0].GetExplanation().GetInputs()), len(resp.GetInputNames()))
		}
		return err
	})
}
