package main

import (
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/larder-dev/larder/bench"
	"github.com/larder-dev/larder/redistest"
)

// TestBenchQuick runs `larder bench --quick` end to end, ONNX Runtime and a
// real redis-server included, and checks the shape of what it prints.
func TestBenchQuick(t *testing.T) {
	t.Parallel()
	srv := redistest.Start(t) // also installs redis-server for the first case
	profile := filepath.Join(t.TempDir(), "get.pprof")
	for _, tc := range []struct {
		name     string
		args     []string
		markdown bool
	}{
		{"own redis-server", []string{"bench", "--quick", "--cpuprofile", profile, "--profile-call", "GetFeatures-1x20"}, false},
		{"--redis, markdown", []string{"--redis", srv.Addr, "bench", "--quick", "--markdown"}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := larderAt(t, t.Context(), time.Now(), tc.args...)
			mustSucceed(t, r, "larder bench --quick")
			lines := benchTables(t, r.stdout, tc.markdown)
			if len(lines) != 2 {
				t.Fatalf("got %d tables, want 2 (results, ratios):\n%s", len(lines), r.stdout)
			}
			checkResults(t, lines[0])
			checkRatios(t, lines[1])
			for _, l := range bench.Legend {
				if !strings.Contains(r.stdout, l[1]) {
					t.Errorf("no legend for %s", l[0])
				}
			}
		})
	}
	t.Run("profiles written", func(t *testing.T) {
		for _, path := range []string{profile, profile + ".callers"} {
			switch fi, err := os.Stat(path); {
			case err != nil:
				t.Errorf("--cpuprofile: %s not written: %v", path, err)
			case fi.Size() == 0:
				t.Errorf("--cpuprofile: %s is empty", path)
			}
		}
	})
	t.Run("--redis keys deleted", func(t *testing.T) {
		n, err := srv.Client().DBSize(t.Context()).Result()
		if err != nil || n != 0 {
			t.Errorf("after bench, the Redis at --redis holds %d keys (err %v), want 0", n, err)
		}
	})
}

// benchTables returns the cells of the tables in out: a text table starts
// at a line beginning "call " or "concurrency " and ends at a blank line; a
// Markdown table is a run of lines beginning "| ", without its rule line.
func benchTables(tb testing.TB, out string, markdown bool) [][][]string {
	tb.Helper()
	var tables [][][]string
	var cur [][]string
	in := false
	for _, l := range strings.Split(out, "\n") {
		var row []string
		switch {
		case markdown && strings.HasPrefix(l, "| "):
			if strings.HasPrefix(l, "| ---") {
				continue
			}
			for _, c := range strings.Split(strings.Trim(l, "| "), " | ") {
				row = append(row, strings.TrimSpace(c))
			}
		case !markdown && (strings.HasPrefix(l, "call ") || strings.HasPrefix(l, "concurrency ")):
			in = true
			fallthrough
		case !markdown && in && strings.TrimSpace(l) != "":
			row = splitCells(l)
		}
		if row == nil {
			if cur != nil {
				tables = append(tables, cur)
			}
			cur, in = nil, false
			continue
		}
		cur = append(cur, row)
	}
	if cur != nil {
		tables = append(tables, cur)
	}
	return tables
}

// splitCells splits a text table line at runs of two or more spaces.
func splitCells(l string) []string {
	var cells []string
	for _, c := range strings.Split(strings.TrimSpace(l), "  ") {
		if c = strings.TrimSpace(c); c != "" {
			cells = append(cells, c)
		}
	}
	return cells
}

