package main

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/parquet-go/parquet-go"

	"github.com/larder-dev/larder"
	"github.com/larder-dev/larder/config"
	"github.com/larder-dev/larder/demo"
	"github.com/larder-dev/larder/materializer"
	"github.com/larder-dev/larder/queue"
	"github.com/larder-dev/larder/redistest"
	"github.com/larder-dev/larder/store"
)

// rankInputRow is a row of an input scored with the demo's ranker.
type rankInputRow struct {
	UserID    int64 `parquet:"user_id"`
	ItemID    int64 `parquet:"item_id"`
	HourOfDay int64 `parquet:"hour_of_day"`
}

type rankOutputRow struct {
	UserID int64   `parquet:"user_id"`
	ItemID int64   `parquet:"item_id"`
	Score  float32 `parquet:"score"`
}

// itemKeyRow is a row of an input scored with the demo's prediction view,
// its key in a column that is not named after the item entity's key.
type itemKeyRow struct {
	ID int64 `parquet:"id"`
}

type itemPredictionRow struct {
	ID     int64   `parquet:"id"`
	PClick float32 `parquet:"p_click"`
}

// modelVersion returns the version of the model file at path, as models
// computes it: a hash of the file's content.
func modelVersion(tb testing.TB, path string) string {
	tb.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	sum := sha256.Sum256(data)
	return "sha256:" + hex.EncodeToString(sum[:6])
}

