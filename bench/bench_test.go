package bench

import (
	"context"
	"strings"
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

// TestRatioTableDigits checks that a ratio held to a goal is shown with
// enough digits to agree with its verdict: 1.504 is not "1.50×" against
// "≤ 1.5× NOT met", nor 59.96% "60%" against "≥ 60% NOT met".
func TestRatioTableDigits(t *testing.T) {
	results := []cellResult{
		{call: CallEmpty, conc: 1, rps: 10000, p50: 500 * time.Microsecond},
		{call: CallRedis1, conc: 1, rps: 20000, p50: 500 * time.Microsecond},
		{call: CallGet1, conc: 1, rps: 5996, p50: 1504 * time.Microsecond},
		{call: CallEmpty, conc: 4, rps: 10000, p50: 500 * time.Microsecond},
		{call: CallRedis1, conc: 4, rps: 20000, p50: 500 * time.Microsecond},
		{call: CallGet1, conc: 4, rps: 6010, p50: 1490 * time.Microsecond},
	}
	want := map[string][2]string{ // figure at a concurrency: ratio, goal
		"1 " + CallGet1 + " p50 / (" + CallEmpty + " + " + CallRedis1 + ")": {"1.504×", "≤ 1.5× NOT met"},
		"1 " + CallGet1 + " RPS / " + CallEmpty + " RPS":                    {"59.96%", "≥ 60% NOT met"},
		"4 " + CallGet1 + " p50 / (" + CallEmpty + " + " + CallRedis1 + ")": {"1.49×", "≤ 1.5× met"},
		"4 " + CallGet1 + " RPS / " + CallEmpty + " RPS":                    {"60%", "≥ 60% met"},
	}
	tab := ratioTable(results, []int{1, 4})
	if len(tab.rows) != len(want) {
		t.Fatalf("got %d rows %q, want %d", len(tab.rows), tab.rows, len(want))
	}
	for _, row := range tab.rows {
		w, ok := want[row[0]+" "+row[1]]
		if !ok || row[4] != w[0] || row[5] != w[1] {
			t.Errorf("row %q, want ratio %q and goal %q", row, w[0], w[1])
		}
	}
}

// TestProgressLines checks that the progress lines of calls of any length
// of name keep their figures in one column.
func TestProgressLines(t *testing.T) {
	names := []string{CallEmpty, CallServedRank, CallGetGeneric}
	width := nameWidth(names)
	at := -1
	for _, name := range names {
		line := progressLine(width, cellResult{call: name, conc: 1, rps: 1726, p50: time.Millisecond, serverCPU: noCPU, redisCPU: noCPU})
		i := strings.Index(line, "×1 ")
		if at == -1 {
			at = i
		}
		if i != at || !strings.Contains(line, name+" ") {
			t.Errorf("%q: ×1 at %d, want %d, after the name and a blank", line, i, at)
		}
	}
}

// TestCPUFigures checks how the CPU time per call is shown: - where the
// process was not measured, 0 where /proc counted none of its clock ticks
// during the cell, the time otherwise.
func TestCPUFigures(t *testing.T) {
	for _, tc := range []struct {
		d    time.Duration
		want string
	}{
		{noCPU, "-"},
		{perCall(0, 100, true), "-"},
		{perCall(0, 2000, false), "0"},
		{perCall(1, 2000, false), "5.00µs"},
	} {
		if got := cpuText(tc.d); got != tc.want {
			t.Errorf("cpuText(%v) = %q, want %q", tc.d, got, tc.want)
		}
	}
	c := newCell(benchCall{name: CallEmpty, served: true, newCaller: func(int) func(context.Context) error { return nil }}, 1, time.Second)
	c.redis, c.done, c.elapsed, c.lats = true, 2000, time.Second, [][]time.Duration{{time.Millisecond}}
	c.cpu = cpuSpan{total: 200, self: 20, server: 20}
	r, err := c.result()
	if err != nil {
		t.Fatal(err)
	}
	if row := resultTable([]cellResult{r}).rows[0]; row[8] != "100.0µs" || row[10] != "0" {
		t.Errorf("row %q: server CPU %q, redis CPU %q, want 100.0µs and 0", row, row[8], row[10])
	}
	c.redis, c.call.served = false, false
	if r, err = c.result(); err != nil {
		t.Fatal(err)
	}
	if row := resultTable([]cellResult{r}).rows[0]; row[8] != "-" || row[10] != "-" {
		t.Errorf("row %q without the server or a redis-server: server CPU %q, redis CPU %q, want - and -", row, row[8], row[10])
	}
}
