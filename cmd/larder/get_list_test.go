package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/larder-dev/larder"
	"github.com/larder-dev/larder/redistest"
)

// listProject returns a validated project with two candidates views of
// users: recs lists items (string keys), similar lists users (int64 keys).
func listProject(tb testing.TB) *larder.Project {
	tb.Helper()
	p := &larder.Project{
		Name: "lists",
		Entities: []*larder.Entity{
			{Name: "user", Key: "user_id", KeyType: larder.TypeInt64},
			{Name: "item", Key: "sku", KeyType: larder.TypeString},
		},
		Sources: []*larder.Source{{Name: "scores", Path: "scores.parquet", EventTime: "ts"}},
		Views: []*larder.View{
			{Name: "recs", Kind: larder.KindCandidates, Entity: "user", Source: "scores", MaxAge: time.Hour,
				Candidates: &larder.Candidates{Entity: "item", ScoreColumn: "score"}},
			{Name: "similar", Kind: larder.KindCandidates, Entity: "user", Source: "scores",
				Candidates: &larder.Candidates{Entity: "user", Column: "other_user_id", ScoreColumn: "score"}},
		},
	}
	p.SetDefaults()
	if err := p.Validate(); err != nil {
		tb.Fatalf("list project: %v", err)
	}
	return p
}

// TestGetLists checks how get prints list values: readable in the table,
// with long lists cut, and complete JSON arrays with --json. The store is
// left out: the lookups are filled as Read fills them.
func TestGetLists(t *testing.T) {
	p := listProject(t)
	long := make([]int64, 150)
	longScores := make([]float32, 150)
	for i := range long {
		long[i] = int64(1000 + i)
		longScores[i] = float32(150-i) / 8
	}
	recs := &larder.Lookup{
		View:       p.View("recs"),
		Keys:       []larder.Key{larder.Int64Key(1), larder.Int64Key(2), larder.Int64Key(3), larder.Int64Key(4)},
		Generation: 7,
		Found:      []bool{true, true, true, false},
		Rows: []larder.Row{
			{EventTime: t0.Add(-10 * time.Minute), Values: []larder.Value{
				larder.StringListValue([]string{"A-100", "B 200", `C"300`}), larder.Float32VectorValue([]float32{0.875, 0.5, 0.5}),
			}},
			{EventTime: t0.Add(-2 * time.Hour), Values: []larder.Value{ // stale: the max age is 1h
				larder.StringListValue([]string{}), larder.Float32VectorValue([]float32{}),
			}},
			{EventTime: t0, Values: []larder.Value{larder.Null, larder.Null}},
			{},
		},
	}
	similar := &larder.Lookup{
		View:       p.View("similar"),
		Keys:       []larder.Key{larder.Int64Key(1), larder.Int64Key(2)},
		Generation: 3,
		Found:      []bool{true, true},
		Rows: []larder.Row{
			{EventTime: t0, Values: []larder.Value{larder.Int64ListValue(long), larder.Float32VectorValue(longScores)}},
			{EventTime: t0, Values: []larder.Value{larder.Int64ListValue([]int64{-5, 1 << 60}), larder.Float32VectorValue([]float32{1, 0})}},
		},
	}

	for _, tc := range []struct {
		name string
		json bool
	}{{"get_lists", false}, {"get_lists_json", true}} {
		t.Run(tc.name, func(t *testing.T) {
			var out bytes.Buffer
			a := &app{stdout: &out, now: func() time.Time { return t0 }}
			for i, l := range []*larder.Lookup{recs, similar} {
				if i > 0 && !tc.json {
					fmt.Fprintln(&out)
				}
				print := a.printRows
				if tc.json {
					print = a.printRowsJSON
				}
				if err := print(l); err != nil {
					t.Fatal(err)
				}
			}
			checkGolden(t, tc.name, out.String())
		})
	}

	t.Run("json arrays are complete", func(t *testing.T) {
		var out bytes.Buffer
		a := &app{stdout: &out, now: func() time.Time { return t0 }}
		if err := a.printRowsJSON(similar); err != nil {
			t.Fatal(err)
		}
		var first struct {
			Values struct {
				Candidates []int64   `json:"candidates"`
				Scores     []float32 `json:"scores"`
			} `json:"values"`
		}
		dec := json.NewDecoder(&out)
		if err := dec.Decode(&first); err != nil {
			t.Fatal(err)
		}
		if len(first.Values.Candidates) != len(long) || first.Values.Candidates[149] != long[149] || len(first.Values.Scores) != len(long) {
			t.Errorf("--json printed %d candidates and %d scores, want all %d", len(first.Values.Candidates), len(first.Values.Scores), len(long))
		}
	})
}

// candidatesYAML is a project with a candidates view of items per user.
const candidatesYAML = `project: lists
entities:
  - {name: user, key: user_id, type: int64}
  - {name: item, key: sku, type: string}
sources:
  - {name: recs, path: recs.parquet, event_time: updated_at}
views:
  - name: user_recs
    kind: candidates
    entity: user
    source: recs
    max_age: 1h
    candidates: {entity: item, score: score, top_k: 3}
`

type recRow struct {
	UserID    int64     `parquet:"user_id"`
	SKU       string    `parquet:"sku"`
	Score     float64   `parquet:"score"`
	UpdatedAt time.Time `parquet:"updated_at,timestamp(millisecond)"`
}

// TestGetCandidatesView materializes a candidates view from larder.yaml into
// a real redis-server and prints it with get, as a table and as JSON.
func TestGetCandidatesView(t *testing.T) {
	dir := t.TempDir()
	config := filepath.Join(dir, "larder.yaml")
	if err := os.WriteFile(config, []byte(candidatesYAML), 0o644); err != nil {
		t.Fatal(err)
	}
	writeParquet(t, filepath.Join(dir, "recs.parquet"), []recRow{
		{1, "A-100", 0.5, t0.Add(-2 * time.Hour)},
		{1, "B-200", 0.9, t0.Add(-30 * time.Minute)},
		{1, "C-300", 0.7, t0.Add(-40 * time.Minute)},
		{1, "D-400", 0.7, t0.Add(-50 * time.Minute)},
		{1, "B-200", 0.1, t0.Add(-20 * time.Minute)}, // newer: B-200 drops out
		{2, "A-100", 0.25, t0.Add(-3 * time.Hour)},   // stale
		{3, "Z-999", 1, t0.Add(time.Hour)},           // after the run time
	})
	redis := redistest.Start(t)
	larder := func(args ...string) string {
		t.Helper()
		return mustOutput(t, larderAt(t, t.Context(), t0, append([]string{"--redis", redis.Addr, "-c", config}, args...)...))
	}
	larder("materialize", "user_recs")
	checkGolden(t, "get_candidates", larder("get", "user_recs", "1", "2", "3"))
	checkGolden(t, "get_candidates_json", larder("get", "--json", "user_recs", "1", "2", "3"))
}