// TestScoreCommand scores inputs with the demo's ranker and prediction view
// from the command line, in this process and as jobs, with relative paths
// read from the current directory.
func TestScoreCommand(t *testing.T) {
	ds, cfg := demoProject(t)
	redis := redistest.Start(t)
	mustSucceed(t, larderAt(t, t.Context(), t0, "--redis", redis.Addr, "-c", cfg, "materialize"), "materialize")
	dir := filepath.Dir(cfg)
	t.Chdir(dir)
	run := func(args ...string) result {
		t.Helper()
		return larderAt(t, t.Context(), t0, append([]string{"--redis", redis.Addr, "-c", cfg}, args...)...)
	}

	var rankRows []rankInputRow
	for i, u := range ds.SampleUsers(5) {
		for j, it := range ds.SampleItems(8) {
			rankRows = append(rankRows, rankInputRow{UserID: u, ItemID: it, HourOfDay: int64((i*5 + j) % 24)})
		}
	}
	writeParquet(t, filepath.Join(dir, "in", "rank.parquet"), rankRows)
	items := ds.SampleItems(20)
	itemRows := make([]itemKeyRow, len(items))
	for i, it := range items {
		itemRows[i] = itemKeyRow{ID: it}
	}
	// Two files, the second with an item the demo does not have.
	writeParquet(t, filepath.Join(dir, "in", "items", "part-0.parquet"), itemRows[:12])
	writeParquet(t, filepath.Join(dir, "in", "items", "part-1.parquet"), append(slices.Clone(itemRows[12:]), itemKeyRow{ID: 42}))
	rerank := modelVersion(t, filepath.Join(dir, "models", "rerank.onnx"))
	prior := modelVersion(t, filepath.Join(dir, "models", "item_prior.onnx"))

	t.Run("ranker", func(t *testing.T) {
		r := run("score", "--ranker", demo.RankerName, "--input", "in/rank.parquet", "--output", "rank-scores.parquet", "--batch-size", "7",
			"--as-of", "2025-06-01T11:00:00Z")
		mustSucceed(t, r, "score --ranker")
		out := filepath.Join(dir, "rank-scores.parquet")
		want := fmt.Sprintf("score with ranker %s: 40 rows scored from 1 file(s) into %s, 0.00s, 0 rows/s, model %s, generations user_profile@1, item_profile@1, as of 2025-06-01T11:00:00Z\n",
			demo.RankerName, out, rerank)
		if r.stdout != want {
			t.Errorf("stdout:\n%s\nwant:\n%s", r.stdout, want)
		}
		rows, err := parquet.ReadFile[rankOutputRow](out)
		if err != nil {
			t.Fatal(err)
		}
		if len(rows) != len(rankRows) {
			t.Fatalf("%d output rows, want %d", len(rows), len(rankRows))
		}
		for i, row := range rows {
			in := rankRows[i]
			if row.UserID != in.UserID || row.ItemID != in.ItemID || math.IsNaN(float64(row.Score)) || row.Score == 0 {
				t.Errorf("output row %d = %+v, want user %d, item %d and a score", i, row, in.UserID, in.ItemID)
			}
		}
	})

	t.Run("prediction view", func(t *testing.T) {
		r := run("score", "--view", "item_click_prior", "--key-column", "id", "--input", "in/items", "--output", "p_click.parquet")
		mustSucceed(t, r, "score --view")
		out := filepath.Join(dir, "p_click.parquet")
		want := fmt.Sprintf("score with view item_click_prior: 21 rows scored from 2 file(s) into %s, 0.00s, 0 rows/s, model %s, generations item_profile@1, as of 2025-06-01T12:00:00Z\n", out, prior)
		if r.stdout != want {
			t.Errorf("stdout:\n%s\nwant:\n%s", r.stdout, want)
		}
		rows, err := parquet.ReadFile[itemPredictionRow](out)
		if err != nil {
			t.Fatal(err)
		}
		if len(rows) != len(items)+1 {
			t.Fatalf("%d output rows, want %d", len(rows), len(items)+1)
		}
		// Scored as of t0, the items' scores are those the view stored,
		// materialized as of t0 too.
		project, err := config.Load(cfg)
		if err != nil {
			t.Fatal(err)
		}
		l := &larder.Lookup{View: project.View("item_click_prior")}
		for _, it := range items {
			l.Keys = append(l.Keys, larder.Int64Key(it))
		}
		if err := store.New(redis.Client(), project.Name, store.Options{}).Read(t.Context(), []*larder.Lookup{l}); err != nil {
			t.Fatal(err)
		}
		for i, row := range rows[:len(items)] {
			if row.ID != items[i] || !l.Found[i] || row.PClick != l.Rows[i].Values[0].Float32() {
				t.Errorf("output row %d = %+v, want item %d with the stored p_click %v", i, row, items[i], l.Rows[i].Values[0].Float32())
			}
		}
		if rows[len(items)].ID != 42 {
			t.Errorf("last output row = %+v, want item 42", rows[len(items)])
		}
	})

	// Without a worker, a job waits in the queue, with absolute paths and
	// the as-of of its submission.
	var queued string
	submitted := regexp.MustCompile(`^job (\S+) submitted: (.*)\n$`)
	t.Run("async", func(t *testing.T) {
		r := run("score", "--async", "--ranker", demo.RankerName, "--input", "in/rank.parquet", "--output", "async.parquet")
		mustSucceed(t, r, "score --async")
		m := submitted.FindStringSubmatch(r.stdout)
		if m == nil {
			t.Fatalf("stdout %q, want the job's id and description", r.stdout)
		}
		queued = m[1]
		in, out := filepath.Join(dir, "in", "rank.parquet"), filepath.Join(dir, "async.parquet")
		if want := fmt.Sprintf("score %s with ranker %s into %s as of 2025-06-01T12:00:00Z", in, demo.RankerName, out); m[2] != want {
			t.Errorf("description %q, want %q", m[2], want)
		}
		if want := "follow it with: larder jobs " + queued + " --wait (a `larder worker` that sees the same paths runs it)\n"; r.stderr != want {
			t.Errorf("stderr %q, want %q", r.stderr, want)
		}

		list := mustOutput(t, run("jobs"))
		line := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(queued) + ` +score +queued +- +0/3 .*$`)
		if !line.MatchString(list) {
			t.Errorf("jobs:\n%s\nwant the job queued, matching %s", list, line)
		}
		show := mustOutput(t, run("jobs", queued))
		am := regexp.MustCompile(`(?m)^arguments: +(\{.*\})$`).FindStringSubmatch(show)
		if am == nil {
			t.Fatalf("jobs %s:\n%s\nwant its arguments", queued, show)
		}
		var args larder.ScoreArgs
		if err := json.Unmarshal([]byte(am[1]), &args); err != nil {
			t.Fatal(err)
		}
		if want := (larder.ScoreArgs{Ranker: demo.RankerName, Input: in, Output: out, AsOf: t0}); args != want {
			t.Errorf("job arguments %+v, want %+v", args, want)
		}
		if _, err := os.Stat(out); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("%s exists before a worker ran the job (%v)", out, err)
		}
	})

	t.Run("async wait", func(t *testing.T) {
		stop := startScoreWorker(t, cfg, redis)
		defer stop()
		r := run("score", "--async", "--wait", "--view", "item_click_prior", "--key-column", "id", "--input", "in/items", "--output", "async-p_click.parquet")
		mustSucceed(t, r, "score --async --wait")
		lines := strings.Split(r.stdout, "\n")
		out := filepath.Join(dir, "async-p_click.parquet")
		if len(lines) != 4 || !submitted.MatchString(lines[0]+"\n") ||
			lines[1] != fmt.Sprintf("scored:       21 rows into %s, model %s", out, prior) ||
			lines[2] != "read:         item_profile generation 1 as of 2025-06-01T12:00:00Z" {
			t.Errorf("stdout:\n%s\nwant the job, then its result", r.stdout)
		}
		if !strings.Contains(r.stderr, ": succeeded\n") {
			t.Errorf("stderr:\n%s\nwant the job followed to its end", r.stderr)
		}
		if rows, err := parquet.ReadFile[itemPredictionRow](out); err != nil || len(rows) != 21 {
			t.Errorf("%s: %d rows, %v; want 21", out, len(rows), err)
		}
		// The worker ran the job queued before too.
		r = run("jobs", queued, "--wait")
		mustSucceed(t, r, "jobs --wait")
		if rows, err := parquet.ReadFile[rankOutputRow](filepath.Join(dir, "async.parquet")); err != nil || len(rows) != len(rankRows) {
			t.Errorf("async.parquet: %d rows, %v; want %d", len(rows), err, len(rankRows))
		}
	})
}

