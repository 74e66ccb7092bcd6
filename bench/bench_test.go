package bench

import (
	"context"
	"testing"
	"time"
)

// TestBenchCellSlowCalls checks that a round measures every caller even
// when each call outlasts the round, as on a busy machine: the figures get
// slower, and the bench does not fail for want of a call.
func TestBenchCellSlowCalls(t *testing.T) {
	const (
		round = 2 * time.Millisecond
		slow  = 10 * round
	)
	call := benchCall{name: "slow", newCaller: func(int) func(context.Context) error {
		return func(ctx context.Context) error {
			select {
			case <-time.After(slow):
				return nil
			case <-ctx.Done():
				return ctx.Err()
			}
		}
	}}
	c := newCell(call, 3, round)
	for range 2 {
		if err := c.run(t.Context(), round, round); err != nil {
			t.Fatalf("run: %v", err)
		}
	}
	for i, l := range c.lats {
		if len(l) < 2 {
			t.Errorf("caller %d recorded %d calls in 2 rounds, want at least one a round", i, len(l))
		}
	}
	r, err := c.result()
	if err != nil {
		t.Fatalf("result: %v", err)
	}
	if r.n < 6 {
		t.Errorf("%d calls, want at least 6", r.n)
	}
}

func TestPercentile(t *testing.T) {
	hundred := make([]time.Duration, 100)
	for i := range hundred {
		hundred[i] = time.Duration(i + 1)
	}
	for _, tc := range []struct {
		name   string
		sorted []time.Duration
		q      float64
		want   time.Duration
	}{
		{"one value", []time.Duration{7}, 0.999, 7},
		{"p50 of 100", hundred, 0.50, 50},
		{"p99 of 100", hundred, 0.99, 99},
		{"p999 of 100 is the largest", hundred, 0.999, 100},
		{"p50 of 3", []time.Duration{1, 2, 3}, 0.50, 2},
		{"p0 is the smallest", hundred, 0, 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := Percentile(tc.sorted, tc.q); got != tc.want {
				t.Errorf("Percentile(%v) = %d, want %d", tc.q, got, tc.want)
			}
		})
	}
}

// TestRatioTableSomeCalls checks that the ratios table of a run of some
// calls only (--calls) keeps the figures whose cells were all measured.
func TestRatioTableSomeCalls(t *testing.T) {
	results := []cellResult{
		{call: CallEmpty, conc: 64, rps: 1000, p50: time.Millisecond},
		{call: CallGet1, conc: 64, rps: 500, p50: 2 * time.Millisecond},
		{call: CallRedis1, conc: 1, rps: 9000, p50: 100 * time.Microsecond},
	}
	tab := ratioTable(results, []int{1, 64})
	if len(tab.rows) != 1 {
		t.Fatalf("got %d ratio rows %q, want 1", len(tab.rows), tab.rows)
	}
	want := []string{"64", CallGet1 + " RPS / " + CallEmpty + " RPS", "500", "1000", "50%", "≥ 60% NOT met"}
	for i, c := range tab.rows[0] {
		if c != want[i] {
			t.Errorf("row %q, want %q", tab.rows[0], want)
			break
		}
	}
	if rows := batchingTable(results, []int{1, 64}).rows; len(rows) != 0 {
		t.Errorf("batching table without Rank-batched: %q, want no rows", rows)
	}
}
