package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// aggregateView is an aggregate view added to the tiny project, which
// incremental runs must leave alone.
const aggregateView = `
  - name: user_activity
    kind: aggregate
    entity: user
    source: users
    aggregations:
      - {column: score, type: float64, functions: [count], windows: [1d]}
`

func TestMaterializeIncremental(t *testing.T) {
	p := newTinyProject(t)
	f, err := os.OpenFile(p.config, os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteString(aggregateView); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}

	refused := []struct {
		name   string
		args   []string
		stderr string
	}{
		{"before any full run", []string{"materialize", "--incremental", "item_profile"},
			"larder: materialize item_profile: incremental run: the view has no live generation to bring up to date: run a full `larder materialize item_profile` first (the live generation, if any, still serves, and its watermark is unchanged)\n"},
		{"an aggregate view", []string{"materialize", "--incremental", "user_profile", "user_activity"},
			"larder: view \"user_activity\" is of kind aggregate, and --incremental runs only latest views: run `larder materialize user_activity` without --incremental\n"},
		{"an unknown view", []string{"materialize", "--incremental", "nope"},
			"larder: unknown view \"nope\" (views: user_profile, item_profile, user_country, user_activity)\n"},
	}
	for _, tt := range refused {
		t.Run(tt.name, func(t *testing.T) {
			r := p.larder(t, t0, tt.args...)
			if r.code != 1 || r.stdout != "" || !strings.HasPrefix(r.stderr, tt.stderr) {
				t.Errorf("exit code %d, stdout %q, stderr:\n%s\nwant 1, nothing, and stderr starting with:\n%s", r.code, r.stdout, r.stderr, tt.stderr)
			}
		})
	}

	mustOutput(t, p.larder(t, t0, "materialize", "user_profile", "item_profile", "user_country"))
	before := mustOutput(t, p.larder(t, t0, "get", "--json", "item_profile", "A-100", "B-200", "C-300", "D-400"))

	// The watermark of item_profile is C-300's event time, t0-10m: the
	// second file (A-100 at t0-15m) is older and skipped; the first holds
	// the watermark and is read again.
	writeParquet(t, filepath.Join(p.dir, "data", "items", "part-0002.parquet"), []itemRow{
		{SKU: "A-100", UpdatedAt: t0.Add(10 * time.Minute), Title: "Kettle v2", Price: 21},
		{SKU: "B-200", UpdatedAt: t0.Add(-6 * time.Hour), Title: "Mug (late)", Price: 1},
		{SKU: "D-400", UpdatedAt: t0.Add(20 * time.Minute), Title: "Saucer", Price: 4},
	})
	r := p.larder(t, t0.Add(time.Hour), "materialize", "--incremental", "item_profile")
	want := "item_profile: generation 1 updated incrementally: 6 rows read from 2 file(s), 1 row group(s) skipped (1 whole file(s)) as older than the watermark 2025-06-01T11:50:00Z, " +
		"3 entities written, 0 row(s) older than the stored ones left out, 3 (3 before watermark) skipped, 0.00s, 0 rows/s\n"
	if got := mustOutput(t, r); got != want {
		t.Errorf("stdout:\n%s\nwant:\n%s", got, want)
	}

	after := mustOutput(t, p.larder(t, t0.Add(time.Hour), "get", "--json", "item_profile", "A-100", "B-200", "C-300", "D-400"))
	lines, old := strings.Split(after, "\n"), strings.Split(before, "\n")
	if !strings.Contains(lines[0], `"event_time":"2025-06-01T12:10:00Z"`) || !strings.Contains(lines[0], `"title":"Kettle v2"`) {
		t.Errorf("A-100 after the run: %s\nwant its newer row", lines[0])
	}
	if lines[1] != old[1] || lines[2] != old[2] {
		t.Errorf("B-200 and C-300 after the run:\n%s\n%s\nwant them unchanged:\n%s\n%s", lines[1], lines[2], old[1], old[2])
	}
	if !strings.Contains(lines[3], `"generation":1,`) || !strings.Contains(lines[3], `"title":"Saucer"`) {
		t.Errorf("D-400 after the run: %s\nwant it in generation 1", lines[3])
	}

	runs := mustOutput(t, p.larder(t, t0.Add(time.Hour), "runs", "item_profile"))
	if f := strings.Fields(strings.Split(runs, "\n")[1]); len(f) < 4 || f[2] != "1" || f[3] != "(incr)" {
		t.Errorf("runs:\n%s\nwant the newest run recorded as incremental into generation 1", runs)
	}

	t.Run("every latest view", func(t *testing.T) {
		got := mustOutput(t, p.larder(t, t0.Add(2*time.Hour), "materialize", "--incremental"))
		lines := strings.Split(strings.TrimSuffix(got, "\n"), "\n")
		if len(lines) != 3 {
			t.Fatalf("stdout:\n%s\nwant one line for each of the three latest views", got)
		}
		for i, view := range []string{"user_profile", "item_profile", "user_country"} {
			if !strings.HasPrefix(lines[i], view+": generation 1 updated incrementally: ") {
				t.Errorf("line %d: %s\nwant the incremental summary of %s", i+1, lines[i], view)
			}
		}
		// Nothing is newer than item_profile's watermark, now D-400's.
		if want := "item_profile: generation 1 updated incrementally: 3 rows read from 1 file(s), 2 row group(s) skipped (2 whole file(s))"; !strings.HasPrefix(lines[1], want) {
			t.Errorf("line 2: %s\nwant it to start with %s", lines[1], want)
		}
	})
}