// startScoreWorker runs a worker of the project's scoring jobs on the
// queue in redis, as `larder worker` runs them, and returns the function
// that stops it.
func startScoreWorker(tb testing.TB, cfg string, redis *redistest.Server) func() {
	tb.Helper()
	project, err := config.Load(cfg)
	if err != nil {
		tb.Fatal(err)
	}
	client := redis.Client()
	st := store.New(client, project.Name, store.Options{})
	loader := &lazyModels{ctx: tb.Context(), a: &app{stderr: io.Discard}}
	clock := func() time.Time { return t0 }
	m := materializer.New(project, st, materializer.Options{Now: clock, Models: loader.load, Reader: st})
	q := queue.New(client, project.Name, queue.Options{Now: clock})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- q.Work(ctx, queue.WorkerOptions{Name: "test-worker", Handlers: map[larder.JobKind]queue.Handler{
			larder.JobScore: func(ctx context.Context, task *queue.Task) ([]byte, error) {
				var args larder.ScoreArgs
				if err := json.Unmarshal(task.Job().Args, &args); err != nil {
					return nil, queue.Permanent(err)
				}
				rep, err := m.Score(ctx, args)
				if err != nil {
					return nil, err
				}
				return json.Marshal(rep.Result())
			},
		}})
	}()
	return func() {
		cancel()
		if err := <-done; err != nil {
			tb.Error(err)
		}
		loader.close()
	}
}

