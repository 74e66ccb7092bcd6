package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestValidateAggregateStream checks the stream of an aggregate view with
// the file: its fields name aggregated columns, its windows are whole
// tiles, and count_distinct is refused, each problem at its line.
func TestValidateAggregateStream(t *testing.T) {
	const project = `project: tiles
entities:
  - {name: user, key: user_id, type: int64}
sources:
  - {name: ev, path: ev.parquet, event_time: ts}
views:
  - name: clicks
    kind: aggregate
    entity: user
    source: ev
    tile: 1m
    aggregations:
      - {column: amount, type: float64, functions: [count, sum], windows: [5m, 90s]}
      - {column: page, type: string, functions: [count_distinct], windows: [1h]}
streams:
  - name: ev
    view: clicks
    redis_stream: events
    fields: {amount: price, url: page}
`
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte(project), 0o644); err != nil {
		t.Fatal(err)
	}
	r := larderAt(t, t.Context(), t0, "-c", bad, "validate", "--offline")
	if r.code != 1 {
		t.Fatalf("exit code %d, want 1\n%s", r.code, r.stderr)
	}
	for _, want := range []string{
		"bad.yaml:13:80: views[0].aggregations[0].windows[1]: window 90s is not a multiple of the view's tile 1m0s",
		`bad.yaml:14:49: views[0].aggregations[1].functions: page_count_distinct_1h: count_distinct cannot be kept current from stream "ev"`,
		`bad.yaml:19:34: streams[0].fields.url: view "clicks" has no aggregated column "url" (known: amount, page)`,
	} {
		if !strings.Contains(r.stderr, want) {
			t.Errorf("no %q in:\n%s", want, r.stderr)
		}
	}

	good := strings.NewReplacer(", 90s]", "]", "count_distinct", "last", ", url: page", "").Replace(project)
	path := filepath.Join(dir, "good.yaml")
	if err := os.WriteFile(path, []byte(good), 0o644); err != nil {
		t.Fatal(err)
	}
	if r := larderAt(t, t.Context(), t0, "-c", path, "validate", "--offline"); r.code != 0 {
		t.Errorf("exit code %d, want 0\n%s", r.code, r.stderr)
	}
}