// checkResults checks the results table of a --quick run: every call at
// concurrency 1 and 4, in order, with positive counts, ordered percentiles,
// the server's, the callers' and redis-server's CPU time per call (- for
// the floors that do not go through the server, or where a short cell took
// less than a clock tick), and the CPU share of other processes.
func checkResults(tb testing.TB, rows [][]string) {
	tb.Helper()
	want := []string{"call", "concurrency", "requests", "RPS", "p50", "p95", "p99", "p999", "server CPU", "callers CPU", "redis CPU", "others"}
	if strings.Join(rows[0], ",") != strings.Join(want, ",") {
		tb.Fatalf("results header %q, want %q", rows[0], want)
	}
	if len(rows) != 1+2*bench.CallCount {
		tb.Fatalf("got %d result rows, want %d (%d calls × concurrency 1, 4)", len(rows)-1, 2*bench.CallCount, bench.CallCount)
	}
	for i, row := range rows[1:] {
		call, conc := bench.Legend[i/2][0], []string{"1", "4"}[i%2]
		if len(row) != len(want) || row[0] != call || row[1] != conc {
			tb.Errorf("row %d is %q, want %s at concurrency %s with %d cells", i+1, row, call, conc, len(want))
			continue
		}
		for _, c := range row[2:4] {
			if n, err := strconv.ParseFloat(c, 64); err != nil || n <= 0 {
				tb.Errorf("row %q: %q is not a positive number", row, c)
			}
		}
		var prev time.Duration
		for _, c := range row[4:8] {
			d, err := time.ParseDuration(c)
			if err != nil || d <= 0 || d < prev {
				tb.Errorf("row %q: latency %q is not a positive duration at least the previous percentile", row, c)
			}
			prev = d
		}
		served := !slices.Contains([]string{bench.CallRedis1, bench.CallRedis101, bench.CallModel}, call)
		if c := row[8]; !served && c != "-" {
			tb.Errorf("row %q: server CPU %q for a call that does not go through the server, want -", row, c)
		}
		for _, c := range row[8:11] {
			if d, err := time.ParseDuration(c); c != "-" && c != "0" && (err != nil || d <= 0) {
				tb.Errorf("row %q: CPU per call %q is neither a positive duration, 0 nor -", row, c)
			}
		}
		if o := row[11]; o != "-" && !strings.HasSuffix(o, "%") {
			tb.Errorf("row %q: others %q is neither a percentage nor -", row, o)
		}
	}
}

// checkRatios checks the ratios table: eight figures at each concurrency,
// each with a ratio and, where one is set, a goal.
func checkRatios(tb testing.TB, rows [][]string) {
	tb.Helper()
	want := []string{"concurrency", "figure", "larder", "floor", "ratio", "goal"}
	if strings.Join(rows[0], ",") != strings.Join(want, ",") {
		tb.Fatalf("ratios header %q, want %q", rows[0], want)
	}
	const figures = 8
	if len(rows) != 1+2*figures {
		tb.Fatalf("got %d ratio rows, want %d (%d figures × concurrency 1, 4)", len(rows)-1, 2*figures, figures)
	}
	for i, row := range rows[1:] {
		if len(row) != len(want) || row[0] != []string{"1", "4"}[i/figures] {
			tb.Errorf("ratio row %d is %q", i+1, row)
			continue
		}
		// The ratio's value depends on the machine's load (a busy machine
		// can stretch a floor a thousandfold, and the ratio prints as
		// 0.00×): only its form is checked.
		ratio := strings.TrimRight(row[4], "×%")
		if n, err := strconv.ParseFloat(ratio, 64); err != nil || n < 0 {
			tb.Errorf("ratio row %q: ratio %q is not a number", row, row[4])
		}
		if goal := row[5]; goal != "-" && !strings.HasSuffix(goal, " met") {
			tb.Errorf("ratio row %q: goal %q says neither met nor NOT met", row, goal)
		}
	}
}

// TestBenchErrors checks that bench says what is wrong before it starts.
func TestBenchErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		path bool // PATH without redis-server
		args []string
		want string
	}{
		{"no redis-server", true, []string{"bench", "--quick"}, "run make setup or apt-get install redis-server"},
		{"zero duration", false, []string{"bench", "--duration", "0s"}, "--duration 0s: must be positive"},
		{"zero concurrency", false, []string{"bench", "--concurrency", "1,0"}, "--concurrency 0: each number of callers"},
		{"no connections", false, []string{"bench", "--conns", "0"}, "--conns 0: must be at least 1"},
		{"no rounds", false, []string{"bench", "--rounds", "0"}, "--rounds 0: must be at least 1"},
		{"unknown profile call", false, []string{"bench", "--cpuprofile", "x.pprof", "--profile-call", "Rank"}, `--profile-call "Rank": no such call; the calls are empty-call,`},
		{"batched call without --batching", false, []string{"bench", "--profile-call", "Rank-batched"}, `--profile-call "Rank-batched": no such call`},
		{"unknown call", false, []string{"bench", "--calls", "empty-call,GetFeatures"}, `--calls "GetFeatures": no such call; the calls are empty-call,`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.path {
				t.Setenv("PATH", t.TempDir())
			}
			r := larderAt(t, t.Context(), t0, tc.args...)
			if r.code != 1 || !strings.Contains(r.stderr, tc.want) {
				t.Errorf("exit %d, stderr %q; want exit 1 and %q", r.code, r.stderr, tc.want)
			}
		})
	}
}