// TestScoreCommandErrors checks that score fails with exit code 1 and a
// message that says what to do, before submitting or writing anything.
func TestScoreCommandErrors(t *testing.T) {
	_, cfg := demoProject(t)
	redis := redistest.Start(t)
	dir := t.TempDir()
	in, out := filepath.Join(dir, "in.parquet"), filepath.Join(dir, "out.parquet")
	writeParquet(t, in, []rankInputRow{{UserID: 1, ItemID: 1_000_001, HourOfDay: 3}})
	base := []string{"--redis", redis.Addr, "-c", cfg, "score"}
	paths := []string{"--input", in, "--output", out}
	with := func(args ...string) []string { return append(slices.Clone(base), args...) }
	tests := []struct {
		name   string
		args   []string
		stderr string
	}{
		{"no model", with(paths...),
			"larder: name the model to score with: --ranker NAME (rankers: home_feed) or --view PREDICTION_VIEW (prediction views: item_click_prior)\n"},
		{"two models", with(append([]string{"--ranker", "home_feed", "--view", "item_click_prior"}, paths...)...),
			"larder: --ranker home_feed and --view item_click_prior: score with one model, a ranker's or a prediction view's\n"},
		{"unknown ranker", with(append([]string{"--ranker", "feed"}, paths...)...),
			"larder: --ranker: unknown ranker \"feed\" (rankers: home_feed)\n"},
		{"unknown view", with(append([]string{"--view", "click_prior"}, paths...)...),
			"larder: --view: unknown view \"click_prior\" (prediction views: item_click_prior)\n"},
		{"not a prediction view", with(append([]string{"--view", "user_profile"}, paths...)...),
			"larder: --view: user_profile is a latest view, which has no model: name a prediction view (prediction views: item_click_prior), or score with --ranker\n"},
		{"key column with a ranker", with(append([]string{"--ranker", "home_feed", "--key-column", "id"}, paths...)...),
			"larder: --key-column names the key column of a prediction view's input; a ranker's input has --context-column and --candidate-column\n"},
		{"context column with a view", with(append([]string{"--view", "item_click_prior", "--context-column", "u"}, paths...)...),
			"larder: --context-column and --candidate-column name the key columns of a ranker's input; a prediction view's input has --key-column\n"},
		{"no input", with("--ranker", "home_feed", "--output", out),
			"larder: --input: name the Parquet file, folder or glob to score\n"},
		{"no output", with("--ranker", "home_feed", "--input", in),
			"larder: --output: name the Parquet file to write the scores to\n"},
		{"output is the input", with("--ranker", "home_feed", "--input", in, "--output", in),
			"larder: --output " + in + " is the input too: write the scores to another file\n"},
		{"output among a source's files", with("--ranker", "home_feed", "--input", in, "--output", filepath.Join(filepath.Dir(cfg), "data", "events", "scores.parquet")),
			"larder: score with ranker home_feed: the output " + filepath.Join(filepath.Dir(cfg), "data", "events", "scores.parquet") +
				" is a file of source \"events\" (data/events), which the views read: write the scores elsewhere\n"},
		{"negative batch size", with(append([]string{"--ranker", "home_feed", "--batch-size", "-1"}, paths...)...),
			"larder: --batch-size must be 0 (the default, 1024) or more\n"},
		{"bad as-of", with(append([]string{"--ranker", "home_feed", "--as-of", "yesterday"}, paths...)...),
			"larder: --as-of \"yesterday\": want an RFC 3339 instant such as 2026-11-30T00:00:00Z or 2026-11-30T01:00:00+01:00\n"},
		{"future as-of", with(append([]string{"--ranker", "home_feed", "--as-of", "2025-06-02T00:00:00Z"}, paths...)...),
			"larder: --as-of 2025-06-02T00:00:00Z is in the future (now is 2025-06-01T12:00:00Z): a run computes views as of now or an instant before\n"},
		{"wait without async", with(append([]string{"--ranker", "home_feed", "--wait"}, paths...)...),
			"larder: --wait follows a job: use it with --async\n"},
		{"an argument", with(append([]string{"--ranker", "home_feed", "extra"}, paths...)...),
			"larder: unknown command \"extra\" for \"larder score\"\n"},
		{"embedded", append([]string{"-c", cfg, "score", "--ranker", "home_feed"}, paths...),
			"larder: larder score reads a Redis server, but the project uses the embedded store, which lives only inside `larder serve` or `larder demo`: pass --redis ADDR (those commands print it) or set redis.addresses\n"},
		{"views not published", with(append([]string{"--ranker", "home_feed"}, paths...)...),
			"larder: score with ranker home_feed: input view \"user_profile\" has no live generation: materialize it first (larder materialize user_profile): "},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := larderAt(t, t.Context(), t0, tc.args...)
			ok := r.stderr == tc.stderr
			if strings.HasSuffix(tc.stderr, ": ") {
				ok = strings.HasPrefix(r.stderr, tc.stderr) && strings.Count(r.stderr, "\n") == 1
			}
			if r.code != 1 || r.stdout != "" || !ok {
				t.Errorf("exit %d, stdout %q, stderr:\n%s\nwant exit 1, nothing on stdout, stderr:\n%s", r.code, r.stdout, r.stderr, tc.stderr)
			}
		})
	}
	if _, err := os.Stat(out); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("%s was written (%v)", out, err)
	}
	if n := redis.Client().Keys(t.Context(), "larder:shop:{shop:jobs}:*").Val(); len(n) != 0 {
		t.Errorf("jobs were submitted: %v", n)
	}
}
