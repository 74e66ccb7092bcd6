package main

import (
	"strings"
	"testing"
	"time"
)

// TestBenchBatching runs `larder bench --quick --batching --heavy` and checks
// that Rank-batched is measured at each concurrency, next to Rank, with the
// heavy model and the batching settings given.
func TestBenchBatching(t *testing.T) {
	t.Parallel()
	r := larderAt(t, t.Context(), time.Now(), "bench", "--quick", "--batching", "--heavy", "--batch-max-delay", "500us", "--markdown")
	mustSucceed(t, r, "larder bench --quick --batching --heavy")
	for _, want := range []string{
		"MLP 20→256→256→1",
		"ranker rerank_batched: the same model, batching max_delay 500µs, max_rows 1024, max_queue 64",
		"| Rank-batched | 1 |", "| Rank-batched | 4 |",
		"| concurrency | Rank RPS | Rank-batched RPS |",
		"`Rank-batched`: the same Rank through ranker rerank_batched",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("the output has no %q:\n%s", want, r.stdout)
		}
	}
	tables := benchTables(t, r.stdout, true)
	if len(tables) != 3 || len(tables[2]) != 3 {
		t.Fatalf("got %d tables, want 3 (results, ratios, batching) and the batching one with 2 rows:\n%s", len(tables), r.stdout)
	}
}
