package main

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestViewsFreshness compares what views prints of the fresh project (a
// sharded view scheduled in Paris, a stale view whose latest run failed, a
// scheduled view never published, a view without run records) with
// testdata/*.golden, as a table, a wide table and JSON.
func TestViewsFreshness(t *testing.T) {
	fp := newFreshProject(t)
	tests := []struct {
		name string
		args []string
	}{
		{"views_fresh", []string{"views"}},
		{"views_fresh_wide", []string{"views", "--wide"}},
		{"views_fresh_json", []string{"views", "--json"}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			checkGolden(t, tc.name, mustOutput(t, fp.larder(t, t0, tc.args...)))
		})
	}

	t.Run("json has every field of every view", func(t *testing.T) {
		out := mustOutput(t, fp.larder(t, t0, "views", "--json"))
		lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
		if len(lines) != len(fp.p.Views) {
			t.Fatalf("%d lines, want one per view (%d):\n%s", len(lines), len(fp.p.Views), out)
		}
		var first map[string]any
		for i, l := range lines {
			var obj map[string]any
			if err := json.Unmarshal([]byte(l), &obj); err != nil {
				t.Fatalf("line %d is not a JSON object: %v\n%s", i, err, l)
			}
			if first == nil {
				first = obj
				continue
			}
			// A field that does not apply is null, never left out, so that
			// every object has the same keys.
			for k := range first {
				if _, ok := obj[k]; !ok {
					t.Errorf("line %d has no field %q:\n%s", i, k, l)
				}
			}
			if len(obj) != len(first) {
				t.Errorf("line %d has %d fields, the first %d", i, len(obj), len(first))
			}
		}
	})
}
